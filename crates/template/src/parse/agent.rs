//! `agent "name" { ... }` blocks, with their `app` and `devcontainer` blocks.

use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;

use super::reader::{Key, Reader};
use crate::model::{Agent, App, Devcontainer, Healthcheck};

pub(super) const KEYS: &[Key] =
    &[Key::Attr("startup_script"), Key::Attr("env"), Key::Blocks("app"), Key::Blocks("devcontainer")];
pub(super) const APP_KEYS: &[Key] = &[Key::Attr("display_name"), Key::Attr("url"), Key::Block("healthcheck")];
pub(super) const HEALTHCHECK_KEYS: &[Key] = &[Key::Attr("url"), Key::Attr("interval"), Key::Attr("threshold")];
pub(super) const DEVCONTAINER_KEYS: &[Key] = &[Key::Attr("workspace_folder"), Key::Attr("config_path")];

/// Agent, app and dev container names end up in hostnames and URLs, hence
/// the DNS-label shape.
static NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new("^[a-z0-9]+(-[a-z0-9]+)*$").expect("a valid pattern"));

const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_THRESHOLD: u32 = 3;
/// Checks closer together than this would load the app more than they tell.
const MIN_INTERVAL: Duration = Duration::from_millis(100);
const MAX_INTERVAL: Duration = Duration::from_secs(3600);
const MAX_THRESHOLD: u64 = 100;

pub(super) fn read_all(top: &Reader) -> Vec<Agent> {
    let blocks = top.labelled("agent", KEYS);
    let agents: Vec<Agent> = blocks.iter().map(|(name, block)| read(name.clone(), block)).collect();
    // Apps are addressed by name within a workspace, whichever agent serves them.
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for ((_, block), agent) in blocks.iter().zip(&agents) {
        for app in &agent.apps {
            // Within one agent, `labelled` has reported it already.
            let elsewhere = seen.iter().find(|(name, other)| *name == app.name && *other != agent.name);
            if let Some((_, other)) = elsewhere {
                let message = format!("duplicate name: agent \"{other}\" has an app called \"{}\" too", app.name);
                block.report("app", message);
            }
            seen.push((&app.name, &agent.name));
        }
    }
    agents
}

fn read(name: String, block: &Reader) -> Agent {
    check_name(block, "an agent", &name);
    let apps = block.labelled("app", APP_KEYS).into_iter().filter_map(|(name, app)| read_app(name, &app)).collect();
    let devcontainers = block
        .labelled("devcontainer", DEVCONTAINER_KEYS)
        .into_iter()
        .filter_map(|(name, devcontainer)| read_devcontainer(name, &devcontainer))
        .collect();
    Agent {
        name,
        startup_script: block.string("startup_script").unwrap_or_default(),
        env: block.string_map("env").unwrap_or_default(),
        apps,
        devcontainers,
    }
}

fn check_name(block: &Reader, what: &str, name: &str) {
    if !NAME.is_match(name) {
        let message = format!(
            "{what} name may contain only lowercase letters, digits and single hyphens, and must start and end \
             with a letter or digit"
        );
        block.problems.report(&block.loc, message);
    }
}

fn read_app(name: String, app: &Reader) -> Option<App> {
    check_name(app, "an app", &name);
    let url = app.required("url", |app, key| app.checked(key, app.string(key), |url| http_url(url)));
    let display_name = app.string("display_name").unwrap_or_else(|| name.clone());
    let healthcheck = match app.nested("healthcheck", HEALTHCHECK_KEYS) {
        Some(check) => Some(read_healthcheck(&check)?),
        None => None,
    };
    Some(App { name, display_name, url: url?, healthcheck })
}

fn read_healthcheck(check: &Reader) -> Option<Healthcheck> {
    let url = check.required("url", |check, key| check.checked(key, check.string(key), |url| http_url(url)));
    let interval = match check.has("interval") {
        false => Some(DEFAULT_INTERVAL),
        true => check.checked("interval", check.duration("interval"), |interval| {
            if (MIN_INTERVAL..=MAX_INTERVAL).contains(interval) {
                Ok(())
            } else {
                Err("must be between 100ms and 1h".to_owned())
            }
        }),
    };
    let threshold = match check.has("threshold") {
        false => Some(DEFAULT_THRESHOLD),
        true => check
            .checked("threshold", check.uint("threshold"), |n| match n {
                1..=MAX_THRESHOLD => Ok(()),
                _ => Err(format!("must be between 1 and {MAX_THRESHOLD}")),
            })
            .map(|n| n as u32),
    };
    Some(Healthcheck { url: url?, interval: interval?, threshold: threshold? })
}

fn read_devcontainer(name: String, devcontainer: &Reader) -> Option<Devcontainer> {
    check_name(devcontainer, "a dev container", &name);
    let not_empty = |path: &String| if path.trim().is_empty() { Err("must not be empty".to_owned()) } else { Ok(()) };
    let folder = devcontainer.required("workspace_folder", |d, key| d.checked(key, d.string(key), not_empty));
    let config_path = devcontainer.checked("config_path", devcontainer.string("config_path"), not_empty);
    Some(Devcontainer { name, workspace_folder: folder?, config_path })
}

/// What the agent can check and a browser can open: an absolute http(s) URL.
fn http_url(text: &str) -> Result<(), String> {
    match url::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(()),
        Ok(url) => Err(format!("{text:?} must be an http or https URL, not {}", url.scheme())),
        Err(e) => Err(format!("{text:?} is not a URL such as \"http://localhost:3000\": {e}")),
    }
}
