//! The admin HTTP API, Prometheus `/metrics` and `$SYS`, end to end: each test starts the
//! real `bridge` binary (every listener on 127.0.0.1 port 0, its own data directory),
//! drives it over HTTP with reqwest and with real MQTT clients (`mosquitto_sub` and
//! `mosquitto_pub` from mosquitto-clients, or a few hand-written packets), then kills it.
//!
//! Timeouts are generous and nothing asserts speed: the machine is shared.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use reqwest::Method;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(30);
const LOOPBACK: &str = "127.0.0.1:0";

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "bridge-api-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `bridge`; killed (and reaped) when dropped.
struct Bridge {
    child: Child,
    tcp: SocketAddr,
    ws: SocketAddr,
    http: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl Bridge {
    /// Starts the binary with `data_dir`, `$SYS` off unless `extra` says otherwise.
    fn start(data_dir: &Path, extra: &[&str]) -> Bridge {
        let mut args = vec![
            "--tcp".to_owned(),
            LOOPBACK.to_owned(),
            "--ws".to_owned(),
            LOOPBACK.to_owned(),
            "--http".to_owned(),
            LOOPBACK.to_owned(),
            "--web-root".to_owned(),
            data_dir.join("no-web-app").display().to_string(),
            "--data-dir".to_owned(),
            data_dir.display().to_string(),
        ];
        if !extra.contains(&"--sys-interval") {
            args.extend(["--sys-interval".to_owned(), "0".to_owned()]);
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_bridge"))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("RUST_LOG")
            .env_remove("BRIDGE_CONFIG")
            .spawn()
            .expect("spawn bridge");
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
        let lines = spawn_line_reader(child.stdout.take().unwrap());
        let addr = |kind: &str| -> SocketAddr {
            let line = lines.recv_timeout(LIMIT).unwrap_or_else(|_| {
                panic!(
                    "no `listening {kind}` line; stderr:\n{}",
                    stderr.lock().unwrap()
                )
            });
            line.strip_prefix(&format!("listening {kind} "))
                .unwrap_or_else(|| panic!("unexpected line {line:?}"))
                .parse()
                .unwrap()
        };
        let (tcp, ws, http) = (addr("tcp"), addr("ws"), addr("http"));
        Bridge {
            child,
            tcp,
            ws,
            http,
            stderr,
        }
    }

    fn port(&self) -> String {
        self.tcp.port().to_string()
    }

    fn api(&self) -> Api {
        Api {
            client: Client::builder().timeout(LIMIT).build().unwrap(),
            base: format!("http://{}", self.http),
            token: None,
        }
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

/// Lines of `pipe` on a channel. Lossy: binary payloads printed by mosquitto_sub must not
/// end the reading.
fn spawn_line_reader(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
            let text = String::from_utf8_lossy(&line)
                .trim_end_matches('\n')
                .to_owned();
            line.clear();
            if tx.send(text).is_err() {
                break;
            }
        }
    });
    rx
}

/// An HTTP answer: status, headers and the body as JSON (`Null` when empty or not JSON).
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    json: Value,
    text: String,
}

impl Reply {
    /// Asserts an API error: the status and a JSON body with that code and a message.
    fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.json["code"], code, "{self:?}");
        assert!(
            self.json["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{self:?}"
        );
    }
}

/// A client of the admin API, logged in or not.
struct Api {
    client: Client,
    base: String,
    token: Option<String>,
}

impl Api {
    fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            json,
            text,
        }
    }

    fn login_as(&self, username: &str, password: &str) -> Reply {
        self.call(
            Method::POST,
            "/api/v1/login",
            Some(json!({"username": username, "password": password})),
        )
    }

    /// Logs in as admin / public (or panics).
    fn logged_in(mut self) -> Api {
        let reply = self.login_as("admin", "public");
        assert_eq!(reply.status, 200, "{reply:?}");
        self.token = Some(reply.json["token"].as_str().unwrap().to_owned());
        self
    }

    /// GET that must answer 200; returns the JSON.
    fn get(&self, path: &str) -> Value {
        let reply = self.call(Method::GET, path, None);
        assert_eq!(reply.status, 200, "GET {path}: {reply:?}");
        reply.json
    }

    /// The `data` of a listing.
    fn list(&self, path: &str) -> Vec<Value> {
        self.get(path)["data"].as_array().unwrap().clone()
    }

    /// Waits until the client has exactly these subscriptions (it is connected and its
    /// SUBSCRIBE went through).
    fn wait_subscribed(&self, clientid: &str, filters: &[&str]) {
        wait_until(&format!("{clientid} subscribed to {filters:?}"), || {
            let reply = self.call(
                Method::GET,
                &format!("/api/v1/clients/{clientid}/subscriptions"),
                None,
            );
            reply.status == 200
                && reply.json.as_array().is_some_and(|subs| {
                    let mut topics: Vec<&str> =
                        subs.iter().filter_map(|s| s["topic"].as_str()).collect();
                    topics.sort();
                    let mut expected = filters.to_vec();
                    expected.sort();
                    topics == expected
                })
        });
    }
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// An external MQTT client process whose stdout lines are read with timeouts.
struct MqttProc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl MqttProc {
    /// `mosquitto_sub` with line-buffered stdout (it is a pipe here).
    fn sub(bridge: &Bridge, args: &[&str]) -> MqttProc {
        let mut child = Command::new("stdbuf")
            .args([
                "-oL",
                "mosquitto_sub",
                "-h",
                "127.0.0.1",
                "-p",
                &bridge.port(),
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mosquitto_sub (install mosquitto-clients)");
        let lines = spawn_line_reader(child.stdout.take().unwrap());
        MqttProc { child, lines }
    }

    fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    fn expect_line(&self) -> String {
        self.next_line(LIMIT).expect("no message within the limit")
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "mosquitto_sub did not exit");
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for MqttProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `mosquitto_pub` to completion.
fn mosquitto_pub(bridge: &Bridge, args: &[&str]) {
    let status = Command::new("timeout")
        .args([
            "30",
            "mosquitto_pub",
            "-h",
            "127.0.0.1",
            "-p",
            &bridge.port(),
        ])
        .args(args)
        .stdin(Stdio::null())
        .status()
        .expect("run mosquitto_pub (install mosquitto-clients)");
    assert!(status.success(), "mosquitto_pub {args:?}: {status}");
}

/// A packet of one fixed-header byte and a body short enough for a one-byte length.
fn frame(first_byte: u8, body: Vec<u8>) -> Vec<u8> {
    assert!(body.len() < 128);
    let mut packet = vec![first_byte, body.len() as u8];
    packet.extend(body);
    packet
}

/// Appends an MQTT string (two-byte length, then the bytes).
fn put_str(body: &mut Vec<u8>, text: &str) {
    body.extend_from_slice(&(text.len() as u16).to_be_bytes());
    body.extend_from_slice(text.as_bytes());
}

/// A 3.1.1 CONNECT (clean session, keep-alive 60 s) with a client id and username.
fn connect_packet(client_id: &str, username: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x80 | 0x02, 0, 60];
    put_str(&mut body, client_id);
    put_str(&mut body, username);
    frame(0x10, body)
}

const CONNACK_ACCEPTED: [u8; 4] = [0x20, 0x02, 0x00, 0x00];

/// A raw TCP client that sent CONNECT and got its CONNACK.
fn raw_tcp_client(bridge: &Bridge, client_id: &str, username: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(bridge.tcp).unwrap();
    tcp.set_read_timeout(Some(LIMIT)).unwrap();
    tcp.write_all(&connect_packet(client_id, username)).unwrap();
    let mut connack = [0u8; 4];
    tcp.read_exact(&mut connack).unwrap();
    assert_eq!(connack, CONNACK_ACCEPTED);
    tcp
}

/// A 5.0 CONNECT (clean start, keep-alive 60 s, no properties) with a client id.
fn connect_v5_packet(client_id: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60, 0];
    put_str(&mut body, client_id);
    frame(0x10, body)
}

/// A 5.0 SUBSCRIBE (packet id 1) of one filter with an options byte and, if given, a
/// subscription identifier (below 128, so one byte).
fn subscribe_v5_packet(filter: &str, options: u8, subscription_id: Option<u8>) -> Vec<u8> {
    let mut body = vec![0, 1];
    match subscription_id {
        Some(id) => body.extend([2, 0x0B, id]),
        None => body.push(0),
    }
    put_str(&mut body, filter);
    body.push(options);
    frame(0x82, body)
}

/// Every route under auth, with a method it takes.
const PROTECTED: &[(&str, &str)] = &[
    ("POST", "/api/v1/logout"),
    ("PUT", "/api/v1/users/admin/password"),
    ("GET", "/api/v1/stats"),
    ("GET", "/api/v1/broker"),
    ("GET", "/api/v1/metrics"),
    ("GET", "/api/v1/metrics/history"),
    ("GET", "/api/v1/clients"),
    ("GET", "/api/v1/clients/c1"),
    ("DELETE", "/api/v1/clients/c1"),
    ("GET", "/api/v1/clients/c1/subscriptions"),
    ("POST", "/api/v1/clients/c1/subscribe"),
    ("POST", "/api/v1/clients/c1/unsubscribe"),
    ("DELETE", "/api/v1/sessions/c1"),
    ("GET", "/api/v1/subscriptions"),
    ("GET", "/api/v1/topics"),
    ("GET", "/api/v1/retained"),
    ("GET", "/api/v1/retained/a/b"),
    ("DELETE", "/api/v1/retained/a/b"),
    ("POST", "/api/v1/publish"),
    ("GET", "/metrics"),
];

#[test]
fn every_endpoint_requires_a_valid_token() {
    let dir = TempDir::new();
    let bridge = Bridge::start(&dir.0, &[]);
    let anonymous = bridge.api();
    let mut forged = bridge.api();
    forged.token = Some("0".repeat(64));
    for (method, path) in PROTECTED {
        let method: Method = method.parse().unwrap();
        let body = (method != Method::GET).then(|| json!({}));
        for api in [&anonymous, &forged] {
            let reply = api.call(method.clone(), path, body.clone());
            reply.assert_error(401, "UNAUTHORIZED");
        }
    }

    // A real token opens them; logging out closes them again.
    let api = bridge.api().logged_in();
    assert!(api.get("/api/v1/stats")["connections"].is_number());
    assert_eq!(api.call(Method::POST, "/api/v1/logout", None).status, 204);
    api.call(Method::GET, "/api/v1/stats", None)
        .assert_error(401, "UNAUTHORIZED");

    // Unknown paths and methods get JSON errors too.
    let api = bridge.api().logged_in();
    api.call(Method::GET, "/api/v1/no/such/thing", None)
        .assert_error(404, "NOT_FOUND");
    api.call(Method::DELETE, "/api/v1/stats", None)
        .assert_error(405, "METHOD_NOT_ALLOWED");
    // The web app still answers outside the API.
    assert_eq!(anonymous.call(Method::GET, "/", None).status, 200);
}

#[test]
fn wrong_passwords_are_refused_then_throttled() {
    let dir = TempDir::new();
    let bridge = Bridge::start(&dir.0, &[]);
    let api = bridge.api();
    for _ in 0..3 {
        api.login_as("admin", "wrong")
            .assert_error(401, "BAD_USERNAME_OR_PASSWORD");
    }
    // From now on, even the right password must wait.
    let throttled = api.login_as("admin", "public");
    throttled.assert_error(429, "TOO_MANY_REQUESTS");
    let wait: u64 = throttled.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&wait), "Retry-After {wait}");
    api.login_as("nobody", "public")
        .assert_error(429, "TOO_MANY_REQUESTS");

    thread::sleep(Duration::from_secs(wait) + Duration::from_millis(200));
    let reply = api.login_as("admin", "public");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json["username"], "admin");
    assert_eq!(reply.json["default_password"], true);
    assert_eq!(reply.json["token"].as_str().unwrap().len(), 64);

    // A success forgives: three more failures are needed before the next wait.
    for _ in 0..3 {
        api.login_as("nobody", "public")
            .assert_error(401, "BAD_USERNAME_OR_PASSWORD");
    }
    api.login_as("admin", "public")
        .assert_error(429, "TOO_MANY_REQUESTS");

    // Bad bodies are 400s, not crashes.
    let reply = api.call(Method::POST, "/api/v1/login", Some(json!({"user": 1})));
    reply.assert_error(400, "BAD_REQUEST");
}

#[test]
fn password_change_survives_a_restart() {
    let dir = TempDir::new();
    let bridge = Bridge::start(&dir.0, &[]);
    let api = bridge.api().logged_in();
    let other_session = bridge.api().logged_in();
    let path = "/api/v1/users/admin/password";
    let change = |old: &str, new: &str| {
        api.call(
            Method::PUT,
            path,
            Some(json!({"old_password": old, "new_password": new})),
        )
    };
    change("public", "short").assert_error(400, "PASSWORD_TOO_SHORT");
    change("wrong-old", "long enough").assert_error(400, "BAD_OLD_PASSWORD");
    change("public", "public").assert_error(400, "PASSWORD_TOO_SHORT");
    change("public!!", "public!!").assert_error(400, "BAD_OLD_PASSWORD");
    assert_eq!(change("public", "correct horse").status, 204);
    change("correct horse", "correct horse").assert_error(400, "PASSWORD_UNCHANGED");

    // The old password stops working at once; other tokens are revoked, this one stays.
    api.login_as("admin", "public")
        .assert_error(401, "BAD_USERNAME_OR_PASSWORD");
    other_session
        .call(Method::GET, "/api/v1/stats", None)
        .assert_error(401, "UNAUTHORIZED");
    assert_eq!(api.call(Method::GET, "/api/v1/stats", None).status, 200);

    let stored = std::fs::read_to_string(dir.path("dashboard_users.json")).unwrap();
    assert!(stored.contains("$argon2id$"), "{stored}");
    assert!(!stored.contains("correct horse"), "{stored}");
    drop(bridge);

    let bridge = Bridge::start(&dir.0, &[]);
    let api = bridge.api();
    api.login_as("admin", "public")
        .assert_error(401, "BAD_USERNAME_OR_PASSWORD");
    let reply = api.login_as("admin", "correct horse");
    assert_eq!(reply.status, 200, "{reply:?}\n{}", bridge.stderr());
    assert_eq!(reply.json["default_password"], false);
}

#[test]
fn clients_subscriptions_topics_and_stats_describe_real_clients() {
    let dir = TempDir::new();
    let bridge = Bridge::start(&dir.0, &[]);
    let api = bridge.api().logged_in();
    let _subs = [
        ("c1", "u1", "t/1"),
        ("c2", "u2", "t/2/#"),
        ("c3", "u3", "t/+/3"),
    ]
    .map(|(id, user, topic)| {
        let sub = MqttProc::sub(&bridge, &["-i", id, "-u", user, "-t", topic, "-q", "1"]);
        api.wait_subscribed(id, &[topic]);
        sub
    });

    let clients = api.list("/api/v1/clients");
    let ids: Vec<&str> = clients
        .iter()
        .map(|c| c["clientid"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["c1", "c2", "c3"]);
    for (client, n) in clients.iter().zip(1..) {
        assert_eq!(client["username"], format!("u{n}"), "{client}");
        assert_eq!(client["transport"], "tcp");
        assert_eq!(client["protocol"], "MQTT 3.1.1");
        assert_eq!(client["proto_ver"], 4);
        assert_eq!(client["ip"], "127.0.0.1");
        assert!(client["port"].as_u64().unwrap() > 0);
        assert_eq!(client["connected"], true);
        assert_eq!(client["clean_start"], true);
        assert_eq!(client["keepalive"], 60);
        assert_eq!(client["subscriptions"], 1);
        assert_eq!(client["inflight"], 0);
        assert_eq!(client["queued"], 0);
        assert_eq!(client["dropped"], 0);
        assert!(client["connected_at"].as_str().unwrap().ends_with('Z'));
    }
    let c2 = api.get("/api/v1/clients/c2");
    assert_eq!(c2["username"], "u2");
    api.call(Method::GET, "/api/v1/clients/nobody", None)
        .assert_error(404, "CLIENTID_NOT_FOUND");

    // Filters and paging.
    let one = |query: &str| -> Vec<String> {
        api.list(&format!("/api/v1/clients?{query}"))
            .iter()
            .map(|c| c["clientid"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(one("like_clientid=2"), ["c2"]);
    assert_eq!(one("like_username=u3"), ["c3"]);
    assert_eq!(one("ip=127.0.0.1").len(), 3);
    assert!(one("ip=10.0.0.1").is_empty());
    assert_eq!(one("conn_state=connected").len(), 3);
    assert!(one("conn_state=disconnected").is_empty());
    let page = api.get("/api/v1/clients?limit=1&page=2");
    assert_eq!(page["data"][0]["clientid"], "c2");
    assert_eq!(page["meta"]["page"], 2);
    assert_eq!(page["meta"]["limit"], 1);
    assert_eq!(page["meta"]["count"], 3);
    assert_eq!(page["meta"]["hasnext"], true);
    assert_eq!(one("limit=2&page=2"), ["c3"]);
    assert!(one("limit=1&page=4").is_empty());
    for bad in [
        "page=0",
        "page=-1",
        "page=x",
        "limit=0",
        "limit=10001",
        "conn_state=maybe",
    ] {
        api.call(Method::GET, &format!("/api/v1/clients?{bad}"), None)
            .assert_error(400, "BAD_REQUEST");
    }

    let subs = api.list("/api/v1/subscriptions");
    let pairs: Vec<(String, String, u64)> = subs
        .iter()
        .map(|s| {
            (
                s["clientid"].as_str().unwrap().to_owned(),
                s["topic"].as_str().unwrap().to_owned(),
                s["qos"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        // Sorted by filter, byte-wise: '+' < '1' < '2'.
        [
            ("c3".into(), "t/+/3".into(), 1),
            ("c1".into(), "t/1".into(), 1),
            ("c2".into(), "t/2/#".into(), 1),
        ]
    );
    let topics = |query: &str| -> Vec<String> {
        api.list(&format!("/api/v1/subscriptions?{query}"))
            .iter()
            .map(|s| s["topic"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(topics("clientid=c2"), ["t/2/#"]);
    assert_eq!(topics("topic=t/1"), ["t/1"]);
    assert_eq!(topics("match_topic=t/2/3"), ["t/+/3", "t/2/#"]);
    assert!(topics("match_topic=x").is_empty());
    assert_eq!(topics("limit=1&page=3"), ["t/2/#"]);
    api.call(Method::GET, "/api/v1/subscriptions?match_topic=t/%23", None)
        .assert_error(400, "INVALID_TOPIC");
    let own = api.get("/api/v1/clients/c3/subscriptions");
    assert_eq!(
        own,
        json!([{"clientid": "c3", "topic": "t/+/3", "qos": 1, "nl": 0, "rap": 0, "rh": 0, "subid": null}])
    );
    assert_eq!(topics("like_topic=2"), ["t/2/#"]);
    assert_eq!(topics("like_topic=t/"), ["t/+/3", "t/1", "t/2/#"]);
    assert_eq!(topics("like_topic=%2B&clientid=c1"), Vec::<String>::new());

    let distinct = api.get("/api/v1/topics");
    assert_eq!(distinct["meta"]["count"], 3);
    assert_eq!(api.get("/api/v1/topics?like_topic=%2B")["meta"]["count"], 1);
    assert_eq!(
        distinct["data"][1],
        json!({"topic": "t/1", "subscribers": 1})
    );

    let stats = api.get("/api/v1/stats");
    assert_eq!(stats["connections"], 3, "{stats}");
    assert_eq!(stats["sessions"], 3);
    assert_eq!(stats["subscriptions"], 3);
    assert_eq!(stats["topics"], 3);
    assert_eq!(stats["retained"], 0);
    assert_eq!(stats["queued_bytes"], 0);
    assert_eq!(stats["messages_received"], 0);

    let broker = api.get("/api/v1/broker");
    assert_eq!(broker["version"], env!("CARGO_PKG_VERSION"));
    assert!(broker["uptime"].is_u64());
    assert!(broker["started_at"].as_str().unwrap().ends_with('Z'));
    let listeners = broker["listeners"].as_array().unwrap();
    for (kind, addr) in [
        ("tcp", bridge.tcp),
        ("ws", bridge.ws),
        ("http", bridge.http),
    ] {
        assert!(
            listeners
                .iter()
                .any(|l| l["kind"] == kind && l["address"] == addr.to_string()),
            "{kind} {addr} missing in {broker}"
        );
    }
}

/// A 5.0 client's subscription options (No Local, Retain As Published, Retain Handling)
/// and subscription identifier are listed as it sent them, under EMQX's names.
#[test]
fn subscriptions_show_their_v5_options() {
    let dir = TempDir::new();
    let bridge = Bridge::start(&dir.0, &[]);
    let api = bridge.api().logged_in();
    let mut tcp = TcpStream::connect(bridge.tcp).unwrap();
    tcp.set_read_timeout(Some(LIMIT)).unwrap();
    tcp.write_all(&connect_v5_packet("v5opts")).unwrap();
    // CONNACK: 20, remaining length, flags, reason 0, properties.
    let mut head = [0u8; 2];
    tcp.read_exact(&mut head).unwrap();
    let mut rest = vec![0u8; head[1] as usize];
    tcp.read_exact(&mut rest).unwrap();
    assert_eq!((head[0], rest[1]), (0x20, 0), "CONNACK {head:?} {rest:?}");

    // QoS 1 | No Local | Retain As Published | Retain Handling 2, identifier 7; then a
    // plain QoS 2 filter without an identifier.
    let subscribe = [
        ("opts/#", 0x01 | 0x04 | 0x08 | 0x20, Some(7)),
        ("plain/+", 0x02, None),
    ];
    for (filter, options, id) in subscribe {
        tcp.write_all(&subscribe_v5_packet(filter, options, id))
            .unwrap();
        let mut suback = [0u8; 6];
        tcp.read_exact(&mut suback).unwrap();
        assert_eq!(
            suback,
            [0x90, 4, 0, 1, 0, options & 0x03],
            "SUBACK for {filter}"
        );
    }
    api.wait_subscribed("v5opts", &["opts/#", "plain/+"]);

    let listed = api.list("/api/v1/subscriptions?clientid=v5opts");
    assert_eq!(
        Value::Array(listed),
        json!([
            {"clientid": "v5opts", "topic": "opts/#", "qos": 1, "nl": 1, "rap": 1, "rh": 2, "subid": 7},
            {"clientid": "v5opts", "topic": "plain/+", "qos": 2, "nl": 0, "rap": 0, "rh": 0, "subid": null},
        ])
    );
    let own = api.get("/api/v1/clients/v5opts/subscriptions");
    assert_eq!(own[0]["rh"], 2, "{own}");
    assert_eq!(own[0]["subid"], 7, "{own}");
    assert_eq!(
        api.list("/api/v1/subscriptions?like_topic=opts")[0]["topic"],
        "opts/#"
    );
}

#[test]
fn websocket_clients_are_listed_as_ws() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::{header, HeaderValue};
    use tokio_tungstenite::tungstenite::Message;

    let dir = TempDir::new();
    let bridge = Bridge::start(&dir.0, &[]);
    let api = bridge.api().logged_in();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Kept open (unpolled) while the API looks at it.
    let _ws = runtime.block_on(async {
        let mut request = format!("ws://{}/mqtt", bridge.ws)
            .into_client_request()
            .unwrap();
        request.headers_mut().insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("mqtt"),
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        ws.send(Message::binary(connect_packet("browser", "web-user")))
            .await
            .unwrap();
        let reply = tokio::time::timeout(LIMIT, ws.next())
            .await
            .expect("no CONNACK")
            .unwrap()
            .unwrap();
        assert_eq!(reply, Message::binary(CONNACK_ACCEPTED.to_vec()));
        ws
    });
    let client = api.get("/api/v1/clients/browser");
    assert_eq!(client["transport"], "ws", "{client}");
    assert_eq!(client["username"], "web-user");
    assert_eq!(client["protocol"], "MQTT 3.1.1");
    assert_eq!(client["connected"], true);
}

#[test]
fn kicking_a_client_closes_its_connection() {
    let dir = TempDir::new();
    let bridge = Bridge::start(&dir.0, &[]);
    let api = bridge.api().logged_in();

    // An MQTT 5 mosquitto_sub is told "administrative action" and exits (a 3.1.1 one
    // would reconnect at once).
    let mut sub = MqttProc::sub(&bridge, &["-V", "5", "-i", "kick-me", "-t", "k"]);
    api.wait_subscribed("kick-me", &["k"]);
    assert_eq!(
        api.call(Method::DELETE, "/api/v1/clients/kick-me", None)
            .status,
        204
    );
    sub.wait_exit();
    wait_until("kick-me gone (clean session)", || {
        api.call(Method::GET, "/api/v1/clients/kick-me", None)
            .status
            == 404
    });
    api.call(Method::DELETE, "/api/v1/clients/kick-me", None)
        .assert_error(404, "CLIENTID_NOT_FOUND");

    // A 3.1.1 connection is simply closed.
    let mut raw = raw_tcp_client(&bridge, "raw", "raw-user");
    assert_eq!(
        api.call(Method::DELETE, "/api/v1/clients/raw", None).status,
        204
    );
    let mut buf = [0u8; 16];
    match raw.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("connection still open after a kick: {other:?}"),
    }

    // A persistent session survives a kick (disconnected), then DELETE /sessions ends it.
    let sub = MqttProc::sub(&bridge, &["-i", "keeper", "-c", "-q", "1", "-t", "p"]);
    api.wait_subscribed("keeper", &["p"]);
    drop(sub);
    wait_until("keeper disconnected", || {
        api.get("/api/v1/clients/keeper")["connected"] == false
    });
    let keeper = api.get("/api/v1/clients/keeper");
    assert_eq!(keeper["subscriptions"], 1, "{keeper}");
    assert_eq!(keeper["clean_start"], false);
    let disconnected = api.list("/api/v1/clients?conn_state=disconnected");
    assert_eq!(disconnected.len(), 1);
    api.call(Method::DELETE, "/api/v1/clients/keeper", None)
        .assert_error(404, "CLIENTID_NOT_FOUND");
    assert_eq!(
        api.call(Method::DELETE, "/api/v1/sessions/keeper", None)
            .status,
        204
    );
    api.call(Method::GET, "/api/v1/clients/keeper", None)
        .assert_error(404, "CLIENTID_NOT_FOUND");
    api.call(Method::DELETE, "/api/v1/sessions/keeper", None)
        .assert_error(404, "CLIENTID_NOT_FOUND");
    assert_eq!(api.get("/api/v1/stats")["subscriptions"], 0);
}

#[test]
fn retained_messages_are_listed_and_deleted() {
    let dir = TempDir::new();
    let bridge = Bridge::start(&dir.0, &[]);
    let api = bridge.api().logged_in();
    mosquitto_pub(&bridge, &["-r", "-q", "1", "-t", "r/a/b", "-m", "hello"]);
    // Binary payloads come back as base64.
    let reply = api.call(
        Method::POST,
        "/api/v1/publish",
        Some(json!({"topic": "r/bin", "payload": "AP8=", "encoding": "base64", "retain": true})),
    );
    assert_eq!(reply.status, 200, "{reply:?}");

    let list = api.get("/api/v1/retained");
    assert_eq!(list["meta"]["count"], 2, "{list}");
    assert_eq!(
        list["data"][0],
        json!({"topic": "r/a/b", "qos": 1, "payload": "hello", "encoding": "plain", "size": 5})
    );
    assert_eq!(list["data"][1]["payload"], "AP8=");
    assert_eq!(list["data"][1]["encoding"], "base64");
    assert_eq!(list["data"][1]["size"], 2);
    assert_eq!(api.list("/api/v1/retained?topic=r/%2B/b").len(), 1);
    assert_eq!(api.list("/api/v1/retained?topic=r/%23").len(), 2);
    assert_eq!(
        api.list("/api/v1/retained?limit=1&page=2")[0]["topic"],
        "r/bin"
    );
    api.call(Method::GET, "/api/v1/retained?topic=a/%23/b", None)
        .assert_error(400, "INVALID_TOPIC_FILTER");
    assert_eq!(api.get("/api/v1/stats")["retained"], 2);

    // The topic in the path, with its slashes as they are or percent-encoded.
    assert_eq!(api.get("/api/v1/retained/r/a/b")["payload"], "hello");
    assert_eq!(api.get("/api/v1/retained/r%2Fa%2Fb")["payload"], "hello");
    api.call(Method::GET, "/api/v1/retained/r/a", None)
        .assert_error(404, "RETAINED_NOT_FOUND");

    assert_eq!(
        api.call(Method::DELETE, "/api/v1/retained/r%2Fa%2Fb", None)
            .status,
        204
    );
    api.call(Method::DELETE, "/api/v1/retained/r/a/b", None)
        .assert_error(404, "RETAINED_NOT_FOUND");

    // A new subscriber gets the remaining retained message only: r/bin, then the
    // marker published after it subscribed (no r/a/b in between).
    let sub = MqttProc::sub(&bridge, &["-i", "late", "-t", "r/#", "-v", "-C", "2"]);
    api.wait_subscribed("late", &["r/#"]);
    mosquitto_pub(&bridge, &["-t", "r/marker", "-m", "end"]);
    let first = sub.expect_line();
    assert!(first.starts_with("r/bin "), "{first:?}");
    assert_eq!(sub.expect_line(), "r/marker end");
}

#[test]
fn api_publish_reaches_subscribers() {
    let dir = TempDir::new();
    let bridge = Bridge::start(&dir.0, &[]);
    let api = bridge.api().logged_in();
    let sub = MqttProc::sub(&bridge, &["-i", "listener", "-t", "p/#", "-q", "1", "-v"]);
    api.wait_subscribed("listener", &["p/#"]);

    let reply = api.call(
        Method::POST,
        "/api/v1/publish",
        Some(json!({"topic": "p/1", "payload": "from the API", "qos": 1})),
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json["delivered_to"], 1);
    assert!(reply.json["id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(sub.expect_line(), "p/1 from the API");
    let reply = api.call(
        Method::POST,
        "/api/v1/publish",
        Some(json!({"topic": "p/2", "payload": "aGk=", "encoding": "base64"})),
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(sub.expect_line(), "p/2 hi");

    for (body, code) in [
        (json!({"topic": "p/+", "payload": "x"}), "INVALID_TOPIC"),
        (json!({"topic": "", "payload": "x"}), "INVALID_TOPIC"),
        (json!({"topic": "p/#"}), "INVALID_TOPIC"),
        (json!({"topic": "p/1", "qos": 3}), "BAD_REQUEST"),
        (
            json!({"topic": "p/1", "payload": "!!", "encoding": "base64"}),
            "BAD_REQUEST",
        ),
        (json!({"topic": "p/1", "encoding": "rot13"}), "BAD_REQUEST"),
        (json!({"payload": "no topic"}), "BAD_REQUEST"),
        (json!("not an object"), "BAD_REQUEST"),
    ] {
        let reply = api.call(Method::POST, "/api/v1/publish", Some(body.clone()));
        reply.assert_error(400, code);
    }
    // Nothing of those reached the subscriber.
    assert_eq!(sub.next_line(Duration::from_millis(500)), None);
    assert_eq!(api.get("/api/v1/stats")["messages_received"], 2);
}

#[test]
fn subscribing_on_behalf_of_a_persistent_client() {
    let dir = TempDir::new();
    let bridge = Bridge::start(&dir.0, &[]);
    let api = bridge.api().logged_in();
    let sub = MqttProc::sub(
        &bridge,
        &["-i", "device", "-c", "-q", "1", "-t", "own/x", "-v"],
    );
    api.wait_subscribed("device", &["own/x"]);

    let subscribe = |clientid: &str, body: Value| {
        api.call(
            Method::POST,
            &format!("/api/v1/clients/{clientid}/subscribe"),
            Some(body),
        )
    };
    let reply = subscribe("device", json!({"topic": "extra/#", "qos": 1}));
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.json,
        json!({"clientid": "device", "topic": "extra/#", "qos": 1, "nl": 0, "rap": 0, "rh": 0, "subid": null})
    );
    api.wait_subscribed("device", &["extra/#", "own/x"]);
    mosquitto_pub(&bridge, &["-q", "1", "-t", "extra/1", "-m", "pushed"]);
    assert_eq!(sub.expect_line(), "extra/1 pushed");

    subscribe("device", json!({"topic": "a/#/b"})).assert_error(400, "INVALID_TOPIC_FILTER");
    subscribe("device", json!({"topic": "a", "qos": 7})).assert_error(400, "BAD_REQUEST");
    subscribe("nobody", json!({"topic": "a"})).assert_error(404, "CLIENTID_NOT_FOUND");

    let unsubscribe = |topic: &str| {
        api.call(
            Method::POST,
            "/api/v1/clients/device/unsubscribe",
            Some(json!({ "topic": topic })),
        )
    };
    assert_eq!(unsubscribe("extra/#").status, 204);
    unsubscribe("extra/#").assert_error(404, "SUBSCRIPTION_NOT_FOUND");
    api.wait_subscribed("device", &["own/x"]);
    // No longer delivered: the next line is the message on its own filter.
    mosquitto_pub(&bridge, &["-q", "1", "-t", "extra/2", "-m", "not for you"]);
    mosquitto_pub(&bridge, &["-q", "1", "-t", "own/x", "-m", "mine"]);
    assert_eq!(sub.expect_line(), "own/x mine");
}

/// `queued_bytes` (stats) and `bridge_queued_bytes` (Prometheus) count the topic and
/// payload bytes an offline persistent session holds, and fall back to 0 once it has them.
#[test]
fn queued_bytes_count_what_an_offline_session_holds() {
    let dir = TempDir::new();
    let bridge = Bridge::start(&dir.0, &[]);
    let api = bridge.api().logged_in();
    let args = ["-i", "away", "-c", "-q", "1", "-t", "held/#", "-v"];
    let sub = MqttProc::sub(&bridge, &args);
    api.wait_subscribed("away", &["held/#"]);
    drop(sub);
    wait_until("the subscriber to go offline", || {
        api.get("/api/v1/clients/away")["connected"] == false
    });
    for payload in ["12345", "678"] {
        mosquitto_pub(&bridge, &["-q", "1", "-t", "held/a", "-m", payload]);
    }
    // "held/a" twice (12 bytes) and 8 bytes of payload.
    assert_eq!(api.get("/api/v1/stats")["queued_bytes"], 20);
    let prometheus = parse_prometheus(&api.call(Method::GET, "/metrics", None).text);
    assert!(
        prometheus.contains(&("bridge_queued_bytes".to_owned(), 20.0)),
        "{prometheus:?}"
    );

    let back = MqttProc::sub(&bridge, &args);
    assert_eq!(back.expect_line(), "held/a 12345");
    assert_eq!(back.expect_line(), "held/a 678");
    wait_until("the queue to be given back", || {
        api.get("/api/v1/stats")["queued_bytes"] == 0
    });
}

/// `name{labels} value` lines of a Prometheus exposition, as (name with labels, value).
fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (name, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("not `name value`: {line:?}"));
            assert!(name.starts_with("bridge_"), "{line:?}");
            let bare = name.split('{').next().unwrap();
            assert!(
                bare.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{line:?}"
            );
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value: {line:?}"));
            (name.to_owned(), value)
        })
        .collect()
}

#[test]
fn metrics_count_traffic_and_prometheus_parses() {
    let dir = TempDir::new();
    let bridge = Bridge::start(&dir.0, &[]);
    let api = bridge.api().logged_in();
    let sub = MqttProc::sub(&bridge, &["-i", "m-sub", "-t", "m/#", "-q", "1", "-v"]);
    api.wait_subscribed("m-sub", &["m/#"]);
    for i in 0..5 {
        mosquitto_pub(&bridge, &["-q", "1", "-t", "m/x", "-m", &i.to_string()]);
    }
    mosquitto_pub(&bridge, &["-t", "nobody/listens", "-m", "x"]);
    for _ in 0..5 {
        sub.expect_line();
    }
    // Every publisher has disconnected, so each PUBLISH before its DISCONNECT is counted.
    wait_until("publishers gone", || {
        api.get("/api/v1/stats")["connections"] == 1
    });

    let metrics = api.get("/api/v1/metrics");
    assert_eq!(metrics["messages"]["received"], 6, "{metrics}");
    assert_eq!(metrics["messages"]["sent"], 5, "{metrics}");
    assert_eq!(
        metrics["messages"]["dropped_by_reason"]["no_subscribers"],
        1
    );
    assert!(metrics["messages"]["dropped"].as_u64().unwrap() >= 1);
    assert!(
        metrics["packets"]["received"]["subscribe"]
            .as_u64()
            .unwrap()
            >= 1,
        "{metrics}"
    );
    assert!(metrics["packets"]["received"]["publish"].as_u64().unwrap() >= 6);
    assert!(metrics["packets"]["sent"]["connack"].as_u64().unwrap() >= 7);
    assert!(metrics["bytes"]["received"].as_u64().unwrap() > 0);
    assert!(metrics["bytes"]["sent"].as_u64().unwrap() > 0);
    assert!(metrics["connections"]["accepted"].as_u64().unwrap() >= 7);
    assert_eq!(metrics["connections"]["current"], 1);
    assert!(metrics["rates"]["received"].is_number());
    assert!(metrics["rates_1min"]["sent"].is_number());

    // The sampler runs every couple of seconds; the traffic shows in some point.
    wait_until("rate history with traffic", || {
        let history = api.get("/api/v1/metrics/history");
        let data = history["data"].as_array().unwrap();
        data.iter()
            .all(|p| p["t"].as_u64().unwrap() > 0 && p["sent_rate"].is_number())
            && data
                .iter()
                .any(|p| p["received_rate"].as_f64().unwrap() > 0.0)
    });

    let prometheus = api.call(Method::GET, "/metrics", None);
    assert_eq!(prometheus.status, 200);
    assert!(prometheus.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let samples = parse_prometheus(&prometheus.text);
    let value = |name: &str| {
        samples
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} missing:\n{}", prometheus.text))
            .1
    };
    assert_eq!(value("bridge_messages_received_total"), 6.0);
    assert_eq!(value("bridge_messages_sent_total"), 5.0);
    assert_eq!(value("bridge_connections"), 1.0);
    assert_eq!(value("bridge_subscriptions"), 1.0);
    assert_eq!(value("bridge_queued_bytes"), 0.0);
    assert_eq!(
        value("bridge_messages_dropped_total{reason=\"no_subscribers\"}"),
        1.0
    );
    assert!(value("bridge_packets_received_total{type=\"publish\"}") >= 6.0);
    assert!(value("bridge_bytes_received_total") > 0.0);
    bridge
        .api()
        .call(Method::GET, "/metrics", None)
        .assert_error(401, "UNAUTHORIZED");
}

#[test]
fn prometheus_can_be_public() {
    let dir = TempDir::new();
    let config = dir.path("bridge.toml");
    std::fs::write(&config, "[dashboard]\nprometheus_public = true\n").unwrap();
    let bridge = Bridge::start(&dir.0, &["--config", config.to_str().unwrap()]);
    let reply = bridge.api().call(Method::GET, "/metrics", None);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(!parse_prometheus(&reply.text).is_empty());
    // Only the exposition: the API still wants a token.
    bridge
        .api()
        .call(Method::GET, "/api/v1/metrics", None)
        .assert_error(401, "UNAUTHORIZED");
}

#[test]
fn sys_topics_are_published_but_not_to_hash_subscribers() {
    let dir = TempDir::new();
    let bridge = Bridge::start(&dir.0, &["--sys-interval", "1"]);
    let api = bridge.api().logged_in();

    let mut uptime = MqttProc::sub(&bridge, &["-t", "$SYS/broker/uptime", "-C", "1"]);
    let line = uptime.expect_line();
    let seconds = line
        .strip_suffix(" seconds")
        .unwrap_or_else(|| panic!("uptime {line:?}"));
    seconds.parse::<u64>().unwrap();
    assert!(uptime.wait_exit().success());

    let version = MqttProc::sub(&bridge, &["-t", "$SYS/broker/version", "-C", "1"]);
    assert_eq!(
        version.expect_line(),
        format!("bridge version {}", env!("CARGO_PKG_VERSION"))
    );
    let all_sys = MqttProc::sub(&bridge, &["-i", "sys-all", "-t", "$SYS/#", "-v"]);
    let expected = [
        "$SYS/broker/clients/connected",
        "$SYS/broker/clients/total",
        "$SYS/broker/messages/received",
        "$SYS/broker/messages/sent",
        "$SYS/broker/subscriptions/count",
        "$SYS/broker/load/messages/received/1min",
        "$SYS/broker/load/messages/sent/1min",
        "$SYS/broker/bytes/received",
        "$SYS/broker/bytes/sent",
        // "retained messages/count": `-v` separates topic and payload by a space too.
        "$SYS/broker/retained",
    ];
    // Retained, so they all come at once on subscribing.
    let mut names = Vec::new();
    while !expected
        .iter()
        .all(|topic| names.contains(&topic.to_string()))
    {
        let line = all_sys
            .next_line(LIMIT)
            .unwrap_or_else(|| panic!("only {names:?}"));
        names.push(line.split(' ').next().unwrap().to_owned());
    }

    // `#` does not match `$SYS` topics (MQTT-4.7.2-1): over several intervals it gets
    // only the marker.
    let everything = MqttProc::sub(&bridge, &["-i", "hash", "-t", "#", "-v"]);
    api.wait_subscribed("hash", &["#"]);
    let deadline = Instant::now() + Duration::from_secs(3);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if let Some(line) = everything.next_line(left) {
            panic!("`#` subscriber got {line:?}");
        }
    }
    mosquitto_pub(&bridge, &["-t", "marker", "-m", "m"]);
    assert_eq!(everything.expect_line(), "marker m");

    // $SYS's own messages are not counted as received (nor dropped), as in Mosquitto.
    let stats = api.get("/api/v1/stats");
    assert_eq!(stats["messages_received"], 1, "{stats}");
    assert_eq!(stats["messages_dropped"], 0, "{stats}");
}

/// Issue 12, item 11: an ACL rule whose access word is misspelled (`topic dney ...`) loads
/// as Mosquitto reads it (readwrite on the filter `dney alice/secret/#`), with a warning in
/// the log and in `/api/v1/stats` for the dashboard, naming the file and the line.
#[test]
fn a_misspelled_acl_access_word_is_a_warning_in_the_log_and_the_api() {
    let dir = TempDir::new();
    let acl = dir.path("acl");
    std::fs::write(
        &acl,
        "user alice\ntopic read alice/#\ntopic dney alice/secret/#\n",
    )
    .unwrap();
    let config = dir.path("bridge.toml");
    std::fs::write(&config, format!("[auth]\nacl_file = {acl:?}\n")).unwrap();
    let bridge = Bridge::start(&dir.0, &["--config", config.to_str().unwrap()]);
    let api = bridge.api().logged_in();
    let warnings = api.get("/api/v1/stats")["warnings"].clone();
    let warnings = warnings.as_array().expect("a list of warnings");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let warning = warnings[0].as_str().unwrap();
    assert!(
        warning.contains(&format!("ACL file {}, line 3", acl.display())),
        "{warning}"
    );
    assert!(warning.contains("did you mean `deny`"), "{warning}");
    wait_until("the warning in the log", || {
        bridge.stderr().contains("did you mean `deny`")
    });
}

/// Issue 12, items 6 and 9: refusals past the retained and subscription limits are counted
/// in `/metrics`, and retained bytes are shown in `/api/v1/stats` and `/metrics`.
#[test]
fn retained_and_subscription_refusals_are_counted() {
    let dir = TempDir::new();
    let bridge = Bridge::start(
        &dir.0,
        &[
            "--max-retained-messages",
            "1",
            "--max-subscriptions-per-client",
            "1",
        ],
    );
    let api = bridge.api().logged_in();
    mosquitto_pub(&bridge, &["-q", "1", "-r", "-t", "kept", "-m", "12345"]);
    mosquitto_pub(&bridge, &["-q", "1", "-r", "-t", "refused", "-m", "x"]);
    let sub = MqttProc::sub(&bridge, &["-i", "two", "-t", "a", "-t", "b"]);
    wait_until("the SUBSCRIBE to be answered", || {
        parse_prometheus(&api.call(Method::GET, "/metrics", None).text)
            .contains(&("bridge_subscriptions_refused_total".to_owned(), 1.0))
    });
    drop(sub);
    assert_eq!(api.get("/api/v1/stats")["retained_bytes"], 9);
    // The API is held to the same bound.
    let reply = api.call(
        Method::POST,
        "/api/v1/publish",
        Some(json!({"topic": "api", "payload": "x", "qos": 1, "retain": true})),
    );
    assert_eq!(reply.status, 507, "{reply:?}");
    assert_eq!(reply.json["code"], "QUOTA_EXCEEDED", "{reply:?}");
    let prometheus = parse_prometheus(&api.call(Method::GET, "/metrics", None).text);
    for expected in [
        ("bridge_retained_refused_total", 2.0),
        ("bridge_retained_bytes", 9.0),
    ] {
        assert!(
            prometheus.contains(&(expected.0.to_owned(), expected.1)),
            "{expected:?} in {prometheus:?}"
        );
    }
}
