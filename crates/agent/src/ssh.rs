//! The agent's in-process SSH server, reachable only through the tunnel:
//! every stream on it was opened by the server, which has authenticated and
//! authorised the person behind it, so any SSH authentication is accepted.
//!
//! A session channel runs the login shell (`$SHELL`, else `/bin/sh`) or an
//! exec'd command with `-c`, in a pty when the client asked for one (window
//! changes resize it), else on pipes (stderr as extended data). Its
//! environment is the agent's plus the manifest's (see
//! [`crate::runner::script_env`]) plus what the client sent. The exit
//! status goes back to the client and, against the connection, to the
//! server's connection log. The `sftp` subsystem is served in-process
//! ([`crate::sftp`]), so `sftp` and `scp` work in any workspace; `scp -O`
//! (the legacy protocol) needs `scp` in the workspace, through exec.
//!
//! The host key is generated when the agent starts and lives as long as the
//! agent: clients know the workspace by the tunnel, not by the key
//! (`warmspace config-ssh` turns host key checking off for these hosts).

use std::collections::{BTreeMap, HashMap};
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use russh::keys::{Algorithm, PrivateKey};
use russh::server::{Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId, ChannelMsg, ChannelWriteHalf};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use uuid::Uuid;
use warmspace_sdk::{Client, Devcontainer};

use crate::sftp::Sftp;

/// The SSH server of one agent: its configuration and host key.
#[derive(Clone)]
pub(crate) struct SshServer {
    config: Arc<russh::server::Config>,
}

impl SshServer {
    pub fn new() -> SshServer {
        let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).expect("an ed25519 key generates");
        let config = russh::server::Config {
            keys: vec![key],
            // Nothing is checked, so there is nothing to slow guessing down.
            auth_rejection_time: Duration::ZERO,
            auth_rejection_time_initial: Some(Duration::ZERO),
            nodelay: true,
            ..Default::default()
        };
        SshServer { config: Arc::new(config) }
    }

    /// Serves one SSH connection over `stream` until it ends.
    pub async fn serve<S>(&self, stream: S, connection: Connection)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let handler = Handler { connection: Arc::new(connection), channels: HashMap::new() };
        match russh::server::run_stream(Arc::clone(&self.config), stream, handler).await {
            Ok(running) => {
                if let Err(err) = running.await {
                    tracing::debug!(error = %err, "an SSH connection ended badly");
                }
            }
            Err(err) => tracing::debug!(error = %err, "an SSH handshake failed"),
        }
    }
}

/// What the sessions of one SSH connection share.
pub(crate) struct Connection {
    /// The connection log entry, to report exit statuses against.
    pub id: Uuid,
    /// The manifest's environment for commands (the template's `env` and the `WARMSPACE_*` variables).
    pub env: BTreeMap<String, String>,
    /// The dev container its sessions run inside, if any.
    pub devcontainer: Option<Devcontainer>,
    pub client: Client,
}

impl Connection {
    /// Tells the server how a session ended, best-effort: the client has the status either way.
    fn report(self: &Arc<Self>, code: i32) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(err) = this.client.agent_connection_exit(this.id, code).await {
                tracing::debug!(error = %err, "the session's exit status did not reach the server");
            }
        });
    }
}

/// A session channel, before and after it starts its process.
#[derive(Default)]
struct SessionChannel {
    /// Until the process starts, which takes it.
    channel: Option<Channel<Msg>>,
    pty: Option<PtyRequest>,
    env: Vec<(String, String)>,
    /// Window changes, once a process runs in a pty.
    resize: Option<mpsc::UnboundedSender<pty_process::Size>>,
}

#[derive(Debug, Clone)]
struct PtyRequest {
    term: String,
    size: pty_process::Size,
}

/// What a channel runs.
enum Program {
    /// The login shell, interactive.
    Shell,
    /// A command line, through the shell's `-c`.
    Command(String),
}

struct Handler {
    connection: Arc<Connection>,
    channels: HashMap<ChannelId, SessionChannel>,
}

impl russh::server::Handler for Handler {
    type Error = russh::Error;

    async fn auth_none(&mut self, _: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::Accept)
    }

    async fn auth_password(&mut self, _: &str, _: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::Accept)
    }

    async fn auth_publickey_offered(
        &mut self,
        _: &str,
        _: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(Auth::Accept)
    }

    async fn auth_publickey(&mut self, _: &str, _: russh::server::VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.insert(channel.id(), SessionChannel { channel: Some(channel), ..Default::default() });
        reply.accept().await;
        Ok(())
    }

    async fn channel_close(&mut self, channel: ChannelId, _: &mut Session) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        cols: u32,
        rows: u32,
        _: u32,
        _: u32,
        _: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(state) = self.channels.get_mut(&channel) {
            state.pty = Some(PtyRequest { term: term.to_owned(), size: size(cols, rows) });
            session.channel_success(channel)?;
        } else {
            session.channel_failure(channel)?;
        }
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(state) = self.channels.get_mut(&channel) {
            state.env.push((name.to_owned(), value.to_owned()));
            session.channel_success(channel)?;
        }
        Ok(())
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        self.start(channel, Program::Shell, session)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let command = String::from_utf8_lossy(data).into_owned();
        self.start(channel, Program::Command(command), session)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if name != "sftp" {
            tracing::info!(subsystem = name, "refused an SSH subsystem the agent does not serve");
            return session.channel_failure(channel);
        }
        if self.connection.devcontainer.is_some() {
            // The agent's SFTP server sees the agent's files, not the container's.
            tracing::info!("refused sftp into a dev container");
            return session.channel_failure(channel);
        }
        let Some(stream) = self.channels.get_mut(&channel).and_then(|state| state.channel.take()) else {
            return session.channel_failure(channel);
        };
        let connection = Arc::clone(&self.connection);
        tokio::spawn(async move {
            let code = run_sftp(stream).await;
            connection.report(code);
        });
        session.channel_success(channel)
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        cols: u32,
        rows: u32,
        _: u32,
        _: u32,
        _: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(resize) = self.channels.get(&channel).and_then(|state| state.resize.as_ref()) {
            // The process may have ended; there is nothing left to resize then.
            resize.send(size(cols, rows)).ok();
        }
        Ok(())
    }
}

impl Handler {
    /// Starts the channel's process in a task of its own.
    fn start(&mut self, id: ChannelId, program: Program, session: &mut Session) -> Result<(), russh::Error> {
        let Some(state) = self.channels.get_mut(&id) else {
            return session.channel_failure(id);
        };
        let Some(channel) = state.channel.take() else {
            // A second shell or exec on one channel.
            return session.channel_failure(id);
        };
        let mut env = self.connection.env.clone();
        env.extend(state.env.drain(..));
        if let Some(pty) = &state.pty {
            env.insert("TERM".into(), pty.term.clone());
        }
        let connection = Arc::clone(&self.connection);
        let command = match &connection.devcontainer {
            Some(devcontainer) => in_devcontainer(devcontainer, &program, &env),
            None => command_line(&program),
        };
        match state.pty.clone() {
            Some(pty) => {
                let (resize, resized) = mpsc::unbounded_channel();
                state.resize = Some(resize);
                tokio::spawn(async move {
                    let code = run_in_pty(channel, command, env, pty.size, resized).await;
                    connection.report(code);
                });
            }
            None => {
                tokio::spawn(async move {
                    let code = run_on_pipes(channel, command, env).await;
                    connection.report(code);
                });
            }
        }
        session.channel_success(id)
    }
}

fn size(cols: u32, rows: u32) -> pty_process::Size {
    let clamp = |n: u32| u16::try_from(n).unwrap_or(u16::MAX);
    pty_process::Size::new(clamp(rows), clamp(cols))
}

/// The program and its arguments.
fn command_line(program: &Program) -> (String, Vec<String>) {
    let shell = std::env::var("SHELL").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "/bin/sh".to_owned());
    match program {
        Program::Shell => (shell, vec!["-l".into()]),
        Program::Command(line) => (shell, vec!["-c".into(), line.clone()]),
    }
}

/// The program inside a dev container, through the Dev Container CLI
/// (`devcontainer exec`) found on the agent's `PATH`: a command with
/// `/bin/sh -c` and a shell as the container's `$SHELL` (else `/bin/sh`),
/// since the agent's shell may not exist there. The session's environment
/// goes in as `--remote-env`.
fn in_devcontainer(
    devcontainer: &Devcontainer,
    program: &Program,
    env: &BTreeMap<String, String>,
) -> (String, Vec<String>) {
    let mut args = vec!["exec".to_owned(), "--workspace-folder".to_owned(), devcontainer.workspace_folder.clone()];
    if let Some(config) = &devcontainer.config_path {
        args.extend(["--config".to_owned(), config.clone()]);
    }
    for (name, value) in env {
        args.extend(["--remote-env".to_owned(), format!("{name}={value}")]);
    }
    let line = match program {
        Program::Shell => r#"exec "${SHELL:-/bin/sh}" -l"#.to_owned(),
        Program::Command(line) => line.clone(),
    };
    args.extend(["/bin/sh".to_owned(), "-c".to_owned(), line]);
    ("devcontainer".to_owned(), args)
}

/// The status an SSH client sees: the exit code, or 128 + the signal.
fn exit_code(status: std::io::Result<ExitStatus>) -> i32 {
    match status {
        Ok(status) => status.code().or(status.signal().map(|s| 128 + s)).unwrap_or(255),
        Err(_) => 255,
    }
}

fn working_dir() -> std::path::PathBuf {
    crate::runner::working_dir(std::env::var_os("HOME"), std::env::current_dir().ok())
}

/// Runs a command on pipes: channel data to stdin (EOF closes it), stdout
/// and stderr back; then the exit status.
async fn run_on_pipes(
    channel: Channel<Msg>,
    (program, args): (String, Vec<String>),
    env: BTreeMap<String, String>,
) -> i32 {
    let (mut input, output) = channel.split();
    let child = tokio::process::Command::new(&program)
        .args(&args)
        .env_remove("WARMSPACE_AGENT_TOKEN")
        .envs(&env)
        .current_dir(working_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(err) => return refuse(&output, &format!("cannot run {program}: {err}\n")).await,
    };
    let mut stdin = child.stdin.take();
    let copies = [
        copy_out(child.stdout.take(), output.make_writer()),
        copy_out(child.stderr.take(), output.make_writer_ext(Some(1))),
    ];
    let feeding = async {
        while let Some(msg) = input.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    if let Some(pipe) = stdin.as_mut()
                        && pipe.write_all(&data).await.is_err()
                    {
                        stdin = None;
                    }
                }
                ChannelMsg::Eof => stdin = None,
                _ => {}
            }
        }
        // The client went away: nothing more will come.
        std::future::pending::<()>().await
    };
    let status = tokio::select! {
        status = child.wait() => status,
        () = feeding => unreachable!("feeding never ends"),
    };
    for copy in copies {
        copy.await.ok();
    }
    finish(&output, exit_code(status)).await
}

/// Serves SFTP on the channel until the client closes it, then ends the
/// channel with status 0 as `sftp-server` would (OpenSSH's `scp` fails
/// without an exit status). The SFTP server works on one end of an
/// in-memory pipe, the channel is copied to and from the other.
async fn run_sftp(channel: Channel<Msg>) -> i32 {
    const PIPE: usize = 256 * 1024;
    let (mut input, output) = channel.split();
    let (ours, theirs) = tokio::io::duplex(PIPE);
    russh_sftp::server::run(theirs, Sftp::new(working_dir())).await;
    let (from_sftp, mut to_sftp) = tokio::io::split(ours);
    let copy = copy_out(Some(from_sftp), output.make_writer());
    while let Some(msg) = input.wait().await {
        match msg {
            ChannelMsg::Data { data } if to_sftp.write_all(&data).await.is_err() => break,
            ChannelMsg::Eof => break,
            _ => {}
        }
    }
    // The server ends at the EOF, and its answers end with it.
    to_sftp.shutdown().await.ok();
    copy.await.ok();
    finish(&output, 0).await
}

/// Runs a command in a new pty sized as the client asked, resized on window changes.
async fn run_in_pty(
    channel: Channel<Msg>,
    (program, args): (String, Vec<String>),
    env: BTreeMap<String, String>,
    size: pty_process::Size,
    mut resized: mpsc::UnboundedReceiver<pty_process::Size>,
) -> i32 {
    let (mut input, output) = channel.split();
    let spawned = pty_process::open().and_then(|(pty, pts)| {
        pty.resize(size)?;
        let child = pty_process::Command::new(&program)
            .args(&args)
            .env_remove("WARMSPACE_AGENT_TOKEN")
            .envs(&env)
            .current_dir(working_dir())
            .kill_on_drop(true)
            .spawn(pts)?;
        Ok((pty, child))
    });
    let (pty, mut child) = match spawned {
        Ok(spawned) => spawned,
        Err(err) => return refuse(&output, &format!("cannot run {program} in a terminal: {err}\r\n")).await,
    };
    let (reader, mut writer) = pty.into_split();
    let copy = copy_out(Some(reader), output.make_writer());
    let feeding = async {
        loop {
            tokio::select! {
                msg = input.wait() => match msg {
                    Some(ChannelMsg::Data { data }) => {
                        if writer.write_all(&data).await.is_err() {
                            break;
                        }
                    }
                    Some(_) => {}
                    None => break,
                },
                Some(size) = resized.recv() => {
                    if let Err(err) = writer.resize(size) {
                        tracing::debug!(error = %err, "cannot resize a pty");
                    }
                }
            }
        }
        std::future::pending::<()>().await
    };
    let status = tokio::select! {
        status = child.wait() => status,
        () = feeding => unreachable!("feeding never ends"),
    };
    // The pty's reader ends (EIO) once the last process holding it exits.
    tokio::time::timeout(Duration::from_secs(1), copy).await.ok();
    finish(&output, exit_code(status)).await
}

/// Copies a process's output to the channel in a task of its own.
fn copy_out(
    from: Option<impl AsyncRead + Unpin + Send + 'static>,
    mut to: impl AsyncWrite + Unpin + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Some(mut from) = from {
            // A pty's EIO after its process exits ends the copy like an EOF.
            tokio::io::copy(&mut from, &mut to).await.ok();
        }
        to.flush().await.ok();
    })
}

/// Sends the exit status, EOF and close; returns the status.
async fn finish(output: &ChannelWriteHalf<Msg>, code: i32) -> i32 {
    // The client may be gone already; the status is reported to the server regardless.
    output.exit_status(code as u32).await.ok();
    output.eof().await.ok();
    output.close().await.ok();
    code
}

/// Tells the client why nothing ran, and ends the channel with status 127.
async fn refuse(output: &ChannelWriteHalf<Msg>, why: &str) -> i32 {
    output.extended_data_bytes(1, why.as_bytes().to_vec()).await.ok();
    finish(output, 127).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dev_container_session_runs_through_devcontainer_exec() {
        let api = Devcontainer {
            name: "api".into(),
            workspace_folder: "/src/api".into(),
            config_path: Some(".devcontainer/devcontainer.json".into()),
        };
        let env = BTreeMap::from([("TERM".to_owned(), "xterm".to_owned())]);
        let (program, args) = in_devcontainer(&api, &Program::Command("echo hi".into()), &env);
        assert_eq!(program, "devcontainer");
        assert_eq!(
            args,
            [
                "exec",
                "--workspace-folder",
                "/src/api",
                "--config",
                ".devcontainer/devcontainer.json",
                "--remote-env",
                "TERM=xterm",
                "/bin/sh",
                "-c",
                "echo hi"
            ]
        );
        let bare = Devcontainer { config_path: None, ..api };
        let (_, args) = in_devcontainer(&bare, &Program::Shell, &BTreeMap::new());
        assert_eq!(args, ["exec", "--workspace-folder", "/src/api", "/bin/sh", "-c", r#"exec "${SHELL:-/bin/sh}" -l"#]);
    }
}
