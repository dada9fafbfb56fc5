//! Integration tests: one binary, a real server per test, spoken to over HTTP.

mod helpers;

mod smoke;
mod accounts;
mod api_keys;
mod authentication;
mod channels;
mod conventions;
mod history;
mod instances;
mod isolation;
mod publish;
mod robustness;
mod cli;
mod durability;
mod retention;
