//! Tests of reconciliation: `kit` builds snapshots, `rules` checks each rule on
//! hand-built ones, `properties` checks invariants on generated ones, and
//! `schedules` checks desired counts minute by minute across time zones.

mod kit;
mod properties;
mod rules;
mod schedules;
