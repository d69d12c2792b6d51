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
