use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BuildInfo {
    /// The server's version, e.g. `0.1.0`.
    pub version: String,
    /// The API version served under `/api/`.
    pub api_version: String,
}
