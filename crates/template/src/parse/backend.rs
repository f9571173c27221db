//! The `exec` and `echo` blocks: the configuration of the backend named by
//! `provisioner` (terraform has none: it reads the template's `.tf` files).

use std::time::Duration;

use super::reader::{Key, Reader};
use crate::model::{BackendConfig, EchoConfig, ExecConfig, Provisioner, Transition};

pub(super) const EXEC_KEYS: &[Key] =
    &[Key::Attr("start"), Key::Attr("stop"), Key::Attr("delete"), Key::Attr("timeout")];

pub(super) const ECHO_KEYS: &[Key] = &[Key::Attr("duration_ms"), Key::Attr("fail_on"), Key::Attr("replace_on_claim")];

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// `None` after a reported problem (or when `provisioner` is unknown, which
/// has been reported too). Both blocks are read whatever the provisioner, so
/// that their own problems are found as well.
pub(super) fn read(top: &Reader, provisioner: Option<Provisioner>) -> Option<BackendConfig> {
    let exec = top.nested("exec", EXEC_KEYS).map(|exec| read_exec(&exec));
    let echo = top.nested("echo", ECHO_KEYS).map(|echo| read_echo(&echo));
    let provisioner = provisioner?;
    for (block, present) in [("exec", exec.is_some()), ("echo", echo.is_some())] {
        if present && provisioner.as_str() != block {
            let message = format!(
                "an {block} block is only allowed with provisioner = \"{block}\", not \"{}\"",
                provisioner.as_str()
            );
            top.report(block, message);
        }
    }
    match provisioner {
        Provisioner::Exec => match exec {
            Some(exec) => exec.map(BackendConfig::Exec),
            None => {
                let message = "an exec block is required with provisioner = \"exec\"";
                top.report("exec", message);
                None
            }
        },
        // Every echo setting has a default, so the block is optional.
        Provisioner::Echo => Some(BackendConfig::Echo(echo.unwrap_or_else(echo_defaults))),
        Provisioner::Terraform => Some(BackendConfig::Terraform),
    }
}

fn read_exec(exec: &Reader) -> Option<ExecConfig> {
    let script = |key: &str| exec.checked(key, exec.string(key), |path| script_path(path));
    let start = exec.required("start", |_, key| script(key));
    let stop = script("stop");
    let delete = script("delete");
    let timeout = read_timeout(exec);
    Some(ExecConfig { start: start?, stop, delete, timeout: timeout? })
}

fn read_timeout(exec: &Reader) -> Option<Duration> {
    if !exec.has("timeout") {
        return Some(DEFAULT_TIMEOUT);
    }
    exec.checked("timeout", exec.duration("timeout"), |timeout| {
        if timeout.is_zero() { Err("must be longer than 0".to_owned()) } else { Ok(()) }
    })
}

/// Scripts live inside the template: a path must be relative to its root
/// and may not climb out of it.
fn script_path(path: &str) -> Result<(), String> {
    let components: Vec<&str> = path.split(['/', '\\']).collect();
    if path.trim().is_empty() {
        Err("must not be empty".to_owned())
    } else if path.starts_with(['/', '\\']) {
        Err(format!("{path:?} must be relative to the template's root"))
    } else if components.contains(&"..") {
        Err(format!("{path:?} must not contain \"..\": scripts live inside the template"))
    } else {
        Ok(())
    }
}

fn read_echo(echo: &Reader) -> EchoConfig {
    let fail_on = echo.string_list("fail_on").unwrap_or_default();
    EchoConfig {
        duration_ms: echo.uint("duration_ms").unwrap_or(0),
        fail_on: fail_on.iter().filter_map(|name| transition(echo, name)).collect(),
        replace_on_claim: echo.string_list("replace_on_claim").unwrap_or_default(),
    }
}

/// What an echo backend does without an `echo` block: succeed at once.
fn echo_defaults() -> EchoConfig {
    EchoConfig { duration_ms: 0, fail_on: Vec::new(), replace_on_claim: Vec::new() }
}

fn transition(echo: &Reader, name: &str) -> Option<Transition> {
    let found = name.parse::<Transition>().ok();
    if found.is_none() {
        echo.report("fail_on", format!("{name:?} is not a transition; expected start, stop or delete"));
    }
    found
}
