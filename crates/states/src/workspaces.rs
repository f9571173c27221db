//! What a workspace is doing.

use crate::{JobStatus, Transition};

text_enum! {
    /// What a workspace is doing, read off its latest build (see [`WorkspaceStatus::of_build`]).
    pub enum WorkspaceStatus as "workspace status" {
        Pending = "pending",
        Starting = "starting",
        Running = "running",
        Stopping = "stopping",
        Stopped = "stopped",
        Deleting = "deleting",
        Deleted = "deleted",
        Failed = "failed",
        Canceling = "canceling",
        Canceled = "canceled",
    }
}

impl WorkspaceStatus {
    /// The one rule: a workspace's status from its latest build's transition
    /// and that build's job status.
    pub fn of_build(transition: Transition, job: JobStatus) -> WorkspaceStatus {
        use {JobStatus as J, Transition as T, WorkspaceStatus as W};
        match (job, transition) {
            (J::Pending, _) => W::Pending,
            (J::Running, T::Start) => W::Starting,
            (J::Running, T::Stop) => W::Stopping,
            (J::Running, T::Delete) => W::Deleting,
            (J::Succeeded, T::Start) => W::Running,
            (J::Succeeded, T::Stop) => W::Stopped,
            (J::Succeeded, T::Delete) => W::Deleted,
            (J::Failed, _) => W::Failed,
            (J::Canceling, _) => W::Canceling,
            (J::Canceled, _) => W::Canceled,
        }
    }

    /// Every (transition, job status) of a latest build that shows this
    /// status: the inverse of [`WorkspaceStatus::of_build`], for filtering
    /// in the database by the same rule.
    pub fn latest_builds(self) -> Vec<(Transition, JobStatus)> {
        Transition::ALL
            .iter()
            .flat_map(|t| JobStatus::ALL.iter().map(move |j| (*t, *j)))
            .filter(|(t, j)| WorkspaceStatus::of_build(*t, *j) == self)
            .collect()
    }

    /// A build is under way.
    pub fn is_transitioning(self) -> bool {
        matches!(
            self,
            WorkspaceStatus::Pending
                | WorkspaceStatus::Starting
                | WorkspaceStatus::Stopping
                | WorkspaceStatus::Deleting
                | WorkspaceStatus::Canceling
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_is_reachable_and_its_builds_map_back_to_it() {
        for status in WorkspaceStatus::ALL {
            let builds = status.latest_builds();
            assert!(!builds.is_empty(), "{status} is reachable");
            for (t, j) in builds {
                assert_eq!(WorkspaceStatus::of_build(t, j), *status);
            }
        }
        assert_eq!(WorkspaceStatus::Running.latest_builds(), [(Transition::Start, JobStatus::Succeeded)]);
    }
}
