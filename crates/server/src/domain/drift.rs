//! The drift check's findings as people read them: for each preset whose
//! prebuilds' claim was planned (Terraform templates), what a claim would
//! replace and how to keep it. The checks are queued when prebuilds become
//! eligible (see [`Domain::record_eligible`]) and run by the daemons
//! (see [`Domain::complete_drift_check`]).

use std::collections::HashMap;

use uuid::Uuid;
use warmspace_sdk::{DriftCheckStatus, PresetDriftCheck};
use warmspace_store::drift::DriftCheckRow;

use super::{Domain, Result};

impl Domain {
    /// The latest drift check of each of `preset_ids` that has one, by preset.
    pub(super) async fn drift_checks(&self, preset_ids: &[Uuid]) -> Result<HashMap<Uuid, PresetDriftCheck>> {
        let rows = self.store.drift_checks(preset_ids).await?;
        Ok(rows.into_iter().map(|row| (row.preset_id, drift_check(row))).collect())
    }
}

fn drift_check(row: DriftCheckRow) -> PresetDriftCheck {
    let status = match (&row.replaced, row.job_status) {
        (Some(_), _) => DriftCheckStatus::Done,
        (None, status) if status.is_finished() => DriftCheckStatus::Failed,
        (None, _) => DriftCheckStatus::Pending,
    };
    let replaced = row.replaced.unwrap_or_default();
    let error = match status {
        DriftCheckStatus::Failed => {
            Some(row.job_error.unwrap_or_else(|| format!("the check's job ended {}", row.job_status.as_str())))
        }
        _ => None,
    };
    PresetDriftCheck {
        status,
        workspace_id: row.workspace_id,
        job_id: row.job_id,
        checked_at: row.completed_at,
        message: finding(&replaced),
        replaced,
        error,
    }
}

/// The finding in words, when a claim would replace something: what, why
/// it matters, and the usual fix.
pub fn finding(replaced: &[String]) -> Option<String> {
    if replaced.is_empty() {
        return None;
    }
    let names: Vec<String> = replaced.iter().map(|address| format!("`{address}`")).collect();
    let (them, depends) = if replaced.len() == 1 { ("it", "depends") } else { ("they", "depend") };
    Some(format!(
        "claims will replace {} — {them} {depends} on the owner (or on whether the workspace is a prebuild), \
         so the pool keeps {them} warm for nothing; consider `lifecycle {{ ignore_changes = … }}` on the \
         attributes that name the owner",
        names.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_finding_names_each_replaced_resource_and_the_fix() {
        assert_eq!(finding(&[]), None);
        let one = finding(&["terraform_data.home".into()]).unwrap();
        assert!(one.starts_with("claims will replace `terraform_data.home` — it depends on the owner"), "{one}");
        assert!(one.contains("lifecycle { ignore_changes = … }"), "{one}");
        let two = finding(&["a.b".into(), "c.d".into()]).unwrap();
        assert!(two.starts_with("claims will replace `a.b`, `c.d` — they depend on the owner"), "{two}");
    }
}
