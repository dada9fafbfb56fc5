//! Data objects (SPEC §10.3, §10.9): CRUD, values, permissions, lists, queries.
