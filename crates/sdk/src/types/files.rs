use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UploadResponse {
    /// The same bytes always get the same id.
    pub id: Uuid,
    /// SHA-256 of the content, hex.
    pub hash: String,
}
