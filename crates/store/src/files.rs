//! Uploaded files, stored once per content hash.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{Result, Store, StoreError};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FileRow {
    pub id: Uuid,
    pub hash: String,
    pub mimetype: String,
    pub size: i64,
    pub created_at: DateTime<Utc>,
}

impl Store {
    /// Stores `data` under its SHA-256 `hash` unless those bytes are already
    /// stored, records `user_id` as an uploader, and returns the file.
    pub async fn upload_file(&self, hash: &str, mimetype: &str, data: &[u8], user_id: Uuid) -> Result<FileRow> {
        let mut tx = self.pool.begin().await?;
        // The no-op update makes RETURNING yield the existing row on conflict.
        let file = sqlx::query_as!(
            FileRow,
            "INSERT INTO files (hash, mimetype, size, data) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (hash) DO UPDATE SET hash = excluded.hash \
             RETURNING id, hash, mimetype, size, created_at",
            hash,
            mimetype,
            data.len() as i64,
            data,
        )
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query!(
            "INSERT INTO file_uploads (file_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            file.id,
            user_id,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(file)
    }

    pub async fn file(&self, id: Uuid) -> Result<FileRow> {
        sqlx::query_as!(FileRow, "SELECT id, hash, mimetype, size, created_at FROM files WHERE id = $1", id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)
    }

    pub async fn file_data(&self, id: Uuid) -> Result<Vec<u8>> {
        sqlx::query_scalar!("SELECT data FROM files WHERE id = $1", id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Whether `user_id` uploaded the file.
    pub async fn file_uploaded_by(&self, file_id: Uuid, user_id: Uuid) -> Result<bool> {
        Ok(sqlx::query_scalar!(
            "SELECT EXISTS (SELECT 1 FROM file_uploads WHERE file_id = $1 AND user_id = $2) AS \"exists!\"",
            file_id,
            user_id,
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Whether the file holds the source of a version of a live template.
    pub async fn file_backs_a_template(&self, file_id: Uuid) -> Result<bool> {
        Ok(sqlx::query_scalar!(
            "SELECT EXISTS (SELECT 1 FROM template_versions v JOIN templates t ON t.id = v.template_id \
             WHERE v.file_id = $1 AND NOT t.deleted) AS \"exists!\"",
            file_id,
        )
        .fetch_one(&self.pool)
        .await?)
    }
}
