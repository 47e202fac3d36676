//! `APIManagerRestore`: what is particular to restores. Its admission ([`admission`]: the
//! [`crate::admission::Admit`] implementation over its [`validation`] rules), its
//! [`crate::reconcile::machine::Operation`] on the step machine ([`operation`]: verify, restore the
//! objects, the files and the APIManager, then wait until it is available) and the objects it
//! creates, claim and RBAC ([`objects`]).

pub mod admission;
pub mod objects;
pub mod operation;
pub mod validation;
