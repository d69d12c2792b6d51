//! MQTT 5.0 flow control towards a client: its Receive Maximum bounds the QoS 1/2 PUBLISHes
//! in flight (section 4.9), and its Maximum Packet Size makes the broker drop what does not fit
//! (MQTT-3.1.2-24, -25).

use std::collections::VecDeque;
use std::time::Duration;

use tests::v5::wire::{self, connect, prop, Client, Packet, Props, RecvError, WAIT};
use tests::{spawn_line_buffered, unique, Bridge};

/// Long enough for a broker that ignores the limit to have sent more.
const QUIET: Duration = Duration::from_millis(1500);

/// Reads PUBLISHes without acknowledging them: the first `at_least` within [`WAIT`] each (the
/// machine may be slow), then more until nothing arrives for `quiet`.
fn unacked_publishes(c: &mut Client, at_least: usize, quiet: Duration) -> Vec<Packet> {
    let mut got = Vec::new();
    loop {
        let wait = if got.len() < at_least { WAIT } else { quiet };
        match c.recv(wait) {
            Ok(p @ Packet::Publish { .. }) => got.push(p),
            Ok(other) => panic!("expected PUBLISH, got {other:?}"),
            Err(RecvError::Timeout) => return got,
            Err(e) => panic!("connection failed: {e:?}"),
        }
    }
}

fn pid_of(p: &Packet) -> u16 {
    match p {
        Packet::Publish { pid: Some(pid), .. } => *pid,
        other => panic!("expected a QoS 1/2 PUBLISH, got {other:?}"),
    }
}

/// Subscriber with Receive Maximum 2 on `topic` at `qos`; a publisher sends `n` messages.
fn setup(b: &Bridge, topic: &str, qos: u8, n: usize) -> Client {
    let (mut sub, _, _) = Client::connect(
        b.tcp_port(),
        &connect(&unique("rm2")).props(Props::new().two(prop::RECEIVE_MAXIMUM, 2)),
    );
    assert_eq!(sub.subscribe(1, &[(topic, qos)]), [qos]);
    let mut publisher = Client::connect_clean(b.tcp_port(), &unique("rm-pub"));
    for i in 0..n {
        publisher.publish(topic, format!("m{i}").as_bytes(), qos, false, i as u16 + 1);
    }
    publisher.disconnect();
    sub
}

/// MQTT-3.3.4-9: a client with Receive Maximum 2 that does not acknowledge gets exactly 2 QoS 1
/// PUBLISHes; each PUBACK lets exactly one more through; in the end all 6 arrive, in order.
#[test]
fn receive_maximum_2_bounds_unacknowledged_qos1() {
    let b = Bridge::start();
    let mut sub = setup(&b, "rm/q1", 1, 6);
    let mut outstanding: VecDeque<Packet> = unacked_publishes(&mut sub, 2, QUIET).into();
    assert_eq!(
        outstanding.len(),
        2,
        "unacknowledged PUBLISHes with receive maximum 2: {outstanding:?}"
    );
    let mut all: Vec<Packet> = outstanding.iter().cloned().collect();
    while let Some(oldest) = outstanding.pop_front() {
        sub.send_ok(&wire::puback(pid_of(&oldest)));
        let more = unacked_publishes(&mut sub, usize::from(all.len() < 6), QUIET);
        assert!(
            more.len() <= 1,
            "one PUBACK let {} more PUBLISHes through: {more:?}",
            more.len()
        );
        if all.len() < 6 {
            assert_eq!(more.len(), 1, "a PUBACK freed a slot but nothing came");
        }
        all.extend(more.iter().cloned());
        outstanding.extend(more);
        assert!(outstanding.len() <= 2, "{outstanding:?}");
    }
    assert_eq!(
        wire::payloads(&all),
        ["m0", "m1", "m2", "m3", "m4", "m5"],
        "{all:?}"
    );
    sub.ping();
}

/// Section 4.9: for QoS 2 the slot is freed by the PUBCOMP, not by the PUBREC: with Receive
/// Maximum 2, after a PUBREC only the PUBREL comes (no third PUBLISH); after the PUBCOMP,
/// exactly one more PUBLISH.
#[test]
fn receive_maximum_2_bounds_unacknowledged_qos2() {
    let b = Bridge::start();
    let mut sub = setup(&b, "rm/q2", 2, 4);
    let first = unacked_publishes(&mut sub, 2, QUIET);
    assert_eq!(first.len(), 2, "{first:?}");
    let pid = pid_of(&first[0]);
    sub.send_ok(&wire::pubrec(pid));
    match sub.expect(WAIT) {
        Packet::Ack {
            kind: wire::PUBREL,
            pid: p,
            reason: 0,
            ..
        } if p == pid => {}
        other => panic!("expected PUBREL {pid}, got {other:?}"),
    }
    let early = unacked_publishes(&mut sub, 0, QUIET);
    assert!(
        early.is_empty(),
        "a PUBLISH came after PUBREC, before PUBCOMP: {early:?}"
    );
    sub.send_ok(&wire::pubcomp(pid));
    let third = unacked_publishes(&mut sub, 1, QUIET);
    assert_eq!(wire::payloads(&third), ["m2"], "{third:?}");

    // Completing everything delivers the rest.
    for p in [&first[1], &third[0]] {
        let pid = pid_of(p);
        sub.send_ok(&wire::pubrec(pid));
        sub.await_pubrel(pid);
        sub.send_ok(&wire::pubcomp(pid));
    }
    let rest = sub.receive_all(QUIET);
    assert_eq!(wire::payloads(&rest), ["m3"], "{rest:?}");
}

/// MQTT-3.1.2-24 / -25: a client with Maximum Packet Size 100 is not sent a PUBLISH that would
/// be larger (500-byte payload; or a 70-byte payload whose properties push it over 100): the
/// broker drops it for that client only and goes on with the next messages, while a client
/// without a limit (mosquitto_sub, MQTT 5.0) gets everything.
#[test]
fn client_maximum_packet_size_drops_what_does_not_fit() {
    let b = Bridge::start();
    let topic = "mps/t";
    let (mut small, _, _) = Client::connect(
        b.tcp_port(),
        &connect(&unique("mps")).props(Props::new().four(prop::MAXIMUM_PACKET_SIZE, 100)),
    );
    assert_eq!(small.subscribe(1, &[(topic, 1)]), [1]);
    let port = b.tcp_port().to_string();
    let mut other = spawn_line_buffered(
        "mosquitto_sub",
        [
            "-V",
            "mqttv5",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            topic,
            "-q",
            "1",
            "-C",
            "5",
            "-W",
            "60",
            "-d",
            "-F",
            "MSG %p",
        ],
    );
    other.wait_line(Duration::from_secs(30), |l| l.contains("SUBACK"));

    let big = "B".repeat(500);
    let fits = "F".repeat(70);
    // Fixed header 2 + topic 7 + packet id 2 + properties 27 + payload 70 = 108 bytes (82
    // without the user property).
    let padded = Props::new().user("k", &"v".repeat(20));
    let mut publisher = Client::connect_clean(b.tcp_port(), &unique("mps-pub"));
    publisher.publish(topic, b"first", 1, false, 1);
    publisher.publish(topic, big.as_bytes(), 1, false, 2);
    publisher.publish(topic, fits.as_bytes(), 1, false, 3);
    publisher.publish_with(topic, fits.as_bytes(), 1, false, 4, &padded);
    publisher.publish(topic, b"last", 1, false, 5);
    publisher.disconnect();

    let got = small.receive_all(Duration::from_secs(3));
    assert_eq!(
        wire::payloads(&got),
        ["first".to_owned(), fits.clone(), "last".to_owned()],
        "the client with maximum packet size 100 got {got:?}"
    );
    let lines = other.wait_success(Duration::from_secs(60));
    let msgs: Vec<&String> = lines.iter().filter(|l| l.starts_with("MSG ")).collect();
    assert_eq!(
        msgs,
        [
            "MSG first".to_owned(),
            format!("MSG {big}"),
            format!("MSG {fits}"),
            format!("MSG {fits}"),
            "MSG last".to_owned()
        ]
        .iter()
        .collect::<Vec<_>>(),
        "the unlimited client"
    );
    small.ping();
}

/// MQTT-3.1.2-24 and MQTT-3.14.2-3: the client's Maximum Packet Size (40) bounds every packet
/// the broker sends it, CONNACK and DISCONNECT included: the Reason String must be left out of
/// a DISCONNECT it would make too large. Provoked with a PUBLISH carrying a property not
/// allowed in PUBLISH (DISCONNECT 0x81).
#[test]
fn client_maximum_packet_size_bounds_the_server_disconnect() {
    let b = Bridge::start();
    let (mut c, _, _) = Client::connect(
        b.tcp_port(),
        &connect(&unique("mps40")).props(Props::new().four(prop::MAXIMUM_PACKET_SIZE, 40)),
    );
    c.send(&wire::publish(
        "mps/t",
        b"x",
        0,
        false,
        0,
        &Props::new().four(prop::SESSION_EXPIRY_INTERVAL, 10),
    ));
    let got = c.expect_closed(WAIT);
    let sizes = c.received_sizes().to_vec();
    assert!(
        sizes.iter().all(|&n| n <= 40),
        "packets of {sizes:?} bytes sent to a client with maximum packet size 40 \
         (CONNACK first): {got:?}"
    );
    match got.as_slice() {
        [Packet::Disconnect { reason, .. }] => assert_eq!(*reason, wire::rc::MALFORMED_PACKET),
        [] => {}
        other => panic!("expected at most a DISCONNECT, got {other:?}"),
    }
}

/// Section 4.3.3 / 4.9: a PUBREC with a reason code of 0x80 or more ends the QoS 2 exchange:
/// no PUBREL follows, and the slot is free again (Receive Maximum 1: the next PUBLISH comes).
#[test]
fn pubrec_with_an_error_ends_the_qos2_exchange() {
    let b = Bridge::start();
    let (mut sub, _, _) = Client::connect(
        b.tcp_port(),
        &connect(&unique("rm1")).props(Props::new().two(prop::RECEIVE_MAXIMUM, 1)),
    );
    assert_eq!(sub.subscribe(1, &[("rec/t", 2)]), [2]);
    let mut publisher = Client::connect_clean(b.tcp_port(), &unique("rec-pub"));
    publisher.publish("rec/t", b"refused", 2, false, 1);
    publisher.publish("rec/t", b"next", 2, false, 2);
    let first = unacked_publishes(&mut sub, 1, QUIET);
    assert_eq!(wire::payloads(&first), ["refused"], "{first:?}");
    sub.send_ok(&wire::ack(0x50, pid_of(&first[0]), 0x80));
    // `receive` fails on anything but a PUBLISH (a PUBREL, say), then completes its flow.
    let p = sub.receive(WAIT);
    assert_eq!(p.payload(), Some(&b"next"[..]), "{p:?}");
    sub.expect_silence(QUIET);
}

/// MQTT-3.3.4-9 after a reconnect: the send quota starts again from the new connection's
/// Receive Maximum (section 4.9: not part of the session state). 5 QoS 1 messages left
/// unacknowledged on a connection with Receive Maximum 10 are re-sent (MQTT-4.4.0-1) on a new
/// connection with Receive Maximum 2 at most 2 at a time; acknowledging brings the rest.
#[test]
fn resent_messages_respect_the_new_receive_maximum() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let id = unique("rm-resend");
    let with_rm = |c: wire::Connect, rm: u16| {
        c.props(
            Props::new()
                .four(prop::SESSION_EXPIRY_INTERVAL, 60)
                .two(prop::RECEIVE_MAXIMUM, rm),
        )
    };
    let (mut sub, _, _) = Client::connect(port, &with_rm(connect(&id), 10));
    assert_eq!(sub.subscribe(1, &[("rmr/t", 1)]), [1]);
    let mut publisher = Client::connect_clean(port, &unique("rmr-pub"));
    for i in 0..5u16 {
        publisher.publish("rmr/t", format!("m{i}").as_bytes(), 1, false, i + 1);
    }
    let first = unacked_publishes(&mut sub, 5, QUIET);
    assert_eq!(first.len(), 5, "{first:?}");
    sub.drop_abruptly();

    let (mut sub, present, _) = Client::connect(port, &with_rm(connect(&id).clean_start(false), 2));
    assert!(present);
    let mut all = Vec::new();
    let mut outstanding: VecDeque<Packet> = unacked_publishes(&mut sub, 1, QUIET).into();
    assert!(
        outstanding.len() <= 2,
        "{} unacknowledged PUBLISHes re-sent to a client with receive maximum 2: {outstanding:?}",
        outstanding.len()
    );
    all.extend(outstanding.iter().cloned());
    while let Some(oldest) = outstanding.pop_front() {
        sub.send_ok(&wire::puback(pid_of(&oldest)));
        let more = unacked_publishes(&mut sub, usize::from(all.len() < 5), QUIET);
        all.extend(more.iter().cloned());
        outstanding.extend(more);
        assert!(outstanding.len() <= 2, "{outstanding:?}");
    }
    assert_eq!(
        wire::payloads(&all),
        ["m0", "m1", "m2", "m3", "m4"],
        "{all:?}"
    );
}

/// MQTT-3.1.2-24 / -25 after a reconnect: a 500-byte message left unacknowledged on a
/// connection without a limit must not be re-sent on a new connection that announces Maximum
/// Packet Size 100 (it is discarded as if sent); smaller messages still come.
#[test]
fn resent_messages_respect_the_new_maximum_packet_size() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let id = unique("mps-resend");
    let (mut sub, _, _) = Client::connect(port, &connect(&id).session_expiry(60));
    assert_eq!(sub.subscribe(1, &[("mpr/t", 1)]), [1]);
    let mut publisher = Client::connect_clean(port, &unique("mpr-pub"));
    publisher.publish("mpr/t", "B".repeat(500).as_bytes(), 1, false, 1);
    publisher.publish("mpr/t", b"small", 1, false, 2);
    let first = unacked_publishes(&mut sub, 2, QUIET);
    assert_eq!(first.len(), 2, "{first:?}");
    sub.drop_abruptly();

    let (mut sub, present, _) = Client::connect(
        port,
        &connect(&id).clean_start(false).props(
            Props::new()
                .four(prop::SESSION_EXPIRY_INTERVAL, 60)
                .four(prop::MAXIMUM_PACKET_SIZE, 100),
        ),
    );
    assert!(present);
    let got = sub.receive_all(QUIET);
    let sizes: Vec<usize> = sub.received_sizes().to_vec();
    assert!(
        sizes.iter().all(|&n| n <= 100),
        "packets of {sizes:?} bytes (CONNACK first) sent to a client with maximum packet size \
         100; payload sizes {:?}",
        got.iter()
            .map(|p| p.payload().map_or(0, <[u8]>::len))
            .collect::<Vec<_>>()
    );
    assert_eq!(wire::payloads(&got), ["small"]);
}

/// MQTT-3.1.2-24 with topic aliases: a client with Maximum Packet Size 100 and Topic Alias
/// Maximum 5 is never sent a packet over 100 bytes, also when the broker adds a Topic Alias
/// property (3 bytes) to a message that is exactly 100 bytes without it.
#[test]
fn topic_alias_does_not_push_a_packet_over_the_maximum_size() {
    let b = Bridge::start();
    let (mut sub, _, _) = Client::connect(
        b.tcp_port(),
        &connect(&unique("mps-alias")).props(
            Props::new()
                .four(prop::MAXIMUM_PACKET_SIZE, 100)
                .two(prop::TOPIC_ALIAS_MAXIMUM, 5),
        ),
    );
    assert_eq!(sub.subscribe(1, &[("ps/t", 1)]), [1]);
    let mut publisher = Client::connect_clean(b.tcp_port(), &unique("mps-alias-pub"));
    // Fixed header 2 + topic 6 + packet id 2 + empty properties 1 + payload 89 = 100 bytes.
    let payload = "P".repeat(89);
    for pid in 1..=3 {
        publisher.publish("ps/t", payload.as_bytes(), 1, false, pid);
    }
    let got = sub.receive_all(Duration::from_secs(2));
    let sizes = sub.received_sizes().to_vec();
    assert!(
        sizes.iter().all(|&n| n <= 100),
        "packets of {sizes:?} bytes (CONNACK, SUBACK first) sent to a client with maximum \
         packet size 100; {} PUBLISHes received",
        got.len()
    );
}
