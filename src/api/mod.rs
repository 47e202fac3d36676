//! Kubernetes API types: the `APIManagerBackup` resource this operator owns and the parts of the
//! 3scale `APIManager` resource it reads.

pub mod apimanager;
pub mod backup;
pub mod quantity;

/// API group shared by `APIManagerBackup` and `APIManager`.
pub const GROUP: &str = "apps.3scale.net";
