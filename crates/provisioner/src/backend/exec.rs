//! The `exec` backend: runs the template's script for the transition, with
//! the build described in `WARMSPACE_*` environment variables, its output
//! streamed into the job log, and the state and result exchanged through
//! files in a temp dir of the build's own.

use std::ffi::OsString;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::Deserialize;
use tempfile::TempDir;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use warmspace_sdk::{BuildJob, BuildOutcome, BuildResult, LogLevel, LogSource, Resource};
use warmspace_template::{ExecConfig, Transition};

use super::{BuildContext, canceled};
use crate::logs::LogSink;
use warmspace_agent::output::{drain, forward_lines};

pub async fn run(config: &ExecConfig, mut ctx: BuildContext<'_>) -> BuildOutcome {
    let job = ctx.job;
    let stage = job.transition.as_str();
    let unchanged =
        |result| BuildOutcome { result, state: job.state.clone(), resources: Vec::new(), timings: Vec::new() };

    let Some(script) = script_for(config, job.transition) else {
        ctx.log.info(stage, format!("The template has no {stage} script; nothing to do"));
        return unchanged(BuildResult::Succeeded);
    };
    if *ctx.cancel.borrow() {
        return unchanged(BuildResult::Canceled);
    }
    match run_script(script, config.timeout, &mut ctx).await {
        Ok(outcome) => outcome,
        // The script never ran, so the previous state still describes the workspace.
        Err(message) => {
            ctx.log.error(stage, message.clone());
            unchanged(BuildResult::Failed(message))
        }
    }
}

fn script_for(config: &ExecConfig, transition: Transition) -> Option<&str> {
    match transition {
        Transition::Start => Some(&config.start),
        Transition::Stop => config.stop.as_deref(),
        Transition::Delete => config.delete.as_deref(),
    }
}

/// How a supervised process's run ended.
pub(super) enum Ending {
    Exited(ExitStatus),
    TimedOut,
    Canceled,
    /// Waiting for the script failed; it has been killed.
    Lost(io::Error),
}

/// Runs the script to its end. An `Err` means it could not be started; once
/// it has run, the outcome always carries the state it left.
async fn run_script(script: &str, timeout: Duration, ctx: &mut BuildContext<'_>) -> Result<BuildOutcome, String> {
    let job = ctx.job;
    let stage = job.transition.as_str();
    let scratch = Scratch::create(job.state.as_deref()).map_err(|e| format!("cannot prepare the state file: {e}"))?;
    let mut command =
        script_command(ctx.files, script).map_err(|e| format!("cannot run the {stage} script {script}: {e}"))?;
    command.envs(script_env(job, ctx.binary, &scratch));

    ctx.log.info(stage, format!("Running the {stage} script {script}"));
    let mut child = spawn(&mut command).await.map_err(|e| format!("cannot start the {stage} script {script}: {e}"))?;
    // The script leads its own process group (see `script_command`), so its pid is the group's id.
    let group = Pid::from_raw(child.id().expect("a child that has not been waited for has a pid") as i32);
    let (out, err) = (ctx.log.clone(), ctx.log.clone());
    let readers = [
        forward_lines(child.stdout.take(), move |line| out.line(LogSource::Provisioner, LogLevel::Info, stage, line)),
        forward_lines(child.stderr.take(), move |line| err.line(LogSource::Provisioner, LogLevel::Warn, stage, line)),
    ];

    let group = Group { id: group, first: Signal::SIGTERM, grace: ctx.stop_grace };
    let what = format!("{stage} script");
    let ending = supervise(&mut child, &group, Some(timeout), &mut ctx.cancel, ctx.log, stage, &what).await;
    drain(readers).await;
    Ok(conclude(ending, &scratch, timeout, job, ctx.log))
}

/// Starts `command`, trying again for a moment while the kernel says its
/// program is open for writing (`ETXTBSY`). Daemons that took their jobs
/// together unpack their templates and start their scripts at the same
/// moment: a script being written by one daemon's thread is held open in
/// the child another thread has just forked, until that child execs, and
/// executing it then fails although nothing is wrong with it.
async fn spawn(command: &mut Command) -> io::Result<Child> {
    let mut attempt = 1;
    loop {
        match command.spawn() {
            Err(err) if err.raw_os_error() == Some(nix::errno::Errno::ETXTBSY as i32) && attempt < SPAWN_ATTEMPTS => {
                tokio::time::sleep(Duration::from_millis(10) * attempt).await;
                attempt += 1;
            }
            spawned => return spawned,
        }
    }
}

/// How many times [`spawn`] tries a program that is busy being written
/// (waiting 10, 20, … 70 ms in between: 280 ms in all).
const SPAWN_ATTEMPTS: u32 = 8;

/// The command for the script: run directly when executable, else by
/// `/bin/sh`; in the template's directory, in a process group of its own so a
/// timeout or cancel can stop everything it started.
fn script_command(files: &Path, script: &str) -> io::Result<Command> {
    // Absolute, because a relative program path combined with `current_dir`
    // is resolved differently across platforms.
    let files = std::path::absolute(files)?;
    let path = files.join(script);
    let executable = std::fs::metadata(&path)?.permissions().mode() & 0o111 != 0;
    let mut command = if executable {
        Command::new(&path)
    } else {
        let mut sh = Command::new("/bin/sh");
        sh.arg(&path);
        sh
    };
    command.current_dir(&files).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    Ok(command)
}

/// The `WARMSPACE_*` variables describing the build. They are added to the
/// daemon's own environment, which the script inherits (PATH above all).
fn script_env(job: &BuildJob, binary: &Path, scratch: &Scratch) -> Vec<(String, OsString)> {
    let flag = |value: bool| OsString::from(if value { "true" } else { "false" });
    let mut env = vec![
        ("WARMSPACE_URL".to_owned(), job.server_url.clone().into()),
        ("WARMSPACE_TRANSITION".to_owned(), job.transition.as_str().into()),
        ("WARMSPACE_WORKSPACE_ID".to_owned(), job.workspace_id.to_string().into()),
        ("WARMSPACE_WORKSPACE_NAME".to_owned(), job.workspace_name.clone().into()),
        ("WARMSPACE_OWNER_ID".to_owned(), job.owner_id.to_string().into()),
        ("WARMSPACE_OWNER_NAME".to_owned(), job.owner_name.clone().into()),
        ("WARMSPACE_IS_PREBUILD".to_owned(), flag(job.is_prebuild)),
        ("WARMSPACE_IS_CLAIM".to_owned(), flag(job.is_claim)),
        ("WARMSPACE_STATE_FILE".to_owned(), scratch.state.clone().into()),
        ("WARMSPACE_RESULT_FILE".to_owned(), scratch.result.clone().into()),
        ("WARMSPACE_BINARY".to_owned(), binary.into()),
        ("WARMSPACE_BUILD_NUMBER".to_owned(), job.build_number.to_string().into()),
    ];
    for (agent, token) in &job.agent_tokens {
        env.push((format!("WARMSPACE_AGENT_TOKEN_{}", env_suffix(agent)), token.into()));
    }
    for (name, value) in &job.parameters {
        env.push((format!("WARMSPACE_PARAM_{}", env_suffix(name)), value.into()));
    }
    env
}

/// A name as part of a variable name: uppercased, anything but A-Z and 0-9
/// turned into `_` (`cpu-count` → `CPU_COUNT`). Agent names only have
/// letters, digits and hyphens, so for them this is "`-` → `_`".
fn env_suffix(name: &str) -> String {
    name.chars()
        .map(|c| c.to_ascii_uppercase())
        .map(|c| if c.is_ascii_uppercase() || c.is_ascii_digit() { c } else { '_' })
        .collect()
}

/// A process group a backend started, and how to stop it.
pub(super) struct Group {
    /// The group's id: the pid of the process that leads it.
    pub id: Pid,
    /// What asks the group to stop: SIGTERM for scripts, SIGINT for
    /// Terraform (its Ctrl-C, on which it stops cleanly and saves state).
    pub first: Signal,
    /// How long the group gets between `first` and SIGKILL.
    pub grace: Duration,
}

/// Waits for the process (`what`, e.g. "start script") to exit, unless its
/// time runs out or the build is canceled first: then its whole process
/// group is stopped. No `timeout` waits as long as it takes.
pub(super) async fn supervise(
    child: &mut Child,
    group: &Group,
    timeout: Option<Duration>,
    cancel: &mut watch::Receiver<bool>,
    log: &LogSink,
    stage: &str,
    what: &str,
) -> Ending {
    let out_of_time = async {
        match timeout {
            Some(timeout) => tokio::time::sleep(timeout).await,
            None => std::future::pending().await,
        }
    };
    let ending = tokio::select! {
        status = child.wait() => match status {
            // A normal exit leaves the group alone: the script may have
            // started processes meant to outlive it.
            Ok(status) => return Ending::Exited(status),
            Err(err) => Ending::Lost(err),
        },
        _ = out_of_time => {
            let after = humantime::format_duration(timeout.unwrap_or_default());
            log.error(stage, format!("The {what} is still running after {after}; stopping it"));
            Ending::TimedOut
        }
        _ = canceled(cancel) => {
            log.info(stage, format!("The build was canceled; stopping the {what}"));
            Ending::Canceled
        }
    };
    stop_group(child, group).await;
    ending
}

/// `group.first` (SIGTERM, SIGINT) to the whole group, then SIGKILL to
/// whatever is left once the process has exited or the grace is over. The
/// process's own lifetime is the grace its children get: a script that wants
/// them to shut down cleanly traps TERM and waits for them.
async fn stop_group(child: &mut Child, group: &Group) {
    let (id, grace) = (group.id, group.grace);
    // ESRCH means the group is already gone, which is the goal; anything else
    // (EPERM) cannot happen to a group we started, and SIGKILL follows anyway.
    if let Err(err) = killpg(id, group.first) {
        tracing::debug!(group = %id, error = %err, signal = %group.first, "cannot signal the process group");
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(Ok(_)) => {}
        // The final wait below reports the same failure, if it persists.
        Ok(Err(err)) => tracing::debug!(group = %id, error = %err, "cannot wait for the process after signaling it"),
        Err(_) => tracing::debug!(group = %id, ?grace, "the process outlived its stop signal; killing its group"),
    }
    // The process's children may outlive it even when it exited on the signal.
    if let Err(err) = killpg(id, Signal::SIGKILL) {
        tracing::debug!(group = %id, error = %err, "cannot send SIGKILL to the process group");
    }
    // Reaps the process so it leaves no zombie; the ending is already decided.
    if let Err(err) = child.wait().await {
        tracing::warn!(group = %id, error = %err, "cannot reap the stopped process");
    }
}

fn conclude(ending: Ending, scratch: &Scratch, timeout: Duration, job: &BuildJob, log: &LogSink) -> BuildOutcome {
    let stage = job.transition.as_str();
    let state = match scratch.read_state() {
        Ok(state) => state,
        Err(err) => {
            let message = format!("cannot read the state file after the {stage} script: {err}");
            log.error(stage, message.clone());
            return BuildOutcome {
                result: BuildResult::Failed(message),
                state: job.state.clone(),
                resources: Vec::new(),
                timings: Vec::new(),
            };
        }
    };
    let (resources, invalid_result) = match scratch.read_resources(stage) {
        Ok(resources) => (resources, None),
        Err(message) => {
            log.error(stage, message.clone());
            (Vec::new(), Some(message))
        }
    };
    let result = match ending {
        Ending::Exited(status) if status.success() => match invalid_result {
            Some(message) => BuildResult::Failed(message),
            None => BuildResult::Succeeded,
        },
        Ending::Exited(status) => failed(log, stage, describe_exit(stage, status)),
        Ending::TimedOut => {
            failed(log, stage, format!("{stage} script timed out after {}", humantime::format_duration(timeout)))
        }
        Ending::Canceled => BuildResult::Canceled,
        Ending::Lost(err) => failed(log, stage, format!("lost track of the {stage} script: {err}")),
    };
    BuildOutcome { result, state, resources, timings: Vec::new() }
}

fn failed(log: &LogSink, stage: &str, message: String) -> BuildResult {
    log.error(stage, message.clone());
    BuildResult::Failed(message)
}

fn describe_exit(stage: &str, status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("{stage} script exited with status {code}"),
        (None, Some(signal)) => format!("{stage} script was killed by signal {signal}"),
        (None, None) => format!("{stage} script failed ({status})"),
    }
}

/// The build's own temp dir, holding the state and result files. It lives
/// outside the template's files so a script cannot mix them up with template
/// content, and it goes away when the build ends.
struct Scratch {
    _dir: TempDir,
    /// Holds the previous state (empty when there is none) and whatever the
    /// script leaves for the next build.
    state: PathBuf,
    /// Does not exist until the script writes it.
    result: PathBuf,
}

/// What a script may write to `WARMSPACE_RESULT_FILE`.
#[derive(Deserialize)]
struct ResultFile {
    #[serde(default)]
    resources: Vec<Resource>,
}

impl Scratch {
    fn create(state: Option<&[u8]>) -> io::Result<Scratch> {
        let dir = tempfile::Builder::new().prefix("warmspace-build-").tempdir()?;
        let state_path = dir.path().join("state");
        std::fs::write(&state_path, state.unwrap_or_default())?;
        let result = dir.path().join("result.json");
        Ok(Scratch { _dir: dir, state: state_path, result })
    }

    /// An empty or missing state file means the workspace keeps no state.
    fn read_state(&self) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(&self.state) {
            Ok(bytes) if bytes.is_empty() => Ok(None),
            Ok(bytes) => Ok(Some(bytes)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The resources the script reported; none when it wrote no result file.
    fn read_resources(&self, stage: &str) -> Result<Vec<Resource>, String> {
        let text = match std::fs::read(&self.result) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(format!("cannot read the result file of the {stage} script: {err}")),
        };
        serde_json::from_slice::<ResultFile>(&text)
            .map(|file| file.resources)
            .map_err(|err| format!("the result file of the {stage} script is invalid: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;

    use nix::sys::signal::kill;
    use tempfile::TempDir;
    use warmspace_sdk::JobLogLine;
    use warmspace_template::BackendConfig;

    /// A script that is open for writing when it is started (as in the
    /// child of another thread's fork) is started once it is closed.
    #[tokio::test(start_paused = true)]
    async fn a_script_busy_being_written_is_started_once_it_is_closed() {
        use std::io::Write;
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("start.sh");
        let mut writing = std::fs::File::create(&path).unwrap();
        writing.write_all(b"#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut command = Command::new(&path);
        let mut spawning = std::pin::pin!(spawn(&mut command));
        assert!(futures::poll!(spawning.as_mut()).is_pending(), "busy: waiting to try again");
        drop(writing);
        let mut child = spawning.await.expect("started once closed");
        assert!(child.wait().await.unwrap().success());
    }

    use super::*;
    use crate::backend::process_checks::{is_running, wait_gone};

    /// A template directory with scripts, and a job for it.
    struct Template {
        dir: TempDir,
        config: ExecConfig,
        stop_grace: Duration,
    }

    impl Template {
        fn new() -> Template {
            let config =
                ExecConfig { start: "start.sh".into(), stop: None, delete: None, timeout: Duration::from_secs(60) };
            Template { dir: tempfile::tempdir().unwrap(), config, stop_grace: crate::DEFAULT_STOP_GRACE }
        }

        /// Writes an executable `#!/bin/sh` script.
        fn script(&self, name: &str, body: &str) {
            self.write(name, &format!("#!/bin/sh\n{body}\n"), 0o755);
        }

        fn write(&self, name: &str, content: &str, mode: u32) {
            let path = self.dir.path().join(name);
            std::fs::write(&path, content).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }

        fn read(&self, name: &str) -> String {
            std::fs::read_to_string(self.dir.path().join(name)).unwrap()
        }

        /// A pid the script wrote to `name`.
        fn pid(&self, name: &str) -> Pid {
            Pid::from_raw(self.read(name).trim().parse().unwrap())
        }

        fn job(&self, transition: Transition) -> BuildJob {
            BuildJob {
                build_number: 7,
                is_prebuild: true,
                parameters: BTreeMap::from([("cpu-count".into(), "4".into()), ("region".into(), "eu west".into())]),
                agent_tokens: BTreeMap::from([
                    ("main".into(), "token-main".into()),
                    ("dev-box".into(), "token-dev-box".into()),
                ]),
                ..crate::backend::test_job(transition, BackendConfig::Exec(self.config.clone()))
            }
        }

        /// Runs a build to its end and returns it with every log line.
        async fn build(&self, job: &BuildJob) -> (BuildOutcome, Vec<JobLogLine>) {
            let (log, mut rx) = LogSink::channel();
            let (_cancel_tx, cancel) = watch::channel(false);
            let outcome = run(&self.config, self.context(job, &log, cancel)).await;
            drop(log);
            let mut lines = Vec::new();
            while let Some(line) = rx.recv().await {
                lines.push(line);
            }
            (outcome, lines)
        }

        fn context<'a>(
            &'a self,
            job: &'a BuildJob,
            log: &'a LogSink,
            cancel: watch::Receiver<bool>,
        ) -> BuildContext<'a> {
            BuildContext {
                job,
                files: self.dir.path(),
                log,
                cancel,
                binary: Path::new("/usr/local/bin/warmspace"),
                stop_grace: self.stop_grace,
                terraform: Path::new("terraform"),
                terraform_plugin_cache: None,
            }
        }
    }

    /// The script's own lines (not the daemon's), as (level, text).
    fn script_lines(lines: &[JobLogLine]) -> Vec<(LogLevel, &str)> {
        lines.iter().filter(|l| l.source == LogSource::Provisioner).map(|l| (l.level, l.output.as_str())).collect()
    }

    fn failure(outcome: &BuildOutcome) -> &str {
        match &outcome.result {
            BuildResult::Failed(message) => message,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_script_sees_the_build_in_its_environment_and_runs_in_the_template_dir() {
        let t = Template::new();
        t.script(
            "start.sh",
            r#"env > env.txt
pwd -P > pwd.txt
cat "$WARMSPACE_STATE_FILE" > state-seen.txt
if [ -e "$WARMSPACE_RESULT_FILE" ]; then echo yes > result-existed.txt; fi"#,
        );
        let mut job = t.job(Transition::Start);
        job.state = Some(b"old state".to_vec());
        let (outcome, _) = t.build(&job).await;
        assert_eq!(outcome.result, BuildResult::Succeeded);

        let env: BTreeMap<String, String> = t
            .read("env.txt")
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let expected = [
            ("WARMSPACE_URL", "http://warmspace.test:3000".to_owned()),
            ("WARMSPACE_TRANSITION", "start".to_owned()),
            ("WARMSPACE_WORKSPACE_ID", job.workspace_id.to_string()),
            ("WARMSPACE_WORKSPACE_NAME", "dev".to_owned()),
            ("WARMSPACE_OWNER_ID", job.owner_id.to_string()),
            ("WARMSPACE_OWNER_NAME", "alice".to_owned()),
            ("WARMSPACE_IS_PREBUILD", "true".to_owned()),
            ("WARMSPACE_IS_CLAIM", "false".to_owned()),
            ("WARMSPACE_AGENT_TOKEN_MAIN", "token-main".to_owned()),
            ("WARMSPACE_AGENT_TOKEN_DEV_BOX", "token-dev-box".to_owned()),
            ("WARMSPACE_PARAM_CPU_COUNT", "4".to_owned()),
            ("WARMSPACE_PARAM_REGION", "eu west".to_owned()),
            ("WARMSPACE_BINARY", "/usr/local/bin/warmspace".to_owned()),
            ("WARMSPACE_BUILD_NUMBER", "7".to_owned()),
            ("PATH", std::env::var("PATH").unwrap()),
        ];
        for (name, value) in expected {
            assert_eq!(env.get(name), Some(&value), "{name}");
        }

        // The state and result files live in a directory of the build's own,
        // outside the template; the state file holds the previous state.
        let template_dir = t.dir.path().canonicalize().unwrap();
        for name in ["WARMSPACE_STATE_FILE", "WARMSPACE_RESULT_FILE"] {
            let path = Path::new(&env[name]);
            assert!(path.is_absolute(), "{name}");
            assert!(!path.starts_with(t.dir.path()) && !path.starts_with(&template_dir), "{name} is in the template");
        }
        assert_eq!(t.read("state-seen.txt"), "old state");
        assert!(!t.dir.path().join("result-existed.txt").exists(), "the result file existed before the script");
        assert_eq!(t.read("pwd.txt").trim(), template_dir.to_str().unwrap());
        // The build's temp dir is cleaned up.
        assert!(!Path::new(&env["WARMSPACE_STATE_FILE"]).exists());
    }

    #[tokio::test]
    async fn a_script_without_the_executable_bit_runs_with_sh() {
        let t = Template::new();
        t.write("start.sh", "echo \"via sh in $WARMSPACE_TRANSITION\"\n", 0o644);
        let (outcome, lines) = t.build(&t.job(Transition::Start)).await;
        assert_eq!(outcome.result, BuildResult::Succeeded);
        assert_eq!(script_lines(&lines), vec![(LogLevel::Info, "via sh in start")]);
    }

    #[tokio::test]
    async fn output_lines_become_log_lines() {
        let t = Template::new();
        t.script(
            "start.sh",
            r#"echo one
echo warning one >&2
printf 'two\r\n'
printf 'bad \377 byte\n'
echo warning two >&2
head -c 70000 /dev/zero | tr '\0' a
echo
echo after the long line
printf 'no newline at the end'"#,
        );
        let (outcome, lines) = t.build(&t.job(Transition::Start)).await;
        assert_eq!(outcome.result, BuildResult::Succeeded);

        let of_level = |level| {
            script_lines(&lines).into_iter().filter(|(l, _)| *l == level).map(|(_, text)| text).collect::<Vec<_>>()
        };
        // Cut to the 64 KiB cap, saying so.
        let marker = "… [line truncated]";
        let long = format!("{}{marker}", "a".repeat(64 * 1024 - marker.len()));
        assert_eq!(
            of_level(LogLevel::Info),
            vec!["one", "two", "bad \u{FFFD} byte", &long, "after the long line", "no newline at the end"]
        );
        assert_eq!(of_level(LogLevel::Warn), vec!["warning one", "warning two"]);
        for line in lines.iter().filter(|l| l.source == LogSource::Provisioner) {
            assert_eq!(line.stage, "start");
        }
    }

    #[tokio::test]
    async fn output_is_streamed_while_the_script_runs() {
        let t = Template::new();
        t.script("start.sh", "echo early\nsleep 1\necho late");
        let job = t.job(Transition::Start);
        let (log, mut rx) = LogSink::channel();
        let (_cancel_tx, cancel) = watch::channel(false);
        let build = run(&t.config, t.context(&job, &log, cancel));
        tokio::pin!(build);

        let first = loop {
            tokio::select! {
                biased;
                _ = &mut build => panic!("the script ended before any of its output arrived"),
                line = rx.recv() => {
                    let line = line.unwrap();
                    if line.source == LogSource::Provisioner {
                        break line;
                    }
                }
            }
        };
        assert_eq!(first.output, "early");
        assert_eq!(build.await.result, BuildResult::Succeeded);
    }

    #[tokio::test]
    async fn the_state_file_goes_from_start_to_stop() {
        let mut t = Template::new();
        t.config.stop = Some("stop.sh".into());
        t.script("start.sh", r#"echo "container for $WARMSPACE_WORKSPACE_NAME" > "$WARMSPACE_STATE_FILE""#);
        t.script("stop.sh", r#"cat "$WARMSPACE_STATE_FILE" > seen.txt; printf stopped > "$WARMSPACE_STATE_FILE""#);

        let (started, _) = t.build(&t.job(Transition::Start)).await;
        assert_eq!(started.result, BuildResult::Succeeded);
        assert_eq!(started.state, Some(b"container for dev\n".to_vec()));

        let mut stop = t.job(Transition::Stop);
        stop.state = started.state;
        let (stopped, _) = t.build(&stop).await;
        assert_eq!(stopped.result, BuildResult::Succeeded);
        assert_eq!(t.read("seen.txt"), "container for dev\n");
        assert_eq!(stopped.state, Some(b"stopped".to_vec()));
    }

    #[tokio::test]
    async fn an_empty_or_removed_state_file_keeps_no_state() {
        let mut t = Template::new();
        t.config.stop = Some("stop.sh".into());
        t.config.delete = Some("delete.sh".into());
        t.script("stop.sh", r#": > "$WARMSPACE_STATE_FILE""#);
        t.script("delete.sh", r#"rm "$WARMSPACE_STATE_FILE""#);
        for transition in [Transition::Stop, Transition::Delete] {
            let mut job = t.job(transition);
            job.state = Some(b"something".to_vec());
            let (outcome, _) = t.build(&job).await;
            assert_eq!(outcome.result, BuildResult::Succeeded, "{transition:?}");
            assert_eq!(outcome.state, None, "{transition:?}");
        }
    }

    #[tokio::test]
    async fn a_failed_script_still_returns_its_state() {
        let t = Template::new();
        t.script("start.sh", r#"echo half-created > "$WARMSPACE_STATE_FILE"; exit 1"#);
        let (outcome, _) = t.build(&t.job(Transition::Start)).await;
        assert_eq!(failure(&outcome), "start script exited with status 1");
        assert_eq!(outcome.state, Some(b"half-created\n".to_vec()));
    }

    #[tokio::test]
    async fn the_result_file_reports_resources() {
        let t = Template::new();
        t.script(
            "start.sh",
            r#"cat > "$WARMSPACE_RESULT_FILE" <<'JSON'
{"resources": [
  {"address": "docker_container.workspace", "type": "docker_container", "replaced": true},
  {"address": "docker_volume.home"}
]}
JSON"#,
        );
        let (outcome, _) = t.build(&t.job(Transition::Start)).await;
        assert_eq!(outcome.result, BuildResult::Succeeded);
        assert_eq!(
            outcome.resources,
            vec![
                Resource {
                    address: "docker_container.workspace".into(),
                    kind: "docker_container".into(),
                    replaced: true
                },
                Resource { address: "docker_volume.home".into(), kind: String::new(), replaced: false },
            ]
        );
    }

    #[tokio::test]
    async fn a_malformed_result_file_fails_the_build() {
        let t = Template::new();
        t.script("start.sh", r#"echo '{"resources": [' > "$WARMSPACE_RESULT_FILE""#);
        let (outcome, lines) = t.build(&t.job(Transition::Start)).await;
        let message = failure(&outcome);
        assert!(message.contains("result file") && message.contains("invalid"), "{message}");
        assert!(lines.iter().any(|l| l.level == LogLevel::Error && l.output == message));
    }

    #[tokio::test]
    async fn a_non_zero_exit_fails_with_the_status() {
        let t = Template::new();
        t.script("start.sh", "echo trying\nexit 3");
        let (outcome, lines) = t.build(&t.job(Transition::Start)).await;
        assert_eq!(failure(&outcome), "start script exited with status 3");
        assert_eq!(script_lines(&lines), vec![(LogLevel::Info, "trying")]);

        t.script("start.sh", "kill -9 $$");
        let (outcome, _) = t.build(&t.job(Transition::Start)).await;
        assert_eq!(failure(&outcome), "start script was killed by signal 9");
    }

    #[tokio::test]
    async fn a_missing_script_fails_without_touching_the_state() {
        let mut t = Template::new();
        t.config.start = "gone.sh".into();
        let mut job = t.job(Transition::Start);
        job.state = Some(b"kept".to_vec());
        let (outcome, _) = t.build(&job).await;
        assert!(failure(&outcome).contains("gone.sh"));
        assert_eq!(outcome.state, Some(b"kept".to_vec()));
    }

    #[tokio::test]
    async fn a_transition_without_a_script_does_nothing() {
        let t = Template::new();
        t.script("start.sh", "touch started");
        for transition in [Transition::Stop, Transition::Delete] {
            let mut job = t.job(transition);
            job.state = Some(b"previous".to_vec());
            let (outcome, lines) = t.build(&job).await;
            assert_eq!(
                outcome,
                BuildOutcome {
                    result: BuildResult::Succeeded,
                    state: Some(b"previous".to_vec()),
                    resources: Vec::new(),
                    timings: Vec::new()
                }
            );
            let stage = transition.as_str();
            assert!(lines.iter().any(|l| l.output.contains(&format!("no {stage} script"))), "{lines:?}");
        }
        assert!(!t.dir.path().join("started").exists());
    }

    /// Builds with a one-second timeout a script that would hang, and checks it
    /// timed out and was stopped along with the child whose pid it wrote to
    /// `child.pid`. Had the child outlived the stop, `wait_gone` would say so.
    async fn assert_times_out(mut t: Template, body: &str) {
        t.config.timeout = Duration::from_secs(1);
        t.script("start.sh", body);
        let (outcome, _) = t.build(&t.job(Transition::Start)).await;
        assert_eq!(failure(&outcome), "start script timed out after 1s");
        let child = t.pid("child.pid");
        assert!(wait_gone(child).await, "the script's child {child} survived");
    }

    #[tokio::test]
    async fn a_hanging_script_is_killed_at_its_timeout() {
        assert_times_out(Template::new(), "echo $$ > child.pid\nsleep 600").await;
    }

    #[tokio::test]
    async fn a_timeout_kills_the_children_of_the_script_too() {
        assert_times_out(Template::new(), "sleep 600 &\necho $! > child.pid\nwait").await;
    }

    #[tokio::test]
    async fn a_script_ignoring_sigterm_gets_sigkill() {
        // The ignored TERM is inherited by the child, so only SIGKILL (after
        // the grace, kept short here) ends them.
        let t = Template { stop_grace: Duration::from_millis(200), ..Template::new() };
        assert_times_out(t, "trap '' TERM\nsleep 600 &\necho $! > child.pid\nwait").await;
    }

    #[tokio::test]
    async fn cancel_kills_the_script_and_its_children() {
        let t = Template::new();
        t.script("start.sh", "sleep 600 &\necho $! > child.pid\necho ready\nwait");
        let job = t.job(Transition::Start);
        let (log, mut rx) = LogSink::channel();
        let (cancel_tx, cancel) = watch::channel(false);
        let build = run(&t.config, t.context(&job, &log, cancel));
        let cancel_when_ready = async {
            while let Some(line) = rx.recv().await {
                if line.output == "ready" {
                    cancel_tx.send(true).unwrap();
                    return;
                }
            }
        };
        let (outcome, ()) = tokio::join!(build, cancel_when_ready);

        assert_eq!(outcome.result, BuildResult::Canceled);
        let child = t.pid("child.pid");
        assert!(wait_gone(child).await, "the script's child {child} survived");
    }

    #[tokio::test]
    async fn a_build_canceled_before_it_starts_runs_nothing() {
        let t = Template::new();
        t.script("start.sh", "touch started");
        let job = t.job(Transition::Start);
        let (log, _rx) = LogSink::channel();
        let (_cancel_tx, cancel) = watch::channel(true);
        let outcome = run(&t.config, t.context(&job, &log, cancel)).await;
        assert_eq!(outcome.result, BuildResult::Canceled);
        assert!(!t.dir.path().join("started").exists());
    }

    #[tokio::test]
    async fn a_background_process_holding_stdout_does_not_hold_up_the_build() {
        let t = Template::new();
        t.script("start.sh", "sleep 30 &\necho $! > background.pid\necho started");
        let (outcome, lines) = t.build(&t.job(Transition::Start)).await;
        let background = t.pid("background.pid");
        // A normal exit leaves what the script started running; and had the
        // build waited for the pipe it holds to close, it would be gone by now.
        let survived = is_running(background);
        // Cleanup only: the assertions below are about what happened before.
        if let Err(err) = kill(background, Signal::SIGKILL) {
            eprintln!("cannot kill the background process {background}: {err}");
        }

        assert_eq!(outcome.result, BuildResult::Succeeded);
        assert!(survived, "the background process was killed or waited for");
        assert_eq!(script_lines(&lines), vec![(LogLevel::Info, "started")]);
    }

    #[test]
    fn names_become_variable_suffixes() {
        assert_eq!(env_suffix("cpu-count"), "CPU_COUNT");
        assert_eq!(env_suffix("dev-box2"), "DEV_BOX2");
        assert_eq!(env_suffix("a.b c/é"), "A_B_C__");
    }
}
