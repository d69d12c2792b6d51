//! Issue 12: attacks and careless input that got through a probe of the release binary,
//! each driven through the real binary with peers nobody here wrote (mosquitto_pub/sub)
//! or raw packets: `$SYS` spoofing, client strings in the log, retained-message caps,
//! the per-client subscription limit and concurrent failed password checks.

use std::time::Duration;

use tests::procs::run_full;
use tests::{spawn_line_buffered, unique, which, Bridge};

const WAIT: Duration = Duration::from_secs(30);

/// `mosquitto_pub -h 127.0.0.1 -p PORT ARGS`: (exit code, stdout, stderr).
fn mosquitto_pub(b: &Bridge, args: &[&str]) -> (i32, String, String) {
    let port = b.tcp_port().to_string();
    let mut all = vec!["-h", "127.0.0.1", "-p", &port];
    all.extend_from_slice(args);
    run_full(&which("mosquitto_pub"), &all, WAIT)
}

/// `mosquitto_sub` for `topic` that prints `topic payload` lines and gives up after
/// `seconds` without a message: the lines it printed.
fn mosquitto_sub_for(b: &Bridge, topic: &str, seconds: u32) -> Vec<String> {
    let port = b.tcp_port().to_string();
    let secs = seconds.to_string();
    let args = [
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-t",
        topic,
        "-F",
        "%t %p",
        "-W",
        &secs,
    ];
    let (_, out, _) = run_full(&which("mosquitto_sub"), &args, WAIT);
    out.lines().map(str::to_owned).collect()
}

/// Client publishes under `$SYS` are refused whatever the ACL says (here: the default open
/// configuration, no ACL at all): 5.0 gets PUBACK 0x87 "not authorized", 3.1.1 is
/// acknowledged and dropped (it has no way to say no), and nothing is retained for readers.
#[test]
fn clients_cannot_publish_under_sys() {
    // $SYS updates off: whatever a reader finds under $SYS would be the spoof.
    let b = Bridge::start_with(&["--sys-interval", "0"]);
    let (code, out, err) = mosquitto_pub(
        &b,
        &[
            "-V",
            "mqttv5",
            "-q",
            "1",
            "-r",
            "-d",
            "-t",
            "$SYS/broker/version",
            "-m",
            "fake-5",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("received PUBACK (Mid: 1, RC:135)"), "{out}");
    for topic in ["$SYS/broker/version", "$SYS"] {
        let (code, out, err) = mosquitto_pub(&b, &["-q", "1", "-r", "-t", topic, "-m", "fake-311"]);
        assert_eq!(code, 0, "{out}\n{err}");
    }
    assert_eq!(mosquitto_sub_for(&b, "$SYS/#", 2), Vec::<String>::new());
    assert_eq!(mosquitto_sub_for(&b, "$SYS", 1), Vec::<String>::new());

    // A live subscriber sees none of it either, while `$SYSTEM` is an ordinary topic.
    let port = b.tcp_port().to_string();
    let mut sub = spawn_line_buffered(
        "mosquitto_sub",
        [
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "$SYS/#",
            "-t",
            "$SYSTEM/x",
            "-F",
            "%t %p",
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    mosquitto_pub(&b, &["-q", "1", "-t", "$SYS/broker/uptime", "-m", "live"]);
    mosquitto_pub(&b, &["-q", "1", "-t", "$SYSTEM/x", "-m", "ordinary"]);
    sub.wait_line(WAIT, |l| l == "$SYSTEM/x ordinary");
    assert_eq!(sub.seen(), ["$SYSTEM/x ordinary"]);
    let _ = unique;
}
