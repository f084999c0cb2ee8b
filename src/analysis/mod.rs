//! The "analysis" stage, above the sweep: a grid's run records (read through the sweep's plan
//! and store) -> one table of finished runs ([`collect`]) -> statistics per group of seeds with
//! paired tests ([`aggregate`]). The report and the gate render and judge what it computes.

pub mod aggregate;
pub mod collect;
