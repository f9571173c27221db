//! `scripts/demo.sh` as a user runs it: twice on the same data, each run
//! ended with Ctrl-C (SIGINT).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common::*;

/// What the script prints once everything is set up and it waits for Ctrl-C.
const READY: &str = "Press Ctrl-C";

struct DemoRun {
    child: Option<Child>,
    /// Where the server's log is (`server.log`).
    demo_dir: PathBuf,
    lines: Receiver<String>,
    stdout: String,
    stderr: Arc<Mutex<String>>,
}

impl DemoRun {
    fn start(demo_dir: &Path, address: &str) -> DemoRun {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/demo.sh");
        // A person's Ctrl-C at a terminal: a runner that started these tests
        // in the background (where SIGINT is ignored, and an ignored signal
        // stays ignored in every program started after, which a shell
        // cannot trap) must not make the script deaf to it. `env` restores
        // it and becomes bash (the same process).
        let mut cmd = Command::new("env");
        cmd.arg("--default-signal=INT").arg("bash");
        for (key, _) in std::env::vars() {
            if key.starts_with("WARMSPACE_") {
                cmd.env_remove(key);
            }
        }
        let mut child = cmd
            .arg(script)
            .env("WARMSPACE_BIN", BIN)
            .env("WARMSPACE_DEMO_DIR", demo_dir)
            .env("WARMSPACE_HTTP_ADDRESS", address)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting scripts/demo.sh");
        let (send, lines) = channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        DemoRun { child: Some(child), demo_dir: demo_dir.to_owned(), lines, stdout: String::new(), stderr }
    }

    fn output(&self) -> String {
        let log = std::fs::read_to_string(self.demo_dir.join("server.log")).unwrap_or_default();
        let last: Vec<&str> = log.lines().rev().take(40).collect();
        let last: Vec<&str> = last.into_iter().rev().collect();
        format!(
            "stdout:\n{}\nstderr:\n{}\nthe server log's last lines:\n{}",
            self.stdout,
            self.stderr.lock().unwrap(),
            last.join("\n")
        )
    }

    /// Reads the script's output until it says it is ready.
    fn wait_ready(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.stdout.push_str(&line);
                    self.stdout.push('\n');
                    if line.contains(READY) {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!("demo.sh was not ready within {limit:?}\n{}", self.output()),
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.as_mut().unwrap().wait().unwrap();
                    panic!("demo.sh exited with {status} before it was ready\n{}", self.output());
                }
            }
        }
    }

    /// Ctrl-C: SIGINT to the script, then its exit status.
    fn interrupt(&mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
        let deadline = Instant::now() + Duration::from_secs(90);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                child.kill().ok();
                child.wait().ok();
                // What it printed while stopping says where it stopped.
                while let Ok(line) = self.lines.try_recv() {
                    self.stdout.push_str(&line);
                    self.stdout.push('\n');
                }
                panic!("demo.sh did not exit within 90 s of SIGINT\n{}", self.output());
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        // Whatever it printed while stopping.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.stdout.push_str(&line);
            self.stdout.push('\n');
        }
        status
    }
}

impl Drop for DemoRun {
    /// A failed test still lets the script stop what it started.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).ok();
            let deadline = Instant::now() + Duration::from_secs(60);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            child.kill().ok();
            child.wait().ok();
        }
    }
}

/// The pids the exec example's scripts recorded (`<root>/<workspace>/*.pid`).
fn example_pids(root: &Path) -> Vec<i32> {
    let Ok(workspaces) = std::fs::read_dir(root) else { return Vec::new() };
    let files = workspaces.flatten().flat_map(|w| std::fs::read_dir(w.path()).into_iter().flatten().flatten());
    files
        .map(|f| f.path())
        .filter(|p| p.extension().is_some_and(|e| e == "pid"))
        .filter_map(|p| std::fs::read_to_string(p).ok()?.trim().parse().ok())
        .collect()
}

fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

/// Live processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let zombie = std::fs::read_to_string(entry.path().join("stat")).is_ok_and(|s| s.contains(") Z "));
        if cmdline.contains(needle) && !zombie {
            found.push(cmdline);
        }
    }
    found
}

fn json(config: &Path, args: &[&str]) -> serde_json::Value {
    serde_json::from_slice(&run(warmspace(config).args(args).args(["-o", "json"])).stdout).unwrap()
}

/// Ctrl-C, then: exit status 0, none of the exec example's processes left,
/// and neither the server nor its PostgreSQL.
fn stop_and_check(run: &mut DemoRun, demo_dir: &Path) {
    let pids = example_pids(&demo_dir.join("workspaces"));
    assert!(!pids.is_empty(), "the exec example started processes\n{}", run.output());
    let status = run.interrupt();
    assert!(status.success(), "demo.sh exits 0 on Ctrl-C, not {status}\n{}", run.output());
    let left: Vec<i32> = pids.into_iter().filter(|pid| alive(*pid)).collect();
    assert!(left.is_empty(), "the exec example's processes {left:?} outlived Ctrl-C\n{}", run.output());
    let data = demo_dir.join("data");
    assert_eq!(processes_mentioning(data.to_str().unwrap()), Vec::<String>::new(), "postgres is gone");
}

#[test]
fn the_demo_runs_twice_on_the_same_data_and_stops_its_workspaces_on_ctrl_c() {
    let tmp = temp_dir();
    let demo_dir: PathBuf = tmp.path().join("demo");
    let config = demo_dir.join("client");
    let address = free_address();

    let mut first = DemoRun::start(&demo_dir, &address);
    first.wait_ready(Duration::from_secs(300));
    assert!(!first.stdout.contains("did not fill"), "the pools filled\n{}", first.output());
    assert!(first.stdout.contains(demo_dir.to_str().unwrap()), "it says where its data is\n{}", first.output());
    assert!(first.stdout.contains("rm -rf"), "it says how to start over\n{}", first.output());
    let demo = json(&config, &["show", "demo"]);
    assert_eq!(demo["latest_build"]["reason"], "claim", "demo was claimed from the pool\n{}", first.output());
    stop_and_check(&mut first, &demo_dir);

    let mut second = DemoRun::start(&demo_dir, &address);
    second.wait_ready(Duration::from_secs(300));
    assert!(!second.stdout.contains("did not fill"), "the pools filled again\n{}", second.output());
    let again = json(&config, &["show", "demo-2"]);
    assert_eq!(again["latest_build"]["reason"], "claim", "demo-2 was claimed\n{}", second.output());
    for template in ["example", "local", "terraform"] {
        let versions = json(&config, &["templates", "versions", "list", template]);
        assert_eq!(versions.as_array().unwrap().len(), 1, "{template} was not pushed again\n{}", second.output());
    }
    stop_and_check(&mut second, &demo_dir);
}
