//! MQTT 5.0 DISCONNECT sent by the server before it closes a connection (section 4.13): session
//! taken over 0x8E, keep-alive timeout 0x8D, malformed packet 0x81, protocol error 0x82,
//! packet too large 0x95, receive maximum exceeded 0x93. Each time the broker keeps serving
//! everyone else.

use std::time::{Duration, Instant};

use tests::v5::checks::{assert_all_disconnect, assert_serving};
use tests::v5::paho::{self, json, Paho};
use tests::v5::wire::{self, connect, packet, prop, put_bytes, rc, Client, Packet, Props, WAIT};
use tests::{unique, Bridge};

/// A connected 5.0 client sends `bytes`; asserts the broker answers with DISCONNECT `want`
/// (after nothing but acknowledgements) and closes, then still serves others.
fn assert_disconnects(b: &mut Bridge, what: &str, bytes: &[u8], want: u8) {
    let mut c = Client::connect_clean(b.tcp_port(), &unique("offender"));
    c.send(bytes);
    let (reason, props) = c.expect_disconnect(WAIT);
    assert_eq!(
        reason, want,
        "{what}: DISCONNECT reason {reason:#04x} (properties {props:?}), expected {want:#04x}"
    );
    b.assert_running();
    assert_serving(b.tcp_port());
}

/// MQTT-3.1.4-3: a second connection with the same client id takes the session over; the
/// existing connection gets DISCONNECT 0x8E (session taken over) and is closed, the new one is
/// served.
#[test]
fn takeover_sends_disconnect_0x8e_to_the_old_connection() {
    let b = Bridge::start();
    let id = unique("taken");
    let (mut old, _, _) = Client::connect(b.tcp_port(), &connect(&id));
    let (mut new, _, _) = Client::connect(b.tcp_port(), &connect(&id));
    let (reason, _) = old.expect_disconnect(WAIT);
    assert_eq!(reason, rc::SESSION_TAKEN_OVER);
    new.ping();
    new.disconnect();
}

/// The same seen by paho: its on_disconnect reports reason 142 (0x8E) from a server DISCONNECT.
#[test]
fn paho_sees_session_taken_over() {
    let b = Bridge::start();
    let id = unique("taken-paho");
    let mut old = Paho::tcp(b.tcp_port())
        .id(&id)
        .step(json!({"mark": "connected"}))
        .step(json!({"expect_disconnect": 30}))
        .spawn();
    old.wait_mark("connected", paho::RUN);
    let (mut new, _, _) = Client::connect(b.tcp_port(), &connect(&id));
    let events = old.finish_ok();
    let d = paho::event(&events, "disconnected");
    assert_eq!(d["rc"], 0x8E, "{events:?}");
    assert_eq!(d["from_server"], true, "{events:?}");
    new.ping();
    new.disconnect();
}

/// MQTT-3.1.2-22: with keep-alive 1 s and nothing sent, the broker ends the connection after
/// 1.5 s, with DISCONNECT 0x8D (keep alive timeout) first; not before 1 s.
#[test]
fn keep_alive_timeout_sends_disconnect_0x8d() {
    let b = Bridge::start();
    let started = Instant::now();
    let (mut c, _, props) = Client::connect(b.tcp_port(), &connect(&unique("idle")).keep_alive(1));
    assert_eq!(
        props.get_two(prop::SERVER_KEEP_ALIVE),
        None,
        "unexpected server keep alive"
    );
    let (reason, _) = c.expect_disconnect(Duration::from_secs(20));
    let elapsed = started.elapsed();
    assert_eq!(reason, rc::KEEP_ALIVE_TIMEOUT);
    assert!(
        elapsed >= Duration::from_secs(1),
        "closed after {elapsed:?}, before the keep-alive ran out"
    );
}

/// Section 2.2.2 / 4.13: a property whose value overruns the property length is a malformed
/// packet: DISCONNECT 0x81.
#[test]
fn property_overrunning_its_section_is_malformed_0x81() {
    let mut b = Bridge::start();
    // PUBLISH QoS 0 "m/t", property length 2 holding a Topic Alias (which needs 1 + 2 bytes),
    // then the payload.
    let mut body = Vec::new();
    put_bytes(b"m/t", &mut body);
    body.extend_from_slice(&[0x02, prop::TOPIC_ALIAS, 0x00]);
    body.extend_from_slice(b"xyz");
    assert_disconnects(
        &mut b,
        "property overrun",
        &packet(0x30, &body),
        rc::MALFORMED_PACKET,
    );
}

/// Section 2.2.2.2: an unknown property identifier is a malformed packet: DISCONNECT 0x81.
#[test]
fn unknown_property_is_malformed_0x81() {
    let mut b = Bridge::start();
    let mut body = Vec::new();
    put_bytes(b"m/t", &mut body);
    body.extend_from_slice(&[0x02, 0x7F, 0x00]);
    body.extend_from_slice(b"xyz");
    assert_disconnects(
        &mut b,
        "unknown property 0x7F",
        &packet(0x30, &body),
        rc::MALFORMED_PACKET,
    );
}

/// Section 2.2.2.2: "A Control Packet which contains an Identifier which is not valid for its
/// packet type ... is a Malformed Packet": Session Expiry Interval (a CONNECT, CONNACK and
/// DISCONNECT property) in a PUBLISH gets DISCONNECT 0x81.
#[test]
fn property_not_valid_for_publish_is_malformed_0x81() {
    let mut b = Bridge::start();
    let bytes = wire::publish(
        "m/t",
        b"xyz",
        0,
        false,
        0,
        &Props::new().four(prop::SESSION_EXPIRY_INTERVAL, 10),
    );
    assert_disconnects(
        &mut b,
        "Session Expiry Interval in PUBLISH",
        &bytes,
        rc::MALFORMED_PACKET,
    );
}

/// MQTT-3.8.1-1: SUBSCRIBE with fixed-header flags other than 0b0010 is malformed:
/// DISCONNECT 0x81.
#[test]
fn subscribe_with_bad_flags_is_malformed_0x81() {
    let mut b = Bridge::start();
    let mut bytes = wire::subscribe(1, &Props::new(), &[("m/t", 1)]);
    bytes[0] = 0x80;
    assert_disconnects(&mut b, "SUBSCRIBE flags 0", &bytes, rc::MALFORMED_PACKET);
}

/// MQTT-3.1.0-2: a second CONNECT is a protocol error: DISCONNECT 0x82.
#[test]
fn second_connect_is_a_protocol_error_0x82() {
    let mut b = Bridge::start();
    let bytes = connect(&unique("again")).bytes();
    assert_disconnects(&mut b, "second CONNECT", &bytes, rc::PROTOCOL_ERROR);
}

/// Section 3.2.2.3.6: the broker started with --max-packet-size 1000 advertises Maximum Packet
/// Size 1000 in CONNACK; a 900-byte PUBLISH is accepted, a 2000-byte one gets DISCONNECT 0x95
/// (packet too large).
#[test]
fn packet_over_the_maximum_size_gets_disconnect_0x95() {
    let mut b = Bridge::start_with(&["--max-packet-size", "1000"]);
    let (mut c, _, props) = Client::connect(b.tcp_port(), &connect(&unique("big")));
    assert_eq!(props.get_four(prop::MAXIMUM_PACKET_SIZE), Some(1000));
    assert_eq!(c.publish("big/t", &[b'a'; 900], 1, false, 1), 0x10);
    c.send(&wire::publish(
        "big/t",
        &[b'b'; 2000],
        1,
        false,
        2,
        &Props::new(),
    ));
    let (reason, _) = c.expect_disconnect(WAIT);
    assert_eq!(reason, rc::PACKET_TOO_LARGE);
    b.assert_running();
    assert_serving(b.tcp_port());
}

/// Section 3.2.2.3.3: the broker's Receive Maximum is 1024; a client with 1024 QoS 2 PUBLISHes
/// not yet released (no PUBREL) is within it (each gets a PUBREC, the connection is served), one
/// more gets DISCONNECT 0x93 (receive maximum exceeded).
#[test]
fn receive_maximum_exceeded_gets_disconnect_0x93() {
    let mut b = Bridge::start();
    let (mut c, _, props) = Client::connect(b.tcp_port(), &connect(&unique("flood")));
    let max = props
        .get_two(prop::RECEIVE_MAXIMUM)
        .expect("receive maximum") as usize;
    assert_eq!(max, 1024);
    let mut bytes = Vec::new();
    for pid in 1..=max as u16 {
        bytes.extend(wire::publish("flood/t", b"x", 2, false, pid, &Props::new()));
    }
    c.send_ok(&bytes);
    for n in 1..=max as u16 {
        match c.expect(WAIT) {
            Packet::Ack {
                kind: wire::PUBREC,
                pid,
                reason,
                ..
            } if pid == n && reason < 0x80 => {}
            other => panic!("expected PUBREC {n}, got {other:?}"),
        }
    }
    c.ping();
    c.send_ok(&wire::publish(
        "flood/t",
        b"x",
        2,
        false,
        max as u16 + 1,
        &Props::new(),
    ));
    let (reason, _) = c.expect_disconnect(WAIT);
    assert_eq!(reason, rc::RECEIVE_MAXIMUM_EXCEEDED);
    b.assert_running();
    assert_serving(b.tcp_port());
}

/// Malformed packets (section 1.5, 2.1.3, 2.2.2, 4.13.1): DISCONNECT 0x81 for reserved bits in
/// the subscription options (MQTT-3.8.3-5) and a PUBLISH with both QoS bits set (MQTT-3.3.1-4).
#[test]
fn more_malformed_packets_get_disconnect_0x81() {
    let mut b = Bridge::start();
    let mut qos3 = wire::publish("m/t", b"x", 1, false, 1, &Props::new());
    qos3[0] |= 0x06;
    let cases = [
        (
            "subscription options with reserved bits 6-7 set",
            wire::subscribe(1, &Props::new(), &[("m/t", 0xC1)]),
        ),
        ("PUBLISH with QoS 3", qos3),
    ];
    assert_all_disconnect(&mut b, &cases, rc::MALFORMED_PACKET);
}

/// What the spec calls a Protocol Error gets DISCONNECT 0x82 (section 4.13.1, reason code 0x82
/// in section 3.14.2.1):
/// * "It is a Protocol Error to include the Content Type more than once" (3.3.2.3.9);
/// * "It is a Protocol Error if the Subscription Identifier has a value of 0" (3.8.2.1.2);
/// * "It is a Protocol Error to send a Retain Handling value of 3" (3.8.3.1);
/// * "It is a Protocol Error if the Maximum QoS field has the value 3" (3.8.3.1);
/// * "A SUBSCRIBE packet with no Payload is a Protocol Error" (3.8.3, MQTT-3.8.3-2);
/// * "An UNSUBSCRIBE packet with no Payload is a Protocol Error" (3.10.3, MQTT-3.10.3-2);
/// * a PUBLISH from a client with a Subscription Identifier (MQTT-3.3.4-6, 3.3.2.3.8);
/// * a Response Topic with wildcards (MQTT-3.3.2-14, 3.3.2.3.5);
/// * AUTH without an Authentication Method in CONNECT (3.1.2.11.9, 4.12).
#[test]
fn protocol_errors_get_disconnect_0x82() {
    let mut b = Bridge::start();
    let empty_subscribe = wire::packet(0x82, &[0x00, 0x01, 0x00]);
    let empty_unsubscribe = wire::packet(0xA2, &[0x00, 0x01, 0x00]);
    let cases = [
        (
            "Content Type twice",
            wire::publish(
                "m/t",
                b"x",
                0,
                false,
                0,
                &Props::new()
                    .str(prop::CONTENT_TYPE, "a")
                    .str(prop::CONTENT_TYPE, "b"),
            ),
        ),
        (
            "Subscription Identifier 0",
            wire::subscribe(
                1,
                &Props::new().var(prop::SUBSCRIPTION_IDENTIFIER, 0),
                &[("m/t", 1)],
            ),
        ),
        (
            "Retain Handling 3",
            wire::subscribe(1, &Props::new(), &[("m/t", 0x31)]),
        ),
        (
            "Maximum QoS 3",
            wire::subscribe(1, &Props::new(), &[("m/t", 0x03)]),
        ),
        ("SUBSCRIBE without filters", empty_subscribe),
        ("UNSUBSCRIBE without filters", empty_unsubscribe),
        (
            "PUBLISH with a Subscription Identifier",
            wire::publish(
                "m/t",
                b"x",
                1,
                false,
                1,
                &Props::new().var(prop::SUBSCRIPTION_IDENTIFIER, 3),
            ),
        ),
        (
            "Response Topic with a wildcard",
            wire::publish(
                "m/t",
                b"x",
                1,
                false,
                1,
                &Props::new().str(prop::RESPONSE_TOPIC, "reply/#"),
            ),
        ),
        ("AUTH without an authentication method", vec![0xF0, 0x00]),
    ];
    assert_all_disconnect(&mut b, &cases, rc::PROTOCOL_ERROR);
}
