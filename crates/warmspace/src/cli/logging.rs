//! Logging to standard error, the same way for every command.

use std::io::IsTerminal;

use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Logs to stderr what `RUST_LOG` asks for, else `default`: colours only
/// when stderr is a terminal (a file or a pipe gets plain text), and a
/// write that fails — the pipe's reader went away, as `tee` does on Ctrl-C —
/// is dropped. tracing-subscriber would report it with `eprintln!` to the
/// same broken stderr, which panics, and a panic in a task the server is
/// waiting on (its shutdown signal) would keep it from ever stopping.
pub fn init(default: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .log_internal_errors(false);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Like [`init`] (plain text), with `extra` beside the log: a layer that
/// filters for itself (a benchmark's statement counter), seeing events the
/// log's filter would drop.
pub fn init_with<L>(default: &str, extra: L)
where
    L: Layer<tracing_subscriber::Registry> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .log_internal_errors(false)
        .with_filter(filter);
    tracing_subscriber::registry().with(extra).with(log).init();
}
