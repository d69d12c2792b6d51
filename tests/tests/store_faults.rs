//! A full disk stops nothing for good (issue 12, item 10). The bridge keeps its store on a
//! 2 MiB tmpfs that the test mounts and fills; while writes fail it must:
//!
//! * hold the acknowledgements that wait on the store (nothing unstored is acknowledged),
//! * serve everything that does not need the store at once (clean sessions, QoS 0,
//!   publishes that only reach clean sessions),
//! * refuse new work that needs it with a reason code rather than hang (persistent
//!   CONNECT: 5.0 0x88, 3.1.1 0x03; a publish that must be stored: 5.0 0x97, 3.1.1 the
//!   connection is closed unacknowledged),
//! * refuse a persistent session's SUBSCRIBE and UNSUBSCRIBE instead of holding them,
//! * say so in `/api/v1/stats` and `/metrics`;
//!
//! and once space is back, resume on its own: the held acknowledgement arrives, new
//! persistent work is accepted, the failing state clears, and after a SIGKILL and restart
//! every acknowledged message is there.
//!
//! Needs root (it mounts a tmpfs); elsewhere it says it is skipped and passes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tests::harness::{crate_dir, Bridge};
use tests::v5::wire as v5;
use tests::wire::{connect, publish, subscribe, unsubscribe, Packet, RawClient, RecvError};

/// What "promptly" means for anything that does not need the store.
const PROMPT: Duration = Duration::from_secs(3);
const PAYLOAD: usize = 100_000;
/// Room left on the tmpfs after the filler: a few big publishes fit, then writes fail.
const HEADROOM: u64 = 600 * 1024;

/// A tmpfs mounted for the test, unmounted (and its mount point removed) on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| {
                let _ = std::fs::remove_dir(dir);
                format!("mount: {e}")
            })?;
        if !out.status.success() {
            let _ = std::fs::remove_dir(dir);
            return Err(format!(
                "mount exited {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            dir: dir.to_owned(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let umount = |lazy: bool| {
            let mut cmd = Command::new("umount");
            if lazy {
                cmd.arg("-l");
            }
            cmd.arg(&self.dir)
                .output()
                .is_ok_and(|out| out.status.success())
        };
        if !umount(false) && !umount(true) {
            eprintln!("could not unmount {}", self.dir.display());
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Writes `path` until the file system is full, then gives `headroom` bytes back.
fn fill(path: &Path, headroom: u64) -> u64 {
    let mut file = std::fs::File::create(path).expect("create the filler");
    let chunk = vec![0xA5u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(_) => break,
        }
    }
    let _ = file.sync_all();
    let size = written.saturating_sub(headroom);
    file.set_len(size).expect("shrink the filler");
    file.sync_all().expect("sync the filler");
    size
}

/// A minimal HTTP/1.1 exchange (`Connection: close`); returns the status and the body.
fn http(port: u16, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the HTTP port");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the HTTP answer");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

struct Api {
    port: u16,
    token: String,
}

impl Api {
    fn login(port: u16) -> Api {
        let (status, body) = http(
            port,
            "POST",
            "/api/v1/login",
            None,
            r#"{"username":"admin","password":"public"}"#,
        );
        assert_eq!(status, 200, "login: {body}");
        let json: Value = serde_json::from_str(&body).unwrap();
        Api {
            port,
            token: json["token"].as_str().expect("a token").to_owned(),
        }
    }

    /// `/api/v1/stats`'s `store` object.
    fn store(&self) -> Value {
        let (status, body) = http(self.port, "GET", "/api/v1/stats", Some(&self.token), "");
        assert_eq!(status, 200, "stats: {body}");
        let json: Value = serde_json::from_str(&body).unwrap();
        json["store"].clone()
    }

    /// The value of an unlabelled Prometheus sample.
    fn metric(&self, name: &str) -> u64 {
        let (status, body) = http(self.port, "GET", "/metrics", Some(&self.token), "");
        assert_eq!(status, 200, "metrics: {body}");
        body.lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in /metrics:\n{body}"))
            .trim()
            .parse()
            .unwrap()
    }

    /// Polls the store's `failing` until it is `want`; returns how long that took.
    fn await_failing(&self, want: bool, within: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let store = self.store();
            if store["failing"] == want {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "the store's failing state did not become {want} within {within:?}: {store}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn big(n: u32) -> Vec<u8> {
    format!("big-{n:03}-")
        .into_bytes()
        .into_iter()
        .cycle()
        .take(PAYLOAD)
        .collect()
}

/// A 3.1.1 CONNECT's CONNACK return code, which must come within [`PROMPT`].
fn connack_code(port: u16, connect: &tests::wire::Connect) -> (RawClient, u8) {
    let mut c = RawClient::open(port);
    c.send_ok(&connect.bytes());
    let start = Instant::now();
    match c.recv(PROMPT) {
        Ok(Packet::Connack { code, .. }) => (c, code),
        other => panic!(
            "no CONNACK within {PROMPT:?} ({:?}): {other:?}",
            start.elapsed()
        ),
    }
}

/// A 5.0 CONNECT's CONNACK reason code, which must come within [`PROMPT`].
fn connack_reason(port: u16, connect: &v5::Connect) -> (v5::Client, u8) {
    let mut c = v5::Client::open(port);
    c.send_ok(&connect.bytes());
    match c.recv(PROMPT) {
        Ok(v5::Packet::Connack { reason, .. }) => (c, reason),
        other => panic!("no CONNACK within {PROMPT:?}: {other:?}"),
    }
}

/// The PUBACK/PUBREC reason of a 5.0 publish, which must come within [`PROMPT`].
fn ack_reason(c: &mut v5::Client, topic: &str, payload: &[u8], qos: u8, pid: u16) -> u8 {
    c.send_ok(&v5::publish(
        topic,
        payload,
        qos,
        true,
        pid,
        &v5::Props::new(),
    ));
    match c.recv(PROMPT) {
        Ok(v5::Packet::Ack { pid: p, reason, .. }) if p == pid => reason,
        other => panic!("no ack for {topic} (QoS {qos}) within {PROMPT:?}: {other:?}"),
    }
}

/// The admin API's port: from the harness, or from the `listening http` line in the log
/// (printed after the MQTT listeners the harness waits for).
fn http_port(bridge: &Bridge) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(port) = bridge.http_port() {
            return port;
        }
        let log = std::fs::read_to_string(bridge.log_path()).unwrap_or_default();
        let found = log.lines().find_map(|line| {
            let rest = line.split("listening http ").nth(1)?;
            rest.trim().rsplit(':').next()?.parse().ok()
        });
        if let Some(port) = found {
            return port;
        }
        assert!(Instant::now() < deadline, "no `listening http` line");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every retained message under `big/#`, `after/#` and `live/#`, read by a fresh clean
/// session.
fn retained(port: u16) -> Vec<(String, Vec<u8>)> {
    let mut c = RawClient::connect_clean(port, "reader");
    c.send_ok(&subscribe(
        1,
        &[("big/#", 1), ("after/#", 1), ("live/#", 1)],
    ));
    let mut got = Vec::new();
    loop {
        match c.recv(Duration::from_secs(2)) {
            Ok(Packet::Suback { .. }) => {}
            Ok(Packet::Publish {
                topic,
                payload,
                qos,
                pid,
                ..
            }) => {
                if let (1, Some(pid)) = (qos, pid) {
                    c.send(&tests::wire::puback(pid));
                }
                got.push((topic, payload));
            }
            Ok(other) => panic!("reader: unexpected {other:?}"),
            Err(RecvError::Timeout) => break,
            Err(e) => panic!("reader: {e:?}"),
        }
    }
    got.sort();
    got
}

#[test]
fn a_full_disk_holds_refuses_and_then_resumes() {
    let mount_point = crate_dir()
        .join("output")
        .join(format!("store_faults.{}.tmpfs", std::process::id()));
    let tmpfs = match Tmpfs::mount(&mount_point, "2m") {
        Ok(tmpfs) => tmpfs,
        Err(e) => {
            println!("skipped: cannot mount tmpfs: {e}");
            return;
        }
    };
    let data = tmpfs.dir.join("data");
    let data_arg = data.to_str().unwrap().to_owned();
    let filler = tmpfs.dir.join("filler");
    let args = ["--data-dir", data_arg.as_str(), "--http", "127.0.0.1:0"];
    let mut bridge = Bridge::start_with(&args);
    let port = bridge.tcp_port();
    let api = Api::login(http_port(&bridge));

    // A persistent subscriber, offline: every big/# message is queued for it, stored.
    let (keeper, _) = RawClient::connect(port, &connect("keeper").clean(false).keep_alive(0));
    let mut keeper = keeper;
    assert_eq!(keeper.subscribe(1, &[("big/#", 1)]), vec![1]);
    keeper.disconnect();
    // A persistent client that will get stuck on the store; its keep-alive must end it.
    let (mut stuck, _) = RawClient::connect(port, &connect("stuck").clean(false).keep_alive(4));

    // Fill the disk, then publish big retained QoS 1 messages until one is not acknowledged.
    let filler_size = fill(&filler, HEADROOM);
    println!("filler: {filler_size} bytes, {HEADROOM} left free");
    let mut publisher = RawClient::connect_clean(port, "publisher");
    let mut acked = Vec::new();
    let mut held = None;
    for n in 1..=40u32 {
        let pid = n as u16;
        publisher.send_ok(&publish(&format!("big/{n}"), &big(n), 1, true, pid));
        match publisher.recv(Duration::from_secs(5)) {
            Ok(Packet::Puback(p)) if p == pid => acked.push(n),
            Err(RecvError::Timeout) => {
                held = Some(n);
                break;
            }
            other => panic!("publisher: {other:?}"),
        }
        stuck.ping();
    }
    let held = held.expect("the disk never filled: every big publish was acknowledged");
    println!("acknowledged before the disk filled: {acked:?}; held: big/{held}");
    stuck.ping();
    // Clean sessions connect at once, on whichever worker thread they land.
    for i in 0..8 {
        let (_c, code) = connack_code(port, &connect(&format!("clean-{i}")).keep_alive(0));
        assert_eq!(code, 0, "a clean 3.1.1 session while the store fails");
        let (_c, reason) = connack_reason(port, &v5::connect(&format!("clean5-{i}")));
        assert_eq!(reason, 0, "a clean 5.0 session while the store fails");
    }
    // Traffic between clean sessions flows: QoS 1 acknowledged, QoS 0 and 1 delivered.
    let mut listener = v5::Client::connect_clean(port, "listener");
    assert_eq!(listener.subscribe(1, &[("live/#", 1)]), vec![1]);
    let mut talker = RawClient::connect_clean(port, "talker");
    talker.send_ok(&publish("live/1", b"qos1", 1, false, 1));
    assert_eq!(talker.recv(PROMPT).unwrap(), Packet::Puback(1));
    talker.send_ok(&publish("live/0", b"qos0", 0, false, 0));
    // A QoS 0 retained message is delivered, though not kept.
    talker.send_ok(&publish("live/r", b"qos0 retained", 0, true, 0));
    let mut live = Vec::new();
    for _ in 0..3 {
        match listener.receive(PROMPT) {
            v5::Packet::Publish { payload, .. } => live.push(payload),
            other => panic!("listener: {other:?}"),
        }
    }
    assert_eq!(
        live,
        vec![
            b"qos1".to_vec(),
            b"qos0".to_vec(),
            b"qos0 retained".to_vec()
        ]
    );

    // Persistent sessions are refused with a reason code, not left hanging.
    let (_c, code) = connack_code(port, &connect("late").clean(false).keep_alive(0));
    assert_eq!(code, 3, "3.1.1 persistent CONNECT: server unavailable");
    let (_c, reason) = connack_reason(port, &v5::connect("late5").session_expiry(300));
    assert_eq!(reason, 0x88, "5.0 persistent CONNECT: server unavailable");
    let (_c, code) = connack_code(port, &connect("keeper").clean(false).keep_alive(0));
    assert_eq!(code, 3, "resuming a stored session needs the store too");

    // Publishes that must be stored are refused: 5.0 "quota exceeded"...
    let mut v5_publisher = v5::Client::connect_clean(port, "v5-publisher");
    assert_eq!(ack_reason(&mut v5_publisher, "big/r1", b"x", 1, 1), 0x97);
    assert_eq!(ack_reason(&mut v5_publisher, "big/r2", b"x", 2, 2), 0x97);
    v5_publisher.send_ok(&v5::publish("big/r3", b"x", 1, false, 3, &v5::Props::new()));
    match v5_publisher.recv(PROMPT) {
        Ok(v5::Packet::Ack { pid: 3, reason, .. }) => {
            assert_eq!(reason, 0x97, "queued for the persistent keeper")
        }
        other => panic!("no PUBACK for big/r3: {other:?}"),
    }
    // ...and 3.1.1, whose acks cannot refuse, is disconnected without an ack.
    let mut v3_publisher = RawClient::connect_clean(port, "v3-publisher");
    v3_publisher.send_ok(&publish("big/r4", b"x", 1, true, 1));
    let before_close = v3_publisher.expect_closed(PROMPT);
    assert!(before_close.is_empty(), "{before_close:?}");

    api.await_failing(true, Duration::from_secs(10));
    let store = api.store();
    println!("store while failing: {store}");
    assert!(
        store["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{store}"
    );
    assert!(store["failed_writes"].as_u64() >= Some(1), "{store}");
    assert!(store["failing_since"].is_string(), "{store}");
    assert_eq!(api.metric("bridge_store_failing"), 1);
    assert!(api.metric("bridge_store_write_failures_total") >= 1);

    // A persistent client's SUBSCRIBE, which would have to be stored, is refused at once
    // (3.1.1: 0x80) instead of waiting for the disk; its UNSUBSCRIBE, whose UNSUBACK cannot
    // refuse in 3.1.1, closes the connection.
    stuck.ping();
    assert_eq!(stuck.subscribe(7, &[("more/#", 1)]), vec![0x80]);
    stuck.ping();
    stuck.send_ok(&unsubscribe(8, &["big/#"]));
    let got = stuck.expect_closed(Duration::from_secs(5));
    assert!(
        !got.iter().any(|p| matches!(p, Packet::Unsuback(_))),
        "no UNSUBACK for what is not stored: {got:?}"
    );

    let store = api.store();
    assert_eq!(store["failing"], true, "{store}");
    assert!(store["refused"].as_u64() >= Some(7), "{store}");
    assert!(api.metric("bridge_store_refused_total") >= 7);

    // Space comes back.
    std::fs::remove_file(&filler).expect("remove the filler");
    let freed = Instant::now();
    match publisher.recv(Duration::from_secs(30)) {
        Ok(Packet::Puback(p)) if p == held as u16 => {}
        other => panic!("the held publish big/{held} was never acknowledged: {other:?}"),
    }
    let acked_after = freed.elapsed();
    acked.push(held);
    let cleared_after = api.await_failing(false, Duration::from_secs(10)) + acked_after;
    println!(
        "space freed: held PUBACK after {acked_after:?}, failing state cleared after \
         {cleared_after:?}"
    );
    let store = api.store();
    assert_eq!(store["failing_since"], Value::Null, "{store}");
    assert_eq!(store["recoveries"], 1, "{store}");
    assert_eq!(api.metric("bridge_store_failing"), 0);
    assert_eq!(api.metric("bridge_store_recoveries_total"), 1);

    // New work is taken again.
    publisher.publish("after/1", b"after", 1, true, 100);
    let (mut c, code) = connack_code(port, &connect("late").clean(false).keep_alive(0));
    assert_eq!(code, 0, "a persistent CONNECT after recovery");
    assert_eq!(c.subscribe(1, &[("after/#", 1)]), vec![1]);
    let (_c5, reason) = connack_reason(port, &v5::connect("late5").session_expiry(300));
    assert_eq!(reason, 0, "a 5.0 persistent CONNECT after recovery");
    let mut v5_publisher = v5::Client::connect_clean(port, "v5-publisher-2");
    assert_eq!(ack_reason(&mut v5_publisher, "after/2", b"after", 1, 1), 0);

    // Everything acknowledged survives a SIGKILL.
    bridge.kill();
    drop(bridge);
    let bridge = Bridge::start_with(&args);
    let port = bridge.tcp_port();
    let mut want: Vec<(String, Vec<u8>)> = acked
        .iter()
        .map(|&n| (format!("big/{n}"), big(n)))
        .collect();
    want.push(("after/1".into(), b"after".to_vec()));
    want.push(("after/2".into(), b"after".to_vec()));
    want.sort();
    let got = retained(port);
    let summary = |list: &[(String, Vec<u8>)]| -> Vec<(String, usize)> {
        list.iter().map(|(t, p)| (t.clone(), p.len())).collect()
    };
    // (Not `live/r`: a QoS 0 retained message sent while the store failed is not kept.)
    assert_eq!(summary(&got), summary(&want), "retained after the restart");
    assert_eq!(got, want, "retained payloads after the restart");
    // The offline persistent subscriber gets every acknowledged big/# message.
    let (mut keeper, present) =
        RawClient::connect(port, &connect("keeper").clean(false).keep_alive(0));
    assert!(present, "the keeper's session survives");
    let mut delivered = std::collections::BTreeSet::new();
    loop {
        match keeper.recv(Duration::from_secs(3)) {
            Ok(Packet::Publish {
                topic, qos, pid, ..
            }) => {
                if let (1, Some(pid)) = (qos, pid) {
                    keeper.send(&tests::wire::puback(pid));
                }
                delivered.insert(topic);
            }
            Err(RecvError::Timeout) => break,
            other => panic!("keeper: {other:?}"),
        }
    }
    for n in &acked {
        assert!(
            delivered.contains(&format!("big/{n}")),
            "big/{n} was acknowledged but not delivered to the keeper: {delivered:?}"
        );
    }
    drop(bridge);
    drop(tmpfs);
}
