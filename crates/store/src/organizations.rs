use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{Result, Store, StoreError};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrganizationRow {
    pub id: Uuid,
    pub name: String,
    pub display_name: String,
    pub is_default: bool,
    pub created_at: DateTime<Utc>,
}

impl Store {
    /// An organization by id or name; `default` names the default one.
    pub async fn organization(&self, id_or_name: &str) -> Result<OrganizationRow> {
        let id = Uuid::parse_str(id_or_name).ok();
        sqlx::query_as!(
            OrganizationRow,
            "SELECT id, name, display_name, is_default, created_at FROM organizations \
             WHERE id = $1 OR name = $2 OR ($2 = 'default' AND is_default) ORDER BY is_default DESC LIMIT 1",
            id,
            id_or_name,
        )
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)
    }
}
