//! Readiness: named checks that must all pass before `/readyz` answers 200.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

/// Shared readiness checks; clones see the same state.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Arc<RwLock<BTreeMap<&'static str, bool>>>,
}

impl Readiness {
    /// Marks check `name` as passing or failing (an unknown name is added).
    pub fn set(&self, name: &'static str, ready: bool) {
        self.checks.write().unwrap_or_else(PoisonError::into_inner).insert(name, ready);
    }

    /// Names of the checks that do not pass yet.
    pub fn failing(&self) -> Vec<&'static str> {
        let checks = self.checks.read().unwrap_or_else(PoisonError::into_inner);
        checks.iter().filter(|(_, ready)| !**ready).map(|(name, _)| *name).collect()
    }
}
