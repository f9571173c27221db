//! Listings cost a fixed number of statements whatever their length: no
//! query per row.

use warmspace_sdk::{JobsQuery, WorkspacesQuery};
use warmspace_server::testing::TestServer;

use crate::common::*;

// A current-thread runtime: the server under test runs its tasks on this
// thread, so the statements counted here are its own and no other test's.
#[tokio::test(flavor = "current_thread")]
async fn listing_a_thousand_workspaces_takes_as_many_statements_as_listing_ten() {
    let statements = Statements::on_this_thread();
    // Nothing in the background: no timer, no polling, no reaping.
    let server = TestServer::start_full(quiet(), 1, false).await;
    let owner = server.owner().await;
    let template = push(&owner, "pool", &[("warmspace.hcl", &manifest(1, "rebuild", ""))]).await;
    let us = preset_id(&owner, &template, "us").await;
    server.store.seed_prebuilds(us, 1000).await.unwrap();

    let page = |limit: i64| WorkspacesQuery { q: Some("owner:prebuilds".into()), limit: Some(limit), offset: None };
    let (ten, listed) = statements.during(owner.workspaces(&page(10))).await;
    assert_eq!(listed.unwrap().workspaces.len(), 10);
    let (thousand, listed) = statements.during(owner.workspaces(&page(1000))).await;
    let listed = listed.unwrap();
    assert_eq!((listed.workspaces.len(), listed.count), (1000, 1000));
    assert!(listed.workspaces.iter().all(|w| w.latest_build.job.status == warmspace_sdk::JobStatus::Succeeded));
    // Each names its preset, read by the same statements.
    assert!(listed.workspaces.iter().all(|w| w.preset_id == Some(us) && w.preset_name.as_deref() == Some("us")));
    println!("listing 10 workspaces took {ten} statements, listing 1000 took {thousand}");
    assert!(ten > 0, "statements are counted");
    assert_eq!(ten, thousand, "a listing's statements do not grow with its length");
    assert!(ten <= 10, "{ten} statements for one listing");

    let jobs = |limit: i64| JobsQuery { status: None, limit: Some(limit) };
    let (ten, listed) = statements.during(owner.provisioner_jobs("default", &jobs(10))).await;
    assert_eq!(listed.unwrap().len(), 10);
    let (thousand, listed) = statements.during(owner.provisioner_jobs("default", &jobs(1000))).await;
    let listed = listed.unwrap();
    assert_eq!(listed.len(), 1000);
    // Each says what it is for: the workspace, the build and the version.
    let builds: Vec<_> = listed.iter().filter(|j| j.kind == warmspace_sdk::JobType::WorkspaceBuild).collect();
    assert!(builds.len() >= 999, "{} builds", builds.len());
    assert!(builds.iter().all(|j| {
        let m = &j.metadata;
        m.workspace_name.as_deref().is_some_and(|name| name.starts_with("prebuild-"))
            && (m.build_number, m.transition) == (Some(1), Some(warmspace_sdk::Transition::Start))
            && m.template_name.as_deref() == Some("pool")
            && m.template_version_id == Some(template.active_version_id)
    }));
    println!("listing 10 jobs took {ten} statements, listing 1000 took {thousand}");
    assert!(ten > 0, "statements are counted");
    assert_eq!(ten, thousand, "a job listing's statements do not grow with its length");
}
