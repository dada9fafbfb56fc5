//! Integration tests: one binary, a real server per test, spoken to over HTTP.

mod helpers;

mod accounts;
mod api_keys;
mod authentication;
mod channels;
mod cli;
mod conventions;
mod durability;
mod history;
mod instances;
mod isolation;
mod publish;
mod retention;
mod robustness;
mod smoke;
mod chaos;
mod poll;
mod shutdown;
mod sse;
mod websocket;
