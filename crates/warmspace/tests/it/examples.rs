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
    let (example, server) = Example::start(db.url()).await;

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

/// The pid a `<name>.pid` file of the example's workspace holds.
fn pid_in(example: &Example, workspace: uuid::Uuid, name: &str) -> i32 {
    let path = example.root.join(workspace.to_string()).join(format!("{name}.pid"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).trim().parse().unwrap()
}

/// Terraform's state kept with a workspace's latest build.
async fn latest_state(db: &TestDatabase, workspace: uuid::Uuid) -> Option<Vec<u8>> {
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    sqlx::query_scalar(
        "SELECT provisioner_state FROM workspace_builds WHERE workspace_id = $1 ORDER BY build_number DESC LIMIT 1",
    )
    .bind(workspace)
    .fetch_one(&pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terraform_example_keeps_a_pool_whose_claim_replaces_exactly_the_owner_dependent_home() {
    let db = TestDatabase::new().await;
    let (example, server) = Example::start_with(db.url(), "tf", "terraform").await;
    let client = admin_client(&server.url).await;
    // The pool fills: a prebuild whose real agent is ready.
    eventually(std::time::Duration::from_secs(120), "the terraform example's pool to fill", || async {
        let status = client.prebuilds_status().await.unwrap();
        status.presets.iter().any(|p| p.template_name == "tf" && p.eligible == 1)
    })
    .await;

    // The claim hands the prebuild over; its build replaced the home made for `prebuilds`.
    run(example.cli().args(["create", "box", "--template", "tf", "--preset", "default"]));
    let ws = client.workspace_by_name("me", "box").await.unwrap();
    let claim = &ws.latest_build;
    assert!(ws.latest_build.build_number > 1, "the workspace was claimed, not built cold");
    let replaced: Vec<&str> = claim.resources.iter().filter(|r| r.replaced).map(|r| r.address.as_str()).collect();
    assert_eq!(replaced, ["terraform_data.home"], "{:?}", claim.resources);
    let home = example.root.join(ws.id.to_string()).join("home");
    assert_eq!(std::fs::read_to_string(home.join("profile")).unwrap().trim(), "made for admin");
    let logs = client.build_logs(claim.id).await.unwrap();
    assert!(
        logs.iter().any(|l| l.output.contains("the claim replaced terraform_data.home")),
        "{:#?}",
        logs.iter().map(|l| &l.output).collect::<Vec<_>>()
    );
    // The claim's timings show the home destroyed and made again.
    let timings = run(example.cli().args(["show", "box", "--timings"]));
    let timings = String::from_utf8_lossy(&timings.stdout);
    for action in ["delete", "create"] {
        assert!(
            timings.lines().any(|l| l.trim_start().starts_with("apply")
                && l.contains(action)
                && l.contains("terraform_data.home")),
            "{timings}"
        );
    }
    // The prebuild's processes kept running through the claim.
    let process = pid_in(&example, ws.id, "workspace");
    let agent = pid_in(&example, ws.id, "agent");
    assert!(alive(process) && alive(agent));

    // Stop destroys the running workspace (start_count = 0), start recreates it.
    run(example.cli().args(["stop", "box"]));
    assert!(!alive(process) && !alive(agent), "stop ends the workspace's processes");
    assert!(home.join("profile").exists(), "the home outlives a stop");
    run(example.cli().args(["start", "box"]));
    let restarted = pid_in(&example, ws.id, "workspace");
    assert!(restarted != process && alive(restarted));
    let agent = pid_in(&example, ws.id, "agent");
    assert!(alive(agent));

    // Delete leaves no process, no files and no state.
    run(example.cli().args(["delete", "box", "-y"]));
    assert!(!alive(restarted) && !alive(agent), "delete ends the workspace's processes");
    assert!(!example.root.join(ws.id.to_string()).exists(), "delete removes what the workspace made");
    let state = latest_state(&db, ws.id).await;
    assert!(state.as_deref().is_none_or(<[u8]>::is_empty), "a deleted workspace kept Terraform state: {state:?}");
    server.terminate();
}

/// The terraform example with the fix its comment shows: the home ignores
/// the owner's change.
fn fixed_terraform_example() -> tempfile::TempDir {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/terraform");
    let dir = temp_dir();
    for name in ["warmspace.hcl", "main.tf"] {
        std::fs::copy(example.join(name), dir.path().join(name)).unwrap();
    }
    let main_tf = std::fs::read_to_string(dir.path().join("main.tf")).unwrap();
    let naive = "  triggers_replace = var.warmspace_owner_name\n";
    assert!(main_tf.contains(naive), "the example's naive home changed");
    let fixed =
        main_tf.replace(naive, &format!("{naive}  lifecycle {{\n    ignore_changes = [triggers_replace]\n  }}\n"));
    std::fs::write(dir.path().join("main.tf"), fixed).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terraform_examples_drift_check_is_shown_by_prebuilds_status_and_templates_push() {
    let db = TestDatabase::new().await;
    let (example, server) = Example::start_with(db.url(), "tf", "terraform").await;
    eventually(std::time::Duration::from_secs(120), "the example's drift check", || async {
        let status = run(example.cli().args(["prebuilds", "status"]));
        String::from_utf8_lossy(&status.stdout).contains("replaces terraform_data.home")
    })
    .await;
    let status = String::from_utf8_lossy(&run(example.cli().args(["prebuilds", "status"])).stdout).into_owned();
    assert!(
        status.contains("tf/default: claims will replace `terraform_data.home` — it depends on the owner"),
        "{status}"
    );

    let fixed = fixed_terraform_example();
    let dir = fixed.path().to_str().unwrap();
    let pushed = run(example.cli().args(["templates", "push", "fixed", "-d", dir, "--wait-drift-check", "2m"]));
    let pushed = String::from_utf8_lossy(&pushed.stdout);
    assert!(
        pushed.contains("Drift check of preset default: a claim replaces nothing its pool keeps warm."),
        "{pushed}"
    );
    assert!(!pushed.contains("warning:"), "the example's parameters and variables match: {pushed}");

    // The import's warnings are printed by the push.
    let mismatched = fixed_terraform_example();
    let hcl = mismatched.path().join("warmspace.hcl");
    let manifest = std::fs::read_to_string(&hcl).unwrap();
    std::fs::write(&hcl, format!("{manifest}\nparameter \"unused\" {{\n  type = \"string\"\n  default = \"x\"\n}}\n"))
        .unwrap();
    let dir = mismatched.path().to_str().unwrap();
    let pushed = run(example.cli().args(["templates", "push", "mismatched", "-d", dir]));
    let pushed = String::from_utf8_lossy(&pushed.stdout);
    assert!(pushed.contains("warning: parameter \"unused\" has no matching `variable \"unused\"`"), "{pushed}");
    server.terminate();
}
