//! The `terraform` backend: runs the Terraform CLI on the template's `.tf`
//! files — `init`, `plan -out` (`-destroy` for a delete), `apply` of that
//! plan — in the build's own directory, with the build described in
//! `TF_VAR_warmspace_*` variables. The state file travels with the build:
//! the previous build's state is written into the directory first, and the
//! state Terraform leaves is reported back to the server, so nothing stays on
//! the daemon's disk and any daemon can run the next build.

use std::ffi::OsString;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use serde::Deserialize;
use tokio::process::Command;
use warmspace_agent::output::{drain, forward_lines};
use warmspace_sdk::{BuildJob, BuildOutcome, BuildResult, BuildTiming, LogLevel, LogSource, Resource};
use warmspace_template::Transition;

use super::BuildContext;
use super::exec::{Ending, Group, supervise};
use ui::Ui;

mod ui;

/// Where Terraform's local backend keeps the state, in the working directory.
const STATE_FILE: &str = "terraform.tfstate";

/// The plan `plan` writes and `apply` carries out.
const PLAN_FILE: &str = "warmspace.tfplan";

/// At most this much of Terraform's error output goes into a failure's
/// message (all of it is in the log).
const MAX_ERROR_MESSAGE: usize = 4096;

pub async fn run(mut ctx: BuildContext<'_>) -> BuildOutcome {
    let job = ctx.job;
    let unchanged =
        |result| BuildOutcome { result, state: job.state.clone(), resources: Vec::new(), timings: Vec::new() };
    if *ctx.cancel.borrow() {
        return unchanged(BuildResult::Canceled);
    }
    let dir = match std::path::absolute(ctx.files) {
        Ok(dir) => dir,
        Err(err) => return unchanged(failed(&ctx, "init", format!("cannot find the template's files: {err}"))),
    };
    if let Err(err) = put_state(&dir, job.state.as_deref()) {
        return unchanged(failed(&ctx, "init", format!("cannot write the previous state into {STATE_FILE}: {err}")));
    }

    let destroy = job.transition == Transition::Delete;
    let mut result = BuildResult::Succeeded;
    let mut replaced = Vec::new();
    let mut timings = Vec::new();
    for (stage, args) in steps(destroy) {
        if let Err(ended) = step(&mut ctx, &dir, stage, &args, &mut timings).await {
            result = ended;
            break;
        }
        // What a claim replaces is only known from its plan: after the
        // apply, a replaced resource looks like any other.
        if stage == "plan" && job.is_claim {
            match replacements(&ctx, &dir).await {
                Ok(addresses) => replaced = addresses,
                Err(message) => {
                    result = failed(&ctx, "plan", message);
                    break;
                }
            }
        }
    }

    // Whatever ran — a failed or canceled apply included — the state file
    // now describes the workspace; before `apply` it is the previous state.
    let state = match read_state(&dir) {
        Ok(state) => state,
        Err(err) => {
            let message = format!("cannot read {STATE_FILE} after the build: {err}");
            return BuildOutcome { timings, ..unchanged(failed(&ctx, "apply", message)) };
        }
    };
    if result != BuildResult::Succeeded {
        return BuildOutcome { result, state, resources: Vec::new(), timings };
    }
    // A destroyed workspace keeps nothing: its state lists no resources.
    if destroy {
        return BuildOutcome { result, state: None, resources: Vec::new(), timings };
    }
    match resources(&ctx, &dir).await {
        Ok(mut resources) => {
            for resource in resources.iter_mut() {
                resource.replaced = replaced.contains(&resource.address);
            }
            BuildOutcome { result, state, resources, timings }
        }
        Err(message) => BuildOutcome { result: failed(&ctx, "apply", message), state, resources: Vec::new(), timings },
    }
}

/// The drift check: the plan of the claim the job describes (a claim build
/// of the prebuild, from its state), never applied; the addresses of the
/// resources it would replace. `Err` says why there is no plan.
pub async fn plan_claim(mut ctx: BuildContext<'_>) -> Result<Vec<String>, String> {
    let job = ctx.job;
    let dir = std::path::absolute(ctx.files).map_err(|err| format!("cannot find the template's files: {err}"))?;
    put_state(&dir, job.state.as_deref())
        .map_err(|err| format!("cannot write the prebuild's state into {STATE_FILE}: {err}"))?;
    // Timed like a build's stages, but a check keeps no timings.
    let mut timings = Vec::new();
    for (stage, args) in steps(false).into_iter().filter(|(stage, _)| *stage != "apply") {
        match step(&mut ctx, &dir, stage, &args, &mut timings).await {
            Ok(()) => {}
            Err(BuildResult::Failed(message) | BuildResult::Interrupted(message)) => return Err(message),
            Err(_) => return Err("the drift check was canceled".into()),
        }
    }
    let replaced = replacements(&ctx, &dir).await?;
    let finding = match replaced.as_slice() {
        [] => "a claim would replace nothing".to_owned(),
        addresses => format!("a claim would replace {}", addresses.join(", ")),
    };
    ctx.log.info("plan", finding);
    Ok(replaced)
}

/// The stages of a build and the Terraform command each runs: `init`,
/// `plan -out` (with `-destroy` to destroy everything), `apply` of that plan.
/// `plan` and `apply` speak Terraform's machine-readable UI (`-json`, read
/// by [`Ui`]); `init` prints plain lines, which pass through as they are
/// (its `-json` is too recent to require of every installed Terraform).
fn steps(destroy: bool) -> [(&'static str, Vec<&'static str>); 3] {
    let mut plan = vec!["plan", "-input=false", "-no-color", "-json", "-out", PLAN_FILE];
    if destroy {
        plan.push("-destroy");
    }
    [
        ("init", vec!["init", "-input=false", "-no-color"]),
        ("plan", plan),
        ("apply", vec!["apply", "-input=false", "-no-color", "-json", PLAN_FILE]),
    ]
}

fn failed(ctx: &BuildContext<'_>, stage: &str, message: String) -> BuildResult {
    ctx.log.error(stage, message.clone());
    BuildResult::Failed(message)
}

/// Writes the previous build's state where Terraform looks for it. With no
/// previous state any state file that came with the template's files is
/// removed: a workspace's state comes from its builds only.
fn put_state(dir: &Path, state: Option<&[u8]>) -> io::Result<()> {
    let path = dir.join(STATE_FILE);
    match state {
        Some(bytes) => std::fs::write(path, bytes),
        None => match std::fs::remove_file(path) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        },
    }
}

fn read_state(dir: &Path) -> io::Result<Option<Vec<u8>>> {
    match std::fs::read(dir.join(STATE_FILE)) {
        Ok(bytes) if bytes.is_empty() => Ok(None),
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// A Terraform command with the build's variables, in the build's directory,
/// in a process group of its own so that a cancel reaches its providers and
/// provisioners too.
fn terraform(ctx: &BuildContext<'_>, dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(ctx.terraform);
    command
        .args(args)
        .current_dir(dir)
        .envs(variables(ctx.job))
        // For `local-exec` provisioners that start `warmspace agent`.
        .env("WARMSPACE_BINARY", ctx.binary)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(cache) = ctx.terraform_plugin_cache {
        command.env("TF_PLUGIN_CACHE_DIR", cache);
    }
    command
}

/// Runs `terraform <args>` as the build's `stage`, its output read as
/// Terraform's UI and streamed into the log, and adds the stage's timing and
/// its resources' to `timings`; `Err` with how the build ends when it did
/// not succeed.
async fn step(
    ctx: &mut BuildContext<'_>,
    dir: &Path,
    stage: &str,
    args: &[&str],
    timings: &mut Vec<BuildTiming>,
) -> Result<(), BuildResult> {
    let what = format!("terraform {stage}");
    ctx.log.info(stage, format!("Running {what}"));
    let started_at = chrono::Utc::now();
    let mut child = terraform(ctx, dir, args).spawn().map_err(|err| {
        let binary = ctx.terraform.display();
        let message = if err.kind() == io::ErrorKind::NotFound {
            format!("cannot run {what}: the Terraform CLI `{binary}` is not on this provisioner's PATH")
        } else {
            format!("cannot run {what} with `{binary}`: {err}")
        };
        failed(ctx, stage, message)
    })?;
    // The command leads its own process group, so its pid is the group's id.
    let id = Pid::from_raw(child.id().expect("a child that has not been waited for has a pid") as i32);
    // Terraform writes its diagnostics (errors and warnings) to stderr; they
    // are kept to say why a step failed.
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let ui = Arc::new(Mutex::new(Ui::new(stage)));
    let (out, err, kept, read) = (ctx.log.clone(), ctx.log.clone(), errors.clone(), ui.clone());
    let (out_stage, err_stage) = (stage.to_owned(), stage.to_owned());
    let readers = [
        forward_lines(child.stdout.take(), move |line| {
            for (level, text) in read.lock().expect("only this reader reads the UI").read(&line) {
                out.line(LogSource::Provisioner, level, &out_stage, text)
            }
        }),
        forward_lines(child.stderr.take(), move |line| {
            kept.lock().expect("the error lines are only pushed to").push(line.to_string());
            err.line(LogSource::Provisioner, LogLevel::Warn, &err_stage, line)
        }),
    ];
    // Terraform stops cleanly on an interrupt (as on Ctrl-C), saving what
    // it has applied; the grace bounds how long that may take.
    let group = Group { id, first: Signal::SIGINT, grace: ctx.stop_grace };
    let ending = supervise(&mut child, &group, None, &mut ctx.cancel, ctx.log, stage, &what).await;
    drain(readers).await;
    let ui = std::mem::take(&mut *ui.lock().expect("the readers are done"));
    timings.push(BuildTiming {
        stage: stage.to_owned(),
        action: what.clone(),
        resource: None,
        started_at,
        ended_at: chrono::Utc::now().max(started_at),
    });
    timings.extend(ui.timings);
    // Terraform's UI carries its diagnostics; a command that says nothing
    // in it (init, or a failure before the UI starts) says it on stderr.
    let errors = match ui.errors.is_empty() {
        true => std::mem::take(&mut *errors.lock().expect("the readers are done")),
        false => ui.errors.join("\n").lines().map(str::to_owned).collect(),
    };
    match ending {
        Ending::Exited(status) if status.success() => Ok(()),
        Ending::Exited(status) => {
            let how = match (status.code(), status.signal()) {
                (Some(code), _) => format!("exited with status {code}"),
                (_, Some(signal)) => format!("was killed by signal {signal}"),
                _ => format!("failed ({status})"),
            };
            Err(failed(ctx, stage, failure_message(&what, &how, &errors)))
        }
        Ending::Canceled => Err(BuildResult::Canceled),
        // No timeout was given, so this cannot happen; it would be a failure.
        Ending::TimedOut => Err(failed(ctx, stage, format!("{what} timed out"))),
        Ending::Lost(err) => Err(failed(ctx, stage, format!("lost track of {what}: {err}"))),
    }
}

/// `terraform apply failed: Error: …` — Terraform's own error text, from its
/// first `Error:` line on (what comes before is warnings), or how it exited
/// when it said nothing.
fn failure_message(what: &str, how: &str, stderr: &[String]) -> String {
    let from = stderr.iter().position(|line| line.trim_start().starts_with("Error:")).unwrap_or(0);
    let text: Vec<&str> =
        stderr[from..].iter().map(|line| line.trim_end()).filter(|line| !line.trim().is_empty()).collect();
    if text.is_empty() {
        return format!("{what} {how}");
    }
    let mut message = format!("{what} failed: {}", text.join("\n"));
    if message.len() > MAX_ERROR_MESSAGE {
        let mut cut = MAX_ERROR_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str(" … (the rest is in the log)");
    }
    message
}

/// The `TF_VAR_*` variables describing the build (docs/terraform.md), and
/// the settings that keep Terraform from prompting or phoning home. They are
/// added to the daemon's own environment, which Terraform inherits.
fn variables(job: &BuildJob) -> Vec<(String, OsString)> {
    let flag = |value: bool| OsString::from(if value { "true" } else { "false" });
    let var = |name: &str| format!("TF_VAR_warmspace_{name}");
    let start_count = if job.transition == Transition::Start { "1" } else { "0" };
    let mut env = vec![
        ("TF_IN_AUTOMATION".to_owned(), OsString::from("1")),
        ("TF_INPUT".to_owned(), OsString::from("0")),
        ("CHECKPOINT_DISABLE".to_owned(), OsString::from("1")),
        (var("workspace_name"), job.workspace_name.clone().into()),
        (var("workspace_id"), job.workspace_id.to_string().into()),
        (var("owner_id"), job.owner_id.to_string().into()),
        (var("owner_name"), job.owner_name.clone().into()),
        (var("owner_email"), job.owner_email.clone().into()),
        (var("transition"), job.transition.as_str().into()),
        (var("start_count"), start_count.into()),
        (var("is_prebuild"), flag(job.is_prebuild)),
        (var("is_claim"), flag(job.is_claim)),
        (var("access_url"), job.server_url.clone().into()),
        (var("build_number"), job.build_number.to_string().into()),
    ];
    // Agent names may hold hyphens, which a Terraform variable name could
    // too, but `var.warmspace_agent_token_dev_box` is what authors expect.
    for (agent, token) in &job.agent_tokens {
        env.push((var(&format!("agent_token_{}", agent.replace('-', "_"))), token.into()));
    }
    for (name, value) in &job.parameters {
        env.push((format!("TF_VAR_{name}"), value.into()));
    }
    env
}

/// What `terraform show -json [PLAN_FILE]` reports, read as `T`.
async fn show<T: serde::de::DeserializeOwned>(ctx: &BuildContext<'_>, dir: &Path, plan: bool) -> Result<T, String> {
    let mut args = vec!["show", "-json", "-no-color"];
    if plan {
        args.push(PLAN_FILE);
    }
    let output =
        terraform(ctx, dir, &args).output().await.map_err(|err| format!("cannot run terraform show: {err}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!("terraform show failed: {}", stderr.trim()));
    }
    let what = if plan { "the plan" } else { "the state" };
    serde_json::from_slice(&output.stdout).map_err(|err| format!("cannot read {what} terraform show reported: {err}"))
}

/// The addresses of the managed resources the plan replaces (destroys and
/// recreates, in either order), from its `resource_changes`.
async fn replacements(ctx: &BuildContext<'_>, dir: &Path) -> Result<Vec<String>, String> {
    let plan: Plan = show(ctx, dir, true).await?;
    Ok(replaced_addresses(plan))
}

fn replaced_addresses(plan: Plan) -> Vec<String> {
    plan.resource_changes
        .into_iter()
        .filter(|change| change.mode == Mode::Managed && is_replacement(&change.change.actions))
        .map(|change| change.address)
        .collect()
}

/// Terraform plans a replacement as delete-then-create (the default) or
/// create-then-delete (`create_before_destroy`).
fn is_replacement(actions: &[Action]) -> bool {
    matches!(actions, [Action::Delete, Action::Create] | [Action::Create, Action::Delete])
}

/// The managed resources in the state, from `terraform show -json`.
async fn resources(ctx: &BuildContext<'_>, dir: &Path) -> Result<Vec<Resource>, String> {
    let shown: Shown = show(ctx, dir, false).await?;
    let mut resources = Vec::new();
    if let Some(module) = shown.values.map(|values| values.root_module) {
        collect(module, &mut resources);
    }
    Ok(resources)
}

fn collect(module: Module, into: &mut Vec<Resource>) {
    for resource in module.resources.into_iter().filter(|r| r.mode == Mode::Managed) {
        into.push(Resource { address: resource.address, kind: resource.kind, replaced: false });
    }
    for child in module.child_modules {
        collect(child, into);
    }
}

/// The part of `terraform show -json`'s output read here. `values` is
/// missing when the state is empty.
#[derive(Deserialize)]
struct Shown {
    values: Option<Values>,
}

#[derive(Deserialize)]
struct Values {
    root_module: Module,
}

#[derive(Deserialize)]
struct Module {
    #[serde(default)]
    resources: Vec<ShownResource>,
    #[serde(default)]
    child_modules: Vec<Module>,
}

#[derive(Deserialize)]
struct ShownResource {
    address: String,
    mode: Mode,
    #[serde(rename = "type")]
    kind: String,
}

/// The part of `terraform show -json PLAN_FILE`'s output read here.
#[derive(Deserialize)]
struct Plan {
    #[serde(default)]
    resource_changes: Vec<ResourceChange>,
}

#[derive(Deserialize)]
struct ResourceChange {
    address: String,
    mode: Mode,
    change: Change,
}

#[derive(Deserialize)]
struct Change {
    actions: Vec<Action>,
}

/// One of a planned change's actions (Terraform's `actions` list).
#[derive(Deserialize, PartialEq, Eq, Debug)]
#[serde(rename_all = "kebab-case")]
enum Action {
    NoOp,
    Create,
    Read,
    Update,
    Delete,
    Forget,
}

/// Managed resources are what the workspace is made of; data sources are only read.
#[derive(Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Managed,
    Data,
}

#[cfg(test)]
mod tests {
    //! These run the real Terraform CLI (from `PATH`) on templates made of
    //! built-in resources only (`terraform_data` with `local-exec`), which
    //! need no provider download.

    use std::collections::BTreeMap;

    use tempfile::TempDir;
    use tokio::sync::watch;
    use warmspace_sdk::JobLogLine;
    use warmspace_template::BackendConfig;

    use std::time::Duration;

    use super::*;
    use crate::backend::process_checks::wait_gone;
    use crate::logs::LogSink;

    /// A workspace whose `terraform_data.workspace` exists while it is
    /// started (`start_count`) and writes `started` into the directory the
    /// `out_dir` parameter names, removing it when destroyed; and a
    /// `terraform_data.home` that lives as long as the workspace.
    const WORKSPACE_TF: &str = r#"
variable "warmspace_start_count" { type = number }
variable "warmspace_workspace_name" { type = string }
variable "warmspace_owner_email" { type = string }
variable "out_dir" { type = string }

resource "terraform_data" "home" {
  input = var.warmspace_workspace_name
}

resource "terraform_data" "workspace" {
  count = var.warmspace_start_count
  input = {
    file = "${var.out_dir}/started"
    text = "${var.warmspace_workspace_name} ${var.warmspace_owner_email}"
  }
  provisioner "local-exec" {
    command = "printf '%s' '${self.input.text}' > '${self.input.file}'"
  }
  provisioner "local-exec" {
    when    = destroy
    command = "rm '${self.input.file}'"
  }
}
"#;

    fn job(transition: Transition, out_dir: &Path) -> BuildJob {
        BuildJob {
            parameters: BTreeMap::from([("out_dir".into(), out_dir.to_str().unwrap().into())]),
            agent_tokens: BTreeMap::from([("dev-box".into(), "token-dev-box".into())]),
            ..crate::backend::test_job(transition, BackendConfig::Terraform)
        }
    }

    /// A fresh directory holding only `main_tf`, as a daemon gives a build:
    /// nothing of an earlier build is on disk.
    fn files(main_tf: &str) -> TempDir {
        let files = TempDir::new().unwrap();
        std::fs::write(files.path().join("main.tf"), main_tf).unwrap();
        files
    }

    fn context<'a>(
        job: &'a BuildJob,
        files: &'a TempDir,
        log: &'a LogSink,
        cancel: watch::Receiver<bool>,
        terraform: &'a Path,
    ) -> BuildContext<'a> {
        BuildContext {
            job,
            files: files.path(),
            log,
            cancel,
            binary: Path::new("/usr/local/bin/warmspace"),
            stop_grace: Duration::from_millis(500),
            terraform,
            terraform_plugin_cache: None,
        }
    }

    /// Runs a build in fresh [`files`] and returns it with every log line.
    async fn build(main_tf: &str, job: &BuildJob, terraform: &Path) -> (BuildOutcome, Vec<JobLogLine>) {
        let files = files(main_tf);
        let (log, mut rx) = LogSink::channel();
        let (_cancel_tx, cancel) = watch::channel(false);
        let outcome = run(context(job, &files, &log, cancel, terraform)).await;
        drop(log);
        let mut lines = Vec::new();
        while let Some(line) = rx.recv().await {
            lines.push(line);
        }
        (outcome, lines)
    }

    fn terraform() -> &'static Path {
        Path::new("terraform")
    }

    fn resource(address: &str) -> Resource {
        Resource { address: address.into(), kind: "terraform_data".into(), replaced: false }
    }

    /// The addresses of the resources a state file holds.
    fn state_resources(state: &[u8]) -> Vec<String> {
        let state: serde_json::Value = serde_json::from_slice(state).unwrap();
        let mut names: Vec<String> = state["resources"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| {
                let name = format!("{}.{}", r["type"].as_str().unwrap(), r["name"].as_str().unwrap());
                r["instances"].as_array().unwrap().iter().map(move |_| name.clone())
            })
            .collect();
        names.sort();
        names
    }

    /// The resource actions an outcome's apply timed, in order of address.
    fn applied(outcome: &BuildOutcome) -> Vec<(&str, &str)> {
        let mut actions: Vec<(&str, &str)> = outcome
            .timings
            .iter()
            .filter(|t| t.stage == "apply")
            .filter_map(|t| Some((t.resource.as_deref()?, t.action.as_str())))
            .collect();
        actions.sort();
        actions
    }

    fn failure(outcome: &BuildOutcome) -> &str {
        match &outcome.result {
            BuildResult::Failed(message) => message,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn start_creates_stop_destroys_and_delete_leaves_nothing_with_the_state_carried_by_the_build() {
        let out = TempDir::new().unwrap();
        let started = out.path().join("started");

        let (start, lines) = build(WORKSPACE_TF, &job(Transition::Start, out.path()), terraform()).await;
        assert_eq!(start.result, BuildResult::Succeeded, "{lines:#?}");
        assert_eq!(std::fs::read_to_string(&started).unwrap(), "dev alice@example.com");
        assert_eq!(start.resources, vec![resource("terraform_data.home"), resource("terraform_data.workspace[0]")]);
        let state = start.state.clone().expect("a start keeps Terraform's state");
        assert_eq!(state_resources(&state), ["terraform_data.home", "terraform_data.workspace"]);
        // Terraform's own lines, by stage, in order.
        let stages: Vec<&str> = lines
            .iter()
            .filter(|l| l.source == LogSource::Provisioner)
            .map(|l| l.stage.as_str())
            .fold(Vec::new(), |mut stages, stage| {
                if stages.last() != Some(&stage) {
                    stages.push(stage);
                }
                stages
            });
        assert_eq!(stages, ["init", "plan", "apply"]);
        assert!(
            lines
                .iter()
                .any(|l| l.stage == "apply" && l.output.contains("terraform_data.workspace[0]: Creation complete")),
            "{lines:#?}"
        );

        // Timed: each stage, and each resource the apply made.
        let stages: Vec<&str> =
            start.timings.iter().filter(|t| t.resource.is_none()).map(|t| t.stage.as_str()).collect();
        assert_eq!(stages, ["init", "plan", "apply"]);
        assert_eq!(applied(&start), [("terraform_data.home", "create"), ("terraform_data.workspace[0]", "create")]);
        assert!(start.timings.iter().all(|t| t.ended_at >= t.started_at));

        // The stop runs elsewhere, with only the state it is given: had it
        // not seen the workspace in it, nothing would remove `started`.
        let mut stop = job(Transition::Stop, out.path());
        stop.state = start.state;
        let (stopped, lines) = build(WORKSPACE_TF, &stop, terraform()).await;
        assert_eq!(stopped.result, BuildResult::Succeeded, "{lines:#?}");
        assert!(!started.exists(), "the stop left the workspace running");
        assert_eq!(applied(&stopped), [("terraform_data.workspace[0]", "delete")]);
        assert_eq!(stopped.resources, vec![resource("terraform_data.home")]);
        assert_eq!(state_resources(stopped.state.as_deref().unwrap()), ["terraform_data.home"]);

        let mut delete = job(Transition::Delete, out.path());
        delete.state = stopped.state;
        let (deleted, lines) = build(WORKSPACE_TF, &delete, terraform()).await;
        assert_eq!(deleted.result, BuildResult::Succeeded, "{lines:#?}");
        assert!(lines.iter().any(|l| l.output.contains("terraform_data.home: Destruction complete")), "{lines:#?}");
        assert_eq!((deleted.result, deleted.state, deleted.resources), (BuildResult::Succeeded, None, Vec::new()));
    }

    #[tokio::test]
    async fn a_claim_reports_the_resources_its_plan_replaces_and_only_those() {
        // `home` is made for its owner (replaced when the owner changes);
        // `config` follows the owner in place; `cache` ignores them.
        let main_tf = r#"
variable "warmspace_owner_name" { type = string }

resource "terraform_data" "home" {
  triggers_replace = var.warmspace_owner_name
}

resource "terraform_data" "config" {
  input = var.warmspace_owner_name
}

resource "terraform_data" "cache" {
  input = "shared"
}
"#;
        let out = TempDir::new().unwrap();
        let mut prebuild = job(Transition::Start, out.path());
        prebuild.owner_name = "prebuilds".into();
        prebuild.is_prebuild = true;
        let (built, lines) = build(main_tf, &prebuild, terraform()).await;
        assert_eq!(built.result, BuildResult::Succeeded, "{lines:#?}");
        assert!(built.resources.iter().all(|r| !r.replaced), "{:?}", built.resources);

        let mut claim = job(Transition::Start, out.path());
        claim.is_claim = true;
        claim.state = built.state;
        let (claimed, lines) = build(main_tf, &claim, terraform()).await;
        assert_eq!(claimed.result, BuildResult::Succeeded, "{lines:#?}");
        let replaced = Resource { replaced: true, ..resource("terraform_data.home") };
        assert_eq!(
            claimed.resources,
            [resource("terraform_data.cache"), resource("terraform_data.config"), replaced.clone()]
        );

        // The same change outside a claim is not reported as a claim's replacement.
        let mut rebuild = job(Transition::Start, out.path());
        rebuild.owner_name = "bob".into();
        rebuild.state = claimed.state;
        let (rebuilt, lines) = build(main_tf, &rebuild, terraform()).await;
        assert_eq!(rebuilt.result, BuildResult::Succeeded, "{lines:#?}");
        assert!(rebuilt.resources.iter().all(|r| !r.replaced), "{:?}", rebuilt.resources);
    }

    #[tokio::test]
    async fn a_configured_plugin_cache_is_terraforms_plugin_cache_dir() {
        let cache = TempDir::new().unwrap();
        let files = files(
            r#"
resource "terraform_data" "cache" {
  provisioner "local-exec" {
    command = "echo \"cache=$TF_PLUGIN_CACHE_DIR\""
  }
}
"#,
        );
        let out = TempDir::new().unwrap();
        let job = job(Transition::Start, out.path());
        let (log, mut rx) = LogSink::channel();
        let (_cancel_tx, cancel) = watch::channel(false);
        let ctx = BuildContext {
            terraform_plugin_cache: Some(cache.path()),
            ..context(&job, &files, &log, cancel, terraform())
        };
        let outcome = run(ctx).await;
        drop(log);
        let mut lines = Vec::new();
        while let Some(line) = rx.recv().await {
            lines.push(line.output);
        }
        assert_eq!(outcome.result, BuildResult::Succeeded, "{lines:#?}");
        let expected = format!("terraform_data.cache: (local-exec): cache={}", cache.path().display());
        assert!(lines.contains(&expected), "{lines:#?}");
    }

    #[test]
    fn replacements_are_delete_then_create_either_way_round() {
        let plan: Plan = serde_json::from_str(
            r#"{"resource_changes": [
                {"address": "a.replaced", "mode": "managed", "change": {"actions": ["delete", "create"]}},
                {"address": "a.before", "mode": "managed", "change": {"actions": ["create", "delete"]}},
                {"address": "a.updated", "mode": "managed", "change": {"actions": ["update"]}},
                {"address": "a.created", "mode": "managed", "change": {"actions": ["create"]}},
                {"address": "a.deleted", "mode": "managed", "change": {"actions": ["delete"]}},
                {"address": "a.kept", "mode": "managed", "change": {"actions": ["no-op"]}},
                {"address": "data.a.read", "mode": "data", "change": {"actions": ["read"]}}
            ]}"#,
        )
        .unwrap();
        assert_eq!(replaced_addresses(plan), ["a.replaced", "a.before"]);
    }

    #[tokio::test]
    async fn a_failing_local_exec_fails_the_build_with_terraforms_error() {
        let main_tf = r#"
resource "terraform_data" "disk" {
  provisioner "local-exec" {
    command = "echo 'no space left on the volume' >&2; exit 3"
  }
}
"#;
        let out = TempDir::new().unwrap();
        let (outcome, lines) = build(main_tf, &job(Transition::Start, out.path()), terraform()).await;
        let message = failure(&outcome);
        assert!(message.starts_with("terraform apply failed: Error: local-exec provisioner error"), "{message}");
        assert!(message.contains("no space left on the volume"), "{message}");
        assert!(lines.iter().any(|l| l.level == LogLevel::Error && l.stage == "apply" && l.output == message));
        assert!(
            lines
                .iter()
                .any(|l| l.source == LogSource::Provisioner && l.output == "Error: local-exec provisioner error")
        );
        // Terraform recorded the half-made resource (tainted): the next build must know of it.
        assert_eq!(state_resources(outcome.state.as_deref().unwrap()), ["terraform_data.disk"]);
    }

    #[tokio::test]
    async fn cancel_interrupts_terraform_and_kills_what_it_started() {
        let out = TempDir::new().unwrap();
        // A background child of a non-interactive shell ignores SIGINT: only
        // the SIGKILL after the grace ends it.
        let main_tf = format!(
            r#"
resource "terraform_data" "slow" {{
  provisioner "local-exec" {{
    command = "sleep 600 & echo $! > '{}/child.pid'; echo ready; wait"
  }}
}}
"#,
            out.path().display()
        );
        let files = files(&main_tf);
        let job = job(Transition::Start, out.path());
        let (log, mut rx) = LogSink::channel();
        let (cancel_tx, cancel) = watch::channel(false);
        let build = run(context(&job, &files, &log, cancel, terraform()));
        let cancel_when_ready = async {
            while let Some(line) = rx.recv().await {
                if line.output.ends_with("(local-exec): ready") {
                    cancel_tx.send(true).unwrap();
                    return;
                }
            }
        };
        let (outcome, ()) = tokio::join!(build, cancel_when_ready);

        assert_eq!(outcome.result, BuildResult::Canceled);
        let child: i32 = std::fs::read_to_string(out.path().join("child.pid")).unwrap().trim().parse().unwrap();
        let child = Pid::from_raw(child);
        assert!(wait_gone(child).await, "the local-exec's child {child} survived the cancel");
    }

    #[tokio::test]
    async fn invalid_terraform_fails_at_plan_and_keeps_the_previous_state() {
        let out = TempDir::new().unwrap();
        let mut start = job(Transition::Start, out.path());
        start.state = Some(b"{\"version\": 4}".to_vec());
        let (outcome, _) =
            build("resource \"terraform_data\" \"x\" { input = var.undeclared }", &start, terraform()).await;
        let message = failure(&outcome);
        assert!(
            message.starts_with("terraform plan failed: Error: Reference to undeclared input variable"),
            "{message}"
        );
        assert_eq!(outcome.state, start.state);
    }

    #[tokio::test]
    async fn a_missing_terraform_cli_fails_the_build_naming_it() {
        let out = TempDir::new().unwrap();
        let mut start = job(Transition::Start, out.path());
        start.state = Some(b"kept".to_vec());
        let (outcome, _) = build(WORKSPACE_TF, &start, Path::new("/nonexistent/terraform")).await;
        assert_eq!(
            failure(&outcome),
            "cannot run terraform init: the Terraform CLI `/nonexistent/terraform` is not on this provisioner's PATH"
        );
        assert_eq!(outcome.state, Some(b"kept".to_vec()));
    }

    #[test]
    fn the_build_is_described_in_tf_var_variables() {
        let mut stop = job(Transition::Stop, Path::new("/out"));
        stop.is_prebuild = true;
        let env: BTreeMap<String, String> =
            variables(&stop).into_iter().map(|(k, v)| (k, v.into_string().unwrap())).collect();
        let expected = [
            ("TF_VAR_warmspace_workspace_name", "dev".to_owned()),
            ("TF_VAR_warmspace_workspace_id", stop.workspace_id.to_string()),
            ("TF_VAR_warmspace_owner_id", stop.owner_id.to_string()),
            ("TF_VAR_warmspace_owner_name", "alice".to_owned()),
            ("TF_VAR_warmspace_owner_email", "alice@example.com".to_owned()),
            ("TF_VAR_warmspace_transition", "stop".to_owned()),
            ("TF_VAR_warmspace_start_count", "0".to_owned()),
            ("TF_VAR_warmspace_is_prebuild", "true".to_owned()),
            ("TF_VAR_warmspace_is_claim", "false".to_owned()),
            ("TF_VAR_warmspace_access_url", "http://warmspace.test:3000".to_owned()),
            ("TF_VAR_warmspace_agent_token_dev_box", "token-dev-box".to_owned()),
            ("TF_VAR_out_dir", "/out".to_owned()),
        ];
        for (name, value) in expected {
            assert_eq!(env.get(name), Some(&value), "{name}");
        }
        let start: BTreeMap<String, OsString> =
            variables(&job(Transition::Start, Path::new("/out"))).into_iter().collect();
        assert_eq!(start["TF_VAR_warmspace_start_count"], "1");
    }
}
