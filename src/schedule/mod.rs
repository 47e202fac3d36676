//! Scheduled backups: cron expressions on a time zone's clock, the decision of what a schedule
//! does now from its status, and retention. Everything here is pure (no API types, no clock of
//! its own), so each rule is a unit test on a given clock.

pub mod admission;
pub mod calendar;
pub mod controller;
pub mod cron;
pub mod plan;
pub mod retention;
pub mod spec;
