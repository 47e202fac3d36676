//! The admission webhooks of `APIManagerBackup` and `APIManagerRestore`: the rules, and the HTTP handlers that speak
//! AdmissionReview v1 to the API server.

pub mod defaulting;
pub mod field_error;
pub mod handlers;
pub mod restore_validation;
pub mod review;
pub mod validation;
