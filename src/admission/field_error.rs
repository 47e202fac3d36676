//! Field errors rendered the way the Kubernetes API server renders its own validation errors
//! (`k8s.io/apimachinery/pkg/util/validation/field`), so that `kubectl` users read one style.

use crate::telemetry::Untrusted;
use std::fmt;

/// What is wrong with a field, as apimachinery names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// `Required value`: the field must be set.
    Required,
    /// `Invalid value: "<value>"`: the field is set to something not allowed.
    Invalid(String),
    /// `Forbidden`: the field may not be set or changed.
    Forbidden,
    /// `Not found: "<value>"`: the field names an object that does not exist.
    NotFound(String),
}

impl FieldErrorKind {
    /// The apimachinery cause type (`metav1.CauseType`) for this kind.
    pub fn cause_type(&self) -> &'static str {
        match self {
            Self::Required => "FieldValueRequired",
            Self::Invalid(_) => "FieldValueInvalid",
            Self::Forbidden => "FieldValueForbidden",
            Self::NotFound(_) => "FieldValueNotFound",
        }
    }
}

/// One validation error on one field, with a detail that says what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field, e.g. `spec.backupDestination`.
    pub field: String,
    /// What is wrong.
    pub kind: FieldErrorKind,
    /// Why, and how to fix it.
    pub detail: String,
}

impl FieldError {
    /// A `Required value` error.
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { field: field.into(), kind: FieldErrorKind::Required, detail: detail.into() }
    }

    /// An `Invalid value` error quoting the offending value.
    pub fn invalid(field: impl Into<String>, value: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { field: field.into(), kind: FieldErrorKind::Invalid(value.into()), detail: detail.into() }
    }

    /// A `Forbidden` error.
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { field: field.into(), kind: FieldErrorKind::Forbidden, detail: detail.into() }
    }

    /// A `Not found` error quoting the name of the missing object.
    pub fn not_found(field: impl Into<String>, value: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { field: field.into(), kind: FieldErrorKind::NotFound(value.into()), detail: detail.into() }
    }

    /// The message without the field path, as in a `metav1.StatusCause` (`Required value: …`); an
    /// invalid value is quoted up to its first characters.
    pub fn body(&self) -> String {
        let head = match &self.kind {
            FieldErrorKind::Required => "Required value".to_owned(),
            FieldErrorKind::Invalid(value) => format!("Invalid value: {:?}", Untrusted(value)),
            FieldErrorKind::Forbidden => "Forbidden".to_owned(),
            FieldErrorKind::NotFound(value) => format!("Not found: {:?}", Untrusted(value)),
        };
        if self.detail.is_empty() { head } else { format!("{head}: {}", self.detail) }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// Joins errors the way apimachinery's aggregate does: one error alone, several as `[a, b]`.
pub fn aggregate(errors: &[FieldError]) -> String {
    match errors {
        [one] => one.to_string(),
        many => {
            let joined: Vec<String> = many.iter().map(ToString::to_string).collect();
            format!("[{}]", joined.join(", "))
        }
    }
}

const DNS1123_SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric \
characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')";
const DNS1123_SUBDOMAIN_MAX_LEN: usize = 253;

/// The error of `value` at `field` when it is not a DNS-1123 subdomain (an object name), in
/// apimachinery's words.
pub fn check_dns1123_subdomain(field: &str, value: &str) -> Option<FieldError> {
    if value.len() > DNS1123_SUBDOMAIN_MAX_LEN {
        return Some(FieldError::invalid(
            field,
            value,
            format!("must be no more than {DNS1123_SUBDOMAIN_MAX_LEN} characters"),
        ));
    }
    let label_ok = |label: &str| {
        let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
        label.starts_with(alnum) && label.ends_with(alnum) && label.chars().all(|c| alnum(c) || c == '-')
    };
    if value.split('.').all(label_ok) { None } else { Some(FieldError::invalid(field, value, DNS1123_SUBDOMAIN)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_apimachinery() {
        assert_eq!(FieldError::required("spec.a", "set it").to_string(), "spec.a: Required value: set it");
        assert_eq!(
            FieldError::invalid("spec.b", "x y", "must be a name").to_string(),
            r#"spec.b: Invalid value: "x y": must be a name"#
        );
        assert_eq!(FieldError::forbidden("spec", "").to_string(), "spec: Forbidden");
        assert_eq!(
            FieldError::not_found("spec.c.name", "s3", "create it first").to_string(),
            r#"spec.c.name: Not found: "s3": create it first"#
        );
        assert_eq!(FieldError::not_found("spec.c.name", "s3", "").kind.cause_type(), "FieldValueNotFound");
    }

    #[test]
    fn aggregates_one_plainly_and_several_in_brackets() {
        let a = FieldError::required("spec.a", "x");
        let b = FieldError::forbidden("spec.b", "y");
        assert_eq!(aggregate(std::slice::from_ref(&a)), "spec.a: Required value: x");
        assert_eq!(aggregate(&[a, b]), "[spec.a: Required value: x, spec.b: Forbidden: y]");
    }
}
