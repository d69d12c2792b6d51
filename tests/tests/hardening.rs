//! Issue 12: attacks and careless input that got through a probe of the release binary,
//! each driven through the real binary with peers nobody here wrote (mosquitto_pub/sub)
//! or raw packets: `$SYS` spoofing, client strings in the log, retained-message caps,
//! the per-client subscription limit and concurrent failed password checks.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tests::harness::bridge_bin;
use tests::memory::{rss_kib, threads, RssPeak};
use tests::procs::{mosquitto_pub, mosquitto_sub_lines, run_full};
use tests::wire::RawClient;
use tests::{spawn_line_buffered, tcp_from, unique, wire, Bridge};

const WAIT: Duration = Duration::from_secs(30);

/// A bridge with a new password file of `users` (all with the password "right") and
/// `[auth]` `extra` lines; the directory holding the files is removed on drop.
struct PasswordBridge {
    bridge: Bridge,
    dir: std::path::PathBuf,
}

impl PasswordBridge {
    fn start(users: &[&str], extra: &str) -> PasswordBridge {
        let dir = std::env::temp_dir().join(unique("bridge-passwords"));
        std::fs::create_dir_all(&dir).unwrap();
        let passwords = dir.join("passwords");
        let p = passwords.to_str().unwrap();
        for (n, user) in users.iter().enumerate() {
            let create: &[&str] = if n == 0 { &["-c", "-b"] } else { &["-b"] };
            let args = [&["passwd"], create, &[p, user, "right"]].concat();
            let (code, out, err) = run_full(bridge_bin(), &args, WAIT);
            assert_eq!(code, 0, "bridge {args:?}: {out}{err}");
        }
        let config = dir.join("bridge.toml");
        std::fs::write(&config, format!("[auth]\npassword_file = {p:?}\n{extra}\n")).unwrap();
        let bridge = Bridge::start_with(&["--config", config.to_str().unwrap()]);
        PasswordBridge { bridge, dir }
    }
}

impl Drop for PasswordBridge {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `mosquitto_sub ARGS` on the bridge, its output read line by line.
fn mosquitto_sub(b: &Bridge, args: &[&str]) -> tests::Proc {
    let port = b.tcp_port().to_string();
    let mut all = vec!["-h", "127.0.0.1", "-p", &port];
    all.extend_from_slice(args);
    spawn_line_buffered("mosquitto_sub", all)
}

/// `mosquitto_sub` for `topic` that prints `topic payload` lines and gives up after
/// `seconds` without a message: the lines it printed.
fn mosquitto_sub_for(b: &Bridge, topic: &str, seconds: u32) -> Vec<String> {
    let secs = seconds.to_string();
    mosquitto_sub_lines(b, &["-t", topic, "-F", "%t %p", "-W", &secs])
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
    let mut sub = mosquitto_sub(&b, &["-t", "$SYS/#", "-t", "$SYSTEM/x", "-F", "%t %p"]);
    std::thread::sleep(Duration::from_millis(500));
    mosquitto_pub(&b, &["-q", "1", "-t", "$SYS/broker/uptime", "-m", "live"]);
    mosquitto_pub(&b, &["-q", "1", "-t", "$SYSTEM/x", "-m", "ordinary"]);
    sub.wait_line(WAIT, |l| l == "$SYSTEM/x ordinary");
    assert_eq!(sub.seen(), ["$SYSTEM/x ordinary"]);
}

/// Sends a 3.1.1 CONNECT as `user` with `password` over `stream` and returns the CONNACK
/// return code (`None` if the connection closed or `wait` passed first).
fn connack_code(mut stream: TcpStream, user: &str, password: &[u8], wait: Duration) -> Option<u8> {
    let bytes = wire::connect(&unique("c"))
        .username(user)
        .password(password)
        .bytes();
    stream.set_read_timeout(Some(wait)).unwrap();
    stream.write_all(&bytes).ok()?;
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack).ok()?;
    assert_eq!(connack[..2], [0x20, 2], "not a CONNACK: {connack:?}");
    Some(connack[3])
}

/// Issue 12, item 3: 300 concurrent CONNECTs with a wrong password or an unknown user name
/// took the broker to 4.8 GB and 216 threads (2.1 GB still 30 s later) and held up other
/// clients' CONNACKs by 11.6 s. Now slow password checks run a few at a time on blocking
/// threads, the rest wait without holding a thread (or are refused "server busy"), and
/// repeated failures throttle their address and user name: memory and threads stay low,
/// a client from another address with another user name is answered, and a client whose
/// password was verified before the storm is let in at once, throttle or not.
#[test]
fn a_storm_of_wrong_passwords_costs_bounded_memory_and_threads() {
    let storm = PasswordBridge::start(&["alice", "bob"], "allow_anonymous = false");
    let b = &storm.bridge;
    let port = b.tcp_port();
    // alice connects once before the storm: her password is verified, and remembered.
    let from = |last: u8| tcp_from(Ipv4Addr::new(127, 0, 0, last), port);
    assert_eq!(connack_code(from(3), "alice", b"right", WAIT), Some(0));

    let idle = rss_kib(b.pid());
    let idle_threads = threads(b.pid());
    let rss = RssPeak::start(b);
    let peak_threads = Arc::new(AtomicU64::new(idle_threads));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop, pid) = (peak_threads.clone(), stop.clone(), b.pid());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(threads(pid), Ordering::Relaxed);
                thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let started = Instant::now();
    let storm: Vec<_> = (0..300)
        .map(|i| {
            thread::spawn(move || {
                let stream = tcp_from(Ipv4Addr::new(127, 0, 0, 1), port);
                let user = if i % 2 == 0 {
                    "alice".to_owned()
                } else {
                    format!("nobody{i}")
                };
                connack_code(stream, &user, b"wrong", Duration::from_secs(120))
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(200));
    // bob, from another address, is answered while the storm goes on.
    let asked = Instant::now();
    assert_eq!(connack_code(from(2), "bob", b"right", WAIT), Some(0));
    let bob_waited = asked.elapsed();
    // Behind at most the 4 checks the storm's address may have waiting, and the running
    // ones (a debug build's argon2 takes about a second); it waited 11.6 s in a release
    // build before, far longer in a debug one. Generous, the machine is shared.
    assert!(
        bob_waited < Duration::from_secs(20),
        "bob waited {bob_waited:?}"
    );
    // alice's remembered password needs no slow check: in at once, throttle or not.
    assert_eq!(connack_code(from(1), "alice", b"right", WAIT), Some(0));

    let mut codes = std::collections::BTreeMap::new();
    for t in storm {
        *codes.entry(t.join().unwrap()).or_insert(0) += 1;
    }
    let storm_took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = rss.finish_below("300 concurrent wrong passwords", 150 * 1024);
    let peak_threads = peak_threads.load(Ordering::Relaxed);
    eprintln!(
        "[storm] idle {idle} KiB, peak {peak} KiB; threads idle {idle_threads}, peak \
         {peak_threads}; bob waited {bob_waited:?}; storm answered in {storm_took:?}; \
         CONNACK codes {codes:?}"
    );
    // Every attacker got an answer: 4 (bad user name or password) for those checked, 3
    // (server unavailable: throttled or too many waiting) for the rest.
    assert_eq!(
        codes.get(&None),
        None,
        "every CONNECT is answered: {codes:?}"
    );
    assert!(codes.keys().all(|c| matches!(c, Some(3 | 4))), "{codes:?}");
    assert!(
        codes.contains_key(&Some(3)),
        "the throttle refused some: {codes:?}"
    );
    assert!(
        peak_threads < idle_threads + 16,
        "threads peaked at {peak_threads} (idle {idle_threads})"
    );
    // The memory is given back.
    thread::sleep(Duration::from_secs(2));
    let after = rss_kib(b.pid());
    assert!(
        after < idle + 64 * 1024,
        "RSS {after} KiB after the storm, idle {idle} KiB"
    );
    // The storm's address is throttled: once its wait is over, one more failure makes the
    // next attempt wait twice as long, whatever the user name.
    thread::sleep(Duration::from_secs(1));
    assert_eq!(connack_code(from(1), "carol", b"wrong", WAIT), Some(4));
    assert_eq!(connack_code(from(1), "dave", b"wrong", WAIT), Some(3));
    // A user name is throttled too, from whatever address (here: five failures from five
    // addresses, then a sixth address).
    for last in 10..15 {
        assert_eq!(connack_code(from(last), "erin", b"wrong", WAIT), Some(4));
    }
    assert_eq!(connack_code(from(15), "erin", b"wrong", WAIT), Some(3));
    assert_eq!(connack_code(from(16), "frank", b"wrong", WAIT), Some(4));
}

/// A raw 3.1.1 client with a clean session.
fn raw(b: &Bridge, id: &str) -> RawClient {
    RawClient::connect_clean(b.tcp_port(), &unique(id))
}

/// Issue 12, item 6: retained messages are bounded in count and bytes. Any client could
/// store 10,000 × 100 KB (2.5 GB RSS, the same after a restart). Past a bound a retained
/// publish to a new topic is refused: 5.0 gets PUBACK 0x97 "quota exceeded", 3.1.1 its
/// usual ack (it has no way to say no) and the message is dropped; replacing or clearing
/// a retained message is always allowed; refusals are counted and logged.
#[test]
fn retained_messages_are_bounded_in_count_and_bytes() {
    let b = Bridge::start_with(&[
        "--max-retained-messages",
        "20",
        "--max-retained-bytes",
        "8000000",
        "--max-packet-size",
        "200000",
    ]);
    let mut c = raw(&b, "retainer");
    for n in 0..20 {
        c.publish(&format!("ret/{n}"), b"kept", 1, true, 1);
    }
    // The 21st topic: 5.0 is told, 3.1.1 is acknowledged, neither is kept.
    let (code, out, err) = mosquitto_pub(
        &b,
        &[
            "-V", "mqttv5", "-q", "1", "-r", "-d", "-t", "ret/new5", "-m", "x",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("received PUBACK (Mid: 1, RC:151)"), "{out}");
    c.publish("ret/new311", b"x", 1, true, 2);
    // Replacing and clearing stay allowed; a cleared topic makes room.
    let (_, out, _) = mosquitto_pub(
        &b,
        &[
            "-V", "mqttv5", "-q", "1", "-r", "-d", "-t", "ret/0", "-m", "again",
        ],
    );
    assert!(out.contains("received PUBACK (Mid: 1, RC:16)"), "{out}");
    c.publish("ret/1", b"", 1, true, 3);
    c.publish("ret/room", b"made", 1, true, 4);

    let mut got = mosquitto_sub_for(&b, "ret/#", 1);
    got.sort();
    let mut want: Vec<String> = (2..20).map(|n| format!("ret/{n} kept")).collect();
    want.extend(["ret/0 again".to_owned(), "ret/room made".to_owned()]);
    want.sort();
    assert_eq!(got, want);
    assert!(b
        .log_tail()
        .contains("the retained store holds its maximum of 20 messages"));

    c.disconnect();
}

/// Issue 12, item 6: the bytes bound. 100 KB payloads to 200 new topics under an 8 MB
/// bound: about 80 are kept, the rest refused, and the broker's memory stays bounded by
/// the bound (it grew by the full 20 MB, and by gigabytes for bigger floods, before).
#[test]
fn retained_bytes_are_bounded_and_memory_with_them() {
    let b = Bridge::start_with(&[
        "--max-retained-bytes",
        "8000000",
        "--max-packet-size",
        "200000",
    ]);
    let mut c = raw(&b, "big");
    let idle = rss_kib(b.pid());
    let rss = RssPeak::start(&b);
    let big = vec![b'x'; 100_000];
    for n in 0..200u16 {
        c.publish(&format!("big/{n:03}"), &big, 1, true, 1 + n);
    }
    let peak = rss.finish_below("200 retained publishes of 100 KB", 200 * 1024);
    eprintln!("[retained] idle {idle} KiB, peak {peak} KiB");
    let stored = mosquitto_sub_for(&b, "big/#", 1).len();
    assert_eq!(stored, 79, "8,000,000 bytes hold 79 of 100,007 bytes");
    assert!(b
        .log_tail()
        .contains("the retained store would exceed its maximum of 8000000 bytes"));
    c.disconnect();
}

/// Issue 12, item 6: retained messages a new subscription matches but its session's queue
/// has no room for are not dropped silently: counted, and one log line says how many,
/// whichever message the queue policy drops (the newest, or the oldest to make room).
#[test]
fn retained_messages_cut_by_a_full_queue_are_counted_and_logged() {
    for policy in ["drop_newest", "drop_oldest"] {
        let config = std::env::temp_dir().join(format!("{}.toml", unique("bridge-queue")));
        let limits =
            format!("[limits]\nmax_queued_messages = 10\nqueue_full_policy = {policy:?}\n");
        std::fs::write(&config, limits).unwrap();
        let b = Bridge::start_with(&["--config", config.to_str().unwrap()]);
        let _ = std::fs::remove_file(&config);
        let mut c = raw(&b, "retainer");
        for n in 0..50 {
            c.publish(&format!("cut/{n}"), b"r", 1, true, 1 + n);
        }
        let got = mosquitto_sub_for(&b, "cut/#", 1);
        assert!(
            got.len() < 50,
            "{policy}: the queue of 10 cut them: {}",
            got.len()
        );
        let log = b.log_tail();
        let line = log
            .lines()
            .find(|l| l.contains("retained messages not delivered"))
            .unwrap_or_else(|| panic!("{policy}: no log line about the cut:\n{log}"));
        let dropped = 50 - got.len();
        assert!(
            line.contains(&format!("{dropped} of 50 retained")),
            "{policy}: {line}"
        );
        assert!(line.contains("cut/#"), "{line}");
    }
}

/// Issue 12, item 9: one client's subscriptions are bounded (`max_subscriptions_per_client`,
/// default 10,000). 200,000 subscriptions from one client cost 265 MB before, kept after it
/// left. Filters beyond the bound are refused in SUBACK (5.0: 0x97; 3.1.1: 0x80); a filter
/// the client already has is a replacement and always granted.
#[test]
fn subscriptions_per_client_are_bounded() {
    let b = Bridge::start_with(&["--max-subscriptions-per-client", "3"]);
    let mut c = raw(&b, "subs");
    assert_eq!(
        c.subscribe(1, &[("a", 1), ("b", 0), ("c", 1)]),
        vec![1, 0, 1]
    );
    assert_eq!(
        c.subscribe(2, &[("a", 0), ("d", 1), ("d", 1)]),
        vec![0, 0x80, 0x80],
        "a is replaced, d refused"
    );
    c.unsubscribe(3, &["b"]);
    assert_eq!(
        c.subscribe(4, &[("d", 1), ("d", 0), ("e", 1)]),
        vec![1, 0, 0x80]
    );
    c.disconnect();
    // 5.0: 0x97, as mosquitto_sub shows it.
    let args = [
        "-V", "mqttv5", "-d", "-t", "x/1", "-t", "x/2", "-t", "x/3", "-t", "x/4",
    ];
    let mut sub = mosquitto_sub(&b, &args);
    let suback = sub.wait_line(WAIT, |l| l.starts_with("Subscribed (mid"));
    assert!(suback.ends_with(": 0, 0, 0, 151"), "{suback}");
}

/// Issue 12, item 9: with the default bound, a client sending 200,000 subscriptions gets
/// 10,000 and the broker's memory stays low; after it leaves, its subscriptions are gone.
#[test]
fn a_subscription_flood_costs_bounded_memory() {
    let b = Bridge::start_with(&[]);
    let mut c = raw(&b, "flood");
    let idle = rss_kib(b.pid());
    let rss = RssPeak::start(&b);
    let mut granted = 0;
    for packet in 0..200u16 {
        let filters: Vec<String> = (0..1000).map(|n| format!("flood/{packet}/{n}/+")).collect();
        let filters: Vec<(&str, u8)> = filters.iter().map(|f| (f.as_str(), 1)).collect();
        let codes = c.subscribe(1 + packet, &filters);
        granted += codes.iter().filter(|&&code| code == 1).count();
    }
    let peak = rss.finish_below("200,000 subscriptions from one client", 150 * 1024);
    eprintln!("[subscriptions] idle {idle} KiB, peak {peak} KiB, granted {granted}");
    assert_eq!(granted, 10_000);
    c.disconnect();
    tests::assert_serving(b.tcp_port());
}

/// Issue 12, item 5: client-supplied strings reach the log escaped and truncated. A client
/// id, user name and topic with a newline and ANSI escapes, and a 60,000-byte user name,
/// must neither forge a log line, nor paint the operator's terminal, nor fill the log.
#[test]
fn client_strings_cannot_forge_or_flood_log_lines() {
    let logs = PasswordBridge::start(&["alice"], "");
    let b = &logs.bridge;
    let port = b.tcp_port();

    let forged = "x\n2026-12-08T00:00:00Z  INFO forged: admin logged in\u{1b}[31m";
    let huge = "u".repeat(60_000);
    for user in [forged, huge.as_str()] {
        let code = connack_code(tcp_from(Ipv4Addr::LOCALHOST, port), user, b"wrong", WAIT);
        assert_eq!(code, Some(4), "a wrong password");
    }
    // Anonymous clients may connect: a forged client id and topic.
    let mut c = RawClient::connect(port, &wire::connect(forged)).0;
    c.publish(&format!("t/{forged}"), b"m", 1, false, 1);
    c.send(&wire::subscribe(2, &[("bad/#/filter\n\u{1b}[31m", 0)]));
    c.expect_closed(WAIT);
    std::thread::sleep(Duration::from_millis(300));

    let log = std::fs::read_to_string(b.log_path()).unwrap();
    assert!(log.contains("authentication failed"), "{log}");
    assert!(
        log.contains("x\\n2026-12-08T00:00:00Z"),
        "escaped, not dropped: {log}"
    );
    assert!(!log.contains('\u{1b}'), "an ANSI escape reached the log");
    for line in log.lines() {
        assert!(
            !line.starts_with("2026-12-08T00:00:00Z  INFO forged"),
            "forged: {line}"
        );
        assert!(line.len() < 4096, "a log line of {} bytes", line.len());
    }
}
