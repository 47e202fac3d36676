//! Where the leader Lease is read and written: the API server, or an in-memory fake in tests.
//! Every write carries the `resourceVersion` that was read, so two replicas never both win.

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};

/// Reads and writes one Lease.
pub trait LeaseStore: Send + Sync {
    /// The Lease, or `None` when it does not exist.
    fn get(&self) -> impl Future<Output = Result<Option<Lease>, kube::Error>> + Send;
    /// Creates the Lease; fails with 409 when it exists.
    fn create(&self, lease: &Lease) -> impl Future<Output = Result<Lease, kube::Error>> + Send;
    /// Replaces the Lease; fails with 409 when its `resourceVersion` is not the stored one.
    fn replace(&self, lease: &Lease) -> impl Future<Output = Result<Lease, kube::Error>> + Send;
}

/// The Lease `name` in the API server.
pub struct ApiLease {
    api: Api<Lease>,
    name: String,
}

impl ApiLease {
    /// The Lease `name` of `namespace`.
    pub fn new(client: kube::Client, namespace: &str, name: &str) -> Self {
        Self { api: Api::namespaced(client, namespace), name: name.to_owned() }
    }
}

impl LeaseStore for ApiLease {
    async fn get(&self) -> Result<Option<Lease>, kube::Error> {
        self.api.get_opt(&self.name).await
    }

    async fn create(&self, lease: &Lease) -> Result<Lease, kube::Error> {
        let mut lease = lease.clone();
        lease.metadata.name = Some(self.name.clone());
        self.api.create(&PostParams::default(), &lease).await
    }

    async fn replace(&self, lease: &Lease) -> Result<Lease, kube::Error> {
        self.api.replace(&self.name, &PostParams::default(), lease).await
    }
}

/// Whether an API error says that someone else wrote first (409 Conflict or AlreadyExists).
pub fn lost_race(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

#[cfg(test)]
pub mod fake {
    //! An in-memory Lease with the API server's optimistic concurrency, and a switch that makes
    //! every call fail as if the API server could not be reached.

    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    /// One stored Lease shared by every [`FakeLease`] clone.
    #[derive(Clone, Default)]
    pub struct FakeLease {
        stored: Arc<Mutex<Option<Lease>>>,
        version: Arc<AtomicU64>,
        /// While true, every call fails.
        pub unreachable: Arc<AtomicBool>,
    }

    fn status(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure(&format!("fake API server: {reason}"), reason).with_code(code).boxed(),
        )
    }

    impl FakeLease {
        fn check(&self) -> Result<(), kube::Error> {
            if self.unreachable.load(Ordering::SeqCst) { Err(status(503, "ServiceUnavailable")) } else { Ok(()) }
        }

        fn stamp(&self, lease: &Lease) -> Lease {
            let mut stored = lease.clone();
            let version = self.version.fetch_add(1, Ordering::SeqCst) + 1;
            stored.metadata.resource_version = Some(version.to_string());
            stored
        }

        /// The stored Lease, as an administrator would read it.
        pub fn stored(&self) -> Option<Lease> {
            self.stored.lock().expect("lock").clone()
        }

        /// A client of the same stored Lease with its own reachability switch.
        pub fn another_client(&self) -> Self {
            Self { unreachable: Arc::new(AtomicBool::new(false)), ..self.clone() }
        }

        /// Writes `lease` unconditionally, as another client would.
        pub fn overwrite(&self, lease: &Lease) {
            let stamped = self.stamp(lease);
            *self.stored.lock().expect("lock") = Some(stamped);
        }
    }

    impl LeaseStore for FakeLease {
        async fn get(&self) -> Result<Option<Lease>, kube::Error> {
            self.check()?;
            Ok(self.stored())
        }

        async fn create(&self, lease: &Lease) -> Result<Lease, kube::Error> {
            self.check()?;
            let mut stored = self.stored.lock().expect("lock");
            if stored.is_some() {
                return Err(status(409, "AlreadyExists"));
            }
            let written = self.stamp(lease);
            *stored = Some(written.clone());
            Ok(written)
        }

        async fn replace(&self, lease: &Lease) -> Result<Lease, kube::Error> {
            self.check()?;
            let mut stored = self.stored.lock().expect("lock");
            let current = stored.as_ref().and_then(|l| l.metadata.resource_version.clone());
            if current.is_none() || lease.metadata.resource_version != current {
                return Err(status(409, "Conflict"));
            }
            let written = self.stamp(lease);
            *stored = Some(written.clone());
            Ok(written)
        }
    }
}
