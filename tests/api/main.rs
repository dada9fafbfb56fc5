//! Integration tests: one binary, a real server per test, spoken to over HTTP.

#[path = "../common/pg_schema.rs"]
mod pg_schema;

mod helpers;

mod accounts;
mod api_keys;
mod authentication;
mod channels;
mod chaos;
mod classes;
mod cli;
mod cluster;
mod connections;
mod console;
mod conventions;
mod durability;
mod gaps;
mod groups;
mod hardening;
mod history;
mod instances;
mod isolation;
mod metrics;
mod object_messages;
mod objects;
mod openapi;
mod passwords;
mod permissions;
mod poll;
mod publish;
mod retention;
mod robustness;
mod sdk;
mod shutdown;
mod smoke;
mod sse;
mod users;
mod websocket;
