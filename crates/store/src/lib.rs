//! Everything warmspace keeps lives in PostgreSQL; this crate is the only
//! code that speaks SQL.

pub mod agents;
pub mod claims;
pub mod embedded;
mod error;
mod files;
pub mod jobs;
mod keys;
mod migrate;
pub mod notifications;
mod organizations;
pub mod prebuilds;
pub mod pubsub;
mod sessions;
mod templates;
#[cfg(feature = "testing")]
pub mod testing;
mod users;
pub mod workspaces;

use std::time::Duration;

pub use error::StoreError;
pub use files::FileRow;
pub use keys::ProvisionerKeyRow;
pub use migrate::{MIGRATOR, migrate};
pub use organizations::OrganizationRow;
pub use sessions::{NewSession, Session};
pub use sqlx::postgres::{PgConnectOptions, PgPool};
pub use templates::{
    NewTemplate, NewTemplateVersion, PresetRow, TemplateRow, TemplateSettings, TemplateUpdate, TemplateVersionRow,
};
pub use users::{NewUser, UserFilter, UserRow};

use sqlx::postgres::PgPoolOptions;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A handle on the database: a connection pool plus the queries of each
/// concept, defined in the module named after it.
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// Connects a pool of at most `max_connections` and waits for the first
    /// connection, so a wrong URL fails here rather than on the first request.
    pub async fn connect(options: PgConnectOptions, max_connections: u32) -> Result<Store> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        Ok(Store { pool })
    }

    pub fn from_pool(pool: PgPool) -> Store {
        Store { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The round trip a health check makes.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
