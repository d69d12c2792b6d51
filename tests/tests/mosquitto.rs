//! The Eclipse Mosquitto command-line clients (`mosquitto_pub`, `mosquitto_sub`, Debian
//! package mosquitto-clients) against the bridge over TCP.

use std::path::PathBuf;
use std::time::Duration;

use tests::{run, run_ok, spawn_line_buffered, which, Bridge, Proc};

const WAIT: Duration = Duration::from_secs(30);

fn pub_bin() -> PathBuf {
    which("mosquitto_pub")
}

fn sub_bin() -> PathBuf {
    which("mosquitto_sub")
}

/// Common arguments: host, port.
fn hp(b: &Bridge) -> Vec<String> {
    vec![
        "-h".into(),
        "127.0.0.1".into(),
        "-p".into(),
        b.tcp_port().to_string(),
    ]
}

/// Starts `mosquitto_sub` with `args` (plus host/port, `-d` and a `MSG %t %q %r %p` format)
/// and waits until its subscription is acknowledged.
fn sub(b: &Bridge, args: &[&str]) -> Proc {
    let mut all = hp(b);
    all.extend(args.iter().map(|s| s.to_string()));
    all.extend(["-d", "-F", "MSG %t %q %r %p"].map(String::from));
    let mut p = spawn_line_buffered("mosquitto_sub", &all);
    p.wait_line(WAIT, |l| l.contains("SUBACK"));
    p
}

/// Runs `mosquitto_pub` with `args` (plus host/port) and asserts success.
fn publish(b: &Bridge, args: &[&str]) {
    let mut all = hp(b);
    all.extend(args.iter().map(|s| s.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    run_ok(&pub_bin(), &all, WAIT);
}

/// The `MSG ...` lines a finished mosquitto_sub printed.
fn messages(p: &mut Proc) -> Vec<String> {
    let lines = p.wait_success(WAIT);
    lines
        .into_iter()
        .filter(|l| l.starts_with("MSG "))
        .collect()
}

/// 4.3.1-4.3.3 with real clients: mosquitto_pub at QoS 0, 1 and 2 reaches mosquitto_sub
/// (granted 2), each message once, at the QoS it was published with, RETAIN 0.
#[test]
fn mosquitto_pub_to_mosquitto_sub_at_each_qos() {
    let b = Bridge::start();
    let mut s = sub(&b, &["-t", "mq/q", "-q", "2", "-C", "3", "-W", "30"]);
    for q in ["0", "1", "2"] {
        publish(&b, &["-t", "mq/q", "-q", q, "-m", &format!("at {q}")]);
    }
    let mut got = messages(&mut s);
    got.sort();
    assert_eq!(
        got,
        [
            "MSG mq/q 0 0 at 0",
            "MSG mq/q 1 0 at 1",
            "MSG mq/q 2 0 at 2"
        ]
    );
}

/// MQTT 3.1 clients (`-V mqttv31`, protocol "MQIsdp" level 3) are accepted and interoperate
/// with v3.1.1 clients in both directions.
#[test]
fn mosquitto_mqtt31_clients_interoperate() {
    let b = Bridge::start();
    let mut old = sub(&b, &["-V", "mqttv31", "-t", "v31/#", "-q", "1", "-C", "1"]);
    let mut new = sub(
        &b,
        &["-V", "mqttv311", "-t", "v311/#", "-q", "1", "-C", "1"],
    );
    publish(
        &b,
        &[
            "-V", "mqttv311", "-t", "v31/in", "-q", "1", "-m", "new->old",
        ],
    );
    publish(
        &b,
        &[
            "-V", "mqttv31", "-t", "v311/in", "-q", "1", "-m", "old->new",
        ],
    );
    assert_eq!(messages(&mut old), ["MSG v31/in 1 0 new->old"]);
    assert_eq!(messages(&mut new), ["MSG v311/in 1 0 old->new"]);
}

/// MQTT-3.3.1-5/-6/-8/-10/-11 with real clients: `mosquitto_pub -r` sets, replaces and (with
/// an empty message, `-n`) clears the retained message; new mosquitto_sub clients see the
/// current one with RETAIN 1 and nothing after clearing.
#[test]
fn mosquitto_retained_set_replace_clear() {
    let b = Bridge::start();
    let once = |b: &Bridge| -> (bool, Vec<String>) {
        let mut all = hp(b);
        all.extend(
            [
                "-t",
                "mr/t",
                "-q",
                "1",
                "-C",
                "1",
                "-W",
                "3",
                "-F",
                "MSG %t %q %r %p",
            ]
            .map(String::from),
        );
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let (status, out, _) = run(&sub_bin(), &all, WAIT);
        let msgs = out
            .lines()
            .filter(|l| l.starts_with("MSG "))
            .map(String::from)
            .collect();
        (status.success(), msgs)
    };
    publish(&b, &["-t", "mr/t", "-q", "1", "-r", "-m", "first"]);
    assert_eq!(once(&b), (true, vec!["MSG mr/t 1 1 first".to_string()]));
    publish(&b, &["-t", "mr/t", "-q", "2", "-r", "-m", "second"]);
    assert_eq!(once(&b), (true, vec!["MSG mr/t 1 1 second".to_string()]));
    publish(&b, &["-t", "mr/t", "-q", "1", "-r", "-n"]);
    let (ok, msgs) = once(&b);
    assert!(
        msgs.is_empty() && !ok,
        "after clearing, no retained message (mosquitto_sub should time out): {msgs:?}"
    );
}

/// MQTT-3.1.2-8 with real clients: a `mosquitto_sub --will-topic ...` killed with SIGKILL
/// (no DISCONNECT) has its Will delivered to another mosquitto_sub; one that exits normally
/// after its message (sending DISCONNECT) does not (MQTT-3.1.2-10).
#[test]
fn mosquitto_will_on_kill_but_not_on_normal_exit() {
    let b = Bridge::start();
    let mut watcher = sub(&b, &["-t", "mw/#", "-q", "1", "-C", "1", "-W", "30"]);

    // Exits normally after one message: DISCONNECT, so no Will.
    let mut polite = sub(
        &b,
        &[
            "-t",
            "mw-go",
            "-C",
            "1",
            "--will-topic",
            "mw/polite",
            "--will-payload",
            "not expected",
            "--will-qos",
            "1",
        ],
    );
    publish(&b, &["-t", "mw-go", "-m", "go"]);
    assert_eq!(messages(&mut polite), ["MSG mw-go 0 0 go"]);

    let mut rude = sub(
        &b,
        &[
            "-t",
            "mw-never",
            "--will-topic",
            "mw/rude",
            "--will-payload",
            "killed",
            "--will-qos",
            "1",
        ],
    );
    rude.kill();
    assert_eq!(messages(&mut watcher), ["MSG mw/rude 1 0 killed"]);
}

/// MQTT-3.1.2-4/-5, MQTT-3.2.2-2: `mosquitto_sub -c -i ID` (CleanSession 0) creates a session
/// (`-E` exits once subscribed); a QoS 1 message published while it is away is delivered when
/// it comes back with the same id.
#[test]
fn mosquitto_persistent_session_gets_offline_messages() {
    let b = Bridge::start();
    let base = ["-c", "-i", "mosq-persistent", "-t", "mp/t", "-q", "1"];
    let mut args = hp(&b);
    args.extend(base.iter().map(|s| s.to_string()));
    args.push("-E".into());
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    run_ok(&sub_bin(), &a, WAIT);

    publish(&b, &["-t", "mp/t", "-q", "1", "-m", "while away"]);

    let mut args = hp(&b);
    args.extend(base.iter().map(|s| s.to_string()));
    args.extend(["-C", "1", "-W", "20", "-F", "MSG %t %q %r %p"].map(String::from));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_ok(&sub_bin(), &a, WAIT);
    assert_eq!(out.trim(), "MSG mp/t 1 0 while away");
}

/// 3.1.3.4/3.1.3.5: user name and password from mosquitto clients are accepted (anonymous
/// and credentialed clients both work by default).
#[test]
fn mosquitto_with_credentials() {
    let b = Bridge::start();
    let mut s = sub(
        &b,
        &[
            "-u", "reader", "-P", "pw1", "-t", "mc/t", "-q", "1", "-C", "1",
        ],
    );
    publish(
        &b,
        &[
            "-u", "writer", "-P", "pw2", "-t", "mc/t", "-q", "1", "-m", "authd",
        ],
    );
    assert_eq!(messages(&mut s), ["MSG mc/t 1 0 authd"]);
}

/// Wildcards with real clients: mosquitto_sub with several `-t` filters gets exactly the
/// matching topics.
#[test]
fn mosquitto_wildcard_subscriptions() {
    let b = Bridge::start();
    let mut s = sub(
        &b,
        &[
            "-t",
            "mwc/+/temp",
            "-t",
            "mwd/#",
            "-q",
            "1",
            "-C",
            "3",
            "-W",
            "30",
        ],
    );
    for t in ["mwc/a/temp", "mwc/a/b/temp", "mwd", "mwc/temp", "mwd/x/y"] {
        publish(&b, &["-t", t, "-q", "1", "-m", t]);
    }
    let mut got = messages(&mut s);
    got.sort();
    assert_eq!(
        got,
        [
            "MSG mwc/a/temp 1 0 mwc/a/temp",
            "MSG mwd 1 0 mwd",
            "MSG mwd/x/y 1 0 mwd/x/y"
        ]
    );
}

/// Large payloads spanning many TCP reads: with --max-packet-size 1 MiB a 200 kB message from
/// mosquitto_pub (-f) arrives intact (same length and bytes) at mosquitto_sub.
#[test]
fn mosquitto_large_payload() {
    let b = Bridge::start_with(&["--max-packet-size", "1048576"]);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("output");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("large-{}.bin", std::process::id()));
    let data: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    std::fs::write(&file, &data).unwrap();
    let mut s = sub(&b, &["-t", "big/t", "-q", "1", "-C", "1", "-W", "30"]);
    publish(
        &b,
        &["-t", "big/t", "-q", "1", "-f", file.to_str().unwrap()],
    );
    let msgs = messages(&mut s);
    let _ = std::fs::remove_file(&file);
    assert_eq!(msgs.len(), 1);
    let expected = format!("MSG big/t 1 0 {}", String::from_utf8(data).unwrap());
    assert!(
        msgs[0] == expected,
        "large payload corrupted (len {})",
        msgs[0].len()
    );
}
