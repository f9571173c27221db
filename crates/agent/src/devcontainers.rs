//! Dev containers: once the startup script has run, the agent brings up each
//! declared dev container with the `devcontainer` CLI (`devcontainer up
//! --workspace-folder F [--config C]`) and reports its state: `starting`,
//! then `running`, or `error` with why (the CLI's message; `devcontainer CLI
//! not found`, `docker not available`, or a timeout: never a hang).

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use warmspace_sdk::{AgentDevcontainerRequest, Client, Devcontainer, DevcontainerState};

use crate::AgentError;
use crate::runner::working_dir;

/// How long `devcontainer up` may take (pulling images and building included).
const UP_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// The longest error message kept (the server's limit is 4096 characters).
const MAX_ERROR: usize = 2000;

/// Brings up every dev container, one after the other, reporting each.
pub async fn bring_up(client: &Client, devcontainers: &[Devcontainer]) -> Result<(), AgentError> {
    let path = std::env::var_os("PATH");
    for devcontainer in devcontainers {
        report(client, devcontainer, DevcontainerState::Starting, None).await?;
        match up(devcontainer, path.as_deref(), UP_TIMEOUT).await {
            Ok(()) => report(client, devcontainer, DevcontainerState::Running, None).await?,
            Err(error) => report(client, devcontainer, DevcontainerState::Error, Some(error)).await?,
        }
    }
    Ok(())
}

/// Runs `devcontainer up` (found on `path`) for at most `timeout`; `Err`
/// says why the container is not running.
async fn up(devcontainer: &Devcontainer, path: Option<&OsStr>, timeout: Duration) -> Result<(), String> {
    let cli = find_program(path, "devcontainer").ok_or("devcontainer CLI not found")?;
    find_program(path, "docker").ok_or("docker not available")?;
    let mut command = Command::new(cli);
    command.arg("up").arg("--workspace-folder").arg(&devcontainer.workspace_folder);
    if let Some(config) = &devcontainer.config_path {
        command.arg("--config").arg(config);
    }
    tracing::info!(devcontainer = %devcontainer.name, "bringing up the dev container");
    command
        .current_dir(working_dir(std::env::var_os("HOME"), std::env::current_dir().ok()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Killed when dropped: at the timeout, or when the agent exits.
        .kill_on_drop(true);
    let output = match tokio::time::timeout(timeout, command.output()).await {
        Ok(output) => output.map_err(|err| format!("cannot run the devcontainer CLI: {err}"))?,
        Err(_) => return Err(format!("devcontainer up did not finish within {}", humantime::format_duration(timeout))),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    match (output.status.success(), reported_error(&stdout)) {
        (true, None) => Ok(()),
        (_, Some(message)) => Err(cap(message)),
        (false, None) => {
            let last = stderr.lines().chain(stdout.lines()).rev().find(|line| !line.trim().is_empty());
            Err(cap(last.map_or_else(|| format!("devcontainer up failed: {}", output.status), str::to_owned)))
        }
    }
}

/// The CLI ends with a JSON line: `{"outcome": "error", "message": …}` when it failed.
fn reported_error(stdout: &str) -> Option<String> {
    let last = stdout.lines().rev().find(|line| !line.trim().is_empty())?;
    let outcome: serde_json::Value = serde_json::from_str(last).ok()?;
    if outcome["outcome"] != "error" {
        return None;
    }
    let message = outcome["message"].as_str().unwrap_or("the devcontainer CLI reported an error");
    let description = outcome["description"].as_str().filter(|d| !d.is_empty());
    Some(match description {
        Some(description) => format!("{message}: {description}"),
        None => message.to_owned(),
    })
}

fn cap(mut message: String) -> String {
    if let Some((at, _)) = message.char_indices().nth(MAX_ERROR) {
        message.truncate(at);
        message.push('…');
    }
    message
}

/// The first executable file called `name` in the directories of `path`.
fn find_program(path: Option<&OsStr>, name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path?).map(|dir| dir.join(name)).find(|candidate| {
        std::fs::metadata(candidate).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

async fn report(
    client: &Client,
    devcontainer: &Devcontainer,
    state: DevcontainerState,
    error: Option<String>,
) -> Result<(), AgentError> {
    if let Some(error) = &error {
        tracing::warn!(devcontainer = %devcontainer.name, error, "the dev container did not come up");
    }
    let req = AgentDevcontainerRequest { name: devcontainer.name.clone(), state, error };
    crate::retry::report("the dev container report", || client.agent_devcontainer(&req)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_s_json_outcome_gives_the_error() {
        let stdout =
            "building…\n{\"outcome\":\"error\",\"message\":\"Command failed\",\"description\":\"no such image\"}\n";
        assert_eq!(reported_error(stdout).as_deref(), Some("Command failed: no such image"));
        assert_eq!(reported_error("{\"outcome\":\"success\",\"containerId\":\"abc\"}"), None);
        assert_eq!(reported_error("plain text"), None);
        assert_eq!(cap("x".repeat(MAX_ERROR + 5)).chars().count(), MAX_ERROR + 1);
    }

    /// A directory of stand-in programs, removed when dropped.
    struct Bin(PathBuf);

    impl Bin {
        fn new(name: &str, programs: &[(&str, &str)]) -> Bin {
            let dir = std::env::temp_dir().join(format!("warmspace-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            for (program, body) in programs {
                let file = dir.join(program);
                std::fs::write(&file, body).unwrap();
                std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
            }
            Bin(dir)
        }

        fn path(&self) -> std::ffi::OsString {
            std::env::join_paths([self.0.clone(), "/usr/bin".into(), "/bin".into()]).unwrap()
        }
    }

    impl Drop for Bin {
        fn drop(&mut self) {
            std::fs::remove_dir_all(&self.0).ok();
        }
    }

    fn api() -> Devcontainer {
        Devcontainer { name: "api".into(), workspace_folder: "/src/api".into(), config_path: None }
    }

    #[tokio::test]
    async fn what_is_missing_is_the_error_and_a_hung_cli_is_stopped() {
        let long = Duration::from_secs(60);
        let none = Bin::new("no-cli", &[("docker", "#!/bin/sh\n")]);
        assert_eq!(up(&api(), Some(&none.path()), long).await, Err("devcontainer CLI not found".to_owned()));
        let no_docker = Bin::new("no-docker", &[("devcontainer", "#!/bin/sh\n")]);
        let path = std::env::join_paths([no_docker.0.clone()]).unwrap();
        assert_eq!(up(&api(), Some(&path), long).await, Err("docker not available".to_owned()));
        let failing = Bin::new(
            "failing-cli",
            &[
                ("devcontainer", "#!/bin/sh\necho 'Error: no devcontainer.json' >&2\nexit 1\n"),
                ("docker", "#!/bin/sh\n"),
            ],
        );
        assert_eq!(up(&api(), Some(&failing.path()), long).await, Err("Error: no devcontainer.json".to_owned()));
        let hung = Bin::new("hung-cli", &[("devcontainer", "#!/bin/sh\nexec sleep 600\n"), ("docker", "#!/bin/sh\n")]);
        let outcome = up(&api(), Some(&hung.path()), Duration::from_millis(300)).await;
        assert_eq!(outcome, Err("devcontainer up did not finish within 300ms".to_owned()));
    }

    #[test]
    fn programs_are_found_on_the_path_only_when_executable() {
        let dir = std::env::temp_dir().join(format!("warmspace-find-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let program = dir.join("devcontainer");
        std::fs::write(&program, "#!/bin/sh\n").unwrap();
        let path = std::env::join_paths(["/nonexistent".into(), dir.clone()]).unwrap();
        assert_eq!(find_program(Some(&path), "devcontainer"), None, "not executable yet");
        std::fs::set_permissions(&program, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        assert_eq!(find_program(Some(&path), "devcontainer"), Some(program));
        assert_eq!(find_program(Some(&path), "docker"), None);
        assert_eq!(find_program(None, "devcontainer"), None);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
