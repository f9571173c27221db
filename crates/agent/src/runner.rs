//! Running the startup script: its stdout and stderr become log lines as
//! they come, its exit status decides between `ready` and `start_error`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};

use tokio::process::Command;
use warmspace_sdk::{AgentManifest, LogLevel};

use crate::Runner;
use crate::logs::LogSink;
use crate::output::{drain, forward_lines};

/// How a startup script run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// Why it failed, as written to the log.
    Failed(String),
}

/// Runs the manifest's startup script, writing its output to `log`. When the
/// returned future is dropped (the agent is exiting) the script is killed.
pub async fn run(runner: &Runner, manifest: &AgentManifest, log: &LogSink) -> Outcome {
    match runner {
        Runner::Simulated { delay } => {
            log.info("Simulated the startup script");
            tokio::time::sleep(*delay).await;
            Outcome::Succeeded
        }
        Runner::Shell if manifest.startup_script.trim().is_empty() => {
            tracing::info!("no startup script to run");
            Outcome::Succeeded
        }
        Runner::Shell => run_shell(manifest, log).await,
    }
}

async fn run_shell(manifest: &AgentManifest, log: &LogSink) -> Outcome {
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(&manifest.startup_script)
        // The agent's own credential is not the script's business.
        .env_remove("WARMSPACE_AGENT_TOKEN")
        .envs(script_env(manifest))
        .current_dir(working_dir(std::env::var_os("HOME"), std::env::current_dir().ok()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(err) => return fail(log, format!("Cannot start the startup script: {err}")),
    };
    tracing::info!("running the startup script");
    let (out, err) = (log.clone(), log.clone());
    let readers = [
        forward_lines(child.stdout.take(), move |line| out.line(LogLevel::Info, line)),
        forward_lines(child.stderr.take(), move |line| err.line(LogLevel::Warn, line)),
    ];
    let status = child.wait().await;
    drain(readers).await;
    match status {
        Ok(status) if status.success() => Outcome::Succeeded,
        Ok(status) => fail(log, describe_failure(status)),
        Err(err) => fail(log, format!("Lost track of the startup script: {err}")),
    }
}

fn fail(log: &LogSink, message: String) -> Outcome {
    log.error(message.clone());
    Outcome::Failed(message)
}

fn describe_failure(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("The startup script exited with status {code}"),
        (None, Some(signal)) => format!("The startup script was killed by signal {signal}"),
        (None, None) => format!("The startup script failed: {status}"),
    }
}

/// What the script gets on top of the agent's own environment: the
/// template's `env`, then the `WARMSPACE_*` variables describing who the
/// workspace is for (which win over a template variable of the same name)
/// and the agent's app status socket.
pub fn script_env(manifest: &AgentManifest) -> BTreeMap<String, String> {
    let mut env = manifest.env.clone();
    env.extend([
        ("WARMSPACE_AGENT_NAME".to_owned(), manifest.agent_name.clone()),
        ("WARMSPACE_WORKSPACE_NAME".to_owned(), manifest.workspace_name.clone()),
        ("WARMSPACE_OWNER_NAME".to_owned(), manifest.owner_name.clone()),
        ("WARMSPACE_OWNER_ID".to_owned(), manifest.owner_id.to_string()),
        (
            crate::status_relay::SOCKET_ENV.to_owned(),
            crate::status_relay::socket_path(manifest.agent_id).display().to_string(),
        ),
    ]);
    env
}

/// `$HOME` when it names a directory, else the agent's current directory.
pub fn working_dir(home: Option<OsString>, current: Option<PathBuf>) -> PathBuf {
    home.filter(|home| !home.is_empty())
        .map(PathBuf::from)
        .filter(|home| home.is_dir())
        .or(current)
        .unwrap_or_else(|| PathBuf::from("/"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::FutureExt;
    use tokio::sync::mpsc;
    use uuid::Uuid;

    use super::*;
    use crate::logs::Entry;

    fn manifest(script: &str) -> AgentManifest {
        AgentManifest {
            agent_id: Uuid::from_u128(1),
            agent_name: "main".into(),
            workspace_id: Uuid::from_u128(2),
            workspace_name: "dev".into(),
            owner_id: Uuid::from_u128(3),
            owner_name: "alice".into(),
            template_version_id: Uuid::from_u128(4),
            env: BTreeMap::from([("EDITOR".into(), "vim".into()), ("WARMSPACE_OWNER_NAME".into(), "not me".into())]),
            startup_script: script.into(),
            server_url: "http://localhost".into(),
            apps: Vec::new(),
            devcontainers: Vec::new(),
        }
    }

    /// Runs `script` with the shell runner; its outcome and every line written.
    async fn run_script(runner: Runner, script: &str) -> (Outcome, Vec<(LogLevel, String)>) {
        let (sink, mut rx) = LogSink::channel();
        let outcome = run(&runner, &manifest(script), &sink).await;
        drop(sink);
        (outcome, lines(&mut rx))
    }

    fn lines(rx: &mut mpsc::UnboundedReceiver<Entry>) -> Vec<(LogLevel, String)> {
        let mut lines = Vec::new();
        while let Ok(entry) = rx.try_recv() {
            if let Entry::Line(line) = entry {
                lines.push((line.level, line.output));
            }
        }
        lines
    }

    fn of_level(lines: &[(LogLevel, String)], level: LogLevel) -> Vec<&str> {
        lines.iter().filter(|(l, _)| *l == level).map(|(_, output)| output.as_str()).collect()
    }

    #[tokio::test]
    async fn a_failing_script_streams_stdout_as_info_stderr_as_warn_and_ends_with_its_status() {
        let script = "echo out1; echo err1 >&2; echo out2; printf 'no newline' >&2; echo \"$EDITOR $WARMSPACE_OWNER_NAME\"; exit 3";
        let (outcome, lines) = run_script(Runner::Shell, script).await;

        assert_eq!(outcome, Outcome::Failed("The startup script exited with status 3".into()));
        assert_eq!(of_level(&lines, LogLevel::Info), ["out1", "out2", "vim alice"]);
        assert_eq!(of_level(&lines, LogLevel::Warn), ["err1", "no newline"]);
        assert_eq!(lines.len(), 6, "{lines:?}");
        assert_eq!(lines.last().unwrap(), &(LogLevel::Error, "The startup script exited with status 3".to_owned()));
    }

    #[tokio::test]
    async fn a_succeeding_script_gets_the_workspace_variables() {
        let script = "echo $WARMSPACE_AGENT_NAME $WARMSPACE_WORKSPACE_NAME $WARMSPACE_OWNER_ID; echo \"$PWD\"";
        let (outcome, lines) = run_script(Runner::Shell, script).await;

        assert_eq!(outcome, Outcome::Succeeded);
        let expected_dir = working_dir(std::env::var_os("HOME"), std::env::current_dir().ok());
        let expected_dir = std::fs::canonicalize(expected_dir).unwrap();
        assert_eq!(
            lines,
            [
                (LogLevel::Info, format!("main dev {}", Uuid::from_u128(3))),
                (LogLevel::Info, expected_dir.display().to_string())
            ]
        );
    }

    #[tokio::test]
    async fn a_killed_script_fails_naming_the_signal() {
        let (outcome, lines) = run_script(Runner::Shell, "kill -9 $$").await;
        assert_eq!(outcome, Outcome::Failed("The startup script was killed by signal 9".into()));
        assert_eq!(lines, [(LogLevel::Error, "The startup script was killed by signal 9".to_owned())]);
    }

    /// Whether a process still runs (a zombie counts as gone).
    fn is_running(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // The state follows the parenthesised command name.
            Ok(stat) => !stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')),
            Err(_) => false,
        }
    }

    #[tokio::test]
    async fn a_background_process_holding_stdout_does_not_hold_up_the_outcome() {
        let pid_file = std::env::temp_dir().join(format!("warmspace-runner-test-{}.pid", Uuid::new_v4()));
        let script = format!("echo started; sleep 60 & echo $! > '{}'", pid_file.display());
        let (outcome, lines) = run_script(Runner::Shell, &script).await;
        let background: u32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
        // Had the runner waited for the pipe the background process holds, that
        // process would have had to end first.
        let survived = is_running(background);
        // Cleanup only: what matters happened before.
        match std::process::Command::new("kill").args(["-KILL", &background.to_string()]).status() {
            Ok(status) if status.success() => {}
            other => eprintln!("cannot kill the background process {background}: {other:?}"),
        }
        if let Err(err) = std::fs::remove_file(&pid_file) {
            eprintln!("cannot remove {}: {err}", pid_file.display());
        }

        assert_eq!(outcome, Outcome::Succeeded);
        assert_eq!(lines, [(LogLevel::Info, "started".to_owned())]);
        assert!(survived, "the outcome waited for the background process {background}");
    }

    #[tokio::test]
    async fn an_empty_script_succeeds_silently() {
        let (outcome, lines) = run_script(Runner::Shell, "  \n").await;
        assert_eq!(outcome, Outcome::Succeeded);
        assert!(lines.is_empty(), "{lines:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_simulated_runner_runs_nothing_but_takes_its_time() {
        let delay = Duration::from_secs(30);
        let (runner, manifest) = (Runner::Simulated { delay }, manifest("exit 1"));
        let (sink, mut rx) = LogSink::channel();
        let simulated = run(&runner, &manifest, &sink);
        tokio::pin!(simulated);
        // The first poll starts the delay at the paused clock's now.
        assert!((&mut simulated).now_or_never().is_none(), "the simulated script took no time");
        tokio::time::advance(delay - Duration::from_millis(1)).await;
        assert!((&mut simulated).now_or_never().is_none(), "the simulated script ended before its delay");
        tokio::time::advance(Duration::from_millis(1)).await;
        let outcome = (&mut simulated).now_or_never().expect("the simulated script did not end at its delay");

        assert_eq!(outcome, Outcome::Succeeded);
        assert_eq!(lines(&mut rx), [(LogLevel::Info, "Simulated the startup script".to_owned())]);
    }

    #[test]
    fn the_working_dir_is_home_when_it_exists() {
        let cwd = Some(PathBuf::from("/somewhere"));
        let tmp = std::env::temp_dir();
        assert_eq!(working_dir(Some(tmp.clone().into()), cwd.clone()), tmp);
        assert_eq!(working_dir(Some("/does/not/exist".into()), cwd.clone()), PathBuf::from("/somewhere"));
        assert_eq!(working_dir(Some("".into()), cwd.clone()), PathBuf::from("/somewhere"));
        assert_eq!(working_dir(None, cwd), PathBuf::from("/somewhere"));
        assert_eq!(working_dir(None, None), PathBuf::from("/"));
    }

    #[test]
    fn workspace_variables_win_over_the_template_env() {
        let env = script_env(&manifest(""));
        let value = |name: &str| env.get(name).map(String::as_str);
        assert_eq!(value("EDITOR"), Some("vim"));
        assert_eq!(value("WARMSPACE_OWNER_NAME"), Some("alice"));
        assert_eq!(value("WARMSPACE_OWNER_ID"), Some(Uuid::from_u128(3).to_string().as_str()));
    }
}
