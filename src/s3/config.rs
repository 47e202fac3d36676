//! Where a bucket lives and who may use it: the endpoint (https unless http is explicitly allowed),
//! region, addressing style, credentials and an optional CA bundle, and their parsing from the keys
//! of 3scale's S3 Secret (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, …) as a Pod
//! receives them, through environment variables or the files of a mounted Secret.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// Keys of 3scale's S3 Secret (System FileStorage's `configurationSecretRef`), plus the session
/// token of temporary credentials.
pub mod keys {
    /// Access key id.
    pub const ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
    /// Secret access key.
    pub const SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
    /// Session token of temporary credentials (optional; not one of 3scale's keys).
    pub const SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";
    /// Region of the bucket.
    pub const REGION: &str = "AWS_REGION";
    /// Host name (optionally `:port`) of an S3-compatible endpoint; AWS when absent.
    pub const HOSTNAME: &str = "AWS_HOSTNAME";
    /// `http` or `https` (the default) for [`HOSTNAME`].
    pub const PROTOCOL: &str = "AWS_PROTOCOL";
    /// `true` for path-style addressing (`host/bucket/key`); `false` (the default) for
    /// virtual-host addressing (`bucket.host/key`).
    pub const PATH_STYLE: &str = "AWS_PATH_STYLE";
    /// The bucket (System FileStorage's; an S3 destination names its own).
    pub const BUCKET: &str = "AWS_BUCKET";
    /// STS role (3scale's web-identity set-up), which this client does not support.
    pub const ROLE_ARN: &str = "AWS_ROLE_ARN";
    /// Every key read from a Secret, in the order they are documented.
    pub const ALL: [&str; 9] =
        [ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN, REGION, HOSTNAME, PROTOCOL, PATH_STYLE, BUCKET, ROLE_ARN];
}

/// Why a connection configuration is unusable. Never holds a secret value nor the raw value
/// given.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A required key is absent or empty.
    #[error("{key} is missing")]
    Missing {
        /// The key.
        key: &'static str,
    },
    /// A value is malformed.
    #[error("{key} is invalid: {reason}")]
    Invalid {
        /// The key (or setting) holding the value.
        key: &'static str,
        /// What is wrong, without the value.
        reason: &'static str,
    },
    /// The endpoint is plain http and http was not explicitly allowed.
    #[error("the S3 endpoint uses http, which sends data unencrypted; use https or allow http explicitly")]
    InsecureEndpoint,
    /// Only STS (role) credentials were given.
    #[error(
        "{} without {} (STS web identity) is not supported: give an access key id and secret access key",
        keys::ROLE_ARN,
        keys::ACCESS_KEY_ID
    )]
    StsUnsupported,
    /// A value is not UTF-8.
    #[error("{key} is not valid UTF-8")]
    NotUtf8 {
        /// The key.
        key: &'static str,
    },
    /// A file of a mounted Secret could not be read.
    #[error("cannot read {key} from the mounted Secret: {reason}")]
    Read {
        /// The key (file name).
        key: &'static str,
        /// Why (the I/O error's kind).
        reason: String,
    },
    /// The CA bundle holds no certificate, or one that cannot be used.
    #[error("the CA bundle is unusable: {0}")]
    CaBundle(String),
}

/// How a bucket is addressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Addressing {
    /// `https://bucket.host/key` (AWS's default).
    #[default]
    VirtualHost,
    /// `https://host/bucket/key` (most S3-compatible stores).
    Path,
}

/// An access key pair, with the session token of temporary credentials. `Debug` shows the key
/// id only.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

impl Credentials {
    /// Credentials from an access key id and secret (and a session token for temporary ones).
    pub fn new(access_key_id: &str, secret_access_key: &str, session_token: Option<&str>) -> Self {
        Self {
            access_key_id: access_key_id.to_owned(),
            secret_access_key: secret_access_key.to_owned(),
            session_token: session_token.map(str::to_owned),
        }
    }

    /// The access key id (not secret: it appears in every signed request).
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    pub(crate) fn signing(&self) -> rusty_s3::Credentials {
        match &self.session_token {
            Some(token) => rusty_s3::Credentials::new_with_token(
                self.access_key_id.clone(),
                self.secret_access_key.clone(),
                token.clone(),
            ),
            None => rusty_s3::Credentials::new(self.access_key_id.clone(), self.secret_access_key.clone()),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &self.session_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Where the buckets are: a validated endpoint, the region, the addressing style and extra
/// trusted CAs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    url: url::Url,
    region: String,
    addressing: Addressing,
    ca_bundle: Option<Vec<u8>>,
}

impl Endpoint {
    /// An endpoint at `url` (`https://host[:port]`; `http://` only with `allow_http`) for
    /// `region`. The URL holds no user, path, query or fragment.
    pub fn new(url: &str, region: &str, addressing: Addressing, allow_http: bool) -> Result<Self, ConfigError> {
        let invalid = |reason| ConfigError::Invalid { key: "endpoint", reason };
        let parsed = url::Url::parse(url).map_err(|_| invalid("not a URL"))?;
        match parsed.scheme() {
            "https" => {}
            "http" if allow_http => {}
            "http" => return Err(ConfigError::InsecureEndpoint),
            _ => return Err(invalid("the scheme must be https (or http)")),
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(invalid("it has no host"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(invalid("it must not hold credentials"));
        }
        if parsed.path() != "/" || parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(invalid("it must not have a path, query or fragment"));
        }
        check_region(region)?;
        Ok(Self { url: parsed, region: region.to_owned(), addressing, ca_bundle: None })
    }

    /// AWS's own endpoint for `region` (`https://s3.<region>.amazonaws.com`, virtual-host
    /// addressing).
    pub fn aws(region: &str) -> Result<Self, ConfigError> {
        check_region(region)?;
        Self::new(&format!("https://s3.{region}.amazonaws.com"), region, Addressing::VirtualHost, false)
    }

    /// The same endpoint also trusting the CA certificates of the PEM `bundle` (besides the
    /// public roots and the system's).
    pub fn with_ca_bundle(mut self, bundle: &[u8]) -> Result<Self, ConfigError> {
        let certs = parse_ca_bundle(bundle)?;
        if certs.is_empty() {
            return Err(ConfigError::CaBundle("it holds no PEM certificate".into()));
        }
        self.ca_bundle = Some(bundle.to_vec());
        Ok(self)
    }

    /// The same endpoint with another addressing style.
    pub fn with_addressing(mut self, addressing: Addressing) -> Self {
        self.addressing = addressing;
        self
    }

    /// The endpoint's URL.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The addressing style.
    pub fn addressing(&self) -> Addressing {
        self.addressing
    }

    /// The extra trusted CAs (PEM), if any.
    pub fn ca_bundle(&self) -> Option<&[u8]> {
        self.ca_bundle.as_deref()
    }

    pub(crate) fn parsed_url(&self) -> &url::Url {
        &self.url
    }
}

/// The certificates of a PEM bundle.
pub(crate) fn parse_ca_bundle(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| ConfigError::CaBundle(error.to_string()))
}

/// Refuses a region that is not letters, digits, `-` and `_` (it goes into host names and
/// signatures).
fn check_region(region: &str) -> Result<(), ConfigError> {
    if region.is_empty() || !region.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(ConfigError::Invalid { key: keys::REGION, reason: "a region is letters, digits, '-' and '_'" });
    }
    Ok(())
}

/// What 3scale's S3 Secret holds: where, who, and (for System FileStorage) which bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretSettings {
    /// Endpoint, region and addressing.
    pub endpoint: Endpoint,
    /// The key pair.
    pub credentials: Credentials,
    /// `AWS_BUCKET`, when present.
    pub bucket: Option<String>,
}

/// Reads 3scale's S3 Secret keys through `get` (absent or empty values count as missing;
/// surrounding whitespace, such as a trailing newline in a file, is ignored). `AWS_HOSTNAME` is
/// `host[:port]` (or a whole `scheme://host[:port]` URL), with `AWS_PROTOCOL` (`https` by
/// default; `http` only with `allow_http`); without it the endpoint is AWS's for `AWS_REGION`.
/// `AWS_PATH_STYLE` is `true` or `false` (the default).
pub fn from_secret_keys(
    get: impl Fn(&'static str) -> Option<String>,
    allow_http: bool,
) -> Result<SecretSettings, ConfigError> {
    let value = |key: &'static str| get(key).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let Some(access_key_id) = value(keys::ACCESS_KEY_ID) else {
        if value(keys::ROLE_ARN).is_some() {
            return Err(ConfigError::StsUnsupported);
        }
        return Err(ConfigError::Missing { key: keys::ACCESS_KEY_ID });
    };
    let secret = value(keys::SECRET_ACCESS_KEY).ok_or(ConfigError::Missing { key: keys::SECRET_ACCESS_KEY })?;
    let region = value(keys::REGION).ok_or(ConfigError::Missing { key: keys::REGION })?;
    let addressing = match value(keys::PATH_STYLE).map(|v| v.to_ascii_lowercase()).as_deref() {
        None | Some("false") => Addressing::VirtualHost,
        Some("true") => Addressing::Path,
        Some(_) => return Err(ConfigError::Invalid { key: keys::PATH_STYLE, reason: "must be true or false" }),
    };
    let protocol = match value(keys::PROTOCOL).map(|v| v.to_ascii_lowercase()).as_deref() {
        None => None,
        Some("https") => Some("https"),
        Some("http") => Some("http"),
        Some(_) => return Err(ConfigError::Invalid { key: keys::PROTOCOL, reason: "must be http or https" }),
    };
    let endpoint = match value(keys::HOSTNAME) {
        None => Endpoint::aws(&region)?.with_addressing(addressing),
        Some(host) => {
            let url = match host.split_once("://") {
                Some((scheme, _)) => {
                    if protocol.is_some_and(|p| !p.eq_ignore_ascii_case(scheme)) {
                        return Err(ConfigError::Invalid {
                            key: keys::PROTOCOL,
                            reason: "it disagrees with the scheme of AWS_HOSTNAME",
                        });
                    }
                    host
                }
                None => format!("{}://{host}", protocol.unwrap_or("https")),
            };
            Endpoint::new(&url, &region, addressing, allow_http).map_err(|error| match error {
                ConfigError::Invalid { key: "endpoint", reason } => {
                    ConfigError::Invalid { key: keys::HOSTNAME, reason }
                }
                other => other,
            })?
        }
    };
    let credentials = Credentials::new(&access_key_id, &secret, value(keys::SESSION_TOKEN).as_deref());
    Ok(SecretSettings { endpoint, credentials, bucket: value(keys::BUCKET) })
}

/// [`from_secret_keys`] from this process's environment (a Secret's keys given with `envFrom`
/// or `env[].valueFrom.secretKeyRef`).
pub fn from_env(allow_http: bool) -> Result<SecretSettings, ConfigError> {
    let mut values = BTreeMap::new();
    for key in keys::ALL {
        match std::env::var(key) {
            Ok(value) => {
                values.insert(key, value);
            }
            Err(std::env::VarError::NotPresent) => {}
            Err(std::env::VarError::NotUnicode(_)) => return Err(ConfigError::NotUtf8 { key }),
        }
    }
    from_secret_keys(|key| values.get(key).cloned(), allow_http)
}

/// [`from_secret_keys`] from the files of a Secret mounted at `dir` (one file per key).
pub fn from_dir(dir: &Path, allow_http: bool) -> Result<SecretSettings, ConfigError> {
    let mut values = BTreeMap::new();
    for key in keys::ALL {
        match std::fs::read(dir.join(key)) {
            Ok(bytes) => {
                values.insert(key, String::from_utf8(bytes).map_err(|_| ConfigError::NotUtf8 { key })?);
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(ConfigError::Read { key, reason: error.kind().to_string() }),
        }
    }
    from_secret_keys(|key| values.get(key).cloned(), allow_http)
}

/// What is wrong with `name` as an S3 bucket name (AWS's rules for new buckets: 3 to 63
/// lowercase letters, digits, `.` and `-`, starting and ending with a letter or digit, no `..`,
/// not shaped like an IP address), or `None` when it is valid.
pub fn bucket_name_problem(name: &str) -> Option<&'static str> {
    if !(3..=63).contains(&name.len()) {
        return Some("must be between 3 and 63 characters long");
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-') {
        return Some("must consist of lowercase letters, digits, '.' and '-'");
    }
    let edge = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !name.bytes().next().is_some_and(edge) || !name.bytes().last().is_some_and(edge) {
        return Some("must begin and end with a letter or digit");
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return Some("must not contain two adjacent periods or a period next to a hyphen");
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Some("must not be formatted as an IP address");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)], allow_http: bool) -> Result<SecretSettings, ConfigError> {
        let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        from_secret_keys(|key| map.get(key).cloned(), allow_http)
    }

    const KEYS: [(&str, &str); 3] =
        [("AWS_ACCESS_KEY_ID", "AKID"), ("AWS_SECRET_ACCESS_KEY", "s3cr3t"), ("AWS_REGION", "eu-west-1")];

    #[test]
    fn aws_defaults_to_https_virtual_host_for_the_region() {
        let settings = parse(&KEYS, false).unwrap();
        assert_eq!(settings.endpoint.url(), "https://s3.eu-west-1.amazonaws.com/");
        assert_eq!(settings.endpoint.region(), "eu-west-1");
        assert_eq!(settings.endpoint.addressing(), Addressing::VirtualHost);
        assert_eq!(settings.credentials, Credentials::new("AKID", "s3cr3t", None));
        assert_eq!(settings.bucket, None);
    }

    #[test]
    fn hostname_protocol_path_style_and_bucket_as_3scale_reads_them() {
        let mut pairs = KEYS.to_vec();
        pairs.extend([
            ("AWS_HOSTNAME", "minio.example.com:9000"),
            ("AWS_PROTOCOL", "HTTP"),
            ("AWS_PATH_STYLE", "true\n"),
            ("AWS_BUCKET", "system-storage\n"),
            ("AWS_SESSION_TOKEN", "tok"),
        ]);
        let settings = parse(&pairs, true).unwrap();
        assert_eq!(settings.endpoint.url(), "http://minio.example.com:9000/");
        assert_eq!(settings.endpoint.addressing(), Addressing::Path);
        assert_eq!(settings.bucket.as_deref(), Some("system-storage"));
        assert_eq!(settings.credentials, Credentials::new("AKID", "s3cr3t", Some("tok")));
    }

    #[test]
    fn a_hostname_given_as_a_url_keeps_its_scheme() {
        let mut pairs = KEYS.to_vec();
        pairs.push(("AWS_HOSTNAME", "https://s3.internal:8443"));
        assert_eq!(parse(&pairs, false).unwrap().endpoint.url(), "https://s3.internal:8443/");
        pairs.push(("AWS_PROTOCOL", "http"));
        assert_eq!(
            parse(&pairs, true),
            Err(ConfigError::Invalid { key: "AWS_PROTOCOL", reason: "it disagrees with the scheme of AWS_HOSTNAME" })
        );
    }

    #[test]
    fn http_needs_explicit_permission() {
        let mut pairs = KEYS.to_vec();
        pairs.extend([("AWS_HOSTNAME", "minio:9000"), ("AWS_PROTOCOL", "http")]);
        assert_eq!(parse(&pairs, false), Err(ConfigError::InsecureEndpoint));
        assert_eq!(
            Endpoint::new("http://127.0.0.1:9000", "us-east-1", Addressing::Path, false),
            Err(ConfigError::InsecureEndpoint)
        );
    }

    #[test]
    fn missing_and_malformed_keys_are_named_without_their_values() {
        assert_eq!(parse(&KEYS[1..], false), Err(ConfigError::Missing { key: "AWS_ACCESS_KEY_ID" }));
        assert_eq!(parse(&[KEYS[0], KEYS[2]], false), Err(ConfigError::Missing { key: "AWS_SECRET_ACCESS_KEY" }));
        assert_eq!(
            parse(&[KEYS[0], KEYS[1], ("AWS_REGION", "  ")], false),
            Err(ConfigError::Missing { key: "AWS_REGION" })
        );
        let mut pairs = KEYS.to_vec();
        pairs.push(("AWS_PATH_STYLE", "yes-please"));
        let error = parse(&pairs, false).unwrap_err();
        assert_eq!(error.to_string(), "AWS_PATH_STYLE is invalid: must be true or false");
        let mut pairs = KEYS.to_vec();
        pairs.push(("AWS_PROTOCOL", "ftp"));
        assert_eq!(parse(&pairs, false).unwrap_err().to_string(), "AWS_PROTOCOL is invalid: must be http or https");
        let mut pairs = KEYS.to_vec();
        pairs.push(("AWS_HOSTNAME", "user:pw@host"));
        let error = parse(&pairs, false).unwrap_err();
        assert_eq!(error, ConfigError::Invalid { key: "AWS_HOSTNAME", reason: "it must not hold credentials" });
        assert!(!error.to_string().contains("pw"));
        let mut pairs = KEYS.to_vec();
        pairs[2] = ("AWS_REGION", "eu west");
        assert!(matches!(parse(&pairs, false), Err(ConfigError::Invalid { key: "AWS_REGION", .. })));
    }

    #[test]
    fn sts_only_is_refused_by_name() {
        let pairs = [("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"), ("AWS_REGION", "us-east-1")];
        assert_eq!(parse(&pairs, false), Err(ConfigError::StsUnsupported));
    }

    #[test]
    fn endpoint_urls_are_bare_hosts() {
        for (url, reason) in [
            ("https://h/path", "it must not have a path, query or fragment"),
            ("https://h/?x=1", "it must not have a path, query or fragment"),
            ("ftp://h", "the scheme must be https (or http)"),
            ("not a url", "not a URL"),
        ] {
            assert_eq!(
                Endpoint::new(url, "r", Addressing::Path, true),
                Err(ConfigError::Invalid { key: "endpoint", reason }),
                "{url}"
            );
        }
        assert_eq!(Endpoint::new("https://h:1/", "r", Addressing::Path, false).unwrap().url(), "https://h:1/");
    }

    #[test]
    fn debug_hides_the_secret_and_token() {
        let shown = format!("{:?}", Credentials::new("AKID", "s3cr3t", Some("tok3n")));
        assert!(shown.contains("AKID"));
        assert!(!shown.contains("s3cr3t") && !shown.contains("tok3n"), "{shown}");
    }

    #[test]
    fn files_of_a_mounted_secret() {
        let dir = std::env::temp_dir().join(format!("abo-s3-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (key, value) in KEYS {
            std::fs::write(dir.join(key), format!("{value}\n")).unwrap();
        }
        let settings = from_dir(&dir, false);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(settings.unwrap().credentials, Credentials::new("AKID", "s3cr3t", None));
    }

    #[test]
    fn bucket_names() {
        for good in ["abc", "my-bucket.example", "a1-b2", &"a".repeat(63)] {
            assert_eq!(bucket_name_problem(good), None, "{good}");
        }
        for (bad, why) in [
            ("ab", "must be between 3 and 63 characters long"),
            ("My-Bucket", "must consist of lowercase letters, digits, '.' and '-'"),
            ("-abc", "must begin and end with a letter or digit"),
            ("a..b", "must not contain two adjacent periods or a period next to a hyphen"),
            ("192.168.1.1", "must not be formatted as an IP address"),
        ] {
            assert_eq!(bucket_name_problem(bad), Some(why), "{bad}");
        }
        assert!(bucket_name_problem(&"a".repeat(64)).is_some());
    }

    #[test]
    fn ca_bundles_must_be_pem_certificates() {
        assert_eq!(parse_ca_bundle(b"not pem").unwrap(), Vec::<CertificateDer<'_>>::new());
        let bad = b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        assert!(matches!(parse_ca_bundle(bad), Err(ConfigError::CaBundle(_))));
    }
}
