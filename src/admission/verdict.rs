//! What the admission rules of every kind decide.

use super::field_error::FieldError;

/// The outcome of the rules: errors deny the request, warnings are shown to the user either way.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Every violated rule; empty means allowed.
    pub errors: Vec<FieldError>,
    /// Things the user should know that do not deny the request.
    pub warnings: Vec<String>,
}
