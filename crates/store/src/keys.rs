//! Provisioner keys: how daemons on other hosts authenticate.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{Result, Store, StoreError};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProvisionerKeyRow {
    pub id: String,
    pub name: String,
    pub hashed_secret: Vec<u8>,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
}

impl Store {
    pub async fn create_provisioner_key(
        &self,
        id: &str,
        name: &str,
        hashed_secret: &[u8],
        created_by: Uuid,
    ) -> Result<ProvisionerKeyRow> {
        sqlx::query_as!(
            ProvisionerKeyRow,
            "INSERT INTO provisioner_keys (id, name, hashed_secret, created_by) VALUES ($1, $2, $3, $4) \
             RETURNING id, name, hashed_secret, created_by, created_at",
            id,
            name,
            hashed_secret,
            created_by,
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| StoreError::conflict_on(e, &[("provisioner_keys_name_key", "name")]))
    }

    pub async fn provisioner_key(&self, id: &str) -> Result<ProvisionerKeyRow> {
        sqlx::query_as!(
            ProvisionerKeyRow,
            "SELECT id, name, hashed_secret, created_by, created_at FROM provisioner_keys WHERE id = $1",
            id,
        )
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)
    }

    pub async fn provisioner_keys(&self) -> Result<Vec<ProvisionerKeyRow>> {
        Ok(sqlx::query_as!(
            ProvisionerKeyRow,
            "SELECT id, name, hashed_secret, created_by, created_at FROM provisioner_keys ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn delete_provisioner_key(&self, name: &str) -> Result<()> {
        let deleted = sqlx::query!("DELETE FROM provisioner_keys WHERE name = $1", name).execute(&self.pool).await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}
