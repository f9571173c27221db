//! Templates and their versions: uploading and importing versions,
//! creating, changing, activating and deleting templates, and what an
//! imported version declares (parameters, presets).

use futures::Stream;
use uuid::Uuid;
use warmspace_authz::{Action, Object, Resource};
use warmspace_sdk::{
    CreateTemplateRequest, CreateTemplateVersionRequest, Preset, ProvisionerJobLog, Template, TemplateSettings,
    TemplateVersion, TemplateVersionParameter, UpdateTemplateRequest, UpdateTemplateSettings, ValidationError,
};
use warmspace_states::JobStatus;
use warmspace_store::{
    NewTemplate, NewTemplateVersion, OrganizationRow, TemplateRow, TemplateUpdate, TemplateVersionRow,
};

use super::jobs::LogFollow;
use super::users::invalid;
use super::views::{DAYS, parameter_view, preset_view, template_view};
use super::{Actor, Domain, Error, Found, Result, Trigger, valid_slug};

/// The longest time to live a template may give its workspaces by default.
/// Deadlines are computed from it, and a month is longer than any working session.
pub const MAX_TTL_MS: i64 = 30 * 24 * 3600 * 1000;
/// The longest dormancy and failure thresholds: long enough for any policy,
/// short enough that adding them to a date stays a date.
pub const MAX_THRESHOLD_MS: i64 = 10 * 365 * 24 * 3600 * 1000;
/// The longest version message (as the schema holds).
const MAX_MESSAGE: usize = 1048;

impl Domain {
    /// An organization by id or name (`default` for the default one).
    pub(super) async fn organization(&self, id_or_name: &str) -> Result<OrganizationRow> {
        self.store.organization(id_or_name).await.found("Organization")
    }

    /// Creates a template version from an uploaded archive and queues its import.
    pub async fn create_template_version(
        &self,
        actor: &Actor,
        organization: &str,
        req: CreateTemplateVersionRequest,
    ) -> Result<TemplateVersion> {
        actor.authorize(Action::Create, Object::any(Resource::Template))?;
        let organization = self.organization(organization).await?;
        let mut problems = Vec::new();
        if let Some(name) = &req.name
            && !valid_version_name(name)
        {
            problems.push(invalid(
                "name",
                "must be 1 to 64 letters, digits, dots, underscores or hyphens, starting with a letter or digit",
            ));
        }
        if req.message.chars().count() > MAX_MESSAGE {
            problems.push(invalid("message", format!("must be at most {MAX_MESSAGE} characters")));
        }
        if !problems.is_empty() {
            return Err(Error::Invalid(problems));
        }
        self.store.file(req.file_id).await.map_err(|_| Error::field("file_id", "no such file"))?;
        if let Some(template_id) = req.template_id {
            let template =
                self.store.template(template_id).await.map_err(|_| Error::field("template_id", "no such template"))?;
            if template.organization_id != organization.id {
                return Err(Error::field("template_id", "the template belongs to another organization"));
            }
            if req.skip_if_unchanged {
                // Files are stored once per content hash: the same file is the same files.
                let active = self.store.template_version(template.active_version_id).await?;
                if active.file_id == req.file_id {
                    return Ok(TemplateVersion { unchanged: true, ..self.version_view(active).await? });
                }
            }
        }
        let version = self
            .store
            .create_template_version(&NewTemplateVersion {
                organization_id: organization.id,
                template_id: req.template_id,
                name: req.name,
                message: req.message,
                file_id: req.file_id,
                created_by: actor.user.id,
                tags: req.provisioner_tags,
            })
            .await?;
        self.version_view(version).await
    }

    pub async fn template_version(&self, actor: &Actor, id: Uuid) -> Result<TemplateVersion> {
        let version = self.readable_version(actor, id).await?;
        self.version_view(version).await
    }

    /// A version's import log lines after `after`.
    pub async fn template_version_log(&self, actor: &Actor, id: Uuid, after: i64) -> Result<Vec<ProvisionerJobLog>> {
        let version = self.readable_version(actor, id).await?;
        self.job_log(version.job_id, after).await
    }

    /// Follows a version's import log until the import ends.
    pub async fn follow_template_version_log(
        &self,
        actor: &Actor,
        id: Uuid,
        after: i64,
    ) -> Result<impl Stream<Item = LogFollow> + Send + 'static> {
        let version = self.readable_version(actor, id).await?;
        self.follow_job_log(version.job_id, after).await
    }

    /// Cancels a version's import if no daemon has finished it.
    pub async fn cancel_template_version(&self, actor: &Actor, id: Uuid) -> Result<()> {
        actor.authorize(Action::Update, Object::any(Resource::Template))?;
        let version = self.readable_version(actor, id).await?;
        match self.store.cancel_job(version.job_id).await? {
            Some(JobStatus::Canceled) => self.events.job_done(version.job_id).await,
            Some(_) => {}
            None => return Err(Error::conflict("The import has already finished.")),
        }
        Ok(())
    }

    pub async fn template_version_parameters(&self, actor: &Actor, id: Uuid) -> Result<Vec<TemplateVersionParameter>> {
        self.readable_version(actor, id).await?;
        Ok(self.store.version_parameters(id).await?.into_iter().map(parameter_view).collect())
    }

    pub async fn template_version_presets(&self, actor: &Actor, id: Uuid) -> Result<Vec<Preset>> {
        self.readable_version(actor, id).await?;
        Ok(self.store.version_presets(id).await?.into_iter().map(preset_view).collect())
    }

    /// Creates a template from a successfully imported version, which becomes its active version.
    pub async fn create_template(
        &self,
        actor: &Actor,
        organization: &str,
        req: CreateTemplateRequest,
    ) -> Result<Template> {
        actor.authorize(Action::Create, Object::any(Resource::Template))?;
        let organization = self.organization(organization).await?;
        let mut problems = Vec::new();
        if !valid_slug(&req.name, 64) {
            problems
                .push(invalid("name", "must be 1 to 64 lowercase letters or digits, with single hyphens between them"));
        }
        problems.extend(check_presentation(&req.display_name, &req.description, &req.icon));
        let settings = merge_settings(TemplateSettings::default(), req.settings);
        problems.extend(settings.as_ref().err().cloned().unwrap_or_default());
        let (Ok(settings), true) = (settings, problems.is_empty()) else {
            return Err(Error::Invalid(problems));
        };
        let template = self
            .store
            .create_template(&NewTemplate {
                organization_id: organization.id,
                name: req.name,
                display_name: req.display_name,
                description: req.description,
                icon: req.icon,
                version_id: req.template_version_id,
                created_by: actor.user.id,
                settings: settings_row(&settings),
            })
            .await?;
        tracing::info!(template = %template.name, by = %actor.user.username, "template created");
        // A new template's pool fills at once, not at the next tick.
        self.events.reconcile(Trigger::All("template created")).await;
        Ok(template_view(template))
    }

    /// Live templates, by name; of one organization when given.
    pub async fn list_templates(&self, actor: &Actor, organization: Option<&str>) -> Result<Vec<Template>> {
        actor.authorize(Action::Read, Object::any(Resource::Template))?;
        let organization_id = match organization {
            Some(organization) => Some(self.organization(organization).await?.id),
            None => None,
        };
        Ok(self.store.list_templates(organization_id).await?.into_iter().map(template_view).collect())
    }

    pub async fn template_by_name(&self, actor: &Actor, organization: &str, name: &str) -> Result<Template> {
        actor.authorize(Action::Read, Object::any(Resource::Template))?;
        let organization = self.organization(organization).await?;
        Ok(template_view(self.store.template_by_name(organization.id, name).await.found("Template")?))
    }

    pub async fn template(&self, actor: &Actor, id: Uuid) -> Result<Template> {
        actor.authorize(Action::Read, Object::any(Resource::Template))?;
        Ok(template_view(self.store.template(id).await.found("Template")?))
    }

    /// Changes a template's presentation and lifecycle settings; absent fields keep their value.
    pub async fn update_template(&self, actor: &Actor, id: Uuid, req: UpdateTemplateRequest) -> Result<Template> {
        actor.authorize(Action::Update, Object::any(Resource::Template))?;
        let current = self.store.template(id).await.found("Template")?;
        let display_name = req.display_name.unwrap_or(current.display_name.clone());
        let description = req.description.unwrap_or(current.description.clone());
        let icon = req.icon.unwrap_or(current.icon.clone());
        let mut problems = check_presentation(&display_name, &description, &icon);
        let settings = merge_settings(template_view(current).settings, req.settings);
        problems.extend(settings.as_ref().err().cloned().unwrap_or_default());
        let (Ok(settings), true) = (settings, problems.is_empty()) else {
            return Err(Error::Invalid(problems));
        };
        let update = TemplateUpdate { display_name, description, icon, settings: settings_row(&settings) };
        let template = self.store.update_template(id, &update).await.found("Template")?;
        self.events.reconcile(Trigger::All("template settings changed")).await;
        Ok(template_view(template))
    }

    /// Deletes a template (softly: its history stays). Refused while
    /// workspaces other than prebuilds use it; its pools are wound down.
    pub async fn delete_template(&self, actor: &Actor, id: Uuid) -> Result<()> {
        actor.authorize(Action::Delete, Object::any(Resource::Template))?;
        self.store.template(id).await.found("Template")?;
        let in_use = self.store.template_in_use(id).await?;
        if in_use > 0 {
            return Err(Error::conflict("The template is in use.")
                .detail(format!("{in_use} workspaces use it; delete them first (prebuilds do not count).")));
        }
        self.store.delete_template(id).await.found("Template")?;
        self.events.reconcile(Trigger::All("template deleted")).await;
        Ok(())
    }

    /// Whether the actor may change templates (activate versions, invalidate pools).
    pub fn may_update_templates(&self, actor: &Actor) -> bool {
        actor.authorize(Action::Update, Object::any(Resource::Template)).is_ok()
    }

    /// A template's versions, oldest first.
    pub async fn template_versions(&self, actor: &Actor, id: Uuid) -> Result<Vec<TemplateVersion>> {
        actor.authorize(Action::Read, Object::any(Resource::Template))?;
        self.store.template(id).await.found("Template")?;
        let versions = self.store.template_versions(id).await?;
        self.version_views(versions).await
    }

    /// Makes a successfully imported version of the template the active one.
    pub async fn activate_template_version(&self, actor: &Actor, id: Uuid, version_id: Uuid) -> Result<Template> {
        actor.authorize(Action::Update, Object::any(Resource::Template))?;
        self.store.template(id).await.found("Template")?;
        let template = self.store.set_active_version(id, version_id).await?;
        tracing::info!(template = %template.name, version = %version_id, "active version changed");
        self.events.reconcile(Trigger::All("version activated")).await;
        Ok(template_view(template))
    }

    async fn readable_version(&self, actor: &Actor, id: Uuid) -> Result<TemplateVersionRow> {
        actor.authorize(Action::Read, Object::any(Resource::Template))?;
        self.store.template_version(id).await.found("Template version")
    }

    /// A version of `template` whose import succeeded, for building a
    /// workspace (problems name `template_version_id`).
    pub(super) async fn usable_version(&self, template: &TemplateRow, version_id: Uuid) -> Result<TemplateVersionRow> {
        usable(template, self.store.template_version(version_id).await.ok())
    }
}

/// The version (`None`: there is no such version) if it is one of `template`
/// whose import succeeded, for building a workspace (problems name
/// `template_version_id`).
pub(super) fn usable(template: &TemplateRow, version: Option<TemplateVersionRow>) -> Result<TemplateVersionRow> {
    let bad = |detail: &str| Error::field("template_version_id", detail.to_owned());
    let version = version.ok_or_else(|| bad("no such template version"))?;
    if version.template_id != Some(template.id) {
        return Err(bad("the version belongs to another template"));
    }
    if version.provisioner.is_none() {
        return Err(bad("the version has not been imported successfully"));
    }
    Ok(version)
}

fn settings_row(s: &TemplateSettings) -> warmspace_store::TemplateSettings {
    let days = s
        .autostop_requirement_days_of_week
        .iter()
        .filter_map(|d| DAYS.iter().position(|day| day == d))
        .fold(0i16, |bits, bit| bits | (1 << bit));
    warmspace_store::TemplateSettings {
        default_ttl_ms: s.default_ttl_ms,
        autostop_requirement_days_of_week: days,
        autostop_requirement_weeks: s.autostop_requirement_weeks,
        // Checked to be 0 … 23.
        autostop_requirement_hour: s.autostop_requirement_hour.clamp(0, 23) as i16,
        require_active_version: s.require_active_version,
        allow_user_autostart: s.allow_user_autostart,
        failure_ttl_ms: s.failure_ttl_ms,
        time_til_dormant_ms: s.time_til_dormant_ms,
        time_til_dormant_autodelete_ms: s.time_til_dormant_autodelete_ms,
        agent_ready_timeout_ms: s.agent_ready_timeout_ms,
    }
}

/// Applies a partial update to settings, checking every given value.
fn merge_settings(
    mut s: TemplateSettings,
    u: UpdateTemplateSettings,
) -> std::result::Result<TemplateSettings, Vec<ValidationError>> {
    let mut problems = Vec::new();
    let mut duration = |field: &str, value: Option<i64>, (min, max): (i64, i64), slot: &mut i64| {
        if let Some(ms) = value {
            if !(min..=max).contains(&ms) {
                problems.push(invalid(&format!("settings.{field}"), format!("must be between {min} and {max} ms")));
            }
            *slot = ms;
        }
    };
    duration("default_ttl_ms", u.default_ttl_ms, (0, MAX_TTL_MS), &mut s.default_ttl_ms);
    duration("failure_ttl_ms", u.failure_ttl_ms, (0, MAX_THRESHOLD_MS), &mut s.failure_ttl_ms);
    duration("time_til_dormant_ms", u.time_til_dormant_ms, (0, MAX_THRESHOLD_MS), &mut s.time_til_dormant_ms);
    duration(
        "time_til_dormant_autodelete_ms",
        u.time_til_dormant_autodelete_ms,
        (0, MAX_THRESHOLD_MS),
        &mut s.time_til_dormant_autodelete_ms,
    );
    // Not below a second: zero would fail every prebuild before its agents could start.
    duration("agent_ready_timeout_ms", u.agent_ready_timeout_ms, (1000, MAX_TTL_MS), &mut s.agent_ready_timeout_ms);
    if let Some(days) = u.autostop_requirement_days_of_week {
        for day in days.iter().filter(|d| !DAYS.contains(&d.as_str())) {
            problems.push(invalid(
                "settings.autostop_requirement_days_of_week",
                format!("{day:?} is not a day of the week (monday … sunday)"),
            ));
        }
        s.autostop_requirement_days_of_week = days;
    }
    if let Some(weeks) = u.autostop_requirement_weeks {
        if !(1..=16).contains(&weeks) {
            problems.push(invalid("settings.autostop_requirement_weeks", "must be between 1 and 16"));
        }
        s.autostop_requirement_weeks = weeks;
    }
    if let Some(hour) = u.autostop_requirement_hour {
        if !(0..=23).contains(&hour) {
            problems.push(invalid("settings.autostop_requirement_hour", "must be between 0 and 23"));
        }
        s.autostop_requirement_hour = hour;
    }
    if let Some(require) = u.require_active_version {
        s.require_active_version = require;
    }
    if let Some(allow) = u.allow_user_autostart {
        s.allow_user_autostart = allow;
    }
    if problems.is_empty() { Ok(s) } else { Err(problems) }
}

fn check_presentation(display_name: &str, description: &str, icon: &str) -> Vec<ValidationError> {
    [("display_name", display_name, 64), ("description", description, 128), ("icon", icon, 256)]
        .into_iter()
        .filter(|(_, value, max)| value.chars().count() > *max)
        .map(|(field, _, max)| invalid(field, format!("must be at most {max} characters")))
        .collect()
}

fn valid_version_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_of_week_round_trip_through_the_bitmask() {
        let settings = TemplateSettings {
            autostop_requirement_days_of_week: vec!["monday".into(), "sunday".into()],
            ..TemplateSettings::default()
        };
        let row = settings_row(&settings);
        assert_eq!(row.autostop_requirement_days_of_week, 0b100_0001);
        let problems = merge_settings(
            TemplateSettings::default(),
            UpdateTemplateSettings {
                autostop_requirement_days_of_week: Some(vec!["funday".into()]),
                default_ttl_ms: Some(-1),
                failure_ttl_ms: Some(i64::MAX),
                ..Default::default()
            },
        )
        .unwrap_err();
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            ["settings.default_ttl_ms", "settings.failure_ttl_ms", "settings.autostop_requirement_days_of_week"]
        );
    }

    #[test]
    fn names() {
        assert!(valid_slug("docker-dev2", 64));
        for bad in ["", "Docker", "a--b", "-a", "a_b", &"a".repeat(65)] {
            assert!(!valid_slug(bad, 64), "{bad}");
        }
        assert!(valid_version_name("v1.2_rc-3"));
        assert!(!valid_version_name(".hidden"));
    }
}
