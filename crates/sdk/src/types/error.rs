use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Response {
    /// What went wrong, for a person.
    pub message: String,
    /// More detail where there is some, else empty.
    #[serde(default)]
    pub detail: String,
    /// One entry per offending input field.
    #[serde(default)]
    pub validations: Vec<ValidationError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ValidationError {
    /// The field, as a dotted path into the request (`email`, `q`, `roles[0]`).
    pub field: String,
    pub detail: String,
}

impl Response {
    /// A body that carries only a message.
    pub fn message(message: impl Into<String>) -> Self {
        Response { message: message.into(), detail: String::new(), validations: Vec::new() }
    }
}

/// The message and its detail as sentences ("You may not read prebuild
/// status. It needs the template-admin or owner role."), then a line per
/// offending field.
impl std::fmt::Display for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn sentence(f: &mut std::fmt::Formatter<'_>, text: &str) -> std::fmt::Result {
            f.write_str(text)?;
            if text.ends_with(['.', '!', '?']) { Ok(()) } else { f.write_str(".") }
        }
        sentence(f, &self.message)?;
        if !self.detail.is_empty() {
            f.write_str(" ")?;
            sentence(f, &self.detail)?;
        }
        for v in &self.validations {
            write!(f, "\n  {}: {}", v.field, v.detail)?;
        }
        Ok(())
    }
}
