//! Change messages of data objects (SPEC §10.4): exact payloads, delivery on every transport.
