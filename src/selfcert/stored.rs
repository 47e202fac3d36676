//! The operator's certificate Secret: what it holds and when it is due for renewal.

use super::issue::Issued;
use super::validity::not_after;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// Key of the CA bundle the webhook configurations trust: the current CA, then the one before it
/// while that is still valid (replicas still serving the previous certificate stay trusted).
pub const CA_KEY: &str = "ca.crt";
/// Key of the serving certificate.
pub const CERT_KEY: &str = "tls.crt";
/// Key of the serving certificate's private key.
pub const KEY_KEY: &str = "tls.key";
/// Annotation recording the names the serving certificate was issued for (comma-separated); a
/// change of names issues a new one.
pub const NAMES_ANNOTATION: &str = "apimanager-backup-operator/certificate-names";

/// A complete certificate Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// PEM CA bundle.
    pub ca_bundle: Vec<u8>,
    /// PEM serving certificate.
    pub cert: Vec<u8>,
    /// PEM private key.
    pub key: Vec<u8>,
    names: String,
    not_after: SystemTime,
}

fn first_certificate(pem: &[u8]) -> Option<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem).next().and_then(Result::ok)
}

impl Stored {
    /// What `secret` holds, or `None` when it misses a key or its certificate is unreadable.
    pub fn from_secret(secret: &Secret) -> Option<Self> {
        let data = secret.data.as_ref()?;
        let value = |key: &str| data.get(key).map(|bytes| bytes.0.clone()).filter(|bytes| !bytes.is_empty());
        let (ca_bundle, cert, key) = (value(CA_KEY)?, value(CERT_KEY)?, value(KEY_KEY)?);
        let not_after = not_after(first_certificate(&cert)?.as_ref()).ok()?;
        let names = secret.metadata.annotations.as_ref()?.get(NAMES_ANNOTATION)?.clone();
        Some(Self { ca_bundle, cert, key, names, not_after })
    }

    /// Whether a new certificate is due at `now`: a third of `validity` or less is left, or it was
    /// issued for other names.
    pub fn renewal_due(&self, now: SystemTime, validity: Duration, names: &[String]) -> bool {
        self.names != names.join(",") || now + validity / 3 >= self.not_after
    }

    /// The PEM of the current CA (the bundle's first certificate) when it is still valid at `now`.
    pub fn current_ca(&self, now: SystemTime) -> Option<String> {
        const END: &str = "-----END CERTIFICATE-----";
        let text = std::str::from_utf8(&self.ca_bundle).ok()?;
        let first = format!("{}\n", &text[..text.find(END)? + END.len()]);
        let end = not_after(first_certificate(first.as_bytes())?.as_ref()).ok()?;
        (end > now).then_some(first)
    }
}

/// Writes `issued` into `secret` (type `kubernetes.io/tls`), its bundle the new CA followed by
/// `previous_ca`, and records `names`; the rest of `secret` (name, resourceVersion) is kept.
pub fn write(secret: &mut Secret, issued: &Issued, previous_ca: Option<&str>, names: &[String]) {
    let bundle = format!("{}{}", issued.ca, previous_ca.unwrap_or(""));
    let data = [
        (CA_KEY, bundle.into_bytes()),
        (CERT_KEY, issued.cert.clone().into_bytes()),
        (KEY_KEY, issued.key.clone().into_bytes()),
    ];
    secret.data =
        Some(data.into_iter().map(|(key, value)| (key.to_owned(), ByteString(value))).collect::<BTreeMap<_, _>>());
    secret.string_data = None;
    secret.type_ = Some("kubernetes.io/tls".to_owned());
    secret.metadata.annotations.get_or_insert_default().insert(NAMES_ANNOTATION.to_owned(), names.join(","));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selfcert::issue::issue;

    const HOUR: Duration = Duration::from_secs(3600);

    fn names() -> Vec<String> {
        vec!["operator.operators.svc".to_owned()]
    }

    #[test]
    fn a_written_secret_reads_back_and_is_renewed_after_two_thirds_of_its_validity_or_for_new_names() {
        let now = SystemTime::now();
        let issued = issue(&names(), now, 3 * HOUR).expect("issued");
        let mut secret = Secret::default();
        write(&mut secret, &issued, None, &names());
        let stored = Stored::from_secret(&secret).expect("complete");
        assert_eq!(stored.ca_bundle, issued.ca.as_bytes());
        assert!(!stored.renewal_due(now, 3 * HOUR, &names()));
        assert!(!stored.renewal_due(now + 2 * HOUR - Duration::from_secs(5), 3 * HOUR, &names()));
        assert!(stored.renewal_due(now + 2 * HOUR + Duration::from_secs(1), 3 * HOUR, &names()));
        assert!(stored.renewal_due(now, 3 * HOUR, &["other.operators.svc".to_owned()]), "other names");
        assert_eq!(stored.current_ca(now).as_deref(), Some(issued.ca.as_str()));
        assert_eq!(stored.current_ca(now + 4 * HOUR), None, "an expired CA is not carried over");
    }

    #[test]
    fn a_renewed_bundle_keeps_the_previous_ca_after_the_new_one() {
        let now = SystemTime::now();
        let (first, second) = (issue(&names(), now, HOUR).expect("first"), issue(&names(), now, HOUR).expect("second"));
        let mut secret = Secret::default();
        write(&mut secret, &second, Some(&first.ca), &names());
        let stored = Stored::from_secret(&secret).expect("complete");
        assert_eq!(stored.ca_bundle, format!("{}{}", second.ca, first.ca).into_bytes());
        assert_eq!(stored.current_ca(now).as_deref(), Some(second.ca.as_str()));
    }

    #[test]
    fn an_incomplete_or_foreign_secret_is_not_used() {
        let issued = issue(&names(), SystemTime::now(), HOUR).expect("issued");
        let mut secret = Secret::default();
        write(&mut secret, &issued, None, &names());
        for key in [CA_KEY, CERT_KEY, KEY_KEY] {
            let mut missing = secret.clone();
            missing.data.as_mut().expect("data").remove(key);
            assert_eq!(Stored::from_secret(&missing), None, "without {key}");
        }
        let mut garbage = secret.clone();
        garbage.data.as_mut().expect("data").insert(CERT_KEY.to_owned(), ByteString(b"not PEM".to_vec()));
        assert_eq!(Stored::from_secret(&garbage), None);
        let mut unrecorded = secret;
        unrecorded.metadata.annotations = None;
        assert_eq!(Stored::from_secret(&unrecorded), None, "a certificate this operator did not record");
    }
}
