//! The server through its HTTP API, against real PostgreSQL, real daemons
//! and the typed client the CLI uses. One test binary: one link, one
//! PostgreSQL cluster, and its tests run in parallel.

mod apps;
mod browser;
mod claims;
mod claims_race;
mod common;
mod connections;
mod dashboard;
mod dashboard_admin;
mod dashboard_workspaces;
mod input;
mod insights;
mod lifecycle;
mod listings;
mod metrics;
mod notifications;
mod prebuilds;
mod provisionerd;
mod queue;
mod refill;
mod replicas;
mod templates;
mod terraform;
mod users;
mod workspaces;
