//! The `echo` backend: simulates a build without touching anything, so the
//! control plane (prebuild pools, claims, failures, cancels) can be exercised
//! without real infrastructure.

use std::time::Duration;

use warmspace_sdk::{BuildOutcome, BuildResult, Resource};
use warmspace_template::{EchoConfig, Transition};

use warmspace_agent::{AgentOptions, Runner};

use super::BuildContext;
use super::canceled;

/// The resource every simulated workspace consists of.
const MAIN_ADDRESS: &str = "echo_workspace.main";

pub async fn run(config: &EchoConfig, mut ctx: BuildContext<'_>) -> BuildOutcome {
    let job = ctx.job;
    let stage = job.transition.as_str();
    // The state is opaque to the simulation: whatever the last build left is kept.
    let outcome = |result, resources| BuildOutcome { result, state: job.state.clone(), resources, timings: Vec::new() };

    ctx.log.info(stage, format!("Simulating {stage} of workspace {} ({} ms)", job.workspace_name, config.duration_ms));
    // No timer for no time: even a zero sleep waits for the timer's next
    // millisecond tick, which would be most of a zero-work build.
    if config.duration_ms > 0 {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(config.duration_ms)) => {}
            _ = canceled(&mut ctx.cancel) => {
                ctx.log.info(stage, format!("Simulated {stage} canceled"));
                return outcome(BuildResult::Canceled, Vec::new());
            }
        }
    }

    if config.fail_on.contains(&job.transition) {
        let message = format!("the echo backend is configured to fail {stage} builds (fail_on)");
        ctx.log.error(stage, message.clone());
        return outcome(BuildResult::Failed(message), Vec::new());
    }

    let resources = resources(config, job.transition, job.is_claim);
    for replaced in resources.iter().filter(|r| r.replaced) {
        ctx.log.info(stage, format!("Replacing {} for the new owner", replaced.address));
    }
    start_simulated_agents(ctx.job, ctx.log);
    ctx.log.info(stage, format!("Simulated {stage} finished"));
    outcome(BuildResult::Succeeded, resources)
}

/// A simulated workspace's agents are tasks in this daemon that speak the
/// real agent protocol with the tokens the build issued, so the server sees
/// them connect, become ready, heartbeat and re-initialise like real ones.
/// They end when the server says the workspace stopped or their token stops
/// working (the next start issues new ones; deletion revokes them).
fn start_simulated_agents(job: &warmspace_sdk::BuildJob, log: &crate::logs::LogSink) {
    // No agents, nothing to simulate: the server's address does not matter.
    if job.agent_tokens.is_empty() {
        return;
    }
    let Ok(url) = job.server_url.parse::<url::Url>() else {
        log.error(job.transition.as_str(), format!("cannot simulate agents: bad server URL {:?}", job.server_url));
        return;
    };
    for (name, token) in &job.agent_tokens {
        log.info(job.transition.as_str(), format!("Starting simulated agent {name}"));
        let options = AgentOptions {
            runner: Runner::Simulated { delay: Duration::ZERO },
            // Simulated workspaces (thousands of them) have nothing to reach.
            tunnel: false,
            ..AgentOptions::new(url.clone(), token.clone())
        };
        let (workspace, agent) = (job.workspace_name.clone(), name.clone());
        tokio::spawn(async move {
            match warmspace_agent::run(options, std::future::pending()).await {
                Ok(exit) => tracing::debug!(%workspace, %agent, ?exit, "simulated agent ended"),
                Err(err) => tracing::debug!(%workspace, %agent, error = %err, "simulated agent ended"),
            }
        });
    }
}

/// What a successful build reports: a started workspace exists; a stopped or
/// deleted one reports nothing. A claim also throws away the resources the
/// template says cannot be handed over warm.
fn resources(config: &EchoConfig, transition: Transition, is_claim: bool) -> Vec<Resource> {
    if transition != Transition::Start {
        return Vec::new();
    }
    let mut resources = vec![resource(MAIN_ADDRESS, false)];
    if is_claim {
        for address in &config.replace_on_claim {
            match resources.iter_mut().find(|r| r.address == *address) {
                Some(existing) => existing.replaced = true,
                None => resources.push(resource(address, true)),
            }
        }
    }
    resources
}

/// The kind is the address's first segment, as in `docker_container.workspace`.
fn resource(address: &str, replaced: bool) -> Resource {
    let kind = address.split('.').next().unwrap_or(address);
    Resource { address: address.to_owned(), kind: kind.to_owned(), replaced }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use futures::FutureExt;
    use tokio::sync::watch;
    use warmspace_sdk::{BuildJob, JobLogLine};
    use warmspace_template::BackendConfig;

    use super::*;
    use crate::logs::LogSink;

    fn config(duration_ms: u64) -> EchoConfig {
        EchoConfig { duration_ms, fail_on: Vec::new(), replace_on_claim: Vec::new() }
    }

    fn job(config: &EchoConfig, transition: Transition) -> BuildJob {
        BuildJob {
            state: Some(b"previous".to_vec()),
            server_url: "http://localhost:3000".into(),
            ..crate::backend::test_job(transition, BackendConfig::Echo(config.clone()))
        }
    }

    /// The context of a simulated build: no files, no binary, no script to stop.
    fn context<'a>(job: &'a BuildJob, log: &'a LogSink, cancel: watch::Receiver<bool>) -> BuildContext<'a> {
        BuildContext {
            job,
            files: Path::new("/nonexistent"),
            log,
            cancel,
            binary: Path::new("/x"),
            stop_grace: crate::DEFAULT_STOP_GRACE,
            terraform: Path::new("terraform"),
            terraform_plugin_cache: None,
        }
    }

    /// Runs a build to its end; the cancel sender stays alive (and false) throughout.
    async fn build(config: &EchoConfig, job: &BuildJob) -> (BuildOutcome, Vec<JobLogLine>) {
        let (log, mut rx) = LogSink::channel();
        let (_cancel_tx, cancel) = watch::channel(false);
        let ctx = context(job, &log, cancel);
        let outcome = run(config, ctx).await;
        drop(log);
        let mut lines = Vec::new();
        while let Some(line) = rx.recv().await {
            lines.push(line);
        }
        (outcome, lines)
    }

    #[tokio::test(start_paused = true)]
    async fn start_waits_its_duration_reports_the_workspace_and_keeps_the_state() {
        let config = config(300);
        let job = job(&config, Transition::Start);
        let (log, _rx) = LogSink::channel();
        let (_cancel_tx, cancel) = watch::channel(false);
        let build = run(&config, context(&job, &log, cancel));
        tokio::pin!(build);
        // The first poll starts the simulated wait at the paused clock's now.
        assert!((&mut build).now_or_never().is_none(), "the build finished at once");
        tokio::time::advance(Duration::from_millis(299)).await;
        assert!((&mut build).now_or_never().is_none(), "the build finished before its duration");
        tokio::time::advance(Duration::from_millis(1)).await;
        let outcome = (&mut build).now_or_never().expect("the build did not finish at its duration");

        assert_eq!(outcome.result, BuildResult::Succeeded);
        assert_eq!(outcome.state, Some(b"previous".to_vec()));
        assert_eq!(outcome.resources, vec![resource(MAIN_ADDRESS, false)]);
        assert_eq!(outcome.resources[0].kind, "echo_workspace");
    }

    #[tokio::test]
    async fn logs_what_it_simulates() {
        let config = config(0);
        let (_, lines) = build(&config, &job(&config, Transition::Start)).await;
        assert_eq!(lines[0].output, "Simulating start of workspace dev (0 ms)");
        assert!(lines.iter().all(|l| l.stage == "start"));
    }

    #[tokio::test]
    async fn stop_and_delete_report_no_resources() {
        let config = config(0);
        for transition in [Transition::Stop, Transition::Delete] {
            let (outcome, _) = build(&config, &job(&config, transition)).await;
            assert_eq!(outcome.result, BuildResult::Succeeded);
            assert_eq!(outcome.resources, Vec::new());
            assert_eq!(outcome.state, Some(b"previous".to_vec()));
        }
    }

    #[tokio::test]
    async fn fails_the_transitions_in_fail_on() {
        let config = EchoConfig { fail_on: vec![Transition::Stop], ..config(0) };
        let (outcome, lines) = build(&config, &job(&config, Transition::Stop)).await;
        let BuildResult::Failed(message) = outcome.result else { panic!("expected a failure: {outcome:?}") };
        assert!(message.contains("fail stop builds"), "{message}");
        assert_eq!(outcome.state, Some(b"previous".to_vec()));
        assert!(lines.iter().any(|l| l.output == message));

        let (outcome, _) = build(&config, &job(&config, Transition::Start)).await;
        assert_eq!(outcome.result, BuildResult::Succeeded);
    }

    #[tokio::test]
    async fn a_claim_reports_the_replaced_resources() {
        let config = EchoConfig { replace_on_claim: vec!["docker_container.home".into()], ..config(0) };
        let mut job = job(&config, Transition::Start);
        job.is_claim = true;
        let (outcome, lines) = build(&config, &job).await;
        assert_eq!(outcome.result, BuildResult::Succeeded);
        assert_eq!(
            outcome.resources,
            vec![
                resource(MAIN_ADDRESS, false),
                Resource { address: "docker_container.home".into(), kind: "docker_container".into(), replaced: true },
            ]
        );
        assert!(lines.iter().any(|l| l.output.contains("docker_container.home")));

        // The same template without a claim replaces nothing.
        job.is_claim = false;
        let (outcome, _) = build(&config, &job).await;
        assert_eq!(outcome.resources, vec![resource(MAIN_ADDRESS, false)]);
    }

    /// On paused time: had the cancel been missed, the clock would have
    /// jumped to the end of the ten minutes and the build succeeded.
    #[tokio::test(start_paused = true)]
    async fn cancel_stops_the_simulation() {
        let config = config(600_000);
        let job = job(&config, Transition::Start);
        let (log, _rx) = LogSink::channel();
        let (cancel_tx, cancel) = watch::channel(false);
        let (outcome, _) = tokio::join!(run(&config, context(&job, &log, cancel)), async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            cancel_tx.send(true).unwrap();
        });
        assert_eq!(outcome.result, BuildResult::Canceled);
        assert_eq!(outcome.state, Some(b"previous".to_vec()));
    }
}
