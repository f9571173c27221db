//! Reaching into workspaces: `ssh` (an SSH session with the agent's SSH
//! server, or with `--stdio` the bytes of one for OpenSSH's ProxyCommand),
//! `config-ssh` (OpenSSH's configuration for `warmspace.NAME` hosts) and
//! `port-forward`. Every connection goes through the server, which
//! authenticates the person and relays to the workspace's agent tunnel.

use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use russh::ChannelMsg;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use warmspace_sdk::{Client, ConnectQuery, ConnectionType, Workspace};

use super::Config;
use super::workspaces::find;

/// The host name prefix OpenSSH reaches workspaces by.
pub const HOST_PREFIX: &str = "warmspace.";
/// Between owner and workspace in a host name (`warmspace.alice--dev`):
/// neither user nor workspace names hold two hyphens in a row.
const OWNER_SEPARATOR: &str = "--";

/// A command's exit status, for `main` to exit with.
#[derive(Debug, thiserror::Error)]
#[error("exit status {0}")]
pub struct ExitStatus(pub i32);

#[derive(clap::Args, Debug)]
pub struct SshArgs {
    /// The workspace: NAME, OWNER/NAME, or a host name `config-ssh` set up
    /// (`warmspace.NAME`, `warmspace.OWNER--NAME`); with `.CONTAINER` after
    /// it (`NAME.CONTAINER`), inside the agent's running dev container of
    /// that name (its `devcontainer` block's).
    workspace: String,
    /// Carry the SSH connection's bytes over standard input and output,
    /// for OpenSSH's ProxyCommand (see `config-ssh`).
    #[arg(long)]
    stdio: bool,
    /// The agent to reach, when the workspace has several.
    #[arg(long)]
    agent: Option<String>,
    /// Run this command instead of an interactive login shell; its exit
    /// status becomes this command's.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct ConfigSshArgs {
    /// The OpenSSH client configuration to write the warmspace block into.
    #[arg(long, value_name = "FILE")]
    ssh_config_file: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct PortForwardArgs {
    /// The workspace: NAME or OWNER/NAME.
    workspace: String,
    /// Forward LOCAL (on 127.0.0.1; 0 picks a free port) to REMOTE on the
    /// workspace's loopback. Repeat it for more ports.
    #[arg(long = "tcp", value_name = "LOCAL:REMOTE", required = true, value_parser = port_pair)]
    tcp: Vec<(u16, u16)>,
    /// The agent to reach, when the workspace has several.
    #[arg(long)]
    agent: Option<String>,
}

fn port_pair(text: &str) -> Result<(u16, u16), String> {
    let (local, remote) = text.split_once(':').ok_or("expected LOCAL:REMOTE, e.g. 8080:3000")?;
    let local = local.parse().map_err(|_| format!("{local:?} is not a port (0 to 65535)"))?;
    let remote = match remote.parse::<u16>() {
        Ok(0) | Err(_) => return Err(format!("{remote:?} is not a port (1 to 65535)")),
        Ok(port) => port,
    };
    Ok((local, remote))
}

/// The workspace, and the dev container if any, that a name or an OpenSSH
/// host name means (`NAME.CONTAINER`: workspace names hold no dots).
fn target(name: &str) -> (String, Option<String>) {
    let host = name.strip_prefix(HOST_PREFIX);
    let (name, devcontainer) = match host.unwrap_or(name).split_once('.') {
        Some((name, devcontainer)) => (name, Some(devcontainer.to_owned())),
        None => (host.unwrap_or(name), None),
    };
    let workspace = match (host, name.split_once(OWNER_SEPARATOR)) {
        (Some(_), Some((owner, workspace))) => format!("{owner}/{workspace}"),
        _ => name.to_owned(),
    };
    (workspace, devcontainer)
}

pub async fn ssh(config: &Config, args: SshArgs) -> anyhow::Result<()> {
    let client = config.client()?;
    let (workspace, devcontainer) = target(&args.workspace);
    let workspace = find(&client, &workspace).await?;
    let query = ConnectQuery { kind: ConnectionType::Ssh, port: None, agent: args.agent, devcontainer };
    let stream = client.connect_workspace(workspace.id, &query).await?;
    if args.stdio {
        return proxy(stream).await;
    }
    let user = client.user("me").await?.username;
    let code = session(stream, &user, &args.command).await?;
    if code != 0 {
        return Err(ExitStatus(code).into());
    }
    Ok(())
}

/// ProxyCommand: standard input to the stream, the stream to standard output.
async fn proxy(stream: reqwest::Upgraded) -> anyhow::Result<()> {
    let (mut from, mut to) = tokio::io::split(stream);
    let mut input = stdin_chunks();
    let upload = async {
        while let Some(chunk) = input.recv().await {
            to.write_all(&chunk).await?;
        }
        to.shutdown().await
    };
    let download = async {
        let mut stdout = tokio::io::stdout();
        tokio::io::copy(&mut from, &mut stdout).await?;
        stdout.flush().await
    };
    // The connection is over when the server's side ends; OpenSSH closes our stdin only when it exits.
    tokio::select! {
        done = download => done.context("reading from the workspace")?,
        done = upload => {
            done.context("writing to the workspace")?;
        }
    }
    Ok(())
}

struct AnyHostKey;

impl russh::client::Handler for AnyHostKey {
    type Error = russh::Error;

    /// The host key is the agent's, made when it started: the tunnel, which
    /// the server authenticated, is what identifies the workspace.
    async fn check_server_key(&mut self, _: &russh::keys::PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// An SSH session over `stream`: the command, or an interactive shell in a
/// pty (the terminal in raw mode) when there is none. Returns the exit status.
async fn session(stream: reqwest::Upgraded, user: &str, command: &[String]) -> anyhow::Result<i32> {
    let config = Arc::new(russh::client::Config { nodelay: true, ..Default::default() });
    let mut ssh =
        russh::client::connect_stream(config, stream, AnyHostKey).await.context("the SSH handshake failed")?;
    let auth = ssh.authenticate_none(user).await?;
    if !auth.success() {
        bail!("the workspace's SSH server refused the session");
    }
    let mut channel = ssh.channel_open_session().await?;
    let stdin_fd = std::io::stdin();
    let terminal = command.is_empty() && rustix::termios::isatty(stdin_fd.as_fd());
    let _raw = if terminal {
        let (cols, rows) = window_size();
        let term = std::env::var("TERM").unwrap_or_else(|_| "xterm-256color".into());
        channel.request_pty(false, &term, cols, rows, 0, 0, &[]).await?;
        Some(RawMode::enter()?)
    } else {
        None
    };
    if command.is_empty() {
        channel.request_shell(true).await?;
    } else {
        channel.exec(true, command.join(" ")).await?;
    }
    let mut resized = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())?;
    let mut stdin = stdin_chunks();
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let mut stdin_open = true;
    let mut code = None;
    loop {
        tokio::select! {
            chunk = stdin.recv(), if stdin_open => match chunk {
                Some(chunk) => channel.data(&chunk[..]).await?,
                None => {
                    stdin_open = false;
                    channel.eof().await?;
                }
            },
            Some(()) = resized.recv(), if terminal => {
                let (cols, rows) = window_size();
                channel.window_change(cols, rows, 0, 0).await?;
            }
            msg = channel.wait() => match msg {
                Some(ChannelMsg::Data { data }) => {
                    stdout.write_all(&data).await?;
                    stdout.flush().await?;
                }
                Some(ChannelMsg::ExtendedData { data, .. }) => {
                    stderr.write_all(&data).await?;
                    stderr.flush().await?;
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => code = Some(exit_status as i32),
                Some(ChannelMsg::ExitSignal { .. }) => code = code.or(Some(255)),
                Some(ChannelMsg::Close) | None => break,
                Some(_) => {}
            },
        }
    }
    ssh.disconnect(russh::Disconnect::ByApplication, "", "en").await.ok();
    // No status: the connection dropped, as OpenSSH tells with 255.
    Ok(code.unwrap_or(255))
}

/// Standard input, read by a thread of its own until its end. Not tokio's
/// stdin: its reads block a thread that the runtime waits for on the way
/// out, so a session that ended while the terminal had nothing to read
/// would never exit. This thread ends with the process.
fn stdin_chunks() -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    let (chunks, receiver) = tokio::sync::mpsc::channel(16);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 32 * 1024];
        let mut stdin = std::io::stdin().lock();
        while let Ok(n @ 1..) = std::io::Read::read(&mut stdin, &mut buf) {
            if chunks.blocking_send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    receiver
}

/// The terminal's columns and rows (80×24 when it cannot tell).
fn window_size() -> (u32, u32) {
    match rustix::termios::tcgetwinsize(std::io::stdout()) {
        Ok(size) if size.ws_col > 0 => (u32::from(size.ws_col), u32::from(size.ws_row)),
        _ => (80, 24),
    }
}

/// The terminal in raw mode while it lives; restored when dropped.
struct RawMode(rustix::termios::Termios);

impl RawMode {
    fn enter() -> anyhow::Result<RawMode> {
        use rustix::termios::{OptionalActions, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).context("reading the terminal's settings")?;
        let mut raw = saved.clone();
        raw.make_raw();
        tcsetattr(&stdin, OptionalActions::Now, &raw).context("putting the terminal in raw mode")?;
        Ok(RawMode(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // Nothing more to do if the terminal is gone.
        rustix::termios::tcsetattr(std::io::stdin(), rustix::termios::OptionalActions::Now, &self.0).ok();
    }
}

/// Forwards each local port until interrupted.
pub async fn port_forward(config: &Config, args: PortForwardArgs) -> anyhow::Result<()> {
    let client = config.client()?;
    let workspace = find(&client, &args.workspace).await?;
    let mut forwards = tokio::task::JoinSet::new();
    for (local, remote) in args.tcp {
        let listener =
            TcpListener::bind(("127.0.0.1", local)).await.with_context(|| format!("listening on port {local}"))?;
        println!(
            "Forwarding 127.0.0.1:{} to port {remote} of {}/{}",
            listener.local_addr()?.port(),
            workspace.owner_name,
            workspace.name
        );
        forwards.spawn(forward(listener, client.clone(), workspace.clone(), remote, args.agent.clone()));
    }
    std::io::stdout().flush()?;
    tokio::select! {
        () = super::shutdown_signal() => Ok(()),
        Some(ended) = forwards.join_next() => ended?,
    }
}

async fn forward(
    listener: TcpListener,
    client: Client,
    workspace: Workspace,
    port: u16,
    agent: Option<String>,
) -> anyhow::Result<()> {
    loop {
        let (mut local, _) = listener.accept().await?;
        local.set_nodelay(true).ok();
        let (client, agent) = (client.clone(), agent.clone());
        let id = workspace.id;
        tokio::spawn(async move {
            let query = ConnectQuery { kind: ConnectionType::PortForward, port: Some(port), agent, devcontainer: None };
            match client.connect_workspace(id, &query).await {
                Ok(mut remote) => {
                    tokio::io::copy_bidirectional(&mut local, &mut remote).await.ok();
                }
                Err(err) => eprintln!("cannot forward a connection to port {port}: {err}"),
            }
        });
    }
}

const BLOCK_START: &str = "# ------------START-WARMSPACE-----------";
const BLOCK_END: &str = "# ------------END-WARMSPACE-------------";

/// Writes (or rewrites) the warmspace block of OpenSSH's configuration.
pub async fn config_ssh(config: &Config, args: ConfigSshArgs) -> anyhow::Result<()> {
    // Fails early, before touching the file, when there is no server to reach.
    config.client()?;
    let file = match args.ssh_config_file {
        Some(file) => file,
        None => {
            dirs::home_dir().context("no home directory: name the file with --ssh-config-file")?.join(".ssh/config")
        }
    };
    let exe = std::env::current_exe().context("finding this program's path")?;
    let block = ssh_block(&exe, config.dir(), config.url_flag().map(url::Url::as_str));
    let old = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(err) => return Err(err).with_context(|| format!("reading {}", file.display())),
    };
    let new = with_block(&old, &block)?;
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&file, new).with_context(|| format!("writing {}", file.display()))?;
    println!("Wrote the warmspace hosts into {}: ssh {HOST_PREFIX}NAME reaches workspace NAME.", file.display());
    Ok(())
}

/// The managed block: every `warmspace.*` host goes through `warmspace ssh --stdio`.
fn ssh_block(exe: &Path, config_dir: &Path, url: Option<&str>) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut proxy = format!(
        "{} ssh --stdio --global-config {}",
        quote(&exe.to_string_lossy()),
        quote(&config_dir.to_string_lossy())
    );
    if let Some(url) = url {
        proxy.push_str(&format!(" --url {}", quote(url)));
    }
    format!(
        "{BLOCK_START}\n\
         # Written by `warmspace config-ssh`; run it again to update this block, whose edits it replaces.\n\
         Host {HOST_PREFIX}*\n\
         \x20 ProxyCommand {proxy} %h\n\
         \x20 # The tunnel, authenticated by the server, identifies the workspace; its agent's host key is new at each start.\n\
         \x20 StrictHostKeyChecking no\n\
         \x20 UserKnownHostsFile /dev/null\n\
         \x20 LogLevel ERROR\n\
         {BLOCK_END}\n"
    )
}

/// `text` with its warmspace block replaced by `block` (appended when it has none).
fn with_block(text: &str, block: &str) -> anyhow::Result<String> {
    match (text.find(BLOCK_START), text.find(BLOCK_END)) {
        (Some(start), Some(end)) if start < end => {
            let after = &text[end + BLOCK_END.len()..];
            let after = after.strip_prefix('\n').unwrap_or(after);
            Ok(format!("{}{block}{after}", &text[..start]))
        }
        (None, None) => {
            let separator = if text.is_empty() || text.ends_with("\n\n") {
                ""
            } else if text.ends_with('\n') {
                "\n"
            } else {
                "\n\n"
            };
            Ok(format!("{text}{separator}{block}"))
        }
        _ => bail!("the SSH configuration has a broken warmspace block (a start or end marker alone): mend it by hand"),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn host_names_name_workspaces() {
        let workspace = |name: &str| (name.to_owned(), None);
        let container = |name: &str, devcontainer: &str| (name.to_owned(), Some(devcontainer.to_owned()));
        assert_eq!(target("warmspace.dev"), workspace("dev"));
        assert_eq!(target("warmspace.alice--my-box"), workspace("alice/my-box"));
        assert_eq!(target("alice/dev"), workspace("alice/dev"));
        assert_eq!(target("dev"), workspace("dev"));
        assert_eq!(target("dev.api"), container("dev", "api"));
        assert_eq!(target("alice/dev.api"), container("alice/dev", "api"));
        assert_eq!(target("warmspace.dev.api"), container("dev", "api"));
        assert_eq!(target("warmspace.alice--my-box.api"), container("alice/my-box", "api"));
    }

    #[test]
    fn port_pairs_are_checked() {
        assert_eq!(port_pair("8080:3000"), Ok((8080, 3000)));
        assert_eq!(port_pair("0:22"), Ok((0, 22)));
        assert!(port_pair("8080").is_err());
        assert!(port_pair("8080:0").is_err());
        assert!(port_pair("x:1").is_err());
    }

    #[test]
    fn a_broken_block_is_left_alone() {
        assert!(with_block(&format!("{BLOCK_START}\nHost x\n"), "b").is_err());
    }

    proptest! {
        /// Writing the block twice is writing it once, and what was around it stays.
        #[test]
        fn the_block_is_rewritten_in_place(before in "[a-zA-Z \n]{0,40}", after in "[a-zA-Z \n]{0,40}") {
            let old = ssh_block(Path::new("/old/warmspace"), Path::new("/c"), None);
            let new = ssh_block(Path::new("/new/warmspace"), Path::new("/c"), Some("http://x"));
            let text = format!("{before}\n{old}{after}");
            let once = with_block(&text, &new).unwrap();
            prop_assert_eq!(&once, &format!("{before}\n{new}{after}"));
            prop_assert_eq!(with_block(&once, &new).unwrap(), once.clone());
            let fresh = with_block(&before, &new).unwrap();
            prop_assert!(fresh.starts_with(before.as_str()) && fresh.ends_with(&new));
            prop_assert_eq!(with_block(&fresh, &new).unwrap(), fresh);
        }
    }
}
