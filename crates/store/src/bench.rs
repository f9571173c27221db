//! What `warmspace bench` measures the real thing against, and the few
//! maintenance statements it needs: bare `UPDATE … SKIP LOCKED` loops on
//! scratch tables of their own (`bench_*`), on the same PostgreSQL in the
//! same run. Here because only the store speaks SQL; nothing else uses it.

use sqlx::{Connection, Executor, PgConnection};
use uuid::Uuid;

use crate::{PgConnectOptions, Result, Store};

/// A scratch table of rows claimed the bare way: the prepared
/// `UPDATE … WHERE id = (SELECT … ORDER BY created_at FOR UPDATE SKIP LOCKED
/// LIMIT 1) RETURNING id` on a partial index of the rows nobody owns.
pub struct BareClaims {
    options: PgConnectOptions,
}

/// One connection of its own claiming rows of [`BareClaims`].
pub struct BareClaimer {
    connection: PgConnection,
    owner: Uuid,
}

const BARE_CLAIM: &str = "UPDATE bench_bare_claims SET owner = $1 WHERE id = (SELECT id FROM bench_bare_claims \
     WHERE owner IS NULL ORDER BY created_at FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING id";

impl BareClaims {
    /// Creates the (empty) table afresh.
    pub async fn create(options: &PgConnectOptions) -> Result<BareClaims> {
        let mut connection = PgConnection::connect_with(options).await?;
        connection
            .execute(
                "DROP TABLE IF EXISTS bench_bare_claims; \
                 CREATE TABLE bench_bare_claims (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, owner uuid, \
                 created_at timestamptz NOT NULL); \
                 CREATE INDEX bench_bare_claims_free ON bench_bare_claims (created_at) WHERE owner IS NULL",
            )
            .await?;
        connection.close().await?;
        Ok(BareClaims { options: options.clone() })
    }

    /// Empties the table and fills it with `rows` unowned rows, created a
    /// millisecond apart.
    pub async fn reset(&self, rows: u32) -> Result<()> {
        let mut connection = PgConnection::connect_with(&self.options).await?;
        connection.execute("TRUNCATE bench_bare_claims").await?;
        sqlx::query(
            "INSERT INTO bench_bare_claims (created_at) \
             SELECT now() - make_interval(secs => ($1 - g) / 1000.0) FROM generate_series(1, $1) g",
        )
        .bind(i32::try_from(rows).unwrap_or(i32::MAX))
        .execute(&mut connection)
        .await?;
        connection.execute("ANALYZE bench_bare_claims").await?;
        connection.close().await?;
        Ok(())
    }

    /// A claimer on a connection of its own.
    pub async fn claimer(&self) -> Result<BareClaimer> {
        Ok(BareClaimer { connection: PgConnection::connect_with(&self.options).await?, owner: Uuid::new_v4() })
    }

    pub async fn drop_table(self) -> Result<()> {
        let mut connection = PgConnection::connect_with(&self.options).await?;
        connection.execute("DROP TABLE bench_bare_claims").await?;
        connection.close().await?;
        Ok(())
    }
}

impl BareClaimer {
    /// Claims the oldest unowned row; false when none is left.
    pub async fn claim(&mut self) -> Result<bool> {
        let taken: Option<i64> =
            sqlx::query_scalar(BARE_CLAIM).bind(self.owner).fetch_optional(&mut self.connection).await?;
        Ok(taken.is_some())
    }
}

/// A scratch queue worked the bare way: one prepared statement takes the
/// oldest pending row (`UPDATE … SKIP LOCKED`), another finishes it, each
/// its own transaction.
pub struct BareQueue {
    options: PgConnectOptions,
}

/// One connection of its own working [`BareQueue`].
pub struct BareWorker {
    connection: PgConnection,
}

impl BareQueue {
    /// Creates the table afresh with `jobs` pending rows.
    pub async fn create(options: &PgConnectOptions, jobs: u32) -> Result<BareQueue> {
        let mut connection = PgConnection::connect_with(options).await?;
        connection
            .execute(
                "DROP TABLE IF EXISTS bench_queue; \
                 CREATE TABLE bench_queue (id bigserial PRIMARY KEY, status text NOT NULL, \
                 created_at timestamptz NOT NULL); \
                 CREATE INDEX bench_queue_pending ON bench_queue (created_at) WHERE status = 'pending'",
            )
            .await?;
        sqlx::query(
            "INSERT INTO bench_queue (status, created_at) \
             SELECT 'pending', now() - make_interval(secs => ($1 - g) / 1000000.0) FROM generate_series(1, $1) g",
        )
        .bind(i32::try_from(jobs).unwrap_or(i32::MAX))
        .execute(&mut connection)
        .await?;
        connection.execute("ANALYZE bench_queue").await?;
        connection.close().await?;
        Ok(BareQueue { options: options.clone() })
    }

    /// A worker on a connection of its own.
    pub async fn worker(&self) -> Result<BareWorker> {
        Ok(BareWorker { connection: PgConnection::connect_with(&self.options).await? })
    }

    pub async fn drop_table(self) -> Result<()> {
        let mut connection = PgConnection::connect_with(&self.options).await?;
        connection.execute("DROP TABLE bench_queue").await?;
        connection.close().await?;
        Ok(())
    }
}

impl BareWorker {
    /// Takes the oldest pending row and finishes it; false when none is left.
    pub async fn take_and_finish(&mut self) -> Result<bool> {
        let taken: Option<i64> = sqlx::query_scalar(
            "UPDATE bench_queue SET status = 'running' WHERE id = (SELECT id FROM bench_queue \
             WHERE status = 'pending' ORDER BY created_at FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING id",
        )
        .fetch_optional(&mut self.connection)
        .await?;
        let Some(id) = taken else { return Ok(false) };
        sqlx::query("UPDATE bench_queue SET status = 'done' WHERE id = $1")
            .bind(id)
            .execute(&mut self.connection)
            .await?;
        Ok(true)
    }
}

impl Store {
    /// Transactions committed in this database so far, as the statistics
    /// say now (a snapshot of them is cached per transaction: cleared first).
    /// Backends report their counts at most once a second, and an idle one
    /// up to ten seconds late: callers wait that out before reading.
    pub async fn committed_transactions(&self) -> Result<i64> {
        let mut connection = self.pool.acquire().await?;
        connection.execute("SELECT pg_stat_clear_snapshot()").await?;
        Ok(sqlx::query_scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
            .fetch_one(&mut *connection)
            .await?)
    }

    /// Vacuums and analyses the tables claims write, so that a benchmark's
    /// rounds start from the same state (as its baseline starts its table over).
    pub async fn vacuum_pools(&self) -> Result<()> {
        // VACUUM cannot run in a transaction block: a plain connection's one statement.
        let mut connection = self.pool.acquire().await?;
        connection.execute("VACUUM (ANALYZE) workspaces, workspace_builds, provisioner_jobs").await?;
        Ok(())
    }
}
