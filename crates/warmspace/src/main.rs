//! `warmspace`: the server, and the command-line client that talks to it.

mod cli;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if !cli.runs_until_stopped() {
        end_quietly_when_the_reader_goes();
    }
    let runtime = tokio::runtime::Runtime::new().expect("starting the async runtime");
    match runtime.block_on(cli.run()) {
        Ok(()) => ExitCode::SUCCESS,
        // A remote command's status, passed on as it is (`warmspace ssh NAME -- exit 3`).
        Err(err) if let Some(&cli::ExitStatus(code)) = err.downcast_ref() => ExitCode::from(code as u8),
        Err(err) => {
            // Nowhere left to report to if stderr is closed too.
            writeln!(std::io::stderr(), "error: {err:#}").ok();
            ExitCode::FAILURE
        }
    }
}

/// Rust starts programs with SIGPIPE ignored, so a write to a pipe whose
/// reader has exited fails, and `println!` panics. A command that prints an
/// answer should end like other Unix tools instead (`warmspace list | head
/// -1`): quietly, by SIGPIPE. Servers, daemons and agents keep ignoring it:
/// a closed log pipe must not kill them.
fn end_quietly_when_the_reader_goes() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: SIG_DFL installs no handler, so no code of ours runs in signal
    // context; and no other thread exists yet to race on the disposition.
    #[allow(unsafe_code)]
    let restored = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    // Failing, it stays ignored: a broken pipe then ends the command with an error instead.
    restored.ok();
}
