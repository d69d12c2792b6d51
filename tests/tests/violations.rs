//! Protocol violations: each must close that one connection (MQTT-4.8.0-1) and leave the
//! broker serving everyone else. Hand-made bytes on a raw TCP socket.

use std::time::Duration;

use tests::wire::{self, connect, packet, put_bytes, Packet, RawClient, WAIT};
use tests::{assert_serving, Bridge};

/// How soon the offending connection must be closed.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

/// What the offending client does before the violation.
#[derive(Clone, Copy, PartialEq)]
enum Before {
    /// Nothing: the violation is the first thing on the socket.
    Nothing,
    /// A valid CONNECT, answered with CONNACK 0.
    Connected,
}

/// Sends `bytes` (after `before`) and asserts: the server closes this connection within the
/// timeout, sends nothing at all after the CONNACK (a CONNACK with a non-zero code is allowed
/// when the violation is in the CONNECT itself), and a client that was already connected
/// keeps working, as do new ones.
fn assert_closes(b: &mut Bridge, what: &str, before: Before, bytes: &[u8]) {
    let port = b.tcp_port();
    let mut bystander = RawClient::connect_clean(port, &tests::unique("bystander"));
    assert_eq!(bystander.subscribe(1, &[("by/stander", 1)]), vec![1]);

    let mut c = RawClient::open(port);
    if before == Before::Connected {
        c.send_ok(&connect(&tests::unique("offender")).bytes());
        assert_eq!(
            c.expect(WAIT),
            Packet::Connack {
                session_present: false,
                code: 0
            },
            "{what}: setup CONNECT"
        );
    }
    c.send(bytes);
    // Shorter than the broker's own timers (CONNECT timeout, keepalive 60 s), so only a close
    // caused by the violation itself counts; still far longer than a correct broker needs.
    let got = c.expect_closed(CLOSE_WITHIN);
    let bad: Vec<&Packet> = got
        .iter()
        .filter(|p| {
            !(before == Before::Nothing && matches!(p, Packet::Connack { code, .. } if *code != 0))
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: server sent {bad:?} before closing (only a refusing CONNACK is allowed)"
    );

    b.assert_running();
    bystander.ping();
    bystander.publish("by/stander", what.as_bytes(), 1, false, 2);
    assert_eq!(
        bystander.receive(WAIT).as_publish(),
        Some(("by/stander", what.as_bytes())),
        "{what}: bystander no longer served"
    );
    bystander.disconnect();
    assert_serving(port);
}

/// MQTT-3.1.0-1: the first packet from a client must be CONNECT; anything else closes the
/// connection (and nothing, not even a CONNACK, is sent).
#[test]
fn packet_before_connect_closes() {
    let mut b = Bridge::start();
    assert_closes(&mut b, "PINGREQ first", Before::Nothing, &wire::pingreq());
    assert_closes(
        &mut b,
        "SUBSCRIBE first",
        Before::Nothing,
        &wire::subscribe(1, &[("a", 0)]),
    );
    assert_closes(
        &mut b,
        "PUBLISH first",
        Before::Nothing,
        &wire::publish("a", b"x", 0, false, 0),
    );
}

/// MQTT-3.1.0-2: a second CONNECT on a connection is a protocol violation.
#[test]
fn second_connect_closes() {
    let mut b = Bridge::start();
    assert_closes(
        &mut b,
        "second CONNECT",
        Before::Connected,
        &connect("again").bytes(),
    );
}

/// MQTT-3.3.2-2, MQTT-4.7.1-1: the topic name in a PUBLISH must not contain wildcards.
#[test]
fn publish_with_wildcard_topic_closes() {
    let mut b = Bridge::start();
    for topic in ["a/+/b", "a/#", "+", "#"] {
        assert_closes(
            &mut b,
            &format!("PUBLISH to `{topic}`"),
            Before::Connected,
            &wire::publish(topic, b"x", 0, false, 0),
        );
    }
}

/// MQTT-4.7.1-2 (`#` must be last and alone in its level), MQTT-4.7.1-3 (`+` must fill its
/// level): a SUBSCRIBE with an invalid filter closes the connection.
#[test]
fn subscribe_with_invalid_filter_closes() {
    let mut b = Bridge::start();
    for filter in ["a/#/b", "a/b#", "a+/b", "#/a", "a/++"] {
        assert_closes(
            &mut b,
            &format!("SUBSCRIBE `{filter}`"),
            Before::Connected,
            &wire::subscribe(1, &[(filter, 0)]),
        );
    }
}

/// MQTT-4.7.3-1: topic names and filters must be at least one character long.
#[test]
fn empty_topic_or_filter_closes() {
    let mut b = Bridge::start();
    assert_closes(
        &mut b,
        "PUBLISH with empty topic",
        Before::Connected,
        &wire::publish("", b"x", 0, false, 0),
    );
    assert_closes(
        &mut b,
        "SUBSCRIBE with empty filter",
        Before::Connected,
        &wire::subscribe(1, &[("", 0)]),
    );
}

/// MQTT-1.5.3-1: strings must be well-formed UTF-8 (no invalid bytes, no overlong forms, no
/// surrogates); a malformed topic closes the connection.
#[test]
fn invalid_utf8_in_topic_closes() {
    let mut b = Bridge::start();
    let bad: [&[u8]; 4] = [b"a/\xff", b"\xc3", b"a/\xc0\xaf", b"\xed\xa0\x80"];
    for topic in bad {
        assert_closes(
            &mut b,
            &format!("PUBLISH topic {topic:?}"),
            Before::Connected,
            &wire::publish_raw(topic, b"x", 0, false, false, 0),
        );
    }
    assert_closes(
        &mut b,
        "SUBSCRIBE filter b\"a/\\xff\"",
        Before::Connected,
        &wire::subscribe_raw(0x82, 1, &[(b"a/\xff", 0)]),
    );
}

/// MQTT-1.5.3-2: strings must not contain U+0000.
#[test]
fn nul_character_in_topic_closes() {
    let mut b = Bridge::start();
    assert_closes(
        &mut b,
        "PUBLISH topic with U+0000",
        Before::Connected,
        &wire::publish_raw(b"a\0b", b"x", 0, false, false, 0),
    );
    assert_closes(
        &mut b,
        "SUBSCRIBE filter with U+0000",
        Before::Connected,
        &wire::subscribe_raw(0x82, 1, &[(b"a/\0", 0)]),
    );
}

/// --max-packet-size: a PUBLISH whose remaining length exceeds the limit closes the connection
/// as soon as its fixed header is read — the server must not wait for a body it will never
/// accept (only the 4 header bytes are sent here). Messages within the limit still pass.
#[test]
fn remaining_length_over_max_packet_size_closes_without_reading_the_body() {
    let mut b = Bridge::start_with(&["--max-packet-size", "1024"]);
    let port = b.tcp_port();
    let mut ok = RawClient::connect_clean(port, "small");
    assert_eq!(ok.subscribe(1, &[("big/t", 1)]), vec![1]);
    ok.publish("big/t", &[b'x'; 500], 1, false, 2);
    assert_eq!(ok.receive(WAIT).as_publish().unwrap().1.len(), 500);

    // 0x30, remaining length 1,048,576 (0x80 0x80 0x40), and nothing else.
    assert_closes(
        &mut b,
        "PUBLISH header announcing 1 MiB",
        Before::Connected,
        &[0x30, 0x80, 0x80, 0x40],
    );
    // Just over the limit, with the whole body actually sent.
    let mut body = Vec::new();
    put_bytes(b"big/t", &mut body);
    body.extend_from_slice(&[b'y'; 2000]);
    assert_closes(
        &mut b,
        "PUBLISH of 2 kB",
        Before::Connected,
        &packet(0x30, &body),
    );
    ok.expect_silence(Duration::from_millis(500));
}

/// MQTT 2.2.3: the remaining length is at most four bytes; a fifth continuation byte is a
/// malformed packet.
#[test]
fn malformed_remaining_length_closes() {
    let mut b = Bridge::start();
    assert_closes(
        &mut b,
        "5-byte remaining length",
        Before::Connected,
        &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
    );
    assert_closes(
        &mut b,
        "5-byte remaining length before CONNECT",
        Before::Nothing,
        &[0x10, 0x80, 0x80, 0x80, 0x80, 0x01],
    );
}

/// MQTT 2.2.1: packet types 0 and 15 are reserved (forbidden).
#[test]
fn reserved_packet_types_close() {
    let mut b = Bridge::start();
    assert_closes(&mut b, "packet type 0", Before::Connected, &[0x00, 0x00]);
    assert_closes(&mut b, "packet type 15", Before::Connected, &[0xF0, 0x00]);
    assert_closes(
        &mut b,
        "packet type 0 first",
        Before::Nothing,
        &[0x00, 0x00],
    );
}

/// MQTT-2.2.2-1, MQTT-2.2.2-2, MQTT-3.8.1-1, MQTT-3.10.1-1, MQTT-3.6.1-1: fixed-header flags
/// that are not the ones the spec lists for the packet type close the connection.
#[test]
fn wrong_fixed_header_flags_close() {
    let mut b = Bridge::start();
    let mut sub_body = 1u16.to_be_bytes().to_vec();
    put_bytes(b"a/b", &mut sub_body);
    sub_body.push(0);
    assert_closes(
        &mut b,
        "SUBSCRIBE with flags 0",
        Before::Connected,
        &packet(0x80, &sub_body),
    );
    let mut unsub_body = 1u16.to_be_bytes().to_vec();
    put_bytes(b"a/b", &mut unsub_body);
    assert_closes(
        &mut b,
        "UNSUBSCRIBE with flags 0",
        Before::Connected,
        &packet(0xA0, &unsub_body),
    );
    assert_closes(
        &mut b,
        "PINGREQ with flags 1",
        Before::Connected,
        &[0xC1, 0x00],
    );
    let mut conn = connect("flags").bytes();
    conn[0] = 0x11;
    assert_closes(&mut b, "CONNECT with flags 1", Before::Nothing, &conn);
}

/// MQTT-3.8.3-3: a SUBSCRIBE must contain at least one filter; MQTT-3.10.3-2: likewise
/// UNSUBSCRIBE.
#[test]
fn subscribe_without_filters_closes() {
    let mut b = Bridge::start();
    assert_closes(
        &mut b,
        "SUBSCRIBE with no filters",
        Before::Connected,
        &[0x82, 0x02, 0x00, 0x01],
    );
    assert_closes(
        &mut b,
        "UNSUBSCRIBE with no filters",
        Before::Connected,
        &[0xA2, 0x02, 0x00, 0x01],
    );
}

/// MQTT-3.3.1-4: a PUBLISH with both QoS bits set (QoS 3) is malformed.
#[test]
fn publish_with_qos_3_closes() {
    let mut b = Bridge::start();
    let mut body = Vec::new();
    put_bytes(b"a/b", &mut body);
    body.extend_from_slice(&5u16.to_be_bytes());
    body.extend_from_slice(b"x");
    assert_closes(
        &mut b,
        "PUBLISH QoS 3",
        Before::Connected,
        &packet(0x36, &body),
    );
}

/// MQTT-3.8.3-4: requested QoS 3 (or reserved bits set) in a SUBSCRIBE payload is malformed.
#[test]
fn subscribe_with_requested_qos_3_closes() {
    let mut b = Bridge::start();
    assert_closes(
        &mut b,
        "SUBSCRIBE requesting QoS 3",
        Before::Connected,
        &wire::subscribe_raw(0x82, 1, &[(b"a/b", 3)]),
    );
    assert_closes(
        &mut b,
        "SUBSCRIBE with reserved option bits",
        Before::Connected,
        &wire::subscribe_raw(0x82, 1, &[(b"a/b", 0x04)]),
    );
}

/// MQTT-2.3.1-1: SUBSCRIBE, UNSUBSCRIBE and QoS>0 PUBLISH must carry a non-zero packet id.
#[test]
fn zero_packet_identifier_closes() {
    let mut b = Bridge::start();
    assert_closes(
        &mut b,
        "PUBLISH QoS 1 with packet id 0",
        Before::Connected,
        &wire::publish("a/b", b"x", 1, false, 0),
    );
    assert_closes(
        &mut b,
        "SUBSCRIBE with packet id 0",
        Before::Connected,
        &wire::subscribe(0, &[("a/b", 0)]),
    );
}

/// MQTT-3.1.2-3 (reserved connect flag), MQTT-3.1.2-13 (Will QoS without Will flag),
/// MQTT-3.1.2-14 (Will QoS 3), MQTT-3.1.2-22 (password without user name): malformed CONNECTs
/// close the connection (at most a refusing CONNACK is sent).
#[test]
fn malformed_connect_closes() {
    let mut b = Bridge::start();
    assert_closes(
        &mut b,
        "CONNECT reserved flag",
        Before::Nothing,
        &connect("r").extra_flags(0x01).bytes(),
    );
    assert_closes(
        &mut b,
        "CONNECT Will QoS without Will flag",
        Before::Nothing,
        &connect("w").extra_flags(0x08).bytes(),
    );
    assert_closes(
        &mut b,
        "CONNECT Will QoS 3",
        Before::Nothing,
        &connect("w3").will("w/t", b"x", 3, false).bytes(),
    );
    let mut c = connect("p");
    c.password = Some(b"pw".to_vec());
    assert_closes(
        &mut b,
        "CONNECT password without user name",
        Before::Nothing,
        &c.bytes(),
    );
    assert_closes(
        &mut b,
        "CONNECT with invalid UTF-8 client id",
        Before::Nothing,
        &wire::Connect {
            client_id: b"id\xff".to_vec(),
            ..connect("")
        }
        .bytes(),
    );
    // A CONNECT whose declared length is shorter than its fields.
    assert_closes(
        &mut b,
        "truncated CONNECT",
        Before::Nothing,
        &packet(0x10, &connect("t").bytes()[2..8]),
    );
}

/// Robustness: random garbage after CONNECT closes the connection without hurting the broker.
#[test]
fn garbage_after_connect_closes() {
    let mut b = Bridge::start();
    let mut x: u32 = 0x1234_5678;
    let garbage: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            // Avoid a valid-looking PINGREQ/PUBLISH start: force a reserved type first.
            (x >> 24) as u8
        })
        .collect();
    let mut bytes = vec![0xF0, 0x00];
    bytes.extend_from_slice(&garbage);
    assert_closes(&mut b, "garbage", Before::Connected, &bytes);
}
