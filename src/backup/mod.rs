//! `APIManagerBackup`: what is particular to backups. Its admission ([`admission`]: the
//! [`crate::admission::Admit`] implementation over its [`defaulting`] and [`validation`] rules), its
//! [`crate::reconcile::machine::Operation`] on the step machine ([`operation`]: resolve the
//! APIManager, check its scope, create the claim, one step job exporting then copying) and the
//! objects it creates, claim and RBAC ([`objects`]).

pub mod admission;
pub mod defaulting;
pub mod objects;
pub mod operation;
pub mod validation;
