//! The `bridge` binary as an operator and scripts see it: its stdout contract
//! (`listening KIND ADDR`), exit codes, config errors and signal handling.
//!
//! Every listener binds 127.0.0.1 port 0, and every child is killed on drop, so a failing
//! assertion leaves no broker behind. Timeouts are generous: the machine is shared.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{header, HeaderValue};

const LIMIT: Duration = Duration::from_secs(60);
const LOOPBACK: &str = "127.0.0.1:0";

/// A running `bridge`; killed (and reaped) when dropped.
struct Bridge {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Bridge {
    fn start(args: &[&str]) -> Bridge {
        let mut child = command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn bridge");
        // Readers on threads, so that a full pipe never blocks the broker and a missing
        // line is a timeout here rather than a hang.
        let (tx, lines) = mpsc::channel();
        let stdout: ChildStdout = child.stdout.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Bridge {
            child,
            lines,
            stderr,
        }
    }

    /// The next stdout line, or `None` at end of output.
    fn next_line(&self) -> Option<String> {
        match self.lines.recv_timeout(LIMIT) {
            Ok(line) => Some(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!(
                    "no stdout line within {LIMIT:?}; stderr:\n{}",
                    self.stderr()
                )
            }
        }
    }

    /// Reads one `listening KIND ADDR` line and checks its kind.
    fn listening(&self, kind: &str) -> SocketAddr {
        let line = self
            .next_line()
            .unwrap_or_else(|| panic!("stdout ended; stderr:\n{}", self.stderr()));
        let rest = line
            .strip_prefix(&format!("listening {kind} "))
            .unwrap_or_else(|| panic!("expected `listening {kind} ADDR`, got {line:?}"));
        let addr: SocketAddr = rest.parse().expect("address in listening line");
        assert_eq!(addr.ip().to_string(), "127.0.0.1", "{line}");
        assert_ne!(addr.port(), 0, "{line}");
        addr
    }

    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    fn wait(&mut self) -> ExitStatus {
        wait_with_limit(&mut self.child)
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bridge"));
    // These tests run brokers side by side: none of them may share (and lock) ./data.
    let subcommand = args.first().is_some_and(|a| !a.starts_with('-'));
    if !subcommand
        && !args
            .iter()
            .any(|a| a.starts_with("--data-dir") || a.starts_with("--persistence"))
    {
        command.args(["--persistence", "off"]);
    }
    command
        .args(args)
        .stdin(Stdio::null())
        // The test's own environment must not change the broker's settings.
        .env_remove("RUST_LOG")
        .env_remove("BRIDGE_CONFIG");
    command
}

/// Runs the binary to completion (killing it past the limit).
fn run(args: &[&str]) -> (ExitStatus, String, String) {
    let mut child = command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bridge");
    let status = wait_with_limit(&mut child);
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status, stdout, stderr)
}

fn wait_with_limit(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("bridge did not exit within {LIMIT:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "bridge-cli-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// A path inside, as a flag argument.
    fn arg(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(LIMIT)).unwrap();
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).unwrap();
    response
}

/// Opens a WebSocket to `ws://addr{path}` offering `mqtt`; returns the answered
/// subprotocol, or the HTTP status of a refusal.
fn ws_handshake(addr: SocketAddr, path: &str) -> Result<Option<String>, u16> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
        request.headers_mut().insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("mqtt"),
        );
        let connect = tokio_tungstenite::connect_async(request);
        match tokio::time::timeout(LIMIT, connect)
            .await
            .expect("handshake timed out")
        {
            Ok((_ws, response)) => Ok(response
                .headers()
                .get(header::SEC_WEBSOCKET_PROTOCOL)
                .map(|v| v.to_str().unwrap().to_owned())),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                Err(response.status().as_u16())
            }
            Err(other) => panic!("WebSocket handshake failed: {other}"),
        }
    })
}

fn all_loopback(web_root: &str) -> Vec<&str> {
    vec![
        "--tcp",
        LOOPBACK,
        "--ws",
        LOOPBACK,
        "--http",
        LOOPBACK,
        "--web-root",
        web_root,
    ]
}

#[test]
fn prints_one_line_per_listener_and_serves_them() {
    let dir = TempDir::new();
    let web_root = dir.arg("no-app");
    let mut bridge = Bridge::start(&all_loopback(&web_root));
    let tcp = bridge.listening("tcp");
    let ws = bridge.listening("ws");
    let http = bridge.listening("http");

    TcpStream::connect(tcp).expect("TCP listener accepts");

    let response = http_get(http, "/");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("./scripts/run"), "{response}");

    assert_eq!(ws_handshake(ws, "/mqtt"), Ok(Some("mqtt".to_owned())));
    assert_eq!(ws_handshake(ws, "/other"), Err(404));

    bridge.terminate();
    assert!(bridge.wait().success(), "stderr:\n{}", bridge.stderr());
    assert_eq!(bridge.next_line(), None, "nothing else on stdout");
}

#[test]
fn serves_a_built_web_app() {
    let dir = TempDir::new();
    dir.write("index.html", "<html>built app</html>");
    let web_root = dir.arg("");
    let bridge = Bridge::start(&[
        "--tcp",
        "off",
        "--ws",
        "off",
        "--http",
        LOOPBACK,
        "--web-root",
        &web_root,
    ]);
    let http = bridge.listening("http");
    let response = http_get(http, "/");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("<html>built app</html>"), "{response}");
}

#[test]
fn disabled_listener_prints_no_line() {
    let dir = TempDir::new();
    let web_root = dir.arg("no-app");
    let mut args = all_loopback(&web_root);
    args[1] = "off";
    let mut bridge = Bridge::start(&args);
    bridge.listening("ws");
    bridge.listening("http");
    bridge.terminate();
    assert!(bridge.wait().success(), "stderr:\n{}", bridge.stderr());
    assert_eq!(bridge.next_line(), None, "no tcp line");
}

#[test]
fn sigterm_exits_cleanly() {
    let dir = TempDir::new();
    let web_root = dir.arg("no-app");
    let mut bridge = Bridge::start(&all_loopback(&web_root));
    let tcp = bridge.listening("tcp");
    bridge.listening("ws");
    bridge.listening("http");
    // An open client connection must not hold up the exit.
    let _client = TcpStream::connect(tcp).unwrap();
    bridge.terminate();
    let status = bridge.wait();
    assert_eq!(status.code(), Some(0), "stderr:\n{}", bridge.stderr());
    assert!(bridge.stderr().contains("SIGTERM"), "{}", bridge.stderr());
}

/// MQTT 5.0 §4.13: a server that closes a 5.0 connection says why — on shutdown,
/// DISCONNECT 0x8B "server shutting down".
#[test]
fn shutdown_tells_mqtt5_clients_why() {
    let dir = TempDir::new();
    let web_root = dir.arg("no-app");
    let mut bridge = Bridge::start(&all_loopback(&web_root));
    let tcp = bridge.listening("tcp");
    bridge.listening("ws");
    bridge.listening("http");
    let mut client = TcpStream::connect(tcp).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // CONNECT: MQTT 5.0, clean start, keep-alive 0, no properties, client id "v5".
    client
        .write_all(&[
            0x10, 15, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 0, 0, 0, 2, b'v', b'5',
        ])
        .unwrap();
    let mut connack = [0u8; 64];
    let n = client.read(&mut connack).unwrap();
    assert!(
        n >= 4 && connack[0] == 0x20 && connack[3] == 0,
        "{:?}",
        &connack[..n]
    );
    bridge.terminate();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while let Ok(n) = client.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got.len() >= 3 && got[0] == 0xE0 && got[2] == 0x8B,
        "expected DISCONNECT 0x8B, got {got:02x?}"
    );
    assert_eq!(
        bridge.wait().code(),
        Some(0),
        "stderr:\n{}",
        bridge.stderr()
    );
}

#[test]
fn config_file_is_applied_and_flags_override_it() {
    let dir = TempDir::new();
    let config = dir.write(
        "bridge.toml",
        "[listeners]\ntcp = \"127.0.0.1:0\"\nws = \"127.0.0.1:0\"\nws_path = \"/broker\"\nhttp = \"127.0.0.1:0\"\n",
    );
    let bridge = Bridge::start(&["--config", config.to_str().unwrap(), "--http", "off"]);
    bridge.listening("tcp");
    let ws = bridge.listening("ws");
    assert_eq!(ws_handshake(ws, "/broker"), Ok(Some("mqtt".to_owned())));
    assert_eq!(ws_handshake(ws, "/mqtt"), Err(404));
}

#[test]
fn unknown_config_key_exits_2_naming_file_and_key() {
    let dir = TempDir::new();
    let config = dir.write(
        "bridge.toml",
        "[limits]\nmax_inflight = 8\nmax_inflite = 9\n",
    );
    let (status, stdout, stderr) = run(&["--config", config.to_str().unwrap()]);
    assert_eq!(status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(stdout, "");
    assert!(stderr.contains("max_inflite"), "{stderr}");
    assert!(stderr.contains(config.to_str().unwrap()), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
}

#[test]
fn invalid_config_values_exit_2() {
    let dir = TempDir::new();
    for (contents, key) in [
        ("[listeners]\ntcp = \"nowhere\"\n", "listeners.tcp"),
        ("[limits]\nmax_packet_size = 1\n", "limits.max_packet_size"),
        ("[limits]\nmax_inflight = \"lots\"\n", "limits.max_inflight"),
    ] {
        let config = dir.write("bridge.toml", contents);
        let (status, _, stderr) = run(&["--config", config.to_str().unwrap()]);
        assert_eq!(status.code(), Some(2), "{contents}: {stderr}");
        assert!(stderr.contains(key), "{contents}: {stderr}");
    }
    let missing = dir.arg("missing.toml");
    let (status, _, stderr) = run(&["--config", &missing]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&missing), "{stderr}");
}

#[test]
fn bad_flags_exit_2() {
    for args in [
        &["--tcp", "localhost:1883"][..],
        &["--max-packet-size", "0"],
        &["--no-such-flag"],
    ] {
        let (status, stdout, stderr) = run(args);
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stdout, "", "{args:?}");
    }
}

#[test]
fn busy_address_exits_1_naming_listener_and_address() {
    let taken = std::net::TcpListener::bind(LOOPBACK).unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (status, stdout, stderr) = run(&["--tcp", LOOPBACK, "--ws", &addr, "--http", "off"]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(stdout, "", "nothing announced when a bind fails");
    assert!(stderr.contains("ws listener"), "{stderr}");
    assert!(stderr.contains(&addr), "{stderr}");
}

#[test]
fn help_describes_flags_and_output() {
    let (status, stdout, _) = run(&["--help"]);
    assert!(status.success());
    for needle in [
        "--config",
        "--tcp",
        "--ws",
        "--http",
        "--ws-path",
        "--web-root",
        "--max-packet-size",
        "--log",
        "listening tcp",
    ] {
        assert!(stdout.contains(needle), "--help lacks {needle}:\n{stdout}");
    }
}

/// MQTT 3.1.1 CONNECT, clean session, keep-alive 60 s, client id "cli-test".
const CONNECT: [u8; 22] = [
    0x10, 20, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 8, b'c', b'l', b'i', b'-', b't',
    b'e', b's', b't',
];
const CONNACK_ACCEPTED: [u8; 4] = [0x20, 0x02, 0x00, 0x00];

#[test]
fn listeners_carry_mqtt() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let dir = TempDir::new();
    let web_root = dir.arg("no-app");
    let bridge = Bridge::start(&all_loopback(&web_root));
    let tcp = bridge.listening("tcp");
    let ws = bridge.listening("ws");

    let mut client = TcpStream::connect(tcp).unwrap();
    client.set_read_timeout(Some(LIMIT)).unwrap();
    client.write_all(&CONNECT).unwrap();
    let mut connack = [0u8; 4];
    client.read_exact(&mut connack).unwrap();
    assert_eq!(connack, CONNACK_ACCEPTED, "over TCP");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut request = format!("ws://{ws}/mqtt").into_client_request().unwrap();
        request.headers_mut().insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("mqtt"),
        );
        let (mut client, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        // The CONNECT split over two frames, as MQTT-over-WebSocket allows.
        client
            .send(Message::binary(CONNECT[..7].to_vec()))
            .await
            .unwrap();
        client
            .send(Message::binary(CONNECT[7..].to_vec()))
            .await
            .unwrap();
        let reply = tokio::time::timeout(LIMIT, client.next())
            .await
            .expect("no CONNACK over WebSocket")
            .unwrap()
            .unwrap();
        assert_eq!(
            reply,
            Message::binary(CONNACK_ACCEPTED.to_vec()),
            "over WebSocket"
        );
    });
}
