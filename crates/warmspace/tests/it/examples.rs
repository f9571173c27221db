//! The example templates in `examples/`, pushed and used as a user would.

use std::path::Path;

use crate::common::*;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use warmspace_store::testing::TestDatabase;

/// The pid the exec example's start script reports in the build log.
fn started_pid(output: &[u8]) -> i32 {
    let text = String::from_utf8_lossy(output);
    let line = text.lines().find(|l| l.contains("workspace process started")).unwrap_or_else(|| panic!("{text}"));
    line.split("(pid ").nth(1).and_then(|rest| rest.split(')').next()).unwrap().parse().unwrap()
}

fn alive(pid: i32) -> bool {
    // A zombie (exited, not yet reaped by init) is not alive.
    kill(Pid::from_raw(pid), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exec_example_runs_a_local_process_per_workspace() {
    let db = TestDatabase::new().await;
    let (example, server) = ExecExample::start(db.url()).await;

    let created = run(example.cli().args(["create", "box", "--template", "local", "--parameter", "greeting=hi"]));
    let pid = started_pid(&created.stdout);
    assert!(alive(pid), "the workspace process runs");
    let shown = run(example.cli().args(["show", "box"]));
    assert!(String::from_utf8_lossy(&shown.stdout).contains("local_process.workspace"));

    let stopped = run(example.cli().args(["stop", "box"]));
    assert!(String::from_utf8_lossy(&stopped.stdout).contains(&format!("stopped process {pid}")));
    assert!(!alive(pid), "stop ends the process whose pid the state file kept");

    let restarted = run(example.cli().args(["start", "box"]));
    let second = started_pid(&restarted.stdout);
    assert!(alive(second));

    // The example's pool keeps a prebuild in `root` too: find this workspace's own directory.
    let shown = run(example.cli().args(["show", "box", "-o", "json"]));
    let id = serde_json::from_slice::<serde_json::Value>(&shown.stdout).unwrap()["id"].as_str().unwrap().to_owned();
    let workspace_dir = example.root.join(id);
    assert!(Path::new(&workspace_dir).join("workspace.log").exists());
    run(example.cli().args(["delete", "box", "-y"]));
    assert!(!alive(second), "delete ends the process");
    assert!(!workspace_dir.exists(), "delete removes what the workspace made");
    server.terminate();
}
