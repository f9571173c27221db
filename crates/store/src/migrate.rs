use sqlx::PgPool;
use sqlx::migrate::Migrator;

/// The schema, as forward-only numbered SQL files under `migrations/`.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Brings the schema up to date. sqlx holds a PostgreSQL advisory lock while
/// it migrates, so replicas starting together apply each migration once.
pub async fn migrate(pool: &PgPool) -> crate::Result<()> {
    MIGRATOR.run(pool).await?;
    Ok(())
}
