//! The decision logic of prebuilt workspaces, as pure functions over plain
//! data: no database, no HTTP, no clock of its own (callers pass *now*), so
//! it can be tested exhaustively and benchmarked alone.

pub mod claim;
pub mod insights;
pub mod lifecycle;
pub mod notices;
pub mod reconcile;
pub mod schedule;
