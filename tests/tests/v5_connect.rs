//! MQTT 5.0 CONNECT / CONNACK: the properties the broker advertises, assigned client
//! identifiers, enhanced authentication refused, session expiry (0, 60 s, 2 s), and a session
//! expiry on DISCONNECT after 0 on CONNECT.

use std::time::Duration;

use tests::v5::paho::{self, json, Paho};
use tests::v5::wire::{connect, prop, rc, Client, Packet, Props, WAIT};
use tests::{unique, Bridge};

/// Every property a CONNACK may carry at most once (MQTT 5.0 section 3.2.2.3: "It is a
/// Protocol Error to include ... more than once").
const SINGLE: &[u8] = &[
    prop::SESSION_EXPIRY_INTERVAL,
    prop::RECEIVE_MAXIMUM,
    prop::MAXIMUM_QOS,
    prop::RETAIN_AVAILABLE,
    prop::MAXIMUM_PACKET_SIZE,
    prop::ASSIGNED_CLIENT_IDENTIFIER,
    prop::TOPIC_ALIAS_MAXIMUM,
    prop::REASON_STRING,
    prop::WILDCARD_SUBSCRIPTION_AVAILABLE,
    prop::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
    prop::SHARED_SUBSCRIPTION_AVAILABLE,
    prop::SERVER_KEEP_ALIVE,
    prop::RESPONSE_INFORMATION,
    prop::SERVER_REFERENCE,
    prop::AUTHENTICATION_METHOD,
    prop::AUTHENTICATION_DATA,
];

fn assert_advertised(props: &Props, max_packet_size: u32) {
    for id in SINGLE {
        assert!(
            props.count(*id) <= 1,
            "property {id:#04x} more than once in CONNACK: {props:?}"
        );
    }
    assert_eq!(
        props.get_two(prop::RECEIVE_MAXIMUM),
        Some(1024),
        "receive maximum: {props:?}"
    );
    assert_eq!(
        props.get_four(prop::MAXIMUM_PACKET_SIZE),
        Some(max_packet_size),
        "maximum packet size: {props:?}"
    );
    assert_eq!(
        props.get_two(prop::TOPIC_ALIAS_MAXIMUM),
        Some(64),
        "topic alias maximum: {props:?}"
    );
    // Absent means available (sections 3.2.2.3.5, 3.2.2.3.11-13); if present, it must say 1.
    for id in [
        prop::RETAIN_AVAILABLE,
        prop::WILDCARD_SUBSCRIPTION_AVAILABLE,
        prop::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        prop::SHARED_SUBSCRIPTION_AVAILABLE,
    ] {
        assert!(
            matches!(props.get_byte(id), None | Some(1)),
            "property {id:#04x} says unavailable: {props:?}"
        );
    }
    assert_eq!(
        props.get_byte(prop::MAXIMUM_QOS),
        None,
        "maximum QoS: {props:?}"
    );
}

/// MQTT-3.2.2-16: a CONNECT with a zero-length client identifier is accepted and the CONNACK
/// carries the Assigned Client Identifier (unique per client); the CONNACK advertises receive
/// maximum 1024, maximum packet size 1 MiB, topic alias maximum 64, and no feature as
/// unavailable. A client that chose its own identifier gets no assigned one.
#[test]
fn connack_advertises_limits_and_assigns_client_ids() {
    let b = Bridge::start();
    let (c1, present, props1) = Client::connect(b.tcp_port(), &connect(""));
    assert!(!present, "session present for a new client");
    assert_advertised(&props1, 1024 * 1024);
    let id1 = props1
        .get_str(prop::ASSIGNED_CLIENT_IDENTIFIER)
        .unwrap_or_else(|| panic!("no assigned client identifier in {props1:?}"))
        .to_owned();
    assert!(!id1.is_empty(), "empty assigned client identifier");

    let (c2, _, props2) = Client::connect(b.tcp_port(), &connect(""));
    let id2 = props2
        .get_str(prop::ASSIGNED_CLIENT_IDENTIFIER)
        .unwrap_or_else(|| panic!("no assigned client identifier in {props2:?}"))
        .to_owned();
    assert_ne!(id1, id2, "two clients got the same assigned identifier");

    let (c3, _, props3) = Client::connect(b.tcp_port(), &connect(&unique("named")));
    assert_advertised(&props3, 1024 * 1024);
    assert_eq!(
        props3.get_str(prop::ASSIGNED_CLIENT_IDENTIFIER),
        None,
        "assigned identifier for a client that sent one"
    );

    // The first client is still served under its assigned identifier (no takeover by c2).
    let mut c1 = c1;
    c1.ping();
    c1.disconnect();
    c2.disconnect();
    c3.disconnect();
}

/// The same with paho: an empty client id gets an Assigned Client Identifier in the CONNACK
/// properties paho reports.
#[test]
fn paho_sees_assigned_client_identifier() {
    let b = Bridge::start();
    let events = Paho::tcp(b.tcp_port()).id("").run();
    let connack = paho::event(&events, "connack");
    assert_eq!(connack["rc"], 0, "{connack}");
    let assigned = connack["props"]["AssignedClientIdentifier"]
        .as_str()
        .unwrap_or_default();
    assert!(!assigned.is_empty(), "no assigned client id: {connack}");
    assert_eq!(connack["props"]["ReceiveMaximum"], 1024, "{connack}");
    assert_eq!(connack["props"]["TopicAliasMaximum"], 64, "{connack}");
    assert_eq!(connack["props"]["MaximumPacketSize"], 1048576, "{connack}");
}

/// MQTT-4.12.0-1: the broker supports no enhanced authentication, so a CONNECT with an
/// Authentication Method gets CONNACK 0x8C (bad authentication method) with session present 0
/// (MQTT-3.2.2-6), and the connection is closed with nothing else sent.
#[test]
fn authentication_method_is_refused_with_0x8c() {
    let b = Bridge::start();
    let c = connect(&unique("auth")).props(
        Props::new()
            .str(prop::AUTHENTICATION_METHOD, "SCRAM-SHA-256")
            .bin(prop::AUTHENTICATION_DATA, b"n,,n=user,r=abc"),
    );
    let mut client = Client::open(b.tcp_port());
    client.send(&c.bytes());
    let got = client.expect_closed(WAIT);
    match got.as_slice() {
        [Packet::Connack {
            session_present: false,
            reason: rc::BAD_AUTHENTICATION_METHOD,
            ..
        }] => {}
        other => panic!("expected only CONNACK 0x8C then close, got {other:?}"),
    }

    // paho sees the same refusal.
    let mut p = Paho::tcp(b.tcp_port())
        .id(&unique("auth-paho"))
        .connect_props(json!({"AuthenticationMethod": "SCRAM-SHA-256"}))
        .spawn();
    let (status, events) = p.finish();
    assert_eq!(
        status.code(),
        Some(2),
        "paho should fail to connect: {events:?}"
    );
    assert_eq!(paho::event(&events, "connack")["rc"], 0x8C, "{events:?}");
}

/// Section 3.1.2.11.2: with Session Expiry Interval absent (0) the session ends when the
/// connection closes, so a reconnect with Clean Start 0 gets session present 0
/// (MQTT-3.2.2-2) and the old subscription is gone: a QoS 1 publish to it is acknowledged with
/// 0x10 (no matching subscribers) and nothing is delivered.
#[test]
fn session_expiry_0_ends_the_session_at_disconnect() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let id = unique("se0");
    let first = Paho::tcp(port)
        .id(&id)
        .step(json!({"sub": [{"filter": "se0/t", "qos": 1}]}))
        .run();
    assert_eq!(paho::event(&first, "suback")["codes"], json!([1]));

    let mut again = Paho::tcp(port)
        .id(&id)
        .resume()
        .step(json!({"mark": "connected"}))
        .step(json!({"listen": 3}))
        .spawn();
    let connack = again.wait_ev("connack", paho::RUN);
    assert_eq!(connack["session_present"], false, "{connack}");
    again.wait_mark("connected", paho::RUN);

    let published = Paho::tcp(port)
        .step(json!({"pub": "se0/t", "payload": "lost", "qos": 1}))
        .run();
    assert_eq!(
        paho::event(&published, "published")["rc"],
        0x10,
        "the subscription should be gone with the session"
    );
    let events = again.finish_ok();
    assert!(paho::messages(&events).is_empty(), "{events:?}");
}

/// Section 3.1.2.11.2 and MQTT-3.2.2-3: with Session Expiry Interval 60 the session survives
/// the disconnect: a reconnect with Clean Start 0 gets session present 1, the subscription is
/// still there and the QoS 1 messages published meanwhile are delivered, in order.
#[test]
fn session_expiry_60_keeps_subscriptions_and_queued_messages() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let id = unique("se60");
    let first = Paho::tcp(port)
        .id(&id)
        .connect_props(json!({"SessionExpiryInterval": 60}))
        .step(json!({"sub": [{"filter": "se60/t", "qos": 1}]}))
        .run();
    assert_eq!(paho::event(&first, "connack")["session_present"], false);

    let published = Paho::tcp(port)
        .step(json!({"pub": "se60/t", "payload": "m1", "qos": 1}))
        .step(json!({"pub": "se60/t", "payload": "m2", "qos": 1}))
        .run();
    for p in paho::events(&published, "published") {
        assert_eq!(p["rc"], 0, "the offline session should match: {p}");
    }

    let events = Paho::tcp(port)
        .id(&id)
        .resume()
        .connect_props(json!({"SessionExpiryInterval": 60}))
        .step(json!({"recv": 2}))
        .step(json!({"listen": 1}))
        .run();
    assert_eq!(
        paho::event(&events, "connack")["session_present"],
        true,
        "{events:?}"
    );
    assert_eq!(paho::payloads(&events), ["m1", "m2"], "{events:?}");
    for m in paho::messages(&events) {
        assert_eq!(m["topic"], "se60/t");
        assert_eq!(m["qos"], 1);
    }
}

/// Section 3.1.2.11.2: a session with expiry 2 s is gone once 2 s have passed without a
/// connection: after 5 s a reconnect with Clean Start 0 gets session present 0 and the
/// subscription no longer matches.
#[test]
fn short_session_expiry_lapses() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let id = unique("se2");
    Paho::tcp(port)
        .id(&id)
        .connect_props(json!({"SessionExpiryInterval": 2}))
        .step(json!({"sub": [{"filter": "se2/t", "qos": 1}]}))
        .run();
    std::thread::sleep(Duration::from_secs(5));

    let published = Paho::tcp(port)
        .step(json!({"pub": "se2/t", "payload": "late", "qos": 1}))
        .run();
    assert_eq!(
        paho::event(&published, "published")["rc"],
        0x10,
        "the expired session's subscription still matched"
    );
    let events = Paho::tcp(port)
        .id(&id)
        .resume()
        .step(json!({"listen": 1.5}))
        .run();
    assert_eq!(
        paho::event(&events, "connack")["session_present"],
        false,
        "session still present 5 s after a 2 s expiry: {events:?}"
    );
    assert!(paho::messages(&events).is_empty(), "{events:?}");
}

/// MQTT-3.14.2-2 / section 3.14.2.2.2: after Session Expiry Interval 0 (absent) on CONNECT,
/// a DISCONNECT with a non-zero Session Expiry Interval is a Protocol Error: it is not a valid
/// DISCONNECT, so the broker answers with DISCONNECT 0x82 and closes; since the DISCONNECT is
/// not valid, the Will is published (section 3.1.2.5); the session still ends.
#[test]
fn session_expiry_on_disconnect_after_zero_is_a_protocol_error() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let mut watcher = Client::connect_clean(port, &unique("watcher"));
    assert_eq!(watcher.subscribe(1, &[("se-err/will", 1)]), [1]);

    let id = unique("se-err");
    let (mut c, _, _) = Client::connect(
        port,
        &connect(&id).will("se-err/will", b"gone", 1, false, Props::new()),
    );
    assert_eq!(c.subscribe(1, &[("se-err/t", 1)]), [1]);
    c.send(&tests::v5::wire::disconnect(
        0,
        &Props::new().four(prop::SESSION_EXPIRY_INTERVAL, 30),
    ));
    let (reason, _) = c.expect_disconnect(WAIT);
    assert_eq!(reason, rc::PROTOCOL_ERROR, "DISCONNECT reason");

    let will = watcher.receive(WAIT);
    assert_eq!(will.payload(), Some(&b"gone"[..]), "will: {will:?}");

    let (again, present, _) = Client::connect(port, &connect(&id).clean_start(false));
    assert!(!present, "the session (expiry 0) should have ended");
    again.disconnect();
}

/// Section 3.14.2.2.2: a DISCONNECT may change the session expiry interval: 60 on CONNECT and
/// 0 on DISCONNECT ends the session at once (session present 0 on return); 1 on CONNECT and
/// 60 on DISCONNECT keeps it past the first second (session present 1 after 3 s).
#[test]
fn disconnect_changes_the_session_expiry_interval() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let expiry = |secs: u32| Props::new().four(prop::SESSION_EXPIRY_INTERVAL, secs);

    let shortened = unique("se-short");
    let (c, _, _) = Client::connect(port, &connect(&shortened).session_expiry(60));
    c.disconnect_with(0, &expiry(0));
    let (c, present, _) = Client::connect(
        port,
        &connect(&shortened).clean_start(false).session_expiry(60),
    );
    assert!(
        !present,
        "session kept although DISCONNECT set its expiry to 0"
    );
    c.disconnect_with(0, &expiry(0));

    let extended = unique("se-long");
    let (c, _, _) = Client::connect(port, &connect(&extended).session_expiry(1));
    c.disconnect_with(0, &expiry(60));
    std::thread::sleep(Duration::from_secs(3));
    let (c, present, _) = Client::connect(
        port,
        &connect(&extended).clean_start(false).session_expiry(0),
    );
    assert!(
        present,
        "session gone although DISCONNECT extended its expiry to 60"
    );
    c.disconnect();
}

/// Sections 3.1.2.11.3, 3.1.2.11.4, 3.1.2.11.7: Receive Maximum 0, Maximum Packet Size 0 and
/// Request Problem Information 2 in CONNECT are each a Protocol Error: the connection is
/// refused and closed; a CONNACK, if sent, carries 0x82 (protocol error, section 4.13.1).
#[test]
fn invalid_connect_property_values_are_protocol_errors() {
    let b = Bridge::start();
    let cases = [
        (
            "receive maximum 0",
            Props::new().two(prop::RECEIVE_MAXIMUM, 0),
        ),
        (
            "maximum packet size 0",
            Props::new().four(prop::MAXIMUM_PACKET_SIZE, 0),
        ),
        (
            "request problem information 2",
            Props::new().byte(prop::REQUEST_PROBLEM_INFORMATION, 2),
        ),
    ];
    for (what, props) in cases {
        let mut c = Client::open(b.tcp_port());
        c.send(&connect(&unique("badprop")).props(props).bytes());
        let got = c.expect_closed(WAIT);
        match got.as_slice() {
            [] => {}
            [Packet::Connack { reason, .. }] => {
                assert_eq!(*reason, rc::PROTOCOL_ERROR, "{what}: CONNACK {got:?}")
            }
            other => panic!("{what}: expected at most a refusing CONNACK, got {other:?}"),
        }
    }
}

/// MQTT-3.1.2-4 / MQTT-3.2.2-2: Clean Start 1 discards an existing session: session present 0,
/// its subscriptions and queued messages are gone.
#[test]
fn clean_start_discards_an_existing_session() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let id = unique("cs1");
    let (mut c, _, _) = Client::connect(port, &connect(&id).session_expiry(300));
    assert_eq!(c.subscribe(1, &[("cs/t", 1)]), [1]);
    c.disconnect();
    let mut publisher = Client::connect_clean(port, &unique("cs-pub"));
    assert_eq!(publisher.publish("cs/t", b"queued", 1, false, 1), 0);

    let (mut c, present, _) = Client::connect(port, &connect(&id).session_expiry(300));
    assert!(!present, "Clean Start 1 must give session present 0");
    c.expect_silence(Duration::from_secs(1));
    assert_eq!(
        publisher.publish("cs/t", b"after", 1, false, 2),
        rc::NO_MATCHING_SUBSCRIBERS,
        "the discarded session's subscription still matches"
    );
    c.disconnect();
}
