//! Conformance to the letter (issue 11): the defects that independent conformance suites
//! found, one raw-socket regression each, written from the spec's normative statements.
//! 5.0 connections that break a rule must get a DISCONNECT with the reason the spec gives
//! (0x81 malformed, 0x82 protocol error) and be closed; 3.1.1 ones are closed with nothing
//! sent. Every test also checks that the broker goes on serving others.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::thread;
use std::time::{Duration, Instant};

use tests::v5::checks::{assert_all_disconnect, outcome};
use tests::v5::wire::{
    self, connect, prop, rc, sub_options, Client, Packet, Props, RecvError, WAIT,
};
use tests::wire::{self as wire3, Packet as Packet3, RawClient};
use tests::{assert_serving, unique, Bridge};

/// Sends `bytes` on a connected 3.1.1 client and asserts the broker closes the connection
/// without answering (3.1.1 has no DISCONNECT from the server, MQTT-4.8.0-1).
fn assert_v3_closes(b: &mut Bridge, what: &str, bytes: &[u8]) {
    let mut c = RawClient::connect_clean(b.tcp_port(), &unique("v3-offender"));
    c.send(bytes);
    let got = c.expect_closed(WAIT);
    assert!(got.is_empty(), "{what}: sent {got:?} before closing");
    b.assert_running();
    assert_serving(b.tcp_port());
}

/// A 5.0 subscriber at QoS 2 on a fresh topic, and a message published to it at `qos`:
/// returns the subscriber and the packet identifier of the delivery it was sent.
fn delivery(port: u16, qos: u8) -> (Client, u16) {
    let topic = unique("flow");
    let mut sub = Client::connect_clean(port, &unique("flow-sub"));
    assert_eq!(sub.subscribe(1, &[(&topic, 2)]), [2]);
    let mut publisher = Client::connect_clean(port, &unique("flow-pub"));
    publisher.publish(&topic, b"x", qos, false, 1);
    match sub.expect_publish(WAIT) {
        Packet::Publish {
            qos: got,
            pid: Some(pid),
            ..
        } if got == qos => (sub, pid),
        other => panic!("expected a QoS {qos} PUBLISH, got {other:?}"),
    }
}

/// MQTT-3.3.1-2: "The DUP flag MUST be set to 0 for all QoS 0 messages". A QoS 0 PUBLISH
/// with DUP is malformed: 5.0 DISCONNECT 0x81; 3.1.1 closes.
#[test]
fn qos0_publish_with_dup_is_malformed() {
    let mut b = Bridge::start();
    let mut dup = wire::publish("dup/t", b"x", 0, false, 0, &Props::new());
    dup[0] |= 0x08;
    assert_all_disconnect(
        &mut b,
        &[("QoS 0 PUBLISH with DUP", dup)],
        rc::MALFORMED_PACKET,
    );
    let mut dup3 = wire3::publish("dup/t", b"x", 0, false, 0);
    dup3[0] |= 0x08;
    assert_v3_closes(&mut b, "3.1.1 QoS 0 PUBLISH with DUP", &dup3);
}

/// MQTT-4.3.2, MQTT-4.3.3: a QoS 1 delivery is answered by PUBACK; a QoS 2 one by PUBREC,
/// then (after our PUBREL) PUBCOMP. An acknowledgement of another type for a packet
/// identifier in flight is a protocol error (0x82), never answered: before the fix a PUBREC
/// for a QoS 1 delivery even got a PUBREL.
#[test]
fn acknowledgements_of_the_wrong_type_are_protocol_errors() {
    let mut b = Bridge::start();
    let port = b.tcp_port();
    // (what, QoS of the delivery, whether we PUBREC first, the wrong acknowledgement)
    let cases: [(&str, u8, bool, u8); 5] = [
        ("PUBCOMP for a QoS 1 delivery", 1, false, 0x70),
        ("PUBREC for a QoS 1 delivery", 1, false, 0x50),
        ("PUBACK for a QoS 2 delivery", 2, false, 0x40),
        ("PUBCOMP for a QoS 2 delivery before PUBREC", 2, false, 0x70),
        (
            "PUBACK for a QoS 2 delivery after PUBREC/PUBREL",
            2,
            true,
            0x40,
        ),
    ];
    let mut wrong = Vec::new();
    for (what, qos, pubrec_first, ack) in cases {
        let (mut c, pid) = delivery(port, qos);
        if pubrec_first {
            c.send_ok(&wire::pubrec(pid));
            c.await_pubrel(pid);
        }
        c.send(&wire::ack(ack, pid, 0));
        let got = outcome(&mut c);
        if !got.starts_with("DISCONNECT 0x82") {
            wrong.push(format!("{what}: {got}"));
        }
    }
    b.assert_running();
    assert!(
        wrong.is_empty(),
        "expected DISCONNECT 0x82:\n  {}",
        wrong.join("\n  ")
    );

    // 3.1.1: the same PUBREC for a QoS 1 delivery closes the connection, with no PUBREL.
    let topic = unique("flow3");
    let mut sub = RawClient::connect_clean(port, &unique("flow3-sub"));
    assert_eq!(sub.subscribe(1, &[(&topic, 2)]), vec![2]);
    RawClient::connect_clean(port, &unique("flow3-pub")).publish(&topic, b"x", 1, false, 1);
    let pid = match sub.expect_publish(WAIT) {
        Packet3::Publish { pid: Some(pid), .. } => pid,
        other => panic!("expected PUBLISH, got {other:?}"),
    };
    sub.send(&wire3::pubrec(pid));
    let got = sub.expect_closed(WAIT);
    assert!(got.is_empty(), "3.1.1 PUBREC for QoS 1: sent {got:?}");
    assert_serving(port);
}

/// Well-formed acknowledgements for identifiers with nothing in flight keep their answers:
/// PUBACK and PUBCOMP are ignored, PUBREC gets PUBREL 0x92 and PUBREL gets PUBCOMP 0x92
/// ("packet identifier not found", MQTT 5.0 §3.6.2.1, §3.7.2.1); the connection stays up.
#[test]
fn unsolicited_acknowledgements_keep_their_answers() {
    let b = Bridge::start();
    let mut c = Client::connect_clean(b.tcp_port(), &unique("unsolicited"));
    c.send_ok(&wire::puback(11));
    c.send_ok(&wire::pubcomp(12));
    c.send_ok(&wire::pubrec(13));
    c.send_ok(&wire::pubrel(14));
    for (kind, pid) in [(wire::PUBREL, 13), (wire::PUBCOMP, 14)] {
        match c.expect(WAIT) {
            Packet::Ack {
                kind: k,
                pid: p,
                reason,
                ..
            } if k == kind && p == pid => assert_eq!(reason, rc::PACKET_IDENTIFIER_NOT_FOUND),
            other => panic!("expected ack type {kind} for {pid}, got {other:?}"),
        }
    }
    c.ping();
}

/// Packet identifiers are non-zero (MQTT-2.3.1-1 in 3.1.1, MQTT-2.2.1-3 in 5.0). Zero in an
/// acknowledgement, a QoS 1/2 PUBLISH, SUBSCRIBE or UNSUBSCRIBE is a protocol error (0x82),
/// not a malformed packet; 3.1.1 closes. Before the fix, acks with 0 were ignored.
#[test]
fn packet_identifier_zero_is_a_protocol_error() {
    let mut b = Bridge::start();
    let cases = [
        ("PUBACK 0", wire::puback(0)),
        ("PUBREC 0", wire::pubrec(0)),
        ("PUBREL 0", wire::pubrel(0)),
        ("PUBCOMP 0", wire::pubcomp(0)),
        (
            "QoS 1 PUBLISH 0",
            wire::publish("z/t", b"x", 1, false, 0, &Props::new()),
        ),
        (
            "QoS 2 PUBLISH 0",
            wire::publish("z/t", b"x", 2, false, 0, &Props::new()),
        ),
        (
            "SUBSCRIBE 0",
            wire::subscribe(0, &Props::new(), &[("z/t", 1)]),
        ),
        ("UNSUBSCRIBE 0", wire::unsubscribe(0, &["z/t"])),
    ];
    assert_all_disconnect(&mut b, &cases, rc::PROTOCOL_ERROR);
    for (what, bytes) in [
        ("3.1.1 PUBACK 0", wire3::puback(0)),
        ("3.1.1 PUBREC 0", wire3::pubrec(0)),
        ("3.1.1 PUBREL 0", wire3::pubrel(0)),
        ("3.1.1 PUBCOMP 0", wire3::pubcomp(0)),
    ] {
        assert_v3_closes(&mut b, what, &bytes);
    }
}

/// MQTT 5.0 §2.4 and the tables of §3.4.2.1 … 3.15.2.1: an acknowledgement (or DISCONNECT,
/// AUTH) whose reason code is not listed for its packet type is malformed (0x81), and so is
/// one whose length cannot hold what it announces.
#[test]
fn reason_codes_the_spec_does_not_list_are_malformed() {
    let mut b = Bridge::start();
    let cases = [
        ("PUBACK 0xFF", wire::ack(0x40, 7, 0xFF)),
        ("PUBREC 0x05", wire::ack(0x50, 7, 0x05)),
        ("PUBREL 0x10", wire::ack(0x62, 7, 0x10)),
        ("PUBCOMP 0x20", wire::ack(0x70, 7, 0x20)),
        ("DISCONNECT 0x05", wire::disconnect(0x05, &Props::new())),
        ("AUTH 0x01", vec![0xF0, 0x01, 0x01]),
        (
            "PUBACK announcing 5 property bytes it lacks",
            vec![0x40, 0x04, 0x00, 0x07, 0x00, 0x05],
        ),
        (
            "PUBCOMP with a byte left after its properties",
            vec![0x70, 0x05, 0x00, 0x07, 0x92, 0x00, 0x00],
        ),
        (
            "PUBREL with half a packet identifier",
            vec![0x62, 0x01, 0x00],
        ),
    ];
    assert_all_disconnect(&mut b, &cases, rc::MALFORMED_PACKET);
}

/// MQTT-1.5.5-1: "The encoded value MUST use the minimum number of bytes necessary to
/// represent the value". A Subscription Identifier 1 sent as `81 00`, a property length 0
/// as `80 00`, or a remaining length 0 as `80 00`, is malformed (0x81); 3.1.1 closes.
#[test]
fn variable_byte_integers_must_use_the_fewest_bytes() {
    let mut b = Bridge::start();
    // SUBSCRIBE pid 1, properties [0x0B 81 00], filter "v/t", options QoS 1.
    let subscribe = vec![
        0x82, 0x0C, 0x00, 0x01, 0x03, 0x0B, 0x81, 0x00, 0x00, 0x03, b'v', b'/', b't', 0x01,
    ];
    // PUBLISH QoS 0 "v/t", property length 0 written in two bytes, payload "x".
    let publish = vec![0x30, 0x08, 0x00, 0x03, b'v', b'/', b't', 0x80, 0x00, b'x'];
    let cases = [
        ("Subscription Identifier 1 as 81 00", subscribe),
        ("property length 0 as 80 00", publish),
        (
            "PINGREQ with remaining length 80 00",
            vec![0xC0, 0x80, 0x00],
        ),
    ];
    assert_all_disconnect(&mut b, &cases, rc::MALFORMED_PACKET);
    assert_v3_closes(
        &mut b,
        "3.1.1 PINGREQ with remaining length 80 00",
        &[0xC0, 0x80, 0x00],
    );
}

/// MQTT-4.7.3-1 (a topic filter is at least one character long) and MQTT-4.8.2-2 (a shared
/// subscription is `$share/{ShareName}/{filter}`): a 5.0 SUBSCRIBE or UNSUBSCRIBE with an
/// empty filter, or a shared one with no filter, is malformed (0x81), not a refused filter
/// (0x8F means "correctly formed but not allowed"). 3.1.1 closes, as before.
#[test]
fn empty_filters_and_shares_without_a_filter_are_malformed() {
    let mut b = Bridge::start();
    let mut cases = Vec::new();
    for filter in ["", "$share/g", "$share/g/"] {
        cases.push((
            format!("SUBSCRIBE {filter:?}"),
            wire::subscribe(1, &Props::new(), &[("ok/t", 1), (filter, 1)]),
        ));
        cases.push((
            format!("UNSUBSCRIBE {filter:?}"),
            wire::unsubscribe(1, &["ok/t", filter]),
        ));
    }
    let cases: Vec<(&str, Vec<u8>)> = cases.iter().map(|(w, p)| (w.as_str(), p.clone())).collect();
    assert_all_disconnect(&mut b, &cases, rc::MALFORMED_PACKET);
    assert_v3_closes(
        &mut b,
        "3.1.1 SUBSCRIBE \"\"",
        &wire3::subscribe(1, &[("", 0)]),
    );
    assert_v3_closes(
        &mut b,
        "3.1.1 UNSUBSCRIBE \"\"",
        &wire3::unsubscribe(1, &[""]),
    );
    // In 3.1.1 `$share/g` is well-formed: unsubscribing from it is answered.
    let mut c = RawClient::connect_clean(b.tcp_port(), &unique("v3-share"));
    c.unsubscribe(2, &["$share/g"]);
    c.ping();
}

/// MQTT 5.0 §3.3.2.3.4: "It is a Protocol Error if the Topic Name is zero length and there
/// is no Topic Alias": DISCONNECT 0x82 (it was 0x90, topic name invalid).
#[test]
fn publish_with_an_empty_topic_and_no_alias_is_a_protocol_error() {
    let mut b = Bridge::start();
    let cases = [
        ("QoS 0", wire::publish("", b"x", 0, false, 0, &Props::new())),
        ("QoS 1", wire::publish("", b"x", 1, false, 3, &Props::new())),
    ];
    assert_all_disconnect(&mut b, &cases, rc::PROTOCOL_ERROR);
}

/// MQTT-3.1.2-24: the server must not send a packet larger than the Maximum Packet Size the
/// client announced, CONNACK included. When not even the smallest CONNACK (5 bytes) fits, the
/// connection is closed with nothing sent, refused or not; optional CONNACK properties are
/// left out to fit; a SUBACK too large for the client cannot be sent and ends the connection
/// (0x95).
#[test]
fn nothing_larger_than_the_clients_maximum_packet_size_is_sent() {
    let mut b = Bridge::start();
    let port = b.tcp_port();
    for max in [2, 4] {
        let connect =
            connect(&unique("tiny")).props(Props::new().four(prop::MAXIMUM_PACKET_SIZE, max));
        let mut c = Client::open(port);
        c.send_ok(&connect.bytes());
        let got = c.expect_closed(WAIT);
        assert!(got.is_empty(), "maximum packet size {max}: sent {got:?}");
        // A CONNACK refusing the client is no smaller.
        let refused = connect.clone().props(
            Props::new()
                .four(prop::MAXIMUM_PACKET_SIZE, max)
                .str(prop::AUTHENTICATION_METHOD, "SCRAM-SHA-1"),
        );
        let mut c = Client::open(port);
        c.send_ok(&refused.bytes());
        let got = c.expect_closed(WAIT);
        assert!(
            got.is_empty(),
            "refused, maximum packet size {max}: sent {got:?}"
        );
    }

    // What a CONNACK must tell (our receive maximum and maximum packet size: absent, they
    // would mean 65,535 and no limit) takes 13 bytes; a client that cannot take them is
    // refused with a bare CONNACK, and one that can gets only them.
    for max in [5, 12] {
        let connect =
            connect(&unique("cramped")).props(Props::new().four(prop::MAXIMUM_PACKET_SIZE, max));
        let (mut c, p) = Client::try_connect(port, &connect);
        assert!(
            matches!(p, Packet::Connack { reason: 0x83, ref props, .. } if props.is_empty()),
            "maximum packet size {max}: {p:?}"
        );
        c.expect_closed(WAIT);
    }
    let (mut c, _, props) = Client::connect(
        port,
        &connect(&unique("thirteen")).props(Props::new().four(prop::MAXIMUM_PACKET_SIZE, 13)),
    );
    assert_eq!(props.get_two(prop::RECEIVE_MAXIMUM), Some(1024));
    assert_eq!(props.get_four(prop::MAXIMUM_PACKET_SIZE), Some(1024 * 1024));
    assert_eq!(props.0.len(), 2, "{props:?}");
    assert_eq!(c.received_sizes(), [13]);
    c.ping();

    let (mut c, _, _) = Client::connect(
        port,
        &connect(&unique("small")).props(Props::new().four(prop::MAXIMUM_PACKET_SIZE, 20)),
    );
    assert!(
        c.received_sizes()[0] <= 20,
        "CONNACK of {:?} bytes",
        c.received_sizes()
    );
    let filters: Vec<String> = (0..30).map(|i| format!("many/{i}")).collect();
    let filters: Vec<(&str, u8)> = filters.iter().map(|f| (f.as_str(), 0)).collect();
    c.send_ok(&wire::subscribe(1, &Props::new(), &filters));
    let (reason, _) = c.expect_disconnect(WAIT);
    assert_eq!(reason, rc::PACKET_TOO_LARGE);
    assert!(
        c.received_sizes().iter().all(|&n| n <= 20),
        "sizes {:?}",
        c.received_sizes()
    );
    b.assert_running();
    assert_serving(port);
}

/// Writes PINGREQs on a clone of `stream` every few milliseconds for `for_how_long`, then
/// shuts down its writing side; returns the write errors it met, in order.
fn keep_writing(
    stream: &std::net::TcpStream,
    for_how_long: Duration,
) -> thread::JoinHandle<Vec<String>> {
    let mut writer = stream.try_clone().expect("clone the socket");
    thread::spawn(move || {
        let mut errors = Vec::new();
        let until = Instant::now() + for_how_long;
        while Instant::now() < until {
            if let Err(e) = writer.write_all(&[0xC0, 0x00]) {
                errors.push(e.to_string());
                break;
            }
            thread::sleep(Duration::from_millis(5));
        }
        let _ = writer.shutdown(Shutdown::Write);
        errors
    })
}

/// Reads everything until the server closes; returns the bytes.
fn read_to_close(stream: &mut std::net::TcpStream) -> Vec<u8> {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut all = Vec::new();
    let _ = stream.read_to_end(&mut all);
    all
}

/// When the server ends a connection with a DISCONNECT (or a refusing CONNACK), the client
/// must be able to read it (MQTT-4.13.2-1, MQTT-3.2.2-5). Closing a socket with unread
/// bytes makes the kernel reset it, so a client still sending (here PINGREQs, every 5 ms for
/// half a second, while it has not read yet) met a reset on its next write, and a client
/// that stops at a write error never reads why it was closed. The server now shuts down its
/// side and reads on (at most about a second) until the client closes too.
#[test]
fn a_client_that_keeps_writing_still_reads_why_it_was_closed() {
    let config = std::env::temp_dir().join(format!("{}.toml", unique("linger")));
    std::fs::write(&config, "[limits]\nreceive_maximum = 2\n").unwrap();
    let b = Bridge::start_with(&["--config", config.to_str().unwrap()]);
    let _ = std::fs::remove_file(&config);
    let port = b.tcp_port();

    // Receive maximum exceeded: three QoS 2 PUBLISHes with no PUBREL.
    let mut c = Client::connect_clean(port, &unique("linger"));
    let mut flood = Vec::new();
    for pid in 1..=3 {
        flood.extend(wire::publish(
            "linger/t",
            b"x",
            2,
            false,
            pid,
            &Props::new(),
        ));
    }
    c.send_ok(&flood);
    let writer = keep_writing(c.stream(), Duration::from_millis(300));
    thread::sleep(Duration::from_millis(100));
    let errors = writer.join().unwrap();
    let mut got = Vec::new();
    loop {
        match c.recv(WAIT) {
            Ok(p) => got.push(p),
            Err(RecvError::Closed(_)) => break,
            Err(e) => panic!("after {got:?}: {e:?}"),
        }
    }
    assert!(
        errors.is_empty(),
        "the client's writes failed: {errors:?} (read {got:?})"
    );
    assert!(
        matches!(
            got.last(),
            Some(Packet::Disconnect {
                reason: rc::RECEIVE_MAXIMUM_EXCEEDED,
                ..
            })
        ),
        "{got:?}"
    );

    // A refusing CONNACK (no such authentication method), the client writing on.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let refused = connect(&unique("refused"))
        .props(Props::new().str(prop::AUTHENTICATION_METHOD, "SCRAM-SHA-1"));
    stream.write_all(&refused.bytes()).unwrap();
    let writer = keep_writing(&stream, Duration::from_millis(300));
    let errors = writer.join().unwrap();
    let bytes = read_to_close(&mut stream);
    assert!(errors.is_empty(), "the client's writes failed: {errors:?}");
    assert_eq!(
        bytes,
        [0x20, 0x03, 0x00, rc::BAD_AUTHENTICATION_METHOD, 0x00]
    );

    // A client that closes at once is let go at once, not after the whole linger.
    let mut c = Client::connect_clean(port, &unique("quick"));
    let started = Instant::now();
    c.send_ok(&wire::publish("", b"x", 0, false, 0, &Props::new()));
    c.stream().shutdown(Shutdown::Write).unwrap();
    let bytes = read_to_close(c.stream());
    assert_eq!(bytes.first(), Some(&0xE0), "a DISCONNECT: {bytes:02x?}");
    // The linger lasts 1 s: a close well before shows it ended with the client's.
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "closed after {:?}",
        started.elapsed()
    );
}

/// MQTT-3.3.4-2 … -4 (5.0), MQTT-3.3.5-1 (3.1.1): a message matching several subscriptions
/// of one client is delivered once, at the highest QoS granted among them, carrying the
/// Subscription Identifier of every one of them that has one; a No Local subscription does
/// not match its own client's message (MQTT-3.8.3-3), and RETAIN is kept when one of the
/// matching subscriptions asked for Retain As Published (MQTT-3.3.1-12, -13).
#[test]
fn overlapping_subscriptions_deliver_one_copy() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let base = unique("ov");
    let mut c = Client::connect_clean(port, &unique("ov-sub"));
    let sid = |id| Props::new().var(prop::SUBSCRIPTION_IDENTIFIER, id);
    let (all, plus, exact) = (
        format!("{base}/#"),
        format!("{base}/+/x"),
        format!("{base}/a/x"),
    );
    assert_eq!(c.subscribe_with(1, &sid(1), &[(&all, 1)]), [1]);
    assert_eq!(c.subscribe_with(2, &sid(2), &[(&plus, 2)]), [2]);
    assert_eq!(c.subscribe(3, &[(&exact, 0)]), [0]);
    let mut p = Client::connect_clean(port, &unique("ov-pub"));
    p.publish(&format!("{base}/a/x"), b"two", 2, false, 1);
    let got = c.receive_all(Duration::from_secs(1));
    match got.as_slice() {
        [Packet::Publish { qos, props, .. }] => {
            assert_eq!(*qos, 2, "the highest granted QoS");
            let mut ids = props.subscription_ids();
            ids.sort();
            assert_eq!(ids, [1, 2]);
        }
        other => panic!("expected one PUBLISH, got {other:?}"),
    }

    // No Local excludes its own subscription only; Retain As Published of one keeps RETAIN.
    // A topic of its own: the subscriptions above would match `{base}/nl/x` too.
    let nl = unique("nl");
    let (nl_all, nl_x) = (format!("{nl}/#"), format!("{nl}/x"));
    let own = sub_options(1, true, true, 0);
    assert_eq!(c.subscribe_with(4, &sid(5), &[(&nl_all, own)]), [1]);
    assert_eq!(c.subscribe_with(5, &sid(6), &[(&nl_x, 1)]), [1]);
    c.publish(&nl_x, b"own", 1, true, 6);
    let got = c.receive_all(Duration::from_secs(1));
    match got.as_slice() {
        [Packet::Publish { retain, props, .. }] => {
            assert_eq!(props.subscription_ids(), [6], "not the No Local one");
            assert!(
                !retain,
                "RETAIN 0: the one matching subscription did not ask for it"
            );
        }
        other => panic!("expected one PUBLISH, got {other:?}"),
    }
    p.publish(&nl_x, b"other", 1, true, 2);
    let got = c.receive_all(Duration::from_secs(1));
    match got.as_slice() {
        [Packet::Publish { retain, props, .. }] => {
            let mut ids = props.subscription_ids();
            ids.sort();
            assert_eq!(ids, [5, 6]);
            assert!(retain, "Retain As Published on one of them");
        }
        other => panic!("expected one PUBLISH, got {other:?}"),
    }

    // Many overlapping filters of one client (merged another way inside): still one copy.
    let many = unique("many");
    let filters = [
        "#".to_owned(),
        format!("{many}/#"),
        format!("{many}/+/#"),
        format!("{many}/a/#"),
        format!("{many}/+/x"),
        format!("{many}/a/+"),
        format!("{many}/a/x"),
        format!("{many}/a/x/#"),
        "+/a/x".to_owned(),
    ];
    let mut m = Client::connect_clean(port, &unique("many-sub"));
    for (i, filter) in filters.iter().enumerate() {
        let id = i as u32 + 1;
        let qos = if id == 5 { 2 } else { 0 };
        // Retain handling 2: "#" would otherwise bring the retained messages of the test.
        let options = sub_options(qos, false, false, 2);
        assert_eq!(
            m.subscribe_with(id as u16, &sid(id), &[(filter, options)]),
            [qos]
        );
    }
    p.publish(&format!("{many}/a/x"), b"many", 2, false, 4);
    let got = m.receive_all(Duration::from_secs(1));
    match got.as_slice() {
        [Packet::Publish { qos, props, .. }] => {
            assert_eq!(*qos, 2);
            let mut ids = props.subscription_ids();
            ids.sort();
            assert_eq!(ids, (1..=filters.len() as u32).collect::<Vec<_>>());
        }
        other => panic!("expected one PUBLISH, got {other:?}"),
    }

    // 3.1.1: one copy, at the highest QoS.
    let mut c3 = RawClient::connect_clean(port, &unique("ov3"));
    let t = format!("{base}/three");
    let (t_all, t_plus, t_a) = (format!("{t}/#"), format!("{t}/+"), format!("{t}/a"));
    assert_eq!(
        c3.subscribe(1, &[(&t_all, 0), (&t_plus, 1), (&t, 0)]),
        vec![0, 1, 0]
    );
    assert_eq!(c3.subscribe(2, &[(&t_a, 2)]), vec![2]);
    p.publish(&t_a, b"3", 2, false, 3);
    let got = c3.receive_all(Duration::from_secs(1), 10);
    match got.as_slice() {
        [Packet3::Publish { qos: 2, .. }] => {}
        other => panic!("expected one PUBLISH at QoS 2, got {other:?}"),
    }
}

/// Mosquitto's `max_keepalive`: a 5.0 client asking for a longer keep-alive, or for none (0),
/// is given `max_keepalive` as Server Keep Alive in CONNACK and held to it (MQTT-3.2.2-21,
/// MQTT-3.1.2-22: silent for 1.5 times it, DISCONNECT 0x8D); a 3.1.1 or 3.1 client, which
/// cannot be told, is refused with return code 2, as Mosquitto does.
#[test]
fn max_keepalive_is_told_to_5_0_clients_and_refuses_3_1_x_ones() {
    let b = Bridge::start_with(&["--max-keepalive", "2"]);
    let port = b.tcp_port();
    for (asked, told) in [
        (60, Some(2)),
        (0, Some(2)),
        (3, Some(2)),
        (2, None),
        (1, None),
    ] {
        let (c, _, props) = Client::connect(port, &connect(&unique("ka")).keep_alive(asked));
        assert_eq!(
            props.get_two(prop::SERVER_KEEP_ALIVE),
            told,
            "asked for {asked}"
        );
        c.disconnect();
    }
    // Held to it: told 2 s, silent, disconnected after 3 s (plus the 250 ms sweep).
    let (mut c, _, _) = Client::connect(port, &connect(&unique("ka-held")).keep_alive(0));
    let started = Instant::now();
    let (reason, _) = c.expect_disconnect(Duration::from_secs(20));
    assert_eq!(reason, rc::KEEP_ALIVE_TIMEOUT);
    assert!(
        started.elapsed() >= Duration::from_millis(2500),
        "disconnected after {:?}",
        started.elapsed()
    );

    for protocol in [wire3::Protocol::V311, wire3::Protocol::V31] {
        for (asked, code) in [(60, 2), (0, 2), (2, 0), (1, 0)] {
            let mut c = RawClient::open(port);
            let id = unique("ka3");
            c.send_ok(
                &wire3::connect(&id)
                    .keep_alive(asked)
                    .protocol(protocol)
                    .bytes(),
            );
            match c.expect(WAIT) {
                Packet3::Connack { code: got, .. } => {
                    assert_eq!(got, code, "{protocol:?} asking for {asked}")
                }
                other => panic!("expected CONNACK, got {other:?}"),
            }
        }
    }
}

/// Without `max_keepalive` (65535, the default) nothing changes: 0 means no keep-alive, in
/// every version, and no Server Keep Alive is sent.
#[test]
fn without_max_keepalive_every_keep_alive_is_accepted() {
    let b = Bridge::start();
    let port = b.tcp_port();
    for asked in [0, 65535] {
        let (c, _, props) = Client::connect(port, &connect(&unique("ka")).keep_alive(asked));
        assert_eq!(props.get_two(prop::SERVER_KEEP_ALIVE), None);
        c.disconnect();
        let (c, _) = RawClient::connect(port, &wire3::connect(&unique("ka3")).keep_alive(asked));
        c.disconnect();
    }
}

/// MQTT 3.1 §3.1: "The Client Identifier (Client ID) is between 1 and 23 characters long"
/// (3.1 assigns none: an empty one gets return code 2, clean session or not), and the fixed
/// header's DUP, QoS and RETAIN bits are "not used" in CONNECT, so set ones are ignored;
/// 3.1.1 requires them to be 0 (MQTT-2.2.2-2) and closes.
#[test]
fn mqtt31_client_identifiers_and_connect_flags() {
    let mut b = Bridge::start();
    let port = b.tcp_port();
    let v31 = |id: &str| wire3::connect(id).protocol(wire3::Protocol::V31);
    for (id, code) in [
        ("", 2),
        ("a", 0),
        (&"x".repeat(23)[..], 0),
        (&"y".repeat(24)[..], 2),
    ] {
        for clean in [true, false] {
            let mut c = RawClient::open(port);
            c.send_ok(&v31(id).clean(clean).bytes());
            match c.expect(WAIT) {
                Packet3::Connack { code: got, .. } => {
                    assert_eq!(got, code, "3.1 id {id:?} clean {clean}")
                }
                other => panic!("expected CONNACK, got {other:?}"),
            }
        }
    }
    for first_byte in [0x12, 0x18, 0x11] {
        let mut bytes = v31("flags31").bytes();
        bytes[0] = first_byte;
        let mut c = RawClient::open(port);
        c.send_ok(&bytes);
        assert_eq!(
            c.expect(WAIT),
            Packet3::Connack {
                session_present: false,
                code: 0
            },
            "3.1 CONNECT first byte {first_byte:#04x}"
        );
        c.ping();
        c.disconnect();
    }
    let mut bytes = wire3::connect("flags311").bytes();
    bytes[0] = 0x12;
    let mut c = RawClient::open(port);
    c.send(&bytes);
    let got = c.expect_closed(WAIT);
    assert!(got.is_empty(), "3.1.1 CONNECT with flags: sent {got:?}");
    b.assert_running();
    assert_serving(port);
}
