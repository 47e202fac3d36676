//! Events on backups (`events.k8s.io/v1`), named so that every valid backup name fits.
//!
//! kube-runtime's `Recorder` names an event `<object name>.<time in hex>`, which the API server
//! rejects for an object name near the 253-character limit, so no event of such a backup would
//! ever be seen. Here a name too long is cut and completed with a hash of the full name.
//!
//! An event the API server could not take for a passing reason (429, 5xx, a dropped connection)
//! is sent again, under the same name, a few times with back-off, as client-go's event sink does;
//! a create that landed although its answer was lost is then refused as already existing, which
//! counts as published: each event is written once. The event announcing an operation's end is
//! named after the operation alone ([`end_event_name`]): whichever replica creates it first
//! announces the end, the others find it there ([`Published::Existed`]).

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::events::{Event, EventType};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Longest object name the API server accepts (a DNS subdomain).
const NAME_MAX: usize = 253;
/// Hex digits of the name's hash kept in a shortened event name.
const HASH_DIGITS: usize = 10;
/// The waits before each new try of an event create that failed for a passing reason.
const RETRY_DELAYS: [Duration; 5] = [
    Duration::from_millis(200),
    Duration::from_millis(400),
    Duration::from_millis(800),
    Duration::from_millis(1600),
    Duration::from_millis(3200),
];

/// The name of an event about object `object`, published at `nanos` (ns since the epoch):
/// `<object>.<nanos in hex>`, or, when that is too long, the object's name cut, a hash of the
/// full name and the time, so events of two long names never share a name.
pub fn event_name(object: &str, nanos: i128) -> String {
    named(object, &format!(".{nanos:x}"))
}

/// The name of the event announcing the end of object `object` of UID `uid`, the same for every
/// replica and every try (`<object>.end-<uid>`, cut as [`event_name`] cuts), so that it is created
/// once ([`super::ends`]).
pub fn end_event_name(object: &str, uid: &str) -> String {
    named(object, &format!(".end-{uid}"))
}

/// `<object><suffix>`, or, when that is too long, the object's name cut and a hash of the full name
/// before `suffix`.
fn named(object: &str, suffix: &str) -> String {
    if object.len() + suffix.len() <= NAME_MAX {
        return format!("{object}{suffix}");
    }
    let hash = crate::job::manifest::hex(&Sha256::digest(object.as_bytes()));
    let room = NAME_MAX - suffix.len() - 1 - HASH_DIGITS;
    // Names are ASCII (DNS subdomains); a cut must still end a label with a letter or digit.
    let kept = object.get(..room).unwrap_or(object).trim_end_matches(['-', '.']);
    format!("{kept}-{}{suffix}", &hash[..HASH_DIGITS])
}

/// What a publish of an event under a given name found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Published {
    /// It created the event (one of its tries did).
    Created,
    /// The event was there, and none of its tries may have created it: someone else did.
    Existed,
}

/// Why an event was not published.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct NotPublished {
    /// The last try's error.
    pub source: kube::Error,
    /// Whether a try may have created it all the same (its connection failed before the answer).
    pub maybe_created: bool,
}

/// Publishes events as one controller instance.
#[derive(Clone)]
pub struct EventPublisher {
    client: kube::Client,
    controller: String,
    instance: String,
}

impl EventPublisher {
    /// Events reported by `controller`, instance `instance` (the Pod's name).
    pub fn new(client: kube::Client, controller: &str, instance: &str) -> Self {
        Self { client, controller: controller.to_owned(), instance: instance.to_owned() }
    }

    /// Creates `event` about the object `regarding`, in that object's namespace.
    pub async fn publish(&self, event: &Event, regarding: &ObjectReference) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let object = regarding.name.clone().unwrap_or_else(|| self.controller.clone());
        let name = event_name(&object, now.as_nanosecond());
        self.publish_as(event, regarding, &name, now).await.map(|_| ()).map_err(|error| error.source)
    }

    /// Creates `event` about the object `regarding` under the name `name`, unless an event of that
    /// name exists already.
    pub async fn publish_named(
        &self,
        event: &Event,
        regarding: &ObjectReference,
        name: &str,
    ) -> Result<Published, NotPublished> {
        self.publish_as(event, regarding, name, Timestamp::now()).await
    }

    async fn publish_as(
        &self,
        event: &Event,
        regarding: &ObjectReference,
        name: &str,
        now: Timestamp,
    ) -> Result<Published, NotPublished> {
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".to_owned());
        let event = KubeEvent {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            note: event.note.clone(),
            regarding: Some(regarding.clone()),
            related: event.secondary.clone(),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(match event.type_ {
                EventType::Normal => "Normal".to_owned(),
                EventType::Warning => "Warning".to_owned(),
            }),
            ..KubeEvent::default()
        };
        let events: Api<KubeEvent> = Api::namespaced(self.client.clone(), &namespace);
        let mut delays = RETRY_DELAYS.iter();
        let mut maybe_created = false;
        loop {
            let error = match events.create(&PostParams::default(), &event).await {
                Ok(_) => return Ok(Published::Created),
                // An earlier try of this one that landed, its answer lost; else someone else's.
                Err(kube::Error::Api(status)) if status.code == 409 && status.reason == "AlreadyExists" => {
                    return Ok(if maybe_created { Published::Created } else { Published::Existed });
                }
                Err(error) => error,
            };
            maybe_created |= matches!(error, kube::Error::HyperError(_) | kube::Error::Service(_));
            match delays.next() {
                Some(delay) if crate::client::is_transient(&error) => {
                    tracing::debug!(%error, reason = %event.reason.as_deref().unwrap_or_default(), "publishing an event failed; trying again");
                    tokio::time::sleep(*delay).await;
                }
                _ => return Err(NotPublished { source: error, maybe_created }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_fit_for_every_valid_object_name() {
        assert_eq!(event_name("nightly", 0x1234), "nightly.1234");
        let nanos = 1_795_000_000_000_000_000_i128;
        let longest = format!("{}.{}", "a".repeat(200), "b".repeat(52));
        let other = format!("{}.{}", "a".repeat(200), "c".repeat(52));
        let (first, second) = (event_name(&longest, nanos), event_name(&other, nanos));
        assert!(first.len() <= NAME_MAX, "{} characters", first.len());
        assert!(first.starts_with(&"a".repeat(200)), "{first}");
        assert!(first.ends_with(&format!(".{nanos:x}")));
        assert_ne!(first, second, "two long names never share an event name");
        let cut_at_a_dot = format!("{}.{}", "x".repeat(224), "y".repeat(28));
        let name = event_name(&cut_at_a_dot, nanos);
        assert!(name.starts_with(&format!("{}-", "x".repeat(224))), "labels end with a letter or digit: {name}");
    }

    #[test]
    fn an_end_event_is_named_after_its_object_and_uid_alone() {
        let uid = "0b1c2d3e-0000-4000-8000-000000000001";
        assert_eq!(end_event_name("nightly", uid), format!("nightly.end-{uid}"));
        let longest = format!("{}.{}", "a".repeat(200), "b".repeat(52));
        let name = end_event_name(&longest, uid);
        assert!(name.len() <= NAME_MAX, "{} characters", name.len());
        assert!(name.ends_with(&format!(".end-{uid}")), "{name}");
        assert_eq!(name, end_event_name(&longest, uid), "every replica names it the same");
    }
}
