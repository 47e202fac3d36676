//! Helpers shared by the test binaries. Each binary uses a part of them.
#![allow(dead_code)]

pub mod admission;
pub mod apiserver;
pub mod certs;
pub mod cluster;
pub mod counting;
pub mod deployed;
pub mod https;
pub mod jobs;
pub mod kustomize;
pub mod lookup;
pub mod restore;
pub mod s3;
pub mod sealed;
pub mod threescale_backup;
