//! Process helpers shared by the test files that drive command-line tools and signal the
//! bridge (auth, tls): a full-output runner, SIGHUP, and polling the bridge's log.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::Bridge;

/// Runs `program args` to completion: (exit code, stdout, stderr), both read to the end
/// (the harness's `run` may return before the last stderr bytes are read). Killed and
/// reported after `timeout`.
pub fn run_full(program: &Path, args: &[&str], timeout: Duration) -> (i32, String, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} {args:?} did not finish within {timeout:?}",
                program.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status.code().unwrap_or(-1),
        out.join().unwrap(),
        err.join().unwrap(),
    )
}

/// Sends SIGHUP to the bridge process (`kill -HUP`).
pub fn sighup(b: &Bridge) {
    let pid = b.pid().to_string();
    let status = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(status.success(), "kill -HUP {pid}");
}

/// Reads the bridge's log every `every` until `find` gets something from it; None if
/// nothing by `timeout`.
pub fn poll_log<T>(
    b: &Bridge,
    timeout: Duration,
    every: Duration,
    mut find: impl FnMut(&str) -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let log = std::fs::read_to_string(b.log_path()).unwrap_or_default();
        if let Some(v) = find(&log) {
            return Some(v);
        }
        std::thread::sleep(every);
    }
    None
}

/// How long a command-line client run by [`mosquitto_pub`] or [`mosquitto_sub_lines`] may take.
const CLIENT_WAIT: Duration = Duration::from_secs(30);

/// `mosquitto_pub -h 127.0.0.1 -p PORT ARGS` against the bridge: (exit code, stdout,
/// stderr).
pub fn mosquitto_pub(b: &Bridge, args: &[&str]) -> (i32, String, String) {
    mosquitto_tool("mosquitto_pub", b, args)
}

/// `mosquitto_sub -h 127.0.0.1 -p PORT ARGS` run to its end (give it `-C` or `-W`): the
/// lines it printed.
pub fn mosquitto_sub_lines(b: &Bridge, args: &[&str]) -> Vec<String> {
    let (_, out, _) = mosquitto_tool("mosquitto_sub", b, args);
    out.lines().map(str::to_owned).collect()
}

fn mosquitto_tool(tool: &str, b: &Bridge, args: &[&str]) -> (i32, String, String) {
    let port = b.tcp_port().to_string();
    let mut all = vec!["-h", "127.0.0.1", "-p", &port];
    all.extend_from_slice(args);
    run_full(&crate::which(tool), &all, CLIENT_WAIT)
}
