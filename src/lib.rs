//! apimanager-backup-operator: backs up 3scale installations described by `APIManager` resources,
//! driven by `APIManagerBackup` resources.

pub mod admission;
pub mod api;
pub mod backup;
pub mod cli;
pub mod client;
pub mod controllers;
pub mod crd;
pub mod health;
pub mod informer;
pub mod job;
pub mod layout;
pub mod leader;
pub mod local;
pub mod lookup;
pub mod malloc;
pub mod metrics;
pub mod names;
pub mod observer;
pub mod platform;
pub mod plural;
pub mod reconcile;
pub mod restore;
pub mod rules;
pub mod runtime;
pub mod s3;
pub mod schedule;
pub mod scope;
pub mod seal;
pub mod selfcert;
pub mod server;
pub mod signals;
pub mod telemetry;
pub mod tls;
pub mod trim;
