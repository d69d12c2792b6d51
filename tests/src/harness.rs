//! Starting the real `bridge` binary, and running the external clients (mosquitto, python).

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// How long the bridge may take to print its listening lines (the machine is shared and slow).
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The workspace root: the parent of this crate's manifest directory.
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent directory")
        .to_path_buf()
}

/// The `tests/` crate directory.
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Path of a helper script in `tests/py/`.
pub fn py_script(name: &str) -> PathBuf {
    let p = crate_dir().join("py").join(name);
    assert!(p.exists(), "missing python helper {}", p.display());
    p
}

/// The bridge binary: `$BRIDGE_BIN` if set, else `<target>/debug/bridge`, built (once per test
/// process) with `cargo build -p bridge` if it is missing or older than its sources.
pub fn bridge_bin() -> &'static Path {
    // The outcome, failure included, is kept: a broken build is reported by every test
    // without being retried by each of them.
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BIN.get_or_init(find_or_build_bridge) {
        Ok(bin) => bin,
        Err(e) => panic!("{e}"),
    }
}

fn find_or_build_bridge() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("BRIDGE_BIN") {
        let bin = PathBuf::from(bin);
        if !bin.exists() {
            return Err(format!("BRIDGE_BIN={} does not exist", bin.display()));
        }
        return Ok(bin);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| {
            if t.is_absolute() {
                t
            } else {
                workspace_dir().join(t)
            }
        })
        .unwrap_or_else(|| workspace_dir().join("target"));
    let bin = target
        .join("debug")
        .join(format!("bridge{}", std::env::consts::EXE_SUFFIX));
    let reason = if !bin.exists() {
        "is missing"
    } else if is_stale(&bin) {
        "is older than the bridge/ or protocol/ sources"
    } else {
        return Ok(bin);
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!(
        "{} {reason}: running `cargo build -p bridge`",
        bin.display()
    );
    let status = Command::new(cargo)
        .args(["build", "-p", "bridge"])
        .current_dir(workspace_dir())
        .status()
        .map_err(|e| format!("cannot run cargo build -p bridge: {e}"))?;
    if !status.success() {
        return Err(format!(
            "{} {reason}, and `cargo build -p bridge` failed ({status}): see its output above",
            bin.display()
        ));
    }
    if !bin.exists() {
        return Err(format!(
            "cargo build -p bridge did not produce {}",
            bin.display()
        ));
    }
    Ok(bin)
}

/// Whether any source of the bridge (or the protocol crate it uses) changed after `bin` was
/// built, so that `cargo test -p tests` alone never tests an old binary.
fn is_stale(bin: &Path) -> bool {
    fn newest(dir: &Path, acc: &mut Option<std::time::SystemTime>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                newest(&path, acc);
            } else if let Ok(m) = e.metadata().and_then(|m| m.modified()) {
                if acc.is_none_or(|a| m > a) {
                    *acc = Some(m);
                }
            }
        }
    }
    let Ok(built) = fs::metadata(bin).and_then(|m| m.modified()) else {
        return true;
    };
    let mut latest = None;
    for krate in ["bridge", "protocol"] {
        let dir = workspace_dir().join(krate);
        newest(&dir.join("src"), &mut latest);
        if let Ok(m) = fs::metadata(dir.join("Cargo.toml")).and_then(|m| m.modified()) {
            if latest.is_none_or(|a| m > a) {
                latest = Some(m);
            }
        }
    }
    latest.is_some_and(|l| l > built)
}

/// Panics unless `tool` is on PATH; returns its full path. Missing tools are failures, not skips.
pub fn which(tool: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(tool);
        if candidate.is_file() {
            return candidate;
        }
    }
    if tool.starts_with("mosquitto") {
        panic!("`{tool}` not found on PATH: install mosquitto-clients (scripts/test does)");
    }
    panic!("`{tool}` not found on PATH: install it (scripts/test does)");
}

/// Panics unless python3 with paho-mqtt 2.x is available.
pub fn require_paho() -> PathBuf {
    static CHECKED: OnceLock<PathBuf> = OnceLock::new();
    CHECKED
        .get_or_init(|| {
            let py = which("python3");
            let out = Command::new(&py)
                .args([
                    "-c",
                    "import paho.mqtt, paho.mqtt.client as m; \
                     assert int(paho.mqtt.__version__.split('.')[0]) >= 2; \
                     print(paho.mqtt.__version__)",
                ])
                .output()
                .expect("run python3");
            assert!(
                out.status.success(),
                "python3 lacks paho-mqtt >= 2: `pip install paho-mqtt` (scripts/test does)\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            py
        })
        .clone()
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A per-test log file under `tests/output/`, named after the test binary and the test thread.
fn log_path() -> PathBuf {
    let dir = crate_dir().join("output");
    fs::create_dir_all(&dir).expect("create tests/output");
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|s| s.split('-').next().unwrap_or("test").to_string())
        .unwrap_or_else(|| "test".into());
    let thread = thread::current();
    let name = match thread.name() {
        Some(n) if n != "main" => n.to_string(),
        _ => format!("pid{}", std::process::id()),
    };
    // A test that starts several bridges gets `-1`, `-2`... for the later ones; the names
    // stay the same from run to run, so old logs are overwritten rather than piling up.
    thread_local!(static STARTED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) });
    let n = STARTED.with(|c| {
        let n = c.get();
        c.set(n + 1);
        n
    });
    let suffix = if n == 0 {
        String::new()
    } else {
        format!("-{n}")
    };
    dir.join(format!("{}-{}{}.log", exe, sanitize(&name), suffix))
}

/// A running bridge. Killed (and waited for) on drop.
pub struct Bridge {
    child: Child,
    tcp: u16,
    ws: u16,
    http: Option<u16>,
    log: PathBuf,
    /// The store directory the harness chose (removed on drop), if it chose one.
    data_dir: Option<PathBuf>,
}

impl Bridge {
    /// Starts the bridge with `--tcp 127.0.0.1:0 --ws 127.0.0.1:0 --http off`.
    pub fn start() -> Bridge {
        Bridge::start_with(&[])
    }

    /// Starts the bridge with extra flags, e.g. `&["--max-packet-size", "1024"]`.
    pub fn start_with(extra: &[&str]) -> Bridge {
        let bin = bridge_bin();
        let log = log_path();
        let log_file = File::create(&log).expect("create log file");
        let mut cmd = Command::new(bin);
        cmd.args(["--tcp", "127.0.0.1:0", "--ws", "127.0.0.1:0"]);
        if !extra.contains(&"--http") {
            cmd.args(["--http", "off"]);
        }
        // Each bridge keeps its store in a directory of its own (the store locks its
        // file): next to the test's log, removed with the bridge. The pid keeps
        // concurrent runs of the same test (on a shared machine) apart.
        let mut data_dir = None;
        if !extra
            .iter()
            .any(|a| *a == "--data-dir" || *a == "--persistence")
        {
            let dir = log.with_extension(format!("{}.data", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            cmd.arg("--data-dir").arg(&dir);
            data_dir = Some(dir);
        }
        cmd.args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file.try_clone().expect("clone log file")));
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info,bridge=debug");
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));

        // Stdout is read on a thread for the whole life of the process (so the bridge never
        // blocks or fails writing to it); lines are copied to the log and sent to us.
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel::<String>();
        let log_out = Arc::new(Mutex::new(log_file));
        thread::spawn(move || {
            let reader = BufReader::new(stdout);
            for line in reader.lines() {
                let Ok(line) = line else { break };
                if let Ok(mut f) = log_out.lock() {
                    let _ = writeln!(f, "[stdout] {line}");
                }
                let _ = tx.send(line);
            }
        });

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let (mut tcp, mut ws, mut http) = (None, None, None);
        let mut seen = Vec::new();
        // The HTTP listener, when a test asks for one, is announced after the other two.
        let wants_http = extra.contains(&"--http");
        while tcp.is_none() || ws.is_none() || (wants_http && http.is_none()) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.trim().strip_prefix("listening ") {
                        let mut parts = rest.split_whitespace();
                        let kind = parts.next().unwrap_or("");
                        let addr: Option<SocketAddr> = parts.next().and_then(|a| a.parse().ok());
                        match (kind, addr) {
                            ("tcp", Some(a)) => tcp = Some(a.port()),
                            ("ws", Some(a)) => ws = Some(a.port()),
                            ("http", Some(a)) => http = Some(a.port()),
                            _ => {}
                        }
                    }
                    seen.push(line);
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "bridge did not print `listening tcp ...` and `listening ws ...` within \
                         {STARTUP_TIMEOUT:?}\nstdout so far: {seen:?}\nstderr ({}):\n{}",
                        log.display(),
                        tail(&log)
                    );
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = child.wait();
                    panic!(
                        "bridge exited ({status:?}) before printing both listening lines\n\
                         stdout: {seen:?}\nstderr ({}):\n{}",
                        log.display(),
                        tail(&log)
                    );
                }
            }
        }
        // Keep draining the channel so nothing piles up; the thread logs every line anyway.
        thread::spawn(move || while rx.recv().is_ok() {});
        Bridge {
            child,
            tcp: tcp.unwrap(),
            ws: ws.unwrap(),
            http,
            log,
            data_dir,
        }
    }

    pub fn tcp_port(&self) -> u16 {
        self.tcp
    }

    pub fn ws_port(&self) -> u16 {
        self.ws
    }

    pub fn http_port(&self) -> Option<u16> {
        self.http
    }

    pub fn tcp_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.tcp))
    }

    /// `ws://127.0.0.1:PORT/mqtt`
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/mqtt", self.ws)
    }

    /// The bridge's process id (for reading `/proc/PID/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, for real: no shutdown code runs, nothing is flushed. The data directory
    /// is kept so that a new bridge can be started on it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the bridge process is still alive (it must survive any client misbehaviour).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Panics (with the log tail) if the bridge has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "bridge exited unexpectedly ({status})\nstderr ({}):\n{}",
                self.log.display(),
                tail(&self.log)
            );
        }
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last part of the bridge's log, for failure messages.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.data_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn tail(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    const MAX: usize = 8000;
    if s.len() > MAX {
        let mut cut = s.len() - MAX;
        while !s.is_char_boundary(cut) {
            cut += 1;
        }
        format!("...{}", &s[cut..])
    } else {
        s
    }
}

/// An external client process whose stdout is read line by line with timeouts.
/// Killed on drop.
pub struct Proc {
    name: String,
    child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    seen: Vec<String>,
}

impl Proc {
    /// Spawns `program args...` with stdout/stderr piped.
    pub fn spawn<I, S>(program: &Path, args: I) -> Proc
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let args: Vec<std::ffi::OsString> =
            args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let name = format!(
            "{} {}",
            program.display(),
            args.iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let mut child = Command::new(program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn `{name}`: {e}"));
        let stdout = child.stdout.take().unwrap();
        let mut stderr_pipe = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let stderr2 = stderr.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match stderr_pipe.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => stderr2
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
        });
        Proc {
            name,
            child,
            lines: rx,
            stderr,
            seen: Vec::new(),
        }
    }

    /// The next stdout line, or None on timeout / end of output.
    pub fn next_line(&mut self, timeout: Duration) -> Option<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(l) => {
                self.seen.push(l.clone());
                Some(l)
            }
            Err(_) => None,
        }
    }

    /// Reads lines until one satisfies `pred`; panics (with everything seen) on timeout or EOF.
    pub fn wait_line(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if pred(&l) {
                        return l;
                    }
                }
                Err(e) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    thread::sleep(Duration::from_millis(100));
                    panic!(
                        "`{}`: expected line not seen ({}) within {timeout:?}\nstdout: {:?}\nstderr: {}",
                        self.name,
                        match e {
                            RecvTimeoutError::Timeout => "timeout",
                            RecvTimeoutError::Disconnected => "output ended",
                        },
                        self.seen,
                        self.stderr.lock().unwrap()
                    )
                }
            }
        }
    }

    /// Waits for the process to exit; returns its status and all remaining stdout lines.
    /// Panics if it does not exit within `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Collect the rest of stdout (the reader thread ends at EOF).
                while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
                    self.seen.push(l);
                }
                return (status, self.seen.clone());
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                thread::sleep(Duration::from_millis(100));
                while let Ok(l) = self.lines.try_recv() {
                    self.seen.push(l);
                }
                panic!(
                    "`{}` did not exit within {timeout:?}\nstdout: {:?}\nstderr: {}",
                    self.name,
                    self.seen,
                    self.stderr.lock().unwrap()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Like [`Proc::wait`] but panics unless the exit status is success.
    pub fn wait_success(&mut self, timeout: Duration) -> Vec<String> {
        let (status, lines) = self.wait(timeout);
        assert!(
            status.success(),
            "`{}` failed: {status}\nstdout: {lines:?}\nstderr: {}",
            self.name,
            self.stderr()
        );
        lines
    }

    /// Every stdout line read so far.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGKILL: the process dies without sending DISCONNECT.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a command to completion (with a timeout) and returns (status, stdout, stderr).
pub fn run(program: &Path, args: &[&str], timeout: Duration) -> (ExitStatus, String, String) {
    let mut p = Proc::spawn(program, args);
    let (status, lines) = p.wait(timeout);
    (status, lines.join("\n"), p.stderr())
}

/// Runs a command and panics unless it exits successfully within `timeout`; returns stdout.
pub fn run_ok(program: &Path, args: &[&str], timeout: Duration) -> String {
    let (status, out, err) = run(program, args, timeout);
    assert!(
        status.success(),
        "`{} {}` failed: {status}\nstdout: {out}\nstderr: {err}",
        program.display(),
        args.join(" ")
    );
    out
}

/// Spawns `tool args...` with its stdout line-buffered (through coreutils `stdbuf -oL`), so
/// C programs such as mosquitto_sub, whose stdout is a pipe here, print each line at once.
pub fn spawn_line_buffered<I, S>(tool: &str, args: I) -> Proc
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let tool = which(tool);
    let mut all: Vec<std::ffi::OsString> = vec!["-oL".into(), tool.into_os_string()];
    all.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
    Proc::spawn(&which("stdbuf"), all)
}
