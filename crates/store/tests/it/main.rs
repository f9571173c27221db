//! The store against a real PostgreSQL, in one test binary (one cluster,
//! one link) whose tests run in parallel.

mod claims;
mod connections;
mod eligibility;
mod jobs;
mod store;
