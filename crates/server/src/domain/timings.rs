//! Build timings: each stage of a build and each action on each resource
//! within it, as the daemon measured them (the `terraform` backend), kept
//! with the build and shown per build.

use uuid::Uuid;
use warmspace_sdk::BuildTiming;
use warmspace_store::jobs::Holder;
use warmspace_store::timings::TimingRow;

use super::{Actor, Domain, Error, Result};

/// The stages a timing may belong to (the `terraform` backend's).
const STAGES: [&str; 3] = ["init", "plan", "apply"];

impl Domain {
    /// A build's timings: its stages in the order they ran, each followed
    /// by its resources' actions.
    pub async fn build_timings(&self, actor: &Actor, id: Uuid) -> Result<Vec<BuildTiming>> {
        let (_, build) = self.readable_build(actor, id).await?;
        let rows = self.store.job_timings(build.job_id).await?;
        Ok(rows
            .into_iter()
            .map(|t| BuildTiming {
                stage: t.stage,
                action: t.action,
                resource: t.resource,
                started_at: t.started_at,
                ended_at: t.ended_at,
            })
            .collect())
    }

    /// Keeps the timings a daemon reported with a job it holds, checked first.
    pub(super) async fn record_timings(
        &self,
        job_id: Uuid,
        holder: Holder<'_>,
        timings: Vec<BuildTiming>,
    ) -> Result<()> {
        if timings.is_empty() {
            return Ok(());
        }
        let rows = checked(timings)?;
        Ok(self.store.record_timings(job_id, holder, &rows).await?)
    }
}

/// The timings as the store keeps them, or which one is wrong and why.
fn checked(timings: Vec<BuildTiming>) -> Result<Vec<TimingRow>> {
    timings
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let wrong = |detail: String| Error::field(&format!("timings[{i}]"), detail);
            if !STAGES.contains(&t.stage.as_str()) {
                return Err(wrong(format!("stage {:?} is none of {}", t.stage, STAGES.join(", "))));
            }
            if t.action.trim().is_empty() {
                return Err(wrong("the action is empty".into()));
            }
            if t.resource.as_deref().is_some_and(|r| r.trim().is_empty()) {
                return Err(wrong("the resource is empty (leave it out for a whole stage)".into()));
            }
            if t.ended_at < t.started_at {
                return Err(wrong(format!("it ended ({}) before it started ({})", t.ended_at, t.started_at)));
            }
            Ok(TimingRow {
                stage: t.stage,
                action: t.action,
                resource: t.resource,
                started_at: t.started_at,
                ended_at: t.ended_at,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, Utc};

    use super::*;

    fn timing(stage: &str, action: &str, resource: Option<&str>, seconds: i64) -> BuildTiming {
        let started_at = Utc::now();
        BuildTiming {
            stage: stage.into(),
            action: action.into(),
            resource: resource.map(str::to_owned),
            started_at,
            ended_at: started_at + Duration::seconds(seconds),
        }
    }

    #[test]
    fn timings_are_checked_before_they_are_kept() {
        let good = [timing("apply", "terraform apply", None, 2), timing("apply", "create", Some("a.b"), 1)];
        assert_eq!(checked(good.to_vec()).unwrap().len(), 2);
        for (bad, field) in [
            (timing("graph", "x", None, 0), "timings[0]"),
            (timing("plan", " ", None, 0), "timings[0]"),
            (timing("plan", "x", Some(""), 0), "timings[0]"),
            (timing("plan", "x", None, -1), "timings[0]"),
        ] {
            match checked(vec![bad]) {
                Err(Error::Invalid(problems)) => assert_eq!(problems[0].field, field),
                other => panic!("{other:?}"),
            }
        }
    }
}
