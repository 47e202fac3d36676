//! Issues the webhook certificates: a CA of its own and a serving certificate it signs (ECDSA
//! P-256, made by rcgen on ring), both valid for the same span.

use std::time::{Duration, SystemTime};

/// How far back a certificate's `notBefore` is set, so a replica or API server whose clock runs a
/// little behind accepts it at once.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// A CA and the serving certificate it signed, in PEM.
pub struct Issued {
    /// The CA's certificate.
    pub ca: String,
    /// The serving certificate.
    pub cert: String,
    /// The serving certificate's private key (PKCS#8).
    pub key: String,
}

/// A new CA and a serving certificate for `names` (DNS names or IP addresses, the first one also
/// its common name), both valid from shortly before `now` until `now + validity`.
pub fn issue(names: &[String], now: SystemTime, validity: Duration) -> Result<Issued, rcgen::Error> {
    let window = |params: &mut rcgen::CertificateParams| {
        params.not_before = time::OffsetDateTime::from(now.checked_sub(BACKDATE).unwrap_or(now));
        params.not_after = time::OffsetDateTime::from(now + validity);
    };
    let mut ca = rcgen::CertificateParams::default();
    window(&mut ca);
    ca.distinguished_name = rcgen::DistinguishedName::new();
    ca.distinguished_name.push(rcgen::DnType::CommonName, "apimanager-backup-operator webhook CA");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
    let issuer = rcgen::CertifiedIssuer::self_signed(ca, rcgen::KeyPair::generate()?)?;

    let mut serving = rcgen::CertificateParams::new(names.to_vec())?;
    window(&mut serving);
    serving.distinguished_name = rcgen::DistinguishedName::new();
    if let Some(first) = names.first() {
        serving.distinguished_name.push(rcgen::DnType::CommonName, first.as_str());
    }
    serving.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    serving.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    serving.use_authority_key_identifier_extension = true;
    let key = rcgen::KeyPair::generate()?;
    let cert = serving.signed_by(&key, &issuer)?;
    Ok(Issued { ca: issuer.pem(), cert: cert.pem(), key: key.serialize_pem() })
}

/// A self-signed certificate the server presents until its own is loaded; nothing trusts it, so
/// the API server reaches no replica that serves it (and `/readyz` says so meanwhile).
pub fn placeholder() -> Result<(String, String), rcgen::Error> {
    let mut params = rcgen::CertificateParams::new(vec!["apimanager-backup-operator-not-ready".to_owned()])?;
    let now = SystemTime::now();
    params.not_before = time::OffsetDateTime::from(now.checked_sub(BACKDATE).unwrap_or(now));
    params.not_after = time::OffsetDateTime::from(now + Duration::from_secs(24 * 3600));
    let key = rcgen::KeyPair::generate()?;
    Ok((params.self_signed(&key)?.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    fn verifies(issued: &Issued, name: &str, at: SystemTime) -> Result<(), rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(issued.ca.as_bytes()).expect("CA")).expect("root");
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider)
            .build()
            .expect("verifier");
        let leaf = CertificateDer::from_pem_slice(issued.cert.as_bytes()).expect("leaf");
        let name = ServerName::try_from(name.to_owned()).expect("name");
        let at = UnixTime::since_unix_epoch(at.duration_since(SystemTime::UNIX_EPOCH).expect("after 1970"));
        rustls::client::danger::ServerCertVerifier::verify_server_cert(&*verifier, &leaf, &[], &name, &[], at)
            .map(|_| ())
    }

    #[test]
    fn the_serving_certificate_is_trusted_through_the_ca_for_its_names_and_span_only() {
        let names = ["operator.operators.svc".to_owned(), "127.0.0.1".to_owned()];
        let now = SystemTime::now();
        let issued = issue(&names, now, Duration::from_secs(3600)).expect("issued");
        assert_eq!(verifies(&issued, "operator.operators.svc", now), Ok(()));
        assert_eq!(verifies(&issued, "127.0.0.1", now + Duration::from_secs(3500)), Ok(()));
        assert!(verifies(&issued, "other.operators.svc", now).is_err(), "another name");
        assert!(verifies(&issued, "operator.operators.svc", now + Duration::from_secs(3700)).is_err(), "expired");
        let tls = crate::tls::server_config(issued.cert.as_bytes(), issued.key.as_bytes(), Default::default());
        assert!(tls.is_ok(), "the key matches the certificate: {tls:?}");
        let not_after = super::super::validity::not_after(
            CertificateDer::from_pem_slice(issued.ca.as_bytes()).expect("CA").as_ref(),
        );
        let expected = now + Duration::from_secs(3600);
        let seconds = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        assert_eq!(not_after.map(seconds), Ok(seconds(expected)), "the CA lasts as long");
    }
}
