//! The `warmspace` binary end to end: server processes, the CLI as a user
//! runs it, real agents and external daemons. One test binary, whose tests
//! run in parallel.

mod agents;
mod app_open;
mod apps;
mod cli;
mod cli_typed;
mod common;
mod create;
mod demo;
mod docs;
mod examples;
mod insights;
mod process;
mod provisioning;
mod schedule;
mod ssh;
mod templates;
