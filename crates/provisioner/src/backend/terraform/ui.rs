//! Terraform's machine-readable UI (`-json`): one JSON object a line,
//! turned into readable log lines (Terraform's own `@message`, diagnostics
//! with their detail) and into per-resource timings, from the
//! `apply_start` / `apply_complete` (or `apply_errored`) and
//! `refresh_start` / `refresh_complete` events. A line that is not such an
//! object is logged as it is.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use warmspace_sdk::{BuildTiming, LogLevel};

/// What one stage's UI said so far.
#[derive(Debug, Default)]
pub struct Ui {
    stage: String,
    /// Resource actions begun and not yet ended: (address, action) → start.
    begun: HashMap<(String, String), DateTime<Utc>>,
    pub timings: Vec<BuildTiming>,
    /// Each error diagnostic: `Error: summary`, then its detail.
    pub errors: Vec<String>,
}

impl Ui {
    pub fn new(stage: &str) -> Ui {
        Ui { stage: stage.to_owned(), ..Ui::default() }
    }

    /// The log lines one line of output makes (none for a bare timing event).
    pub fn read(&mut self, line: &str) -> Vec<(LogLevel, String)> {
        let Ok(event) = serde_json::from_str::<Event>(line) else {
            return vec![(LogLevel::Info, line.to_owned())];
        };
        let level = match event.level.as_str() {
            "error" => LogLevel::Error,
            "warn" => LogLevel::Warn,
            _ => LogLevel::Info,
        };
        if let Some(diagnostic) = event.diagnostic {
            return self.diagnostic(level, diagnostic);
        }
        let resource = event.hook.as_ref().and_then(|hook| hook.resource.as_ref()).map(|r| r.addr.clone());
        let action = event.hook.and_then(|hook| hook.action);
        match (event.kind.as_str(), resource) {
            ("apply_start", Some(address)) => self.begin(address, action, event.timestamp),
            ("apply_complete" | "apply_errored", Some(address)) => self.end(address, action, event.timestamp),
            ("refresh_start", Some(address)) => self.begin(address, Some(REFRESH.into()), event.timestamp),
            ("refresh_complete", Some(address)) => self.end(address, Some(REFRESH.into()), event.timestamp),
            _ => {}
        }
        vec![(level, event.message)]
    }

    fn diagnostic(&mut self, level: LogLevel, diagnostic: Diagnostic) -> Vec<(LogLevel, String)> {
        let heading = match diagnostic.severity.as_str() {
            "error" => "Error",
            _ => "Warning",
        };
        let mut lines = vec![format!("{heading}: {}", diagnostic.summary)];
        if let Some(address) = diagnostic.address {
            lines.push(format!("  with {address}"));
        }
        lines.extend(diagnostic.detail.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned));
        if diagnostic.severity == "error" {
            self.errors.push(lines.join("\n"));
        }
        lines.into_iter().map(|line| (level, line)).collect()
    }

    fn begin(&mut self, address: String, action: Option<String>, at: DateTime<Utc>) {
        self.begun.insert((address, action.unwrap_or_default()), at);
    }

    fn end(&mut self, address: String, action: Option<String>, at: DateTime<Utc>) {
        let key = (address, action.unwrap_or_default());
        if let Some(started_at) = self.begun.remove(&key) {
            let (resource, action) = key;
            self.timings.push(BuildTiming {
                stage: self.stage.clone(),
                action,
                resource: Some(resource),
                started_at,
                ended_at: at.max(started_at),
            });
        }
    }
}

/// The action of a resource's `refresh_start` / `refresh_complete` events,
/// which name none.
const REFRESH: &str = "state refresh";

/// The part of a UI event read here.
#[derive(Deserialize)]
struct Event {
    #[serde(rename = "@level")]
    level: String,
    #[serde(rename = "@message")]
    message: String,
    #[serde(rename = "@timestamp")]
    timestamp: DateTime<Utc>,
    #[serde(rename = "type")]
    kind: String,
    diagnostic: Option<Diagnostic>,
    hook: Option<Hook>,
}

#[derive(Deserialize)]
struct Diagnostic {
    severity: String,
    summary: String,
    #[serde(default)]
    detail: String,
    address: Option<String>,
}

#[derive(Deserialize)]
struct Hook {
    resource: Option<HookResource>,
    action: Option<String>,
}

#[derive(Deserialize)]
struct HookResource {
    addr: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(kind: &str, address: &str, action: &str, at: &str, message: &str) -> String {
        format!(
            r#"{{"@level":"info","@message":"{message}","@module":"terraform.ui","@timestamp":"{at}","hook":{{"resource":{{"addr":"{address}"}},"action":"{action}"}},"type":"{kind}"}}"#
        )
    }

    #[test]
    fn apply_events_become_their_messages_and_a_timing_per_resource_action() {
        let mut ui = Ui::new("apply");
        let start = hook("apply_start", "terraform_data.home", "delete", "2026-01-01T10:00:00Z", "home: Destroying...");
        assert_eq!(ui.read(&start), [(LogLevel::Info, "home: Destroying...".to_owned())]);
        ui.read(&hook("apply_complete", "terraform_data.home", "delete", "2026-01-01T10:00:02Z", "done"));
        ui.read(&hook("apply_start", "terraform_data.home", "create", "2026-01-01T10:00:02Z", "creating"));
        ui.read(&hook("apply_errored", "terraform_data.home", "create", "2026-01-01T10:00:05Z", "errored"));
        // An end with no start times nothing.
        ui.read(&hook("apply_complete", "terraform_data.other", "create", "2026-01-01T10:00:05Z", "done"));
        let timings: Vec<(&str, &str, i64)> = ui
            .timings
            .iter()
            .map(|t| (t.resource.as_deref().unwrap(), t.action.as_str(), (t.ended_at - t.started_at).num_seconds()))
            .collect();
        assert_eq!(timings, [("terraform_data.home", "delete", 2), ("terraform_data.home", "create", 3)]);
        assert!(ui.timings.iter().all(|t| t.stage == "apply"));
    }

    #[test]
    fn diagnostics_read_as_terraform_prints_them_and_errors_are_kept() {
        let mut ui = Ui::new("apply");
        let line = r#"{"@level":"error","@message":"Error: local-exec provisioner error","@timestamp":"2026-01-01T10:00:00Z","diagnostic":{"severity":"error","summary":"local-exec provisioner error","detail":"exit status 3. Output: no space\n","address":"terraform_data.disk"},"type":"diagnostic"}"#;
        let lines: Vec<String> = ui
            .read(line)
            .into_iter()
            .map(|(level, text)| {
                assert_eq!(level, LogLevel::Error);
                text
            })
            .collect();
        assert_eq!(
            lines,
            ["Error: local-exec provisioner error", "  with terraform_data.disk", "exit status 3. Output: no space"]
        );
        assert_eq!(
            ui.errors,
            ["Error: local-exec provisioner error\n  with terraform_data.disk\nexit status 3. Output: no space"]
        );
    }

    #[test]
    fn a_line_that_is_not_an_event_is_logged_as_it_is() {
        let mut ui = Ui::new("init");
        assert_eq!(ui.read("plain text"), [(LogLevel::Info, "plain text".to_owned())]);
        assert!(ui.timings.is_empty() && ui.errors.is_empty());
    }
}
