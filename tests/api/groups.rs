//! Placeholder: tests arrive in the next commits.
