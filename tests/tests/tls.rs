//! MQTT over TLS and WebSocket over TLS against the real binary: certificates made at test
//! time with the `openssl` command (a CA, a server certificate for 127.0.0.1, client
//! certificates), clients mosquitto_pub / mosquitto_sub (`--cafile`, `--cert`, `--key`)
//! and python paho over `wss`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tests::procs::{poll_log, run_full};
use tests::{require_paho, spawn_line_buffered, unique, which, Bridge, Proc};

const WAIT: Duration = Duration::from_secs(30);

/// A CA, a server certificate (127.0.0.1, localhost) and two client certificates (CN
/// `device-7` signed by the CA, and one signed by a CA the bridge does not trust), as PEM
/// files in a scratch directory removed on drop. No key is ever committed.
struct Pki(PathBuf);

impl Pki {
    fn new() -> Pki {
        let dir = std::env::temp_dir().join(unique("bridge-tls"));
        std::fs::create_dir_all(&dir).unwrap();
        let pki = Pki(dir);
        pki.ca("ca", "bridge test CA");
        pki.ca("rogue-ca", "someone else's CA");
        pki.leaf(
            "server",
            "ca",
            "/CN=127.0.0.1",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        );
        pki.leaf(
            "client",
            "ca",
            "/CN=device-7",
            "extendedKeyUsage=clientAuth\n",
        );
        pki.leaf(
            "rogue",
            "rogue-ca",
            "/CN=device-7",
            "extendedKeyUsage=clientAuth\n",
        );
        pki
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_owned()
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new(which("openssl"))
            .args(args)
            .current_dir(&self.0)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn ca(&self, name: &str, cn: &str) {
        let subject = format!("/CN={cn}");
        let (key, cert) = (format!("{name}.key"), format!("{name}.pem"));
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &cert,
            "-days",
            "2",
            "-subj",
            &subject,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
    }

    fn leaf(&self, name: &str, ca: &str, subject: &str, extensions: &str) {
        let (key, csr, cert, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        std::fs::write(
            self.0.join(&ext),
            format!("basicConstraints=CA:FALSE\n{extensions}"),
        )
        .unwrap();
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            subject,
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
    }

    /// A config file: `[tls]` with the server certificate plus `tls_extra`, and `rest`.
    fn config(&self, tls_extra: &str, rest: &str) -> PathBuf {
        let path = self.0.join(unique("bridge") + ".toml");
        std::fs::write(
            &path,
            format!(
                "{rest}\n[tls]\ncert = {:?}\nkey = {:?}\n{tls_extra}\n",
                self.path("server.pem"),
                self.path("server.key")
            ),
        )
        .unwrap();
        path
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A bridge with the tls and wss listeners on loopback, and their ports (read from the
/// `listening tls|wss ADDR` lines, which the harness copies into the log).
struct TlsBridge {
    bridge: Bridge,
    tls: u16,
    wss: u16,
}

fn start(config: &Path) -> TlsBridge {
    let bridge = Bridge::start_with(&[
        "--config",
        config.to_str().unwrap(),
        "--tls",
        "127.0.0.1:0",
        "--wss",
        "127.0.0.1:0",
    ]);
    let port = |kind: &str| {
        let prefix = format!("[stdout] listening {kind} ");
        let every = Duration::from_millis(50);
        let addr = poll_log(&bridge, WAIT, every, |log| {
            let addr = log.lines().find_map(|l| l.strip_prefix(&prefix))?;
            Some(addr.trim().parse::<std::net::SocketAddr>().unwrap())
        });
        match addr {
            Some(addr) => addr.port(),
            None => panic!("no `listening {kind}` line:\n{}", bridge.log_tail()),
        }
    };
    let (tls, wss) = (port("tls"), port("wss"));
    TlsBridge { bridge, tls, wss }
}

/// `-h 127.0.0.1 -p TLS_PORT --cafile ca.pem` and `extra`.
fn tls_args(b: &TlsBridge, pki: &Pki, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "-h",
        "127.0.0.1",
        "-p",
        &b.tls.to_string(),
        "--cafile",
        &pki.path("ca.pem"),
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn client_cert(pki: &Pki, name: &str) -> Vec<String> {
    vec![
        "--cert".into(),
        pki.path(&format!("{name}.pem")),
        "--key".into(),
        pki.path(&format!("{name}.key")),
    ]
}

fn tls_pub(b: &TlsBridge, pki: &Pki, extra: &[String]) -> (i32, String, String) {
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let args = tls_args(b, pki, &extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_full(&which("mosquitto_pub"), &args, WAIT)
}

fn tls_sub(b: &TlsBridge, pki: &Pki, extra: &[String]) -> Proc {
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let mut args = tls_args(b, pki, &extra);
    args.extend(["-d", "-F", "MSG %t %p"].map(String::from));
    let mut p = spawn_line_buffered("mosquitto_sub", &args);
    p.wait_line(WAIT, |l| l.starts_with("Subscribed (mid"));
    p
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

const WSS_CLIENT: &str = r#"
import ssl, sys, time
import paho.mqtt.client as mqtt

port, ca, topic, payload = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
cert = sys.argv[5] if len(sys.argv) > 5 else None
key = sys.argv[6] if len(sys.argv) > 6 else None
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="wss-test", transport="websockets")
c.ws_set_options(path="/mqtt")
c.tls_set(ca_certs=ca, certfile=cert, keyfile=key)
state = {}
c.on_connect = lambda c, u, f, rc, p: state.setdefault("connack", str(rc))
c.on_subscribe = lambda c, u, mid, rcs, p: state.setdefault("suback", True)
c.on_message = lambda c, u, m: state.setdefault("echo", m.payload.decode())
c.connect("127.0.0.1", port)
c.loop_start()
deadline = time.time() + 20
while "connack" not in state and time.time() < deadline:
    time.sleep(0.05)
print("CONNACK", state.get("connack"), flush=True)
c.subscribe(topic, 1)
while "suback" not in state and time.time() < deadline:
    time.sleep(0.05)
c.publish(topic, payload, qos=1).wait_for_publish(20)
while "echo" not in state and time.time() < deadline:
    time.sleep(0.05)
print("ECHO", state.get("echo"), flush=True)
c.disconnect()
c.loop_stop()
"#;

/// Runs the paho wss client; returns its stdout lines.
fn wss_client(b: &TlsBridge, pki: &Pki, topic: &str, payload: &str, cert: bool) -> Vec<String> {
    let py = require_paho();
    let script = pki.0.join("wss_client.py");
    std::fs::write(&script, WSS_CLIENT).unwrap();
    let mut args = vec![
        script.to_str().unwrap().to_owned(),
        b.wss.to_string(),
        pki.path("ca.pem"),
        topic.to_owned(),
        payload.to_owned(),
    ];
    if cert {
        args.push(pki.path("client.pem"));
        args.push(pki.path("client.key"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = run_full(&py, &args, WAIT);
    assert_eq!(code, 0, "wss client:\n{out}\n{err}");
    out.lines().map(str::to_owned).collect()
}

/// The tls and wss listeners carry MQTT: mosquitto over TLS and paho over wss reach each
/// other; a plain MQTT client on the TLS port gets no CONNACK and the broker goes on.
#[test]
fn tls_and_wss_carry_mqtt() {
    let pki = Pki::new();
    let config = pki.config("", "");
    let mut b = start(&config);
    let topic = unique("tls");

    let mut s = tls_sub(
        &b,
        &pki,
        &strings(&["-t", &format!("{topic}/#"), "-q", "1"]),
    );
    let (code, out, err) = tls_pub(
        &b,
        &pki,
        &strings(&["-t", &format!("{topic}/a"), "-m", "over-tls", "-q", "1"]),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    s.wait_line(WAIT, |l| l == format!("MSG {topic}/a over-tls"));

    let lines = wss_client(&b, &pki, &format!("{topic}/w"), "over-wss", false);
    assert!(lines.contains(&"CONNACK Success".to_owned()), "{lines:?}");
    assert!(lines.contains(&"ECHO over-wss".to_owned()), "{lines:?}");
    s.wait_line(WAIT, |l| l == format!("MSG {topic}/w over-wss"));

    // Plain MQTT on the TLS port: a TLS alert at most, never a CONNACK.
    let mut plain = TcpStream::connect(("127.0.0.1", b.tls)).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let connect = [
        0x10, 0x10, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3C, 0x00, 0x04, b'p',
        b'l', b'a', b'i',
    ];
    plain.write_all(&connect).unwrap();
    let mut reply = Vec::new();
    let _ = plain.read_to_end(&mut reply);
    assert!(
        !reply.starts_with(&[0x20]),
        "plain CONNECT on the TLS port got {reply:02x?}"
    );
    // mosquitto_pub without TLS fails too.
    let port = b.tls.to_string();
    let (code, _, _) = run_full(
        &which("mosquitto_pub"),
        &["-h", "127.0.0.1", "-p", &port, "-t", "x", "-m", "y"],
        WAIT,
    );
    assert_ne!(code, 0);
    // TLS on the plain port fails as well.
    let tcp = b.bridge.tcp_port().to_string();
    let ca = pki.path("ca.pem");
    let (code, _, _) = run_full(
        &which("mosquitto_pub"),
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &tcp,
            "--cafile",
            &ca,
            "-t",
            "x",
            "-m",
            "y",
        ],
        WAIT,
    );
    assert_ne!(code, 0);

    b.bridge.assert_running();
    let (code, out, err) = tls_pub(
        &b,
        &pki,
        &strings(&["-t", &format!("{topic}/b"), "-m", "still", "-q", "1"]),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    s.wait_line(WAIT, |l| l == format!("MSG {topic}/b still"));
}

/// With `require_client_cert`, a client without a certificate (or with one from another
/// CA) cannot even finish the handshake; one with a certificate from `ca` can, over tls
/// and over wss.
#[test]
fn client_certificates_can_be_required() {
    let pki = Pki::new();
    let config = pki.config(
        &format!("ca = {:?}\nrequire_client_cert = true", pki.path("ca.pem")),
        "",
    );
    let b = start(&config);
    let topic = unique("mtls");

    let mut with_cert = client_cert(&pki, "client");
    with_cert.extend(strings(&["-t", &topic, "-q", "1"]));
    let mut s = tls_sub(&b, &pki, &with_cert);

    let (code, out, err) = tls_pub(&b, &pki, &strings(&["-t", &topic, "-m", "no-cert"]));
    assert_ne!(code, 0, "no certificate accepted: {out}\n{err}");
    let mut rogue = client_cert(&pki, "rogue");
    rogue.extend(strings(&["-t", &topic, "-m", "rogue"]));
    let (code, out, err) = tls_pub(&b, &pki, &rogue);
    assert_ne!(code, 0, "untrusted certificate accepted: {out}\n{err}");

    let mut good = client_cert(&pki, "client");
    good.extend(strings(&["-t", &topic, "-m", "with-cert", "-q", "1"]));
    let (code, out, err) = tls_pub(&b, &pki, &good);
    assert_eq!(code, 0, "{out}\n{err}");
    s.wait_line(WAIT, |l| l == format!("MSG {topic} with-cert"));

    let lines = wss_client(&b, &pki, &topic, "wss-with-cert", true);
    assert!(
        lines.contains(&"ECHO wss-with-cert".to_owned()),
        "{lines:?}"
    );
    s.wait_line(WAIT, |l| l == format!("MSG {topic} wss-with-cert"));
    let seen: Vec<&String> = s.seen().iter().filter(|l| l.starts_with("MSG")).collect();
    assert_eq!(seen.len(), 2, "{seen:?}");
}

/// `use_identity_as_username`: the certificate's CN is the user name (no password file
/// entry needed, anonymous access off), and the ACL applies to it, `%u` patterns included.
#[test]
fn certificate_identity_is_the_user_name() {
    let pki = Pki::new();
    let acl = pki.0.join("acl");
    std::fs::write(
        &acl,
        "user device-7\ntopic read status/#\npattern readwrite devices/%u/#\n",
    )
    .unwrap();
    let passwords = pki.0.join("passwords");
    std::fs::write(&passwords, "").unwrap();
    let config = pki.config(
        &format!(
            "ca = {:?}\nrequire_client_cert = true\nuse_identity_as_username = true",
            pki.path("ca.pem")
        ),
        &format!(
            "[auth]\nallow_anonymous = false\npassword_file = {:?}\nacl_file = {:?}",
            passwords.to_str().unwrap(),
            acl.to_str().unwrap()
        ),
    );
    let b = start(&config);

    let mut sub_args = client_cert(&pki, "client");
    sub_args.extend(strings(&[
        "-t",
        "devices/device-7/#",
        "-q",
        "1",
        "-V",
        "mqttv5",
    ]));
    let mut s = tls_sub(&b, &pki, &sub_args);
    assert!(
        s.seen().iter().any(|l| l.ends_with(": 1")),
        "{:?}",
        s.seen()
    );

    // Whatever user name and password the client sends, the certificate decides.
    let mut own = client_cert(&pki, "client");
    own.extend(strings(&[
        "-u",
        "admin",
        "-P",
        "guess",
        "-t",
        "devices/device-7/up",
        "-m",
        "mine",
        "-q",
        "1",
        "-V",
        "mqttv5",
        "-d",
    ]));
    let (code, out, err) = tls_pub(&b, &pki, &own);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("RC:16") || out.contains("RC:0"), "{out}");
    s.wait_line(WAIT, |l| l == "MSG devices/device-7/up mine");

    let mut other = client_cert(&pki, "client");
    other.extend(strings(&[
        "-t",
        "devices/device-8/up",
        "-m",
        "theirs",
        "-q",
        "1",
        "-V",
        "mqttv5",
        "-d",
    ]));
    let (code, out, err) = tls_pub(&b, &pki, &other);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("RC:135"), "{out}");

    let mut read_only = client_cert(&pki, "client");
    read_only.extend(strings(&[
        "-t", "status/x", "-m", "no", "-q", "1", "-V", "mqttv5", "-d",
    ]));
    let (_, out, _) = tls_pub(&b, &pki, &read_only);
    assert!(out.contains("RC:135"), "{out}");

    // The plain TCP listener knows nothing of certificates: no user name, no entry.
    let tcp = b.bridge.tcp_port().to_string();
    let (code, _, err) = run_full(
        &which("mosquitto_pub"),
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &tcp,
            "-u",
            "device-7",
            "-t",
            "x",
            "-m",
            "y",
        ],
        WAIT,
    );
    assert_eq!(code, 4, "{err}");
}
