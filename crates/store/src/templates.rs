//! Templates and their versions; a version's import result stored
//! relationally (parameters, options, presets, prebuild policies, schedules,
//! agents).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, PgConnection, Postgres, Transaction};
use uuid::Uuid;
use warmspace_template::{
    App, Devcontainer, Manifest, Parameter, ParameterOption, ParameterType, ScheduleSpec, Validation,
};

use warmspace_states::{ClaimMode, JobPriority, JobStatus, JobType, Provisioner};

use crate::jobs::{NewJob, Tags, finish_job, insert_job};
use crate::{Result, Store, StoreError};

#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub struct TemplateVersionRow {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub template_id: Option<Uuid>,
    pub name: String,
    pub message: String,
    pub file_id: Uuid,
    pub job_id: Uuid,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub provisioner: Option<Provisioner>,
    pub claim_mode: Option<ClaimMode>,
    pub provisioner_config: Option<Json<serde_json::Value>>,
}

const VERSION_COLUMNS: &str = "id, organization_id, template_id, name, message, file_id, job_id, created_by, \
     created_at, updated_at, provisioner, claim_mode, provisioner_config";

pub struct NewTemplateVersion {
    pub organization_id: Uuid,
    pub template_id: Option<Uuid>,
    /// `None`: `v<N>`, numbered within the template.
    pub name: Option<String>,
    pub message: String,
    pub file_id: Uuid,
    pub created_by: Uuid,
    pub tags: Tags,
}

/// Lifecycle settings of a template's workspaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateSettings {
    pub default_ttl_ms: i64,
    /// Bit 0 = Monday … bit 6 = Sunday.
    pub autostop_requirement_days_of_week: i16,
    pub autostop_requirement_weeks: i32,
    /// The hour (0 … 23, in the owner's zone) at which the required days' stop falls.
    pub autostop_requirement_hour: i16,
    /// Autostart builds the active version, not the latest build's.
    pub require_active_version: bool,
    pub allow_user_autostart: bool,
    pub failure_ttl_ms: i64,
    pub time_til_dormant_ms: i64,
    pub time_til_dormant_autodelete_ms: i64,
    /// A prebuild whose agents are not ready this long after its start build is a failure.
    pub agent_ready_timeout_ms: i64,
}

impl Default for TemplateSettings {
    fn default() -> Self {
        TemplateSettings {
            default_ttl_ms: 0,
            autostop_requirement_days_of_week: 0,
            autostop_requirement_weeks: 1,
            autostop_requirement_hour: 0,
            require_active_version: false,
            allow_user_autostart: true,
            failure_ttl_ms: 0,
            time_til_dormant_ms: 0,
            time_til_dormant_autodelete_ms: 0,
            agent_ready_timeout_ms: warmspace_states::DEFAULT_AGENT_READY_TIMEOUT_MS,
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TemplateRow {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub icon: String,
    pub active_version_id: Uuid,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub default_ttl_ms: i64,
    pub autostop_requirement_days_of_week: i16,
    pub autostop_requirement_weeks: i32,
    pub autostop_requirement_hour: i16,
    pub require_active_version: bool,
    pub allow_user_autostart: bool,
    pub failure_ttl_ms: i64,
    pub time_til_dormant_ms: i64,
    pub time_til_dormant_autodelete_ms: i64,
    pub agent_ready_timeout_ms: i64,
}

impl TemplateRow {
    pub fn settings(&self) -> TemplateSettings {
        TemplateSettings {
            default_ttl_ms: self.default_ttl_ms,
            autostop_requirement_days_of_week: self.autostop_requirement_days_of_week,
            autostop_requirement_weeks: self.autostop_requirement_weeks,
            autostop_requirement_hour: self.autostop_requirement_hour,
            require_active_version: self.require_active_version,
            allow_user_autostart: self.allow_user_autostart,
            failure_ttl_ms: self.failure_ttl_ms,
            time_til_dormant_ms: self.time_til_dormant_ms,
            time_til_dormant_autodelete_ms: self.time_til_dormant_autodelete_ms,
            agent_ready_timeout_ms: self.agent_ready_timeout_ms,
        }
    }
}

const TEMPLATE_COLUMNS: &str = "id, organization_id, name, display_name, description, icon, active_version_id, \
     created_by, created_at, updated_at, default_ttl_ms, autostop_requirement_days_of_week, \
     autostop_requirement_weeks, allow_user_autostart, failure_ttl_ms, time_til_dormant_ms, \
     time_til_dormant_autodelete_ms, agent_ready_timeout_ms, autostop_requirement_hour, require_active_version";

pub struct NewTemplate {
    pub organization_id: Uuid,
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub icon: String,
    pub version_id: Uuid,
    pub created_by: Uuid,
    pub settings: TemplateSettings,
}

/// What a template's owner may change after creation.
pub struct TemplateUpdate {
    pub display_name: String,
    pub description: String,
    pub icon: String,
    pub settings: TemplateSettings,
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub struct PresetRow {
    pub id: Uuid,
    pub template_version_id: Uuid,
    pub name: String,
    pub description: String,
    pub icon: String,
    pub is_default: bool,
    pub desired_instances: Option<i32>,
    pub ttl_seconds: Option<i64>,
    pub scheduling_timezone: Option<String>,
    pub last_invalidated_at: Option<DateTime<Utc>>,
    pub parameters: Json<BTreeMap<String, String>>,
    pub schedules: Json<Vec<ScheduleSpec>>,
}

#[derive(sqlx::FromRow, serde::Deserialize)]
struct ParameterRow {
    name: String,
    display_name: String,
    description: String,
    kind: ParameterType,
    default_value: Option<String>,
    mutable: bool,
    validation_min: Option<f64>,
    validation_max: Option<f64>,
    validation_regex: Option<String>,
    validation_error: Option<String>,
    options: Json<Vec<ParameterOption>>,
}

impl From<ParameterRow> for Parameter {
    fn from(row: ParameterRow) -> Parameter {
        let has_validation = row.validation_min.is_some()
            || row.validation_max.is_some()
            || row.validation_regex.is_some()
            || row.validation_error.is_some();
        Parameter {
            name: row.name,
            display_name: row.display_name,
            description: row.description,
            kind: row.kind,
            default: row.default_value,
            mutable: row.mutable,
            options: row.options.0,
            validation: has_validation.then_some(Validation {
                min: row.validation_min,
                max: row.validation_max,
                regex: row.validation_regex,
                error: row.validation_error,
            }),
        }
    }
}

/// A version's presets (`p`, as [`PresetRow`]s) with their parameter
/// values and schedules, and each one's `ordinal`.
const PRESET_SELECT: &str = "SELECT p.id, p.template_version_id, p.name, p.description, p.icon, p.is_default, \
         p.desired_instances, p.ttl_seconds, p.scheduling_timezone, p.last_invalidated_at, \
         coalesce((SELECT json_object_agg(pp.name, pp.value) FROM template_version_preset_parameters pp \
                   WHERE pp.preset_id = p.id), '{}') AS parameters, \
         coalesce((SELECT json_agg(json_build_object('cron', s.cron_expression, 'instances', s.desired_instances) \
                   ORDER BY s.ordinal) \
                   FROM template_version_preset_prebuild_schedules s WHERE s.preset_id = p.id), '[]') AS schedules, \
         p.ordinal \
     FROM template_version_presets p";

/// A version's parameters (`p`, as `ParameterRow`s) with their options, and each one's `ordinal`.
const PARAMETER_SELECT: &str = "SELECT p.name, p.display_name, p.description, p.type AS kind, p.default_value, \
         p.mutable, p.validation_min, p.validation_max, p.validation_regex, p.validation_error, \
         coalesce((SELECT json_agg(json_build_object('name', o.name, 'value', o.value, \
             'description', o.description, 'icon', o.icon) ORDER BY o.ordinal) \
           FROM template_version_parameter_options o \
           WHERE o.template_version_id = p.template_version_id AND o.parameter_name = p.name), '[]') AS options, \
         p.ordinal \
     FROM template_version_parameters p";

/// What creating a workspace decides from: the template (and its
/// organization's name, which a claim's metrics are labelled with), the
/// version asked for (its active one unless another is named; `None` when
/// there is no such version), and that version's presets and parameters,
/// in manifest order.
#[derive(Debug, Clone)]
pub struct CreateContext {
    pub template: TemplateRow,
    pub organization_name: String,
    pub version: Option<TemplateVersionRow>,
    pub presets: Vec<PresetRow>,
    pub parameters: Vec<Parameter>,
}

#[derive(sqlx::FromRow)]
struct CreateContextRow {
    #[sqlx(flatten)]
    template: TemplateRow,
    organization_name: String,
    version: Option<Json<TemplateVersionRow>>,
    presets: Json<Vec<PresetRow>>,
    parameters: Json<Vec<ParameterRow>>,
}

/// The version's import status, for refusing to use a version that has not
/// imported.
async fn import_status(tx: &mut PgConnection, version_id: Uuid) -> Result<(Option<Uuid>, Uuid, JobStatus)> {
    let row = sqlx::query!(
        "SELECT v.template_id, v.organization_id, j.status AS \"status: JobStatus\" FROM template_versions v \
         JOIN provisioner_jobs j ON j.id = v.job_id WHERE v.id = $1 FOR UPDATE OF v",
        version_id,
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(StoreError::Invalid { field: "template_version_id", message: "no such template version".into() })?;
    Ok((row.template_id, row.organization_id, row.status))
}

fn require_imported(status: JobStatus) -> Result<()> {
    if status != JobStatus::Succeeded {
        return Err(StoreError::Invalid {
            field: "template_version_id",
            message: format!("the version's import has not succeeded (it is {status})"),
        });
    }
    Ok(())
}

impl Store {
    /// Creates a version and queues its import job, in one transaction.
    pub async fn create_template_version(&self, new: &NewTemplateVersion) -> Result<TemplateVersionRow> {
        let mut tx = self.pool.begin().await?;
        let id = Uuid::new_v4();
        let job_id = insert_job(
            &mut tx,
            &NewJob {
                organization_id: new.organization_id,
                kind: JobType::TemplateVersionImport,
                initiator_id: new.created_by,
                priority: JobPriority::User,
                tags: new.tags.clone(),
                input: serde_json::json!({ "template_version_id": id }),
                file_id: Some(new.file_id),
            },
            self.now(),
        )
        .await?;
        if let Some(template_id) = new.template_id {
            // Serialises version numbering within the template.
            sqlx::query_scalar!("SELECT 1 FROM templates WHERE id = $1 FOR UPDATE", template_id)
                .fetch_optional(&mut *tx)
                .await?;
        }
        let sql = format!(
            "INSERT INTO template_versions (id, organization_id, template_id, name, message, file_id, job_id, created_by) \
             VALUES ($1, $2, $3, coalesce($4, 'v' || (SELECT count(*) + 1 FROM template_versions \
                 WHERE template_id = $3)), $5, $6, $7, $8) \
             RETURNING {VERSION_COLUMNS}"
        );
        let version = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(new.organization_id)
            .bind(new.template_id)
            .bind(&new.name)
            .bind(&new.message)
            .bind(new.file_id)
            .bind(job_id)
            .bind(new.created_by)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| StoreError::conflict_on(e, &[("template_versions_name_key", "name")]))?;
        self.commit_posting(tx, 1).await?;
        Ok(version)
    }

    pub async fn template_version(&self, id: Uuid) -> Result<TemplateVersionRow> {
        let sql = format!("SELECT {VERSION_COLUMNS} FROM template_versions WHERE id = $1");
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await?.ok_or(StoreError::NotFound)
    }

    pub async fn template_version_by_job(&self, job_id: Uuid) -> Result<TemplateVersionRow> {
        let sql = format!("SELECT {VERSION_COLUMNS} FROM template_versions WHERE job_id = $1");
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(job_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// A template's versions, oldest first.
    pub async fn template_versions(&self, template_id: Uuid) -> Result<Vec<TemplateVersionRow>> {
        let sql =
            format!("SELECT {VERSION_COLUMNS} FROM template_versions WHERE template_id = $1 ORDER BY created_at, id");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(template_id).fetch_all(&self.pool).await?)
    }

    /// Records a successful import: everything the manifest declares, and
    /// the job's success, in one transaction.
    pub async fn complete_template_import(&self, job_id: Uuid, worker_id: Uuid, manifest: &Manifest) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let version_id = sqlx::query_scalar!("SELECT id FROM template_versions WHERE job_id = $1", job_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        insert_manifest(&mut tx, version_id, manifest).await?;
        finish_job(&mut tx, job_id, worker_id, JobStatus::Succeeded, None, false, self.now()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Creates a template around an imported version, which becomes active.
    pub async fn create_template(&self, new: &NewTemplate) -> Result<TemplateRow> {
        let mut tx = self.pool.begin().await?;
        let (adopted_by, organization_id, status) = import_status(&mut tx, new.version_id).await?;
        require_imported(status)?;
        if adopted_by.is_some() || organization_id != new.organization_id {
            return Err(StoreError::Invalid {
                field: "template_version_id",
                message: "the version already belongs to a template".into(),
            });
        }
        let s = &new.settings;
        let sql = format!(
            "INSERT INTO templates (organization_id, name, display_name, description, icon, active_version_id, \
                 created_by, default_ttl_ms, autostop_requirement_days_of_week, autostop_requirement_weeks, \
                 allow_user_autostart, failure_ttl_ms, time_til_dormant_ms, time_til_dormant_autodelete_ms, \
                 agent_ready_timeout_ms, autostop_requirement_hour, require_active_version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
             RETURNING {TEMPLATE_COLUMNS}"
        );
        let template: TemplateRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(new.organization_id)
            .bind(&new.name)
            .bind(&new.display_name)
            .bind(&new.description)
            .bind(&new.icon)
            .bind(new.version_id)
            .bind(new.created_by)
            .bind(s.default_ttl_ms)
            .bind(s.autostop_requirement_days_of_week)
            .bind(s.autostop_requirement_weeks)
            .bind(s.allow_user_autostart)
            .bind(s.failure_ttl_ms)
            .bind(s.time_til_dormant_ms)
            .bind(s.time_til_dormant_autodelete_ms)
            .bind(s.agent_ready_timeout_ms)
            .bind(s.autostop_requirement_hour)
            .bind(s.require_active_version)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| StoreError::conflict_on(e, &[("templates_name_key", "name")]))?;
        sqlx::query!(
            "UPDATE template_versions SET template_id = $2, updated_at = now() WHERE id = $1",
            new.version_id,
            template.id,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(template)
    }

    pub async fn template(&self, id: Uuid) -> Result<TemplateRow> {
        let sql = format!("SELECT {TEMPLATE_COLUMNS} FROM templates WHERE NOT deleted AND id = $1");
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await?.ok_or(StoreError::NotFound)
    }

    pub async fn template_by_name(&self, organization_id: Uuid, name: &str) -> Result<TemplateRow> {
        let sql = format!(
            "SELECT {TEMPLATE_COLUMNS} FROM templates WHERE NOT deleted AND organization_id = $1 AND name = $2"
        );
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(organization_id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Live templates, by name; of one organization when given.
    pub async fn list_templates(&self, organization_id: Option<Uuid>) -> Result<Vec<TemplateRow>> {
        let sql = format!(
            "SELECT {TEMPLATE_COLUMNS} FROM templates WHERE NOT deleted \
             AND ($1::uuid IS NULL OR organization_id = $1) ORDER BY name"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(organization_id).fetch_all(&self.pool).await?)
    }

    pub async fn update_template(&self, id: Uuid, update: &TemplateUpdate) -> Result<TemplateRow> {
        let s = &update.settings;
        let sql = format!(
            "UPDATE templates SET display_name = $2, description = $3, icon = $4, default_ttl_ms = $5, \
                 autostop_requirement_days_of_week = $6, autostop_requirement_weeks = $7, allow_user_autostart = $8, \
                 failure_ttl_ms = $9, time_til_dormant_ms = $10, time_til_dormant_autodelete_ms = $11, \
                 agent_ready_timeout_ms = $12, autostop_requirement_hour = $13, \
                 require_active_version = $14, updated_at = now() \
             WHERE id = $1 AND NOT deleted RETURNING {TEMPLATE_COLUMNS}"
        );
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(&update.display_name)
            .bind(&update.description)
            .bind(&update.icon)
            .bind(s.default_ttl_ms)
            .bind(s.autostop_requirement_days_of_week)
            .bind(s.autostop_requirement_weeks)
            .bind(s.allow_user_autostart)
            .bind(s.failure_ttl_ms)
            .bind(s.time_til_dormant_ms)
            .bind(s.time_til_dormant_autodelete_ms)
            .bind(s.agent_ready_timeout_ms)
            .bind(s.autostop_requirement_hour)
            .bind(s.require_active_version)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Makes an imported version of the template its active one.
    pub async fn set_active_version(&self, template_id: Uuid, version_id: Uuid) -> Result<TemplateRow> {
        let mut tx = self.pool.begin().await?;
        let (belongs_to, _, status) = import_status(&mut tx, version_id).await?;
        if belongs_to != Some(template_id) {
            return Err(StoreError::Invalid { field: "id", message: "the version belongs to another template".into() });
        }
        require_imported(status).map_err(|_| StoreError::Invalid {
            field: "id",
            message: format!("only a successfully imported version can be activated (this one is {status})"),
        })?;
        let sql = format!(
            "UPDATE templates SET active_version_id = $2, updated_at = now() WHERE id = $1 AND NOT deleted \
             RETURNING {TEMPLATE_COLUMNS}"
        );
        let template = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(template_id)
            .bind(version_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        tx.commit().await?;
        Ok(template)
    }

    /// Soft-deletes a template.
    pub async fn delete_template(&self, id: Uuid) -> Result<()> {
        let deleted =
            sqlx::query!("UPDATE templates SET deleted = true, updated_at = now() WHERE id = $1 AND NOT deleted", id)
                .execute(&self.pool)
                .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// A version's parameters, in manifest order.
    pub async fn version_parameters(&self, version_id: Uuid) -> Result<Vec<Parameter>> {
        static SQL: LazyLock<String> =
            LazyLock::new(|| format!("{PARAMETER_SELECT} WHERE p.template_version_id = $1 ORDER BY p.ordinal"));
        let rows: Vec<ParameterRow> =
            sqlx::query_as(AssertSqlSafe(SQL.as_str())).bind(version_id).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(Parameter::from).collect())
    }

    /// A version's presets with their parameter values and schedules, in manifest order.
    pub async fn version_presets(&self, version_id: Uuid) -> Result<Vec<PresetRow>> {
        static SQL: LazyLock<String> =
            LazyLock::new(|| format!("{PRESET_SELECT} WHERE p.template_version_id = $1 ORDER BY p.ordinal"));
        Ok(sqlx::query_as(AssertSqlSafe(SQL.as_str())).bind(version_id).fetch_all(&self.pool).await?)
    }

    /// Everything creating a workspace from `template_id` decides from, in
    /// one statement: the template (`NotFound` when it does not exist or was
    /// deleted), the version `version_id` or else its active one, and that
    /// version's presets and parameters.
    pub async fn create_context(&self, template_id: Uuid, version_id: Option<Uuid>) -> Result<CreateContext> {
        static SQL: LazyLock<String> = LazyLock::new(|| {
            format!(
                "SELECT {TEMPLATE_COLUMNS}, \
                     (SELECT name FROM organizations WHERE id = t.organization_id) AS organization_name, \
                     (SELECT to_json(v) FROM (SELECT {VERSION_COLUMNS} FROM template_versions \
                                              WHERE id = coalesce($2, t.active_version_id)) v) AS version, \
                     coalesce((SELECT json_agg(p ORDER BY p.ordinal) \
                               FROM ({PRESET_SELECT} WHERE p.template_version_id = coalesce($2, t.active_version_id)) p), \
                              '[]') AS presets, \
                     coalesce((SELECT json_agg(p ORDER BY p.ordinal) \
                               FROM ({PARAMETER_SELECT} WHERE p.template_version_id = coalesce($2, t.active_version_id)) p), \
                              '[]') AS parameters \
                 FROM templates t WHERE NOT t.deleted AND t.id = $1"
            )
        });
        let row: CreateContextRow = sqlx::query_as(AssertSqlSafe(SQL.as_str()))
            .bind(template_id)
            .bind(version_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(CreateContext {
            template: row.template,
            organization_name: row.organization_name,
            version: row.version.map(|v| v.0),
            presets: row.presets.0,
            parameters: row.parameters.0.into_iter().map(Parameter::from).collect(),
        })
    }
}

/// A number from a validated manifest, as the column's integer type. The
/// import bounds every number to what its column holds; this refuses rather
/// than wraps should that ever not hold.
fn column_int<T: TryFrom<u64>>(value: impl Into<u64>) -> Result<T> {
    let value = value.into();
    T::try_from(value)
        .map_err(|_| StoreError::Invalid { field: "manifest", message: format!("{value} is too large to store") })
}

async fn insert_manifest(tx: &mut Transaction<'_, Postgres>, version_id: Uuid, m: &Manifest) -> Result<()> {
    let config = serde_json::to_value(&m.backend)
        .map_err(|e| StoreError::Invalid { field: "manifest", message: e.to_string() })?;
    sqlx::query!(
        "UPDATE template_versions SET provisioner = $2, claim_mode = $3, provisioner_config = $4, updated_at = now() \
         WHERE id = $1",
        version_id,
        m.provisioner as Provisioner,
        m.claim as ClaimMode,
        config,
    )
    .execute(&mut **tx)
    .await?;

    for (ordinal, p) in m.parameters.iter().enumerate() {
        let v = p.validation.as_ref();
        sqlx::query!(
            "INSERT INTO template_version_parameters (template_version_id, name, ordinal, display_name, description, \
                 type, default_value, mutable, validation_min, validation_max, validation_regex, validation_error) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            version_id,
            p.name,
            ordinal as i32,
            p.display_name,
            p.description,
            p.kind as ParameterType,
            p.default,
            p.mutable,
            v.and_then(|v| v.min),
            v.and_then(|v| v.max),
            v.and_then(|v| v.regex.clone()),
            v.and_then(|v| v.error.clone()),
        )
        .execute(&mut **tx)
        .await?;
        for (ordinal, o) in p.options.iter().enumerate() {
            sqlx::query!(
                "INSERT INTO template_version_parameter_options \
                     (template_version_id, parameter_name, ordinal, name, value, description, icon) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                version_id,
                p.name,
                ordinal as i32,
                o.name,
                o.value,
                o.description,
                o.icon,
            )
            .execute(&mut **tx)
            .await?;
        }
    }

    for (ordinal, preset) in m.presets.iter().enumerate() {
        let policy = preset.prebuilds.as_ref();
        let scheduling = policy.and_then(|p| p.scheduling.as_ref());
        let preset_id = sqlx::query_scalar!(
            "INSERT INTO template_version_presets (template_version_id, name, ordinal, description, icon, is_default, \
                 desired_instances, ttl_seconds, scheduling_timezone) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            version_id,
            preset.name,
            ordinal as i32,
            preset.description,
            preset.icon,
            preset.default,
            policy.map(|p| column_int::<i32>(p.instances)).transpose()?,
            policy.and_then(|p| p.ttl_seconds).map(column_int::<i64>).transpose()?,
            scheduling.map(|s| s.timezone.clone()),
        )
        .fetch_one(&mut **tx)
        .await?;
        let (names, values): (Vec<&String>, Vec<&String>) = preset.parameters.iter().unzip();
        sqlx::query!(
            "INSERT INTO template_version_preset_parameters (preset_id, name, value) \
             SELECT $1, * FROM unnest($2::text[], $3::text[])",
            preset_id,
            names as Vec<&String>,
            values as Vec<&String>,
        )
        .execute(&mut **tx)
        .await?;
        for (ordinal, s) in scheduling.map(|s| s.schedules.as_slice()).unwrap_or_default().iter().enumerate() {
            sqlx::query!(
                "INSERT INTO template_version_preset_prebuild_schedules \
                     (preset_id, ordinal, cron_expression, desired_instances) VALUES ($1, $2, $3, $4)",
                preset_id,
                ordinal as i32,
                s.cron,
                column_int::<i32>(s.instances)?,
            )
            .execute(&mut **tx)
            .await?;
        }
    }

    for (ordinal, agent) in m.agents.iter().enumerate() {
        sqlx::query!(
            "INSERT INTO template_version_agents \
                 (template_version_id, name, ordinal, startup_script, env, apps, devcontainers) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            version_id,
            agent.name,
            ordinal as i32,
            agent.startup_script,
            Json(&agent.env) as Json<&BTreeMap<String, String>>,
            Json(&agent.apps) as Json<&Vec<App>>,
            Json(&agent.devcontainers) as Json<&Vec<Devcontainer>>,
        )
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
