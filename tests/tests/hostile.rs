//! Hostile clients (issue 6): trickling bytes, absurd lengths, half-open connections, huge
//! subscription sets, maximal and deeply nested topics, invalid UTF-8, abusive WebSocket
//! peers and a publisher flooding a subscriber that does not read.
//!
//! Each test starts its own bridge and asserts that the broker process survives, that a
//! well-behaved client (connect, subscribe, publish and receive a QoS 1 message) is served
//! while the abuse goes on and after it, and, where the scenario is about memory, that the
//! broker's resident set stays below [`RSS_BOUND_KIB`]. Peak RSS figures are printed
//! (`cargo test -p tests --test hostile -- --nocapture` shows them). Timeouts are generous
//! and nothing asserts speed: the machine is shared.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};

use tests::memory::{rss_kib, RssPeak, RSS_BOUND_KIB};
use tests::wire::{
    self, connect, packet, put_bytes, put_remaining_length, Packet, RawClient, WAIT,
};
use tests::{assert_serving, unique, Bridge};

/// How soon a connection that broke the rules must be closed.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);
/// The broker's CONNECT timeout (bridge/src/connection.rs).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

// --- raw frames --------------------------------------------------------------------------

/// One packet as it came off the wire: its first byte and its body. Unlike
/// [`wire::decode`], this reads MQTT 5.0 packets (CONNACK with properties, DISCONNECT) too.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    first: u8,
    body: Vec<u8>,
}

/// Splits whole packets off the front of `buf`.
fn split_frames(buf: &mut Vec<u8>) -> Vec<Frame> {
    let mut frames = Vec::new();
    loop {
        let mut len = 0usize;
        let mut at = 1;
        let mut complete = false;
        while at < buf.len() && at <= 4 {
            let byte = buf[at];
            len |= usize::from(byte & 0x7F) << (7 * (at - 1));
            at += 1;
            if byte & 0x80 == 0 {
                complete = true;
                break;
            }
        }
        if !complete || buf.len() < at + len {
            return frames;
        }
        frames.push(Frame {
            first: buf[0],
            body: buf[at..at + len].to_vec(),
        });
        buf.drain(..at + len);
    }
}

/// Reads until the server closes the connection; returns the packets it sent. Panics if it
/// is still open after `within`.
fn frames_until_closed(stream: &mut TcpStream, within: Duration, what: &str) -> Vec<Frame> {
    let deadline = Instant::now() + within;
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "{what}: connection still open after {within:?} (received {frames:?})"
        );
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                frames.extend(split_frames(&mut buf));
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // A reset is a close too (the server closed with our bytes unread).
            Err(_) => break,
        }
    }
    frames
}

/// Reads exactly one packet (nothing may follow it yet); panics if none arrives in time.
fn read_frame(stream: &mut TcpStream, within: Duration, what: &str) -> Frame {
    let deadline = Instant::now() + within;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    // One byte at a time, so nothing after the packet is consumed.
    loop {
        let mut frames = split_frames(&mut buf);
        if let Some(frame) = frames.pop() {
            return frame;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "{what}: no packet within {within:?}");
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut byte) {
            Ok(0) => panic!("{what}: closed before a whole packet ({buf:?})"),
            Ok(_) => buf.push(byte[0]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("{what}: read failed: {e}"),
        }
    }
}

/// An MQTT 5.0 CONNECT (clean start, keep-alive 60 s) with raw property bytes and raw client
/// id bytes (`wire` builds 3.1.1 packets only).
fn v5_connect(client_id: &[u8], properties: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    put_bytes(b"MQTT", &mut body);
    body.push(5);
    body.push(0x02);
    body.extend_from_slice(&60u16.to_be_bytes());
    put_remaining_length(properties.len(), &mut body);
    body.extend_from_slice(properties);
    put_bytes(client_id, &mut body);
    packet(0x10, &body)
}

/// A user property (id 0x26) with raw name and value bytes.
fn user_property(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = vec![0x26];
    put_bytes(name, &mut out);
    put_bytes(value, &mut out);
    out
}

/// A content type property (id 0x03) with raw bytes.
fn content_type(value: &[u8]) -> Vec<u8> {
    let mut out = vec![0x03];
    put_bytes(value, &mut out);
    out
}

/// A 5.0 PUBLISH with raw property bytes.
fn v5_publish(topic: &[u8], properties: &[u8], qos: u8, pkid: u16, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    put_bytes(topic, &mut body);
    if qos > 0 {
        body.extend_from_slice(&pkid.to_be_bytes());
    }
    put_remaining_length(properties.len(), &mut body);
    body.extend_from_slice(properties);
    body.extend_from_slice(payload);
    packet(0x30 | (qos << 1), &body)
}

fn assert_connack_ok(frame: Option<&Frame>, what: &str) {
    match frame {
        Some(Frame { first: 0x20, body }) if body.len() >= 2 && body[1] == 0 => {}
        other => panic!("{what}: expected CONNACK 0 first, got {other:?}"),
    }
}

/// The broker survived and serves a fresh well-behaved client.
fn assert_healthy(b: &mut Bridge, when: &str) {
    b.assert_running();
    let port = b.tcp_port();
    // A panic inside assert_serving names the probe; say which moment it was.
    let result = std::panic::catch_unwind(|| assert_serving(port));
    if let Err(e) = result {
        eprintln!("[hostile] well-behaved client failed {when}");
        std::panic::resume_unwind(e);
    }
}

// --- the battery -------------------------------------------------------------------------

/// A client that sends a valid CONNECT, SUBSCRIBE and QoS 1 PUBLISH one byte per write, with
/// a pause after each: it is served, just slowly, and others are served meanwhile.
#[test]
fn byte_at_a_time_client_is_served_slowly() {
    let mut b = Bridge::start();
    let port = b.tcp_port();
    let topic = unique("trickle");
    let mut watcher = RawClient::connect_clean(port, &unique("watcher"));
    assert_eq!(watcher.subscribe(1, &[(&topic, 1)]), vec![1]);

    let mut bytes = connect(&unique("trickler")).bytes();
    bytes.extend(wire::subscribe(3, &[(&topic, 1)]));
    bytes.extend(wire::publish(&topic, b"one byte at a time", 1, false, 7));
    let mut slow = RawClient::open(port);
    let halfway = bytes.len() / 2;
    for (i, byte) in bytes.iter().enumerate() {
        slow.send_ok(&[*byte]);
        thread::sleep(Duration::from_millis(10));
        if i == halfway {
            assert_healthy(&mut b, "while a client trickles its packets");
        }
    }
    assert_eq!(
        slow.expect(WAIT),
        Packet::Connack {
            session_present: false,
            code: 0
        }
    );
    assert_eq!(
        slow.expect(WAIT),
        Packet::Suback {
            pid: 3,
            codes: vec![1]
        }
    );
    // Its own message comes back (it subscribed), and the PUBACK; in either order.
    let mut got = vec![slow.expect(WAIT), slow.expect(WAIT)];
    got.sort_by_key(|p| matches!(p, Packet::Publish { .. }));
    assert_eq!(got[0], Packet::Puback(7), "got {got:?}");
    assert_eq!(
        got[1].as_publish(),
        Some((topic.as_str(), &b"one byte at a time"[..]))
    );
    assert_eq!(
        watcher.receive(WAIT).as_publish(),
        Some((topic.as_str(), &b"one byte at a time"[..]))
    );
    slow.ping();
    slow.disconnect();
    assert_healthy(&mut b, "after the trickling client");
}

/// A PUBLISH fixed header announcing the largest remaining length (268,435,455: `30 ff ff ff
/// 7f`), far above the maximum packet size: the connection is closed at once, before
/// anything of the body is buffered, whether it comes first on the socket, after a 3.1.1
/// CONNECT (silent close) or after a 5.0 CONNECT (DISCONNECT 0x95 "packet too large").
#[test]
fn huge_remaining_length_closes_without_buffering() {
    let mut b = Bridge::start();
    let port = b.tcp_port();
    let rss = RssPeak::start(&b);
    let before = rss_kib(b.pid());
    let header = [0x30, 0xff, 0xff, 0xff, 0x7f];
    // The body that follows, as far as the broker lets us send it.
    let body = vec![b'x'; 64 * 1024];

    let cases: [(&str, Vec<u8>); 3] = [
        ("as the first bytes", Vec::new()),
        ("after a 3.1.1 CONNECT", connect(&unique("huge")).bytes()),
        (
            "after a 5.0 CONNECT",
            v5_connect(unique("huge5").as_bytes(), &[]),
        ),
    ];
    for (what, prefix) in cases {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_nodelay(true).unwrap();
        if !prefix.is_empty() {
            stream.write_all(&prefix).unwrap();
            assert_connack_ok(Some(&read_frame(&mut stream, WAIT, what)), what);
        }
        // The header alone must be enough to close the connection; the body bytes after it
        // only check that nothing is buffered meanwhile (the broker may close, and reset the
        // connection, while we write them: that is the point).
        stream.write_all(&header).unwrap();
        let _ = stream.write_all(&body);
        let frames = frames_until_closed(&mut stream, CLOSE_WITHIN, what);
        if what.contains("5.0") {
            assert!(
                frames.len() == 1 && frames[0].first == 0xE0,
                "{what}: expected one DISCONNECT, got {frames:?}"
            );
            assert_eq!(frames[0].body.first(), Some(&0x95), "{what}: reason code");
        } else {
            assert!(frames.is_empty(), "{what}: got {frames:?}");
        }
        assert_healthy(&mut b, what);
    }
    let peak = rss.finish("huge remaining length");
    assert!(
        peak < before + 64 * 1024,
        "RSS grew from {before} KiB to {peak} KiB: the announced length was buffered"
    );
}

/// Slowloris: 200 connections each send half a CONNECT and then nothing. Each is closed by
/// the CONNECT timeout (10 s) without a CONNACK; meanwhile a well-behaved client, connected
/// before and connecting during, is served as usual. At the same time, on the WebSocket
/// listener: 50 connections send half an HTTP upgrade request (closed by the handshake
/// timeout, 10 s) and 50 complete the upgrade and send half a CONNECT (closed by the CONNECT
/// timeout).
#[test]
fn slowloris_half_connects_are_closed_by_the_connect_timeout() {
    const CONNECTIONS: usize = 200;
    const WS_CONNECTIONS: usize = 50;
    let mut b = Bridge::start();
    let port = b.tcp_port();
    let ws_port = b.ws_port();
    let rss = RssPeak::start(&b);
    let topic = unique("loris");
    let mut regular = RawClient::connect_clean(port, &unique("regular"));
    assert_eq!(regular.subscribe(1, &[(&topic, 1)]), vec![1]);

    let whole = connect(&unique("loris"))
        .will("w/x", b"w", 1, false)
        .bytes();
    let half = &whole[..whole.len() / 2];
    let opened = Instant::now();
    let ws_lorises = {
        let url = b.ws_url();
        let half = half.to_vec();
        thread::spawn(move || ws_slowloris(&url, &half, WS_CONNECTIONS, opened))
    };
    let mut half_upgrades: Vec<TcpStream> = (0..WS_CONNECTIONS)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", ws_port)).expect("open connection");
            s.write_all(b"GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
                .expect("half an upgrade request");
            s
        })
        .collect();
    let mut lorises: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).expect("open connection");
            s.write_all(half).expect("half a CONNECT");
            s
        })
        .collect();
    eprintln!(
        "[hostile] {CONNECTIONS} half-open connections opened in {:?}",
        opened.elapsed()
    );

    // During: the regular client and new clients keep being served.
    for round in 0..3 {
        regular.publish(
            &topic,
            format!("round {round}").as_bytes(),
            1,
            false,
            10 + round,
        );
        assert_eq!(
            regular.receive(WAIT).as_publish(),
            Some((topic.as_str(), format!("round {round}").as_bytes()))
        );
        assert_healthy(&mut b, "while 200 half-open connections wait");
        thread::sleep(Duration::from_secs(1));
    }

    // Each is closed, without a CONNACK, by the CONNECT timeout (plus a generous margin).
    let deadline = opened + CONNECT_TIMEOUT + Duration::from_secs(20);
    for (i, s) in lorises.iter_mut().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        let frames = frames_until_closed(
            s,
            left.max(Duration::from_millis(1)),
            &format!("half-open connection {i}"),
        );
        assert!(frames.is_empty(), "half-open connection {i} got {frames:?}");
    }
    eprintln!(
        "[hostile] all {CONNECTIONS} half-open connections closed {:?} after opening",
        opened.elapsed()
    );
    for (i, s) in half_upgrades.iter_mut().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        // Whatever the server says (an HTTP error or nothing), it must close.
        let mut sink = [0u8; 4096];
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        loop {
            match s.read(&mut sink) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!(
                        "half upgrade request {i}: still open {:?} after opening",
                        opened.elapsed()
                    )
                }
                Err(_) => break,
            }
        }
    }
    ws_lorises.join().expect("WebSocket half CONNECTs");
    eprintln!(
        "[hostile] all {} WebSocket half-open connections closed {:?} after opening",
        2 * WS_CONNECTIONS,
        opened.elapsed()
    );
    regular.ping();
    regular.disconnect();
    assert_healthy(&mut b, "after the half-open connections were closed");
    rss.finish("slowloris");
}

/// `count` WebSockets that complete the upgrade, send half a CONNECT and wait: each must be
/// closed by the CONNECT timeout (with a generous margin) without an answer.
fn ws_slowloris(url: &str, half: &[u8], count: usize, opened: Instant) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut sockets = Vec::new();
        for _ in 0..count {
            let mut ws = ws_connect(url, "mqtt").await.expect("WebSocket upgrade");
            ws.send(Message::binary(half.to_vec()))
                .await
                .expect("half a CONNECT");
            sockets.push(ws);
        }
        let deadline = opened + CONNECT_TIMEOUT + Duration::from_secs(20);
        for (i, ws) in sockets.iter_mut().enumerate() {
            let left = deadline.saturating_duration_since(Instant::now());
            ws_expect_closed_within(
                ws,
                left.max(Duration::from_millis(1)),
                &format!("WebSocket half CONNECT {i}"),
            )
            .await;
        }
    });
}

/// One client subscribes to 10,000 filters, in 100 SUBSCRIBEs of 100 filters each, sent in
/// one go: all 100 SUBACKs arrive, a publish to one of the filters is delivered, and the
/// broker's memory stays bounded.
#[test]
fn ten_thousand_subscriptions_from_one_client() {
    let mut b = Bridge::start();
    let port = b.tcp_port();
    let rss = RssPeak::start(&b);
    let prefix = unique("many");
    let mut subscriber = RawClient::connect_clean(port, &unique("subscriber"));

    let mut all = Vec::new();
    for batch in 0..100u16 {
        let filters: Vec<String> = (0..100)
            .map(|i| match i {
                // A few wildcards among the literal filters.
                0 => format!("{prefix}/{batch}/+/w"),
                1 => format!("{prefix}/{batch}/deep/#"),
                _ => format!("{prefix}/{batch}/{i}"),
            })
            .collect();
        let filters: Vec<(&str, u8)> = filters.iter().map(|f| (f.as_str(), 1)).collect();
        all.extend(wire::subscribe(batch + 1, &filters));
    }
    subscriber.send_ok(&all);
    assert_healthy(&mut b, "while 10,000 subscriptions are being made");
    for batch in 0..100u16 {
        assert_eq!(
            subscriber.expect(WAIT),
            Packet::Suback {
                pid: batch + 1,
                codes: vec![1; 100]
            },
            "SUBACK of batch {batch}"
        );
    }

    let mut publisher = RawClient::connect_clean(port, &unique("publisher"));
    for topic in [
        format!("{prefix}/42/17"),
        format!("{prefix}/99/x/w"),
        format!("{prefix}/0/deep/a/b"),
    ] {
        publisher.publish(&topic, b"found", 1, false, 5);
        assert_eq!(
            subscriber.receive(WAIT).as_publish(),
            Some((topic.as_str(), &b"found"[..]))
        );
    }
    assert_healthy(&mut b, "with 10,000 subscriptions in place");
    subscriber.ping();
    // Dropping the session drops its 10,000 subscriptions.
    subscriber.disconnect();
    publisher.publish(&format!("{prefix}/42/17"), b"nobody", 1, false, 6);
    publisher.disconnect();
    assert_healthy(&mut b, "after the subscriber left");
    rss.finish("10,000 subscriptions");
}

/// A topic of 65,535 bytes, the longest a 16-bit length can announce, is accepted and
/// delivered to a wildcard subscriber; a PUBLISH whose topic length field runs past the end
/// of the packet is malformed and closes the connection.
#[test]
fn longest_topic_is_delivered_and_overlong_length_field_closes() {
    let mut b = Bridge::start_with(&["--max-packet-size", "1048576"]);
    let port = b.tcp_port();
    let prefix = unique("long");
    let mut subscriber = RawClient::connect_clean(port, &unique("subscriber"));
    assert_eq!(
        subscriber.subscribe(1, &[(&format!("{prefix}/#"), 1)]),
        vec![1]
    );

    let mut topic = format!("{prefix}/");
    topic.push_str(&"t".repeat(65_535 - topic.len()));
    assert_eq!(topic.len(), 65_535);
    let mut publisher = RawClient::connect_clean(port, &unique("publisher"));
    publisher.publish(&topic, b"longest", 1, false, 1);
    assert_eq!(
        subscriber.receive(WAIT).as_publish(),
        Some((topic.as_str(), &b"longest"[..]))
    );
    // The same topic as a retained message reaches a later subscriber too.
    publisher.publish(&topic, b"kept", 1, true, 2);
    assert_eq!(
        subscriber.receive(WAIT).as_publish(),
        Some((topic.as_str(), &b"kept"[..]))
    );
    let mut late = RawClient::connect_clean(port, &unique("late"));
    assert_eq!(late.subscribe(1, &[(&topic, 0)]), vec![0]);
    assert_eq!(
        late.receive(WAIT).as_publish(),
        Some((topic.as_str(), &b"kept"[..]))
    );
    late.disconnect();

    // Length field 65,535, but only 100 topic bytes in the packet.
    let mut short = vec![0xff, 0xff];
    short.extend(std::iter::repeat_n(b'x', 100));
    // Length field one more than the bytes that follow it.
    let mut by_one = vec![0xff, 0xff];
    by_one.extend(std::iter::repeat_n(b'y', 65_534));
    for (what, body) in [("100 of 65,535 bytes", short), ("65,534 of 65,535", by_one)] {
        let mut c = RawClient::connect_clean(port, &unique("overlong"));
        c.send(&packet(0x30, &body));
        let got = c.expect_closed(CLOSE_WITHIN);
        assert!(got.is_empty(), "{what}: got {got:?}");
        b.assert_running();
    }
    publisher.disconnect();
    subscriber.ping();
    subscriber.disconnect();
    assert_healthy(&mut b, "after the longest topics");
}

/// Topics and filters with tens of thousands of levels: routing, retained matching,
/// unsubscribing and session cleanup must not recurse per level (a task's stack would
/// overflow and abort the whole broker).
#[test]
fn deep_topic_levels_do_not_overflow_the_stack() {
    let mut b = Bridge::start();
    let port = b.tcp_port();
    let prefix = unique("deep");
    // 30,000 levels below the prefix.
    let topic = format!("{prefix}{}", "/a".repeat(30_000));
    let plus = format!("{prefix}{}", "/+".repeat(30_000));
    let mixed = format!("{prefix}{}", "/+/a".repeat(15_000));
    let hash = format!("{prefix}{}/#", "/+".repeat(29_999));
    // 65,536 empty levels: the most a topic can have.
    let slashes = "/".repeat(65_535);

    let mut subscribers: Vec<(RawClient, &str)> = Vec::new();
    for filter in [&plus, &mixed, &hash, &slashes] {
        let filter = filter.as_str();
        let mut c = RawClient::connect_clean(port, &unique("deep-sub"));
        assert_eq!(c.subscribe(1, &[(filter, 1)]), vec![1], "subscribe");
        subscribers.push((c, filter));
    }
    assert_healthy(&mut b, "with deep subscriptions in place");

    let mut publisher = RawClient::connect_clean(port, &unique("deep-pub"));
    publisher.publish(&topic, b"deep", 1, true, 1);
    publisher.publish(&slashes, b"slashes", 1, true, 2);
    for (c, filter) in &mut subscribers {
        let expected = if filter.starts_with('/') {
            (slashes.as_str(), &b"slashes"[..])
        } else {
            (topic.as_str(), &b"deep"[..])
        };
        let got = c.receive(WAIT);
        assert_eq!(
            got.as_publish(),
            Some(expected),
            "subscriber of a deep filter"
        );
    }
    // Retained: a new subscription with a deep wildcard filter gets the deep retained message.
    let mut late = RawClient::connect_clean(port, &unique("deep-late"));
    assert_eq!(late.subscribe(1, &[(&plus, 1)]), vec![1]);
    assert_eq!(
        late.receive(WAIT).as_publish(),
        Some((topic.as_str(), &b"deep"[..]))
    );
    late.unsubscribe(2, &[&plus]);
    late.disconnect();
    // Cleanup: sessions holding deep filters end, the trie is pruned.
    for (c, _) in subscribers {
        c.drop_abruptly();
    }
    publisher.publish(&topic, b"", 1, true, 3);
    publisher.disconnect();
    thread::sleep(Duration::from_millis(300));
    assert_healthy(&mut b, "after the deep subscribers left");
}

/// Invalid UTF-8 (MQTT-1.5.4-1) anywhere a string is: the connection is closed, with at most
/// a refusing CONNACK (in CONNECT) or a DISCONNECT with a reason of 0x80 or above (5.0).
#[test]
fn invalid_utf8_closes_the_connection() {
    let mut b = Bridge::start();
    let port = b.tcp_port();
    // A lone continuation-less byte, an overlong NUL, a UTF-16 surrogate, a truncated sequence.
    let bad: [&[u8]; 4] = [b"a/\xff", b"a/\xc0\x80", b"a/\xed\xa0\x80", b"a/\xe2\x82"];
    for (n, seq) in bad.iter().enumerate() {
        let in_connect: Vec<(&str, Vec<u8>)> = vec![
            ("3.1.1 client id", {
                let mut c = connect("x");
                c.client_id = seq.to_vec();
                c.bytes()
            }),
            ("3.1.1 will topic", {
                let mut c = connect(&unique("will")).will("w", b"gone", 0, false);
                c.will.as_mut().unwrap().topic = seq.to_vec();
                c.bytes()
            }),
            ("3.1.1 username", {
                let mut c = connect(&unique("user")).username("u").password(b"p");
                c.username = Some(seq.to_vec());
                c.bytes()
            }),
            ("5.0 client id", v5_connect(seq, &[])),
            (
                "5.0 CONNECT user property name",
                v5_connect(unique("up").as_bytes(), &user_property(seq, b"v")),
            ),
            (
                "5.0 CONNECT user property value",
                v5_connect(unique("up").as_bytes(), &user_property(b"k", seq)),
            ),
        ];
        for (what, bytes) in in_connect {
            let what = format!("invalid UTF-8 #{n} in {what}");
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(&bytes).unwrap();
            let frames = frames_until_closed(&mut s, CLOSE_WITHIN, &what);
            assert!(
                frames
                    .iter()
                    .all(|f| f.first == 0x20 && f.body.len() >= 2 && f.body[1] != 0),
                "{what}: only a refusing CONNACK may come back, got {frames:?}"
            );
            b.assert_running();
        }

        let after_connect: Vec<(&str, bool, Vec<u8>)> = vec![
            (
                "3.1.1 PUBLISH topic",
                false,
                wire::publish_raw(seq, b"x", 1, false, false, 1),
            ),
            (
                "3.1.1 SUBSCRIBE filter",
                false,
                wire::subscribe_raw(0x82, 1, &[(seq, 0)]),
            ),
            ("3.1.1 UNSUBSCRIBE filter", false, {
                let mut body = 1u16.to_be_bytes().to_vec();
                put_bytes(seq, &mut body);
                packet(0xA2, &body)
            }),
            ("5.0 PUBLISH topic", true, v5_publish(seq, &[], 1, 1, b"x")),
            (
                "5.0 PUBLISH user property",
                true,
                v5_publish(b"a/b", &user_property(b"k", seq), 1, 1, b"x"),
            ),
            (
                "5.0 PUBLISH content type",
                true,
                v5_publish(b"a/b", &content_type(seq), 0, 0, b"x"),
            ),
        ];
        for (what, v5, bytes) in after_connect {
            let what = format!("invalid UTF-8 #{n} in {what}");
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let hello = if v5 {
                v5_connect(unique("u8").as_bytes(), &[])
            } else {
                connect(&unique("u8")).bytes()
            };
            // The CONNACK is awaited first: bytes pipelined behind the CONNECT are a separate
            // defect (bridge/tests/hostile_input.rs), not what this test is about.
            s.write_all(&hello).unwrap();
            let connack = read_frame(&mut s, WAIT, &what);
            assert_connack_ok(Some(&connack), &what);
            s.write_all(&bytes).unwrap();
            let frames = frames_until_closed(&mut s, CLOSE_WITHIN, &what);
            let rest = &frames[..];
            let fine = if v5 {
                rest.len() == 1 && rest[0].first == 0xE0 && rest[0].body.first() >= Some(&0x80)
            } else {
                rest.is_empty()
            };
            assert!(fine, "{what}: after CONNACK got {rest:?}");
            b.assert_running();
        }
        assert_healthy(&mut b, &format!("after invalid UTF-8 #{n}"));
    }
}

// --- WebSocket ----------------------------------------------------------------------------

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket to `url` offering `protocol` (none if empty).
async fn ws_connect(url: &str, protocol: &str) -> Result<Ws, tungstenite::Error> {
    let mut request = url.into_client_request().expect("ws request");
    if !protocol.is_empty() {
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(protocol).unwrap(),
        );
    }
    tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("WebSocket handshake timed out")
        .map(|(ws, _)| ws)
}

/// Opens an MQTT WebSocket and completes a 3.1.1 CONNECT on it.
async fn ws_connected(b: &Bridge) -> Ws {
    let mut ws = ws_connect(&b.ws_url(), "mqtt").await.expect("WebSocket");
    ws.send(Message::binary(connect(&unique("ws")).bytes()))
        .await
        .expect("send CONNECT");
    match ws_next(&mut ws, WAIT).await {
        WsEvent::Binary(b) => assert_eq!(b, [0x20, 0x02, 0x00, 0x00], "CONNACK"),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    ws
}

#[derive(Debug)]
enum WsEvent {
    Binary(Vec<u8>),
    Closed,
    Timeout,
}

async fn ws_next(ws: &mut Ws, within: Duration) -> WsEvent {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return WsEvent::Timeout,
            Ok(Some(Ok(Message::Binary(b)))) => return WsEvent::Binary(b.to_vec()),
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => {
                return WsEvent::Closed
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Waits for the server to close the WebSocket, ignoring any MQTT it still sends.
async fn ws_expect_closed(ws: &mut Ws, what: &str) {
    let deadline = tokio::time::Instant::now() + CLOSE_WITHIN;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match ws_next(ws, left).await {
            WsEvent::Closed => return,
            WsEvent::Binary(_) => {}
            WsEvent::Timeout => panic!("{what}: WebSocket still open after {CLOSE_WITHIN:?}"),
        }
    }
}

/// Waits for the server to close the WebSocket without sending anything first.
async fn ws_expect_closed_within(ws: &mut Ws, within: Duration, what: &str) {
    match ws_next(ws, within).await {
        WsEvent::Closed => {}
        WsEvent::Binary(b) => panic!("{what}: got {b:?} instead of a close"),
        WsEvent::Timeout => panic!("{what}: WebSocket still open after {within:?}"),
    }
}

/// [`assert_healthy`] from async code (the probe is a blocking client).
async fn assert_healthy_async(b: Bridge, when: &'static str) -> Bridge {
    tokio::task::spawn_blocking(move || {
        let mut b = b;
        assert_healthy(&mut b, when);
        b
    })
    .await
    .expect("health check")
}

/// MQTT-6.0.0-1: a Text frame closes the connection.
#[tokio::test]
async fn websocket_text_frame_closes() {
    let b = Bridge::start();
    let mut ws = ws_connected(&b).await;
    let b = assert_healthy_async(b, "with a WebSocket client connected").await;
    // A valid PUBLISH, all ASCII, so that it is valid UTF-8 text: a server that read Text
    // frames as MQTT would take it.
    let publish = String::from_utf8(wire::publish("tx/t", b"text", 0, false, 0)).unwrap();
    ws.send(Message::text(publish)).await.expect("send text");
    ws_expect_closed(&mut ws, "Text frame").await;
    assert_healthy_async(b, "after the Text frame").await;
}

/// A WebSocket upgrade for another path is answered 404 and the broker carries on.
#[tokio::test]
async fn websocket_wrong_path_is_404() {
    let b = Bridge::start();
    let url = format!("ws://127.0.0.1:{}/not-mqtt", b.ws_port());
    match ws_connect(&url, "mqtt").await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 404, "{response:?}")
        }
        Err(e) => panic!("expected HTTP 404, got error {e}"),
        Ok(_) => panic!("expected HTTP 404, the upgrade was accepted"),
    }
    let mut ws = ws_connected(&b).await;
    ws.send(Message::binary(wire::pingreq())).await.unwrap();
    assert!(matches!(ws_next(&mut ws, WAIT).await, WsEvent::Binary(p) if p == [0xD0, 0]));
    assert_healthy_async(b, "after the wrong path").await;
}

/// A client offering only subprotocols other than `mqtt` is refused (HTTP 400).
#[tokio::test]
async fn websocket_foreign_subprotocol_is_refused() {
    let b = Bridge::start();
    for offered in ["chat", "soap, wamp", "mqtt5"] {
        match ws_connect(&b.ws_url(), offered).await {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), 400, "{offered}: {response:?}")
            }
            Err(e) => panic!("{offered}: expected HTTP 400, got error {e}"),
            Ok(_) => panic!("{offered}: the upgrade was accepted"),
        }
    }
    assert_healthy_async(b, "after refused subprotocols").await;
}

/// The broker bounds one WebSocket message by twice the maximum packet size (tungstenite
/// buffers a message whole): a message of exactly that size (two maximum-size PUBLISHes) is
/// accepted, one byte more closes the connection, and memory stays bounded either way.
#[tokio::test]
async fn websocket_message_over_the_limit_closes() {
    const MAX_PACKET: usize = 1024 * 1024;
    let b = Bridge::start_with(&["--max-packet-size", &MAX_PACKET.to_string()]);
    let rss = RssPeak::start(&b);
    let port = b.tcp_port();
    let topic = unique("wsbig");
    let t = topic.clone();
    let subscriber = tokio::task::spawn_blocking(move || {
        let mut c = RawClient::connect_clean(port, &unique("wsbig-sub"));
        assert_eq!(c.subscribe(1, &[(&t, 0)]), vec![0]);
        c
    })
    .await
    .unwrap();

    // A QoS 0 PUBLISH of exactly MAX_PACKET bytes: 1 + 3 (remaining length) + 2 + topic.
    let payload_len = MAX_PACKET - 1 - 3 - 2 - topic.len();
    let one = wire::publish(&topic, &vec![b'p'; payload_len], 0, false, 0);
    assert_eq!(one.len(), MAX_PACKET);
    let mut ws = ws_connected(&b).await;
    ws.send(Message::binary([one.clone(), one].concat()))
        .await
        .expect("send a message at the limit");
    ws.send(Message::binary(wire::pingreq())).await.unwrap();
    match ws_next(&mut ws, WAIT).await {
        WsEvent::Binary(p) => assert_eq!(p, [0xD0, 0], "PINGRESP after the big message"),
        other => panic!("a message at the limit was refused: {other:?}"),
    }
    let topic2 = topic.clone();
    let subscriber = tokio::task::spawn_blocking(move || {
        let mut c = subscriber;
        for _ in 0..2 {
            let p = c.receive(WAIT);
            assert_eq!(
                p.as_publish().map(|(t, p)| (t, p.len())),
                Some((topic2.as_str(), payload_len))
            );
        }
        c
    })
    .await
    .unwrap();

    // One byte over: closed, before the message is buffered and handed on.
    let over = vec![0u8; 2 * MAX_PACKET + 1];
    // The server may close while we are still sending.
    let _ = ws.send(Message::binary(over)).await;
    ws_expect_closed(&mut ws, "message one byte over the limit").await;
    // Far over, from a fresh connection: a 64 MiB message is announced, 4 MiB sent.
    let mut raw = ws_connected(&b).await;
    let big = vec![0u8; 64 * 1024 * 1024];
    let _ = tokio::time::timeout(Duration::from_secs(5), raw.send(Message::binary(big))).await;
    ws_expect_closed(&mut raw, "64 MiB message").await;

    let b = assert_healthy_async(b, "after oversized WebSocket messages").await;
    tokio::task::spawn_blocking(move || {
        let mut c = subscriber;
        c.ping();
        c.disconnect();
    })
    .await
    .unwrap();
    rss.finish("WebSocket message limit");
    drop(b);
}

// --- flood ----------------------------------------------------------------------------------

/// A publisher sends QoS 0 messages as fast as it can, for 5 s, to a subscriber that does not
/// read its socket. The broker may drop messages for the subscriber (its session queue is
/// bounded), but its memory stays below `bound_kib` and other clients are served; when the
/// subscriber starts reading it gets what was kept, then new messages as usual. Returns the
/// peak RSS in KiB.
fn flood(mut b: Bridge, label: &str, bound_kib: u64) -> u64 {
    const FLOOD: Duration = Duration::from_secs(5);
    const PAYLOAD: usize = 16 * 1024;
    let port = b.tcp_port();
    let rss = RssPeak::start(&b);
    let idle = rss_kib(b.pid());
    let topic = unique("flood");
    let mut subscriber = RawClient::connect_clean(port, &unique("sleeper"));
    assert_eq!(subscriber.subscribe(1, &[(&topic, 0)]), vec![0]);

    let publisher = tests::spawn_flood(port, &topic, PAYLOAD, FLOOD);
    thread::sleep(FLOOD / 2);
    assert_healthy(&mut b, "during the flood");
    let (sent, took) = publisher.join().expect("publisher");
    let flood_peak = rss_kib(b.pid());
    eprintln!(
        "[hostile] flood: {sent} messages of {PAYLOAD} bytes ({:.0} MiB) in {took:?}; RSS idle \
         {:.1} MiB, after the flood {:.1} MiB",
        (sent as f64 * PAYLOAD as f64) / (1024.0 * 1024.0),
        idle as f64 / 1024.0,
        flood_peak as f64 / 1024.0
    );
    assert_healthy(&mut b, "after the flood, the subscriber still not reading");

    // The subscriber wakes up: it gets what the broker kept for it, then the stream is quiet.
    let kept = subscriber.receive_all(Duration::from_secs(2), usize::MAX);
    assert!(
        kept.iter()
            .all(|p| p.as_publish().map(|(t, p)| (t, p.len())) == Some((topic.as_str(), PAYLOAD))),
        "unexpected packets among the kept messages"
    );
    eprintln!(
        "[hostile] flood: the subscriber received {} of {sent} messages",
        kept.len()
    );
    assert!(!kept.is_empty(), "the subscriber got nothing at all");
    // New messages flow again.
    let mut p = RawClient::connect_clean(port, &unique("after"));
    p.publish(&topic, b"marker", 1, false, 1);
    assert_eq!(
        subscriber.receive(WAIT).as_publish(),
        Some((topic.as_str(), &b"marker"[..]))
    );
    p.disconnect();
    subscriber.disconnect();
    assert_healthy(&mut b, "after the flood");
    rss.finish_below(label, bound_kib)
}

/// The flood with the per-session queue limited to 1,000 messages (`[limits]
/// max_queued_messages`): the broker keeps at most about 16 MiB for the subscriber, and its
/// memory stays below [`RSS_BOUND_KIB`].
#[test]
fn flood_to_a_subscriber_that_does_not_read_keeps_memory_bounded() {
    let config = std::env::temp_dir().join(format!("{}.toml", unique("hostile-flood")));
    std::fs::write(&config, "[limits]\nmax_queued_messages = 1000\n").expect("write config");
    let b = Bridge::start_with(&["--config", config.to_str().unwrap()]);
    let _ = std::fs::remove_file(&config);
    flood(b, "flood, queue of 1,000 messages", RSS_BOUND_KIB);
}

/// The flood with the default limits: a session queues up to 100,000 messages or 256 MiB
/// (`max_queued_bytes`), so one subscriber that does not read can make the broker hold about
/// that much; the bound is that plus [`RSS_BOUND_KIB`] of slack. (Every further subscriber
/// that does not read can hold as much again, up to `max_queued_bytes_total`, 1 GiB, for all
/// sessions together: `limits::the_bytes_queued_in_all_sessions_are_bounded_and_given_back`.)
#[test]
fn flood_with_default_limits_stays_within_the_queued_bytes_limit() {
    const DEFAULT_MAX_QUEUED_BYTES_KIB: u64 = 256 * 1024;
    let b = Bridge::start();
    flood(
        b,
        "flood, default queue limits",
        DEFAULT_MAX_QUEUED_BYTES_KIB + RSS_BOUND_KIB,
    );
}

// --- outbound topic aliases ---------------------------------------------------------------

/// A 5.0 subscriber may announce a Topic Alias Maximum of 65,535; the broker then gives each
/// new topic it delivers an alias and remembers the topic for the life of the connection. If
/// it honours the client's maximum without a cap of its own, a publisher and a subscriber
/// working together make it keep up to 65,535 topics of up to 64 KiB each (4 GiB) after the
/// messages themselves are long gone. Here: 2,000 distinct topics of 60,000 bytes (about
/// 115 MiB of topic names), delivered and read; the broker's memory must not keep them.
#[test]
fn outbound_topic_aliases_do_not_keep_every_topic() {
    const TOPICS: usize = 2_000;
    const TOPIC_LEN: usize = 60_000;
    let mut b = Bridge::start();
    let port = b.tcp_port();
    let prefix = unique("alias");
    let rss = RssPeak::start(&b);
    let idle = rss_kib(b.pid());

    // 5.0 subscriber: Topic Alias Maximum (0x22) 65,535; SUBSCRIBE `{prefix}/#` QoS 0.
    let mut sub = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sub.write_all(&v5_connect(
        unique("aliased").as_bytes(),
        &[0x22, 0xff, 0xff],
    ))
    .unwrap();
    assert_connack_ok(
        Some(&read_frame(&mut sub, WAIT, "alias subscriber")),
        "subscriber",
    );
    let mut body = 1u16.to_be_bytes().to_vec();
    body.push(0); // no properties
    put_bytes(format!("{prefix}/#").as_bytes(), &mut body);
    body.push(0);
    sub.write_all(&packet(0x82, &body)).unwrap();
    let suback = read_frame(&mut sub, WAIT, "SUBACK");
    assert_eq!(suback.first, 0x90, "SUBACK: {suback:?}");

    // Publisher on its own thread; the subscriber reads everything meanwhile.
    let publisher = {
        let prefix = prefix.clone();
        thread::spawn(move || {
            let mut c = RawClient::connect_clean(port, &unique("alias-pub"));
            for i in 0..TOPICS {
                let mut topic = format!("{prefix}/{i}/");
                topic.push_str(&"a".repeat(TOPIC_LEN - topic.len()));
                c.send_ok(&wire::publish(&topic, b"x", 0, false, 0));
            }
            c.ping();
            c.disconnect();
        })
    };
    let mut received = 0;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    let deadline = Instant::now() + Duration::from_secs(60);
    sub.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    while received < TOPICS && Instant::now() < deadline {
        match sub.read(&mut chunk) {
            Ok(0) => panic!("subscriber closed after {received} messages"),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                received += split_frames(&mut buf)
                    .iter()
                    .filter(|f| f.first >> 4 == 3)
                    .count();
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("subscriber read failed after {received} messages: {e}"),
        }
    }
    publisher.join().expect("publisher");
    eprintln!("[hostile] topic aliases: the subscriber got {received} of {TOPICS} messages");
    thread::sleep(Duration::from_millis(500));
    let after = rss_kib(b.pid());
    eprintln!(
        "[hostile] topic aliases: RSS idle {:.1} MiB, after {TOPICS} topics of {TOPIC_LEN} bytes \
         {:.1} MiB",
        idle as f64 / 1024.0,
        after as f64 / 1024.0
    );
    assert_healthy(&mut b, "after the aliased topics");
    // Still connected, the subscriber keeps its aliases: the memory must not hold the topics.
    assert!(
        after < idle + 64 * 1024,
        "broker RSS went from {idle} KiB to {after} KiB and stays there while the subscriber is \
         connected: the outbound alias table keeps every topic"
    );
    drop(sub);
    rss.finish("outbound topic aliases");
}

// --- takeover storm ---------------------------------------------------------------------------

/// 100 connections race for one client id (half of them asking for a persistent session),
/// each subscribing and publishing as soon as it is connected: every takeover closes the
/// previous holder (MQTT-3.1.4-2), the broker survives, and the id is usable afterwards.
#[test]
fn takeover_storm_on_one_client_id() {
    const RACERS: usize = 100;
    let mut b = Bridge::start();
    let port = b.tcp_port();
    let id = unique("contested");
    let topic = unique("storm");
    let (connacked, connacks) = std::sync::mpsc::channel();
    let racers: Vec<JoinHandle<()>> = (0..RACERS)
        .map(|i| {
            let (id, topic, connacked) = (id.clone(), topic.clone(), connacked.clone());
            thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                let mut bytes = connect(&id).clean(i % 2 == 0).keep_alive(5).bytes();
                bytes.extend(wire::subscribe(1, &[(&topic, 1)]));
                bytes.extend(wire::publish(&topic, b"mine", 1, false, 2));
                // Errors are expected: a later racer may take the session at any moment.
                let _ = s.write_all(&bytes);
                let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
                let mut got = Vec::new();
                let mut sink = [0u8; 4096];
                let mut told = false;
                while let Ok(n) = s.read(&mut sink) {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&sink[..n]);
                    if !told && got.len() >= 4 {
                        // Every CONNECT is answered, even one whose session is taken at once.
                        assert_eq!(got[..4], [0x20, 0x02, got[2], 0x00], "racer {i}: CONNACK");
                        connacked.send(()).unwrap();
                        told = true;
                    }
                }
                assert!(told, "racer {i}: closed without a CONNACK: {got:?}");
            })
        })
        .collect();
    for _ in 0..RACERS {
        connacks
            .recv_timeout(Duration::from_secs(30))
            .expect("every racer gets its CONNACK");
    }
    assert_healthy(&mut b, "during the takeover storm");
    // The last word: a clean client with the same id takes over and is served.
    let mut last = RawClient::connect_clean(port, &id);
    assert_eq!(last.subscribe(1, &[(&topic, 1)]), vec![1]);
    last.publish(&topic, b"finally", 1, false, 3);
    assert_eq!(
        last.receive(WAIT)
            .as_publish()
            .map(|(t, p)| (t.to_owned(), p.to_vec())),
        Some((topic.clone(), b"finally".to_vec()))
    );
    for racer in racers {
        racer.join().expect("racer");
    }
    last.disconnect();
    assert_healthy(&mut b, "after the takeover storm");
}
