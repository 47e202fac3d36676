//! The benchmark's own parsing and answering, under the standard test harness: `bench/operator`
//! runs without one (`harness = false`), so its unit tests run from here. Only the tests use these
//! modules here, hence the allowance.
#![allow(dead_code)]

#[path = "../bench/operator/floor.rs"]
mod floor;
#[path = "../bench/operator/measure.rs"]
mod measure;
#[path = "../bench/operator/rounds.rs"]
mod rounds;
