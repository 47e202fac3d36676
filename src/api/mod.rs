//! Kubernetes API types: the `APIManagerBackup` and `APIManagerRestore` resources this operator
//! owns and the parts of the 3scale `APIManager` resource it reads.

pub mod apimanager;
pub mod backup;
pub mod quantity;
pub mod referenced_secrets;
pub mod restore;
pub mod s3;
pub mod schedule;
pub mod status;

/// API group shared by `APIManagerBackup`, `APIManagerRestore` and `APIManager`.
pub const GROUP: &str = "apps.3scale.net";
