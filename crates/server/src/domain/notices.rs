//! Telling template admins of pools in trouble, without flooding their
//! inbox: failed creations in one digest per preset at most once an hour,
//! and a preset reaching its failure hard limit once per run of failures
//! (the rules are pure, in `warmspace_prebuilds::notices`). The full
//! reconciliation cycle calls this, so one replica at a time sends them.

use warmspace_prebuilds::notices::{self, Failures};
use warmspace_prebuilds::reconcile::{self, Snapshot, Status};
use warmspace_store::notifications::{PrebuildFailuresRow, PrebuildNotice};
use warmspace_store::prebuilds::PrebuildsSnapshot;

use super::{Domain, Result};

impl Domain {
    /// Sends the failure digests and hard-limit notices that are due at the
    /// snapshot's instant. Failing to tell is logged, never an error of the
    /// cycle that called it.
    pub async fn tell_of_pool_trouble(&self, raw: &PrebuildsSnapshot, snapshot: &Snapshot) {
        if let Err(err) = self.tell_of_failures(snapshot).await {
            tracing::warn!(error = %err, "cannot tell template admins of failed prebuilds");
        }
        if let Err(err) = self.tell_of_hard_limits(raw, snapshot).await {
            tracing::warn!(error = %err, "cannot tell template admins of hard-limited presets");
        }
    }

    async fn tell_of_failures(&self, snapshot: &Snapshot) -> Result<()> {
        let now = snapshot.now;
        // Failures told already are filtered out per preset by the store.
        let since = notices::failures_since(None, now);
        for row in self.store.prebuild_failures(since, now).await? {
            let failures = Failures {
                last_notice_at: row.last_notice_at,
                count: u32::try_from(row.count).unwrap_or(u32::MAX),
                newest_at: row.newest_at,
            };
            if !notices::failure_notice_due(&failures, now) {
                continue;
            }
            let (title, content) = failure_digest(&row, now - row.oldest_at);
            let notified =
                self.store.send_prebuild_notice(row.preset_id, PrebuildNotice::Failures, now, &title, &content).await?;
            tracing::warn!(
                template = %row.template_name, preset = %row.preset_name, failures = row.count,
                last_error = row.last_error.as_deref().unwrap_or(""), "prebuild creations failed; template admins told"
            );
            self.announce(notified).await;
        }
        Ok(())
    }

    async fn tell_of_hard_limits(&self, raw: &PrebuildsSnapshot, snapshot: &Snapshot) -> Result<()> {
        let limit = snapshot.settings.failure_hard_limit;
        // Only a preset whose newest creation failed can be hard-limited: the
        // others are not decided again here.
        let limited: Vec<_> = raw
            .presets
            .iter()
            .zip(&snapshot.presets)
            .filter(|(_, state)| state.keeps_pool() && state.creations.iter().any(|c| !c.succeeded))
            .filter(|(_, state)| {
                reconcile::decide(state, snapshot.now, &snapshot.settings).status == Status::HardLimited
            })
            .collect();
        if limited.is_empty() {
            return Ok(());
        }
        let ids: Vec<_> = limited.iter().map(|(row, _)| row.preset_id).collect();
        let told = self.store.hard_limit_notices(&ids).await?;
        for (row, state) in limited {
            let notified_at = told.iter().find(|(id, _)| *id == row.preset_id).map(|&(_, at)| at);
            // The creations the status counted: none from before an invalidation.
            let creations: Vec<_> = state.creations.iter().filter(|c| state.counts_creation(c)).copied().collect();
            if !notices::hard_limit_notice_due(&creations, limit, notified_at) {
                continue;
            }
            let (template, preset) = (&row.template_name, &row.preset_name);
            let title = format!("Preset {preset} of template {template} stopped creating prebuilds");
            let content = format!(
                "The last {limit} prebuilds of preset {preset} (template {template}, active version) all failed, so \
                 no more are created: claims of this preset build cold until it recovers. To recover, push a fixed \
                 version of the template (`warmspace templates push {template}`); or, if what made them fail was \
                 outside the template and is mended, retry with `warmspace prebuilds invalidate --template \
                 {template} --preset {preset}`."
            );
            let notified = self
                .store
                .send_prebuild_notice(row.preset_id, PrebuildNotice::HardLimit, snapshot.now, &title, &content)
                .await?;
            tracing::warn!(%template, %preset, limit, "preset hard-limited; template admins told");
            self.announce(notified).await;
        }
        Ok(())
    }
}

/// A failure digest's title and text, naming the preset, its template and
/// the workspace that failed last; `window` reaches back to the oldest failure.
fn failure_digest(row: &PrebuildFailuresRow, window: chrono::TimeDelta) -> (String, String) {
    let (template, preset, n) = (&row.template_name, &row.preset_name, row.count);
    let prebuilds = if n == 1 { "prebuild" } else { "prebuilds" };
    let title = format!("{n} {prebuilds} of preset {preset} ({template}) failed");
    let error = row.last_error.as_deref().filter(|e| !e.is_empty()).unwrap_or("no error message");
    let content = format!(
        "{n} {prebuilds} of preset {preset} (template {template}, version {version}) failed in the last {window}; \
         the last, workspace {workspace}, failed with: {error}",
        version = row.version_name,
        window = human_window(window),
        workspace = row.last_workspace,
    );
    (title, content)
}

/// "minute", "45 minutes", "3 hours": how far back a digest reaches, rounded up.
fn human_window(window: chrono::TimeDelta) -> String {
    let minutes = (window.num_seconds().max(1) + 59) / 60;
    match minutes {
        1 => "minute".to_owned(),
        m if m < 120 => format!("{m} minutes"),
        m => format!("{} hours", (m + 59) / 60),
    }
}
