use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;
use sqlx::{AssertSqlSafe, Postgres};
use uuid::Uuid;
use warmspace_authz::Role;
use warmspace_states::{LoginType, UserStatus};

use crate::{Result, Store, StoreError};

/// A user as stored. `roles` are the granted ones; `member` is implied for
/// every human user and added by the API layer.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub username: String,
    pub email: String,
    pub name: String,
    pub login_type: LoginType,
    pub hashed_password: Option<String>,
    pub status: UserStatus,
    pub is_system: bool,
    #[sqlx(rename = "rbac_roles", try_from = "Vec<String>")]
    pub roles: Roles,
    pub organization_ids: Vec<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_seen_at: Option<DateTime<Utc>>,
    /// The IANA zone the person's autostop requirement and zone-less autostart schedules are read in.
    pub timezone: String,
}

/// Granted roles, parsed from the database's text array.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roles(pub Vec<Role>);

impl TryFrom<Vec<String>> for Roles {
    type Error = warmspace_authz::UnknownRole;

    fn try_from(names: Vec<String>) -> Result<Self, Self::Error> {
        names.iter().map(|n| n.parse()).collect::<Result<_, _>>().map(Roles)
    }
}

pub struct NewUser {
    pub username: String,
    pub email: String,
    pub name: String,
    pub login_type: LoginType,
    pub hashed_password: Option<String>,
    pub status: UserStatus,
    /// Granted roles; `member` is implied and not stored.
    pub roles: Vec<Role>,
}

/// Filters of a user listing; `None` means "any".
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    /// Matched case-insensitively against username, email and name.
    pub text: Option<String>,
    pub login_type: Option<LoginType>,
    pub status: Option<UserStatus>,
    pub role: Option<Role>,
    pub include_system: bool,
    /// Restricts the listing to one user (a member sees only themselves).
    pub only: Option<Uuid>,
    pub limit: i64,
    pub offset: i64,
}

pub(crate) const USER_COLUMNS: &str = "u.id, u.username, u.email, u.name, u.login_type, u.hashed_password, u.status, \
     u.is_system, u.rbac_roles, u.created_at, u.updated_at, u.last_seen_at, u.timezone, \
     ARRAY(SELECT m.organization_id FROM organization_members m WHERE m.user_id = u.id \
           ORDER BY m.created_at) AS organization_ids";

const UNIQUE_FIELDS: &[(&str, &str)] = &[("users_username_key", "username"), ("users_email_key", "email")];

/// Filters shared by the listing and its count; parameters $1..$7.
const USER_FILTER: &str = "NOT u.deleted \
     AND ($1::text IS NULL OR u.username ILIKE $1 OR u.email ILIKE $1 OR u.name ILIKE $1) \
     AND ($2::text IS NULL OR u.login_type = $2) \
     AND ($3::text IS NULL OR u.status = $3) \
     AND ($4::text IS NULL OR ($4 = 'member' AND NOT u.is_system) OR $4 = ANY (u.rbac_roles)) \
     AND ($5 OR NOT u.is_system) \
     AND ($6::uuid IS NULL OR u.id = $6)";

/// Binds `USER_FILTER`'s parameters.
fn bind_filter<'q, O>(
    query: QueryAs<'q, Postgres, O, PgArguments>,
    filter: &'q UserFilter,
) -> QueryAs<'q, Postgres, O, PgArguments> {
    query
        .bind(filter.text.as_deref().map(like_pattern))
        .bind(filter.login_type)
        .bind(filter.status)
        .bind(filter.role.map(|r| r.as_str()))
        .bind(filter.include_system)
        .bind(filter.only)
}

fn like_pattern(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}

impl Store {
    /// Creates the first human user as an owner — only while there is none.
    /// Returns `None` when a human user already exists. Concurrent calls are
    /// serialised by a transaction-scoped advisory lock, so at most one wins.
    pub async fn create_first_user(&self, user: NewUser) -> Result<Option<UserRow>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query!("SELECT pg_advisory_xact_lock(hashtext('warmspace.first_user'))").execute(&mut *tx).await?;
        let exists = sqlx::query_scalar!(
            "SELECT EXISTS (SELECT 1 FROM users WHERE NOT is_system AND NOT deleted) AS \"exists!\""
        )
        .fetch_one(&mut *tx)
        .await?;
        if exists {
            return Ok(None);
        }
        let id = insert_user(&mut tx, &user).await?;
        tx.commit().await?;
        self.user_by_id(id).await.map(Some)
    }

    pub async fn human_user_exists(&self) -> Result<bool> {
        Ok(sqlx::query_scalar!(
            "SELECT EXISTS (SELECT 1 FROM users WHERE NOT is_system AND NOT deleted) AS \"exists!\""
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Creates a user and makes them a member of the default organization.
    pub async fn create_user(&self, user: NewUser) -> Result<UserRow> {
        let mut tx = self.pool.begin().await?;
        let id = insert_user(&mut tx, &user).await?;
        tx.commit().await?;
        self.user_by_id(id).await
    }

    pub async fn user_by_id(&self, id: Uuid) -> Result<UserRow> {
        self.user_where("u.id = $1::uuid", id.to_string()).await
    }

    /// Sets the zone a user's schedules are read in.
    pub async fn set_user_timezone(&self, id: Uuid, timezone: &str) -> Result<UserRow> {
        sqlx::query!("UPDATE users SET timezone = $2, updated_at = now() WHERE id = $1 AND NOT deleted", id, timezone)
            .execute(&self.pool)
            .await?;
        self.user_by_id(id).await
    }

    /// Suspends or reactivates a user (a suspended one can neither sign in nor use a session).
    pub async fn set_user_status(&self, id: Uuid, status: UserStatus) -> Result<UserRow> {
        sqlx::query!(
            "UPDATE users SET status = $2, updated_at = now() WHERE id = $1 AND NOT deleted",
            id,
            status as UserStatus,
        )
        .execute(&self.pool)
        .await?;
        self.user_by_id(id).await
    }

    /// Replaces a user's granted roles (`member` is implied and not stored).
    pub async fn set_user_roles(&self, id: Uuid, roles: &[Role]) -> Result<UserRow> {
        let roles = stored_roles(roles);
        sqlx::query!(
            "UPDATE users SET rbac_roles = $2, updated_at = now() WHERE id = $1 AND NOT deleted",
            id,
            roles.as_slice() as &[&str],
        )
        .execute(&self.pool)
        .await?;
        self.user_by_id(id).await
    }

    pub async fn user_by_username(&self, username: &str) -> Result<UserRow> {
        self.user_where("lower(u.username) = lower($1)", username.to_owned()).await
    }

    pub async fn user_by_email(&self, email: &str) -> Result<UserRow> {
        self.user_where("lower(u.email) = lower($1)", email.to_owned()).await
    }

    async fn user_where(&self, condition: &str, value: String) -> Result<UserRow> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users u WHERE NOT u.deleted AND {condition}");
        sqlx::query_as(AssertSqlSafe(sql.as_str()))
            .bind(value)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// A page of users matching `filter`, oldest first, and how many match in all.
    pub async fn list_users(&self, filter: &UserFilter) -> Result<(Vec<UserRow>, i64)> {
        static LIST: LazyLock<String> = LazyLock::new(|| {
            format!(
                "SELECT {USER_COLUMNS} FROM users u WHERE {USER_FILTER} \
                 ORDER BY u.created_at, u.id LIMIT $7 OFFSET $8"
            )
        });
        static COUNT: LazyLock<String> = LazyLock::new(|| format!("SELECT count(*) FROM users u WHERE {USER_FILTER}"));
        let users = bind_filter(sqlx::query_as(AssertSqlSafe(LIST.as_str())), filter)
            .bind(filter.limit)
            .bind(filter.offset)
            .fetch_all(&self.pool)
            .await?;
        let (count,) = bind_filter(sqlx::query_as(AssertSqlSafe(COUNT.as_str())), filter).fetch_one(&self.pool).await?;
        Ok((users, count))
    }

    pub async fn touch_last_seen(&self, id: Uuid) -> Result<()> {
        sqlx::query!("UPDATE users SET last_seen_at = now() WHERE id = $1", id).execute(&self.pool).await?;
        Ok(())
    }
}

/// Roles as stored: each granted one once, without the implied `member`.
fn stored_roles(roles: &[Role]) -> Vec<&'static str> {
    let mut stored: Vec<&str> = roles.iter().filter(|r| **r != Role::Member).map(|r| r.as_str()).collect();
    stored.sort_unstable();
    stored.dedup();
    stored
}

async fn insert_user(tx: &mut sqlx::PgConnection, user: &NewUser) -> Result<Uuid> {
    let roles = stored_roles(&user.roles);
    let id = sqlx::query_scalar!(
        "INSERT INTO users (username, email, name, login_type, hashed_password, status, rbac_roles) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        user.username,
        user.email,
        user.name,
        user.login_type as LoginType,
        user.hashed_password,
        user.status as UserStatus,
        roles.as_slice() as &[&str],
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| StoreError::conflict_on(e, UNIQUE_FIELDS))?;
    sqlx::query!(
        "INSERT INTO organization_members (organization_id, user_id) \
         SELECT id, $1 FROM organizations WHERE is_default",
        id,
    )
    .execute(&mut *tx)
    .await?;
    Ok(id)
}
