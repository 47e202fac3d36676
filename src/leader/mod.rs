//! Leader election on a `coordination.k8s.io` Lease, with client-go's rules and controller-runtime's
//! default timings: only the replica holding the Lease runs the backup controller; every replica
//! serves the webhooks, `/metrics` and the probes.
//!
//! - A candidate takes the Lease when it is free, released, or held by another replica whose record
//!   this candidate has seen unchanged for the Lease's duration (measured on its own clock, so
//!   clocks of different nodes never need to agree).
//! - The leader renews every retry period. When no renewal succeeded within the renew deadline
//!   (shorter than the Lease duration), or another replica holds the Lease, it stops leading at
//!   once; the controller it ran is dropped before anyone else can take over.
//! - Every write carries the `resourceVersion` it read, so of two racing replicas one wins.
//! - On shutdown, the leader stops its controller, then releases the Lease so a standby takes
//!   over without waiting for it to expire.

pub mod lease;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use lease::{LeaseStore, lost_race};
use prometheus::IntGauge;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Errors of leader election.
#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    /// The timings cannot work together.
    #[error(
        "leader election timings: need lease duration ({lease:?}) > renew deadline ({renew:?}) > retry period ({retry:?}) > 0"
    )]
    Timings {
        /// Lease duration.
        lease: Duration,
        /// Renew deadline.
        renew: Duration,
        /// Retry period.
        retry: Duration,
    },
    /// Reading or writing the Lease failed.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: &'static str,
        /// The API error.
        source: kube::Error,
    },
}

/// Who this replica is and how long a Lease lasts.
#[derive(Clone, Debug)]
pub struct ElectionSettings {
    /// This replica's identity in the Lease (its Pod name).
    pub identity: String,
    /// How long a Lease holds after its last renewal before another replica may take it.
    pub lease_duration: Duration,
    /// How long the leader keeps leading without a successful renewal.
    pub renew_deadline: Duration,
    /// How often the leader renews and a standby tries to acquire.
    pub retry_period: Duration,
}

impl ElectionSettings {
    /// Checks lease duration > renew deadline > retry period > 0, as client-go does.
    pub fn check(&self) -> Result<(), ElectionError> {
        let ordered = self.lease_duration > self.renew_deadline
            && self.renew_deadline > self.retry_period
            && !self.retry_period.is_zero();
        if ordered {
            Ok(())
        } else {
            Err(ElectionError::Timings {
                lease: self.lease_duration,
                renew: self.renew_deadline,
                retry: self.retry_period,
            })
        }
    }
}

/// What one attempt to acquire or renew the Lease found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// This replica holds the Lease.
    Leading,
    /// Another replica holds the Lease and it has not expired.
    HeldBy(String),
    /// Another write got there first; read again.
    Raced,
}

/// The last Lease record this replica saw, and when (on its own clock) it first saw it.
#[derive(Debug)]
struct Observed {
    version: Option<String>,
    at: Instant,
}

/// Acquires, renews and releases one Lease for this replica.
pub struct Elector<S> {
    store: S,
    settings: ElectionSettings,
    observed: Option<Observed>,
}

fn api(what: &'static str) -> impl FnOnce(kube::Error) -> ElectionError {
    move |source| ElectionError::Api { what, source }
}

impl<S: LeaseStore> Elector<S> {
    /// An elector over `store`.
    pub fn new(store: S, settings: ElectionSettings) -> Self {
        Self { store, settings, observed: None }
    }

    fn observe(&mut self, lease: &Lease, now: Instant) {
        let version = lease.metadata.resource_version.clone();
        if self.observed.as_ref().is_none_or(|o| o.version != version) {
            self.observed = Some(Observed { version, at: now });
        }
    }

    /// The spec that makes this replica the holder, renewed now.
    fn claim(&self, previous: Option<&LeaseSpec>) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        let previous = previous.cloned().unwrap_or_default();
        let renewing = previous.holder_identity.as_deref() == Some(self.settings.identity.as_str());
        let transitions = previous.lease_transitions.unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.settings.identity.clone()),
            lease_duration_seconds: Some(seconds(self.settings.lease_duration)),
            acquire_time: if renewing { previous.acquire_time.clone() } else { Some(now.clone()) },
            renew_time: Some(now),
            lease_transitions: Some(if renewing || previous.holder_identity.is_none() {
                transitions
            } else {
                transitions + 1
            }),
            ..previous
        }
    }

    /// One attempt to acquire the Lease, or to renew it when this replica holds it.
    pub async fn attempt(&mut self) -> Result<Attempt, ElectionError> {
        let now = Instant::now();
        let Some(current) = self.store.get().await.map_err(api("reading the leader Lease"))? else {
            let lease = Lease { spec: Some(self.claim(None)), ..Lease::default() };
            return match self.store.create(&lease).await {
                Ok(written) => {
                    self.observe(&written, now);
                    Ok(Attempt::Leading)
                }
                Err(error) if lost_race(&error) => Ok(Attempt::Raced),
                Err(error) => Err(api("creating the leader Lease")(error)),
            };
        };
        self.observe(&current, now);
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        if let Some(holder) = holder.filter(|h| *h != self.settings.identity) {
            let duration = spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(self.settings.lease_duration, Duration::from_secs);
            let seen_since = self.observed.as_ref().map_or(now, |o| o.at);
            if now < seen_since + duration {
                return Ok(Attempt::HeldBy(holder));
            }
        }
        let next = Lease { spec: Some(self.claim(Some(&spec))), ..current };
        match self.store.replace(&next).await {
            Ok(written) => {
                self.observe(&written, now);
                Ok(Attempt::Leading)
            }
            Err(error) if lost_race(&error) => Ok(Attempt::Raced),
            Err(error) => Err(api("renewing the leader Lease")(error)),
        }
    }

    /// Gives the Lease up when this replica holds it (holder cleared, 1 s duration, as client-go's
    /// release does), so a standby takes over at its next attempt.
    pub async fn release(&mut self) -> Result<(), ElectionError> {
        let Some(current) = self.store.get().await.map_err(api("reading the leader Lease"))? else {
            return Ok(());
        };
        let mut spec = current.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self.store.replace(&Lease { spec: Some(spec), ..current }).await {
            Ok(_) => Ok(()),
            Err(error) if lost_race(&error) => Ok(()),
            Err(error) => Err(api("releasing the leader Lease")(error)),
        }
    }

    /// Campaigns until this replica leads; `false` when `release` was raised first.
    async fn acquire(&mut self, release: &mut watch::Receiver<bool>) -> Option<Instant> {
        loop {
            let started = Instant::now();
            match self.attempt().await {
                Ok(Attempt::Leading) => return Some(started),
                Ok(Attempt::HeldBy(holder)) => tracing::debug!(%holder, "standing by: another replica leads"),
                Ok(Attempt::Raced) => tracing::debug!("another replica wrote the leader Lease first"),
                Err(error) => tracing::warn!(%error, "leader election attempt failed; retrying"),
            }
            tokio::select! {
                () = tokio::time::sleep(jittered(self.settings.retry_period)) => {}
                _ = until(release, true) => return None,
            }
        }
    }

    /// Renews every retry period while this replica leads (since `renewed`); returns `true` when
    /// `release` was raised, `false` when leadership was lost.
    async fn keep(&mut self, mut renewed: Instant, release: &mut watch::Receiver<bool>) -> bool {
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.settings.retry_period) => {}
                _ = until(release, true) => return true,
            }
            let started = Instant::now();
            let deadline = renewed + self.settings.renew_deadline;
            match tokio::time::timeout_at(deadline, self.attempt()).await {
                Ok(Ok(Attempt::Leading)) => renewed = started,
                Ok(Ok(Attempt::HeldBy(holder))) => {
                    tracing::warn!(%holder, "another replica holds the leader Lease");
                    return false;
                }
                Ok(Ok(Attempt::Raced)) if Instant::now() < deadline => {}
                Ok(Err(error)) if Instant::now() < deadline => {
                    tracing::warn!(%error, "renewing the leader Lease failed; retrying until the renew deadline");
                }
                _ => {
                    tracing::warn!(
                        renew_deadline = ?self.settings.renew_deadline,
                        "the leader Lease was not renewed within the renew deadline"
                    );
                    return false;
                }
            }
        }
    }

    /// Campaigns and leads, publishing on `leading` whether this replica leads, until `release`
    /// is raised; then releases the Lease if held.
    pub async fn run(mut self, leading: watch::Sender<bool>, mut release: watch::Receiver<bool>) {
        while let Some(acquired) = self.acquire(&mut release).await {
            tracing::info!(identity = %self.settings.identity, "acquired the leader Lease");
            leading.send_replace(true);
            let released = self.keep(acquired, &mut release).await;
            leading.send_replace(false);
            if released {
                break;
            }
        }
        if let Err(error) = self.release().await {
            tracing::warn!(%error, "could not release the leader Lease; a standby takes over once it expires");
        }
    }
}

/// Waits until `flag` is `value`; `false` when its sender is gone first.
async fn until(flag: &mut watch::Receiver<bool>, value: bool) -> bool {
    flag.wait_for(|v| *v == value).await.is_ok()
}

/// Whole seconds of `duration`, at least 1, as a Lease records them.
fn seconds(duration: Duration) -> i32 {
    i32::try_from(duration.as_secs().max(1)).unwrap_or(i32::MAX)
}

/// `period` stretched by up to 20 % at random, so standbys do not poll in step.
fn jittered(period: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    period.mul_f64(1.0 + 0.2 * (random % 1000) as f64 / 1000.0)
}

/// Runs an [`Elector`] and, while this replica leads, the task that `start` makes (the backup
/// controller): started on winning the Lease, dropped at once on losing it (and started again on
/// winning it back). `leader` mirrors whether the task runs. When `stopped` is raised, the task
/// is left to finish (it watches the same signal), then the Lease is released.
pub async fn lead<S, F, Fut>(elector: Elector<S>, leader: IntGauge, mut stopped: watch::Receiver<bool>, mut start: F)
where
    S: LeaseStore + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (leading_sender, mut leading) = watch::channel(false);
    let (release, released) = watch::channel(false);
    let election = tokio::spawn(elector.run(leading_sender, released));
    loop {
        tokio::select! {
            biased;
            _ = until(&mut stopped, true) => break,
            won = until(&mut leading, true) => if !won { break },
        }
        leader.set(1);
        let mut controller = tokio::spawn(start());
        tokio::select! {
            _ = until(&mut leading, false) => {
                controller.abort();
                let _ = controller.await;
                leader.set(0);
                tracing::warn!("lost the leader Lease: the backup controller stopped; standing by");
            }
            _ = &mut controller => {
                leader.set(0);
                break;
            }
        }
    }
    release.send_replace(true);
    let _ = election.await;
}

#[cfg(test)]
mod tests;
