//! CONNECT / CONNACK, credentials, keepalive, takeover, PINGREQ and DISCONNECT.

use std::time::{Duration, Instant};

use tests::rumq::{self, Mq};
use tests::wire::{self, connect, Packet, Protocol, RawClient, WAIT};
use tests::{assert_serving, unique, Bridge};

/// Sends `connect` on a fresh socket and returns the packets received before the server closed
/// (panics if it stays open).
fn refused(port: u16, connect: &wire::Connect) -> Vec<Packet> {
    let mut c = RawClient::open(port);
    c.send(&connect.bytes());
    c.expect_closed(WAIT)
}

/// MQTT-3.2.0-1, MQTT-3.2.2-1, MQTT-3.2.2.3 (return code 0): a valid v3.1.1 CONNECT with
/// clean session is answered first with CONNACK 0, session present 0, and the connection is
/// then served.
#[test]
fn v311_connect_is_accepted() {
    let b = Bridge::start();
    let mut c = RawClient::open(b.tcp_port());
    c.send(&connect("acc").bytes());
    assert_eq!(
        c.expect(WAIT),
        Packet::Connack {
            session_present: false,
            code: 0
        }
    );
    c.ping();
    c.disconnect();
}

/// MQTT-3.1.2-2: an unsupported protocol level (6) gets CONNACK return code 0x01 and the
/// connection is closed; MQTT-3.2.2-4: session present is 0 with a non-zero return code.
#[test]
fn protocol_level_6_is_refused_with_code_1() {
    let b = Bridge::start();
    let got = refused(b.tcp_port(), &connect("lvl6").protocol(Protocol::Level(6)));
    assert_eq!(
        got,
        vec![Packet::Connack {
            session_present: false,
            code: 1
        }],
        "expected exactly CONNACK 1 then close"
    );
    assert_serving(b.tcp_port());
}

/// MQTT-3.1.3-8: a zero-byte client id with CleanSession 0 gets CONNACK 0x02 (identifier
/// rejected) and the connection is closed.
#[test]
fn empty_client_id_with_persistent_session_is_rejected_with_code_2() {
    let b = Bridge::start();
    let got = refused(b.tcp_port(), &connect("").clean(false));
    assert_eq!(
        got,
        vec![Packet::Connack {
            session_present: false,
            code: 2
        }],
        "expected exactly CONNACK 2 then close"
    );
    assert_serving(b.tcp_port());
}

/// MQTT-3.1.3-6, MQTT-3.1.3-7: a zero-byte client id with CleanSession 1 is accepted and the
/// server assigns a unique id: two such clients coexist (neither takes the other over) and
/// both are served.
#[test]
fn empty_client_id_with_clean_session_gets_a_generated_id() {
    let b = Bridge::start();
    let (mut a, sp_a) = RawClient::connect(b.tcp_port(), &connect(""));
    let (mut c, sp_c) = RawClient::connect(b.tcp_port(), &connect(""));
    assert!(!sp_a && !sp_c, "clean sessions have session present 0");
    assert_eq!(a.subscribe(1, &[("gen/a", 1)]), vec![1]);
    assert_eq!(c.subscribe(1, &[("gen/c", 1)]), vec![1]);
    c.publish("gen/a", b"to-a", 1, false, 2);
    a.publish("gen/c", b"to-c", 1, false, 2);
    assert_eq!(a.receive(WAIT).as_publish(), Some(("gen/a", &b"to-a"[..])));
    assert_eq!(c.receive(WAIT).as_publish(), Some(("gen/c", &b"to-c"[..])));
    a.ping();
    c.ping();
}

/// MQTT-3.1.3-6 with a real client: rumqttc with an empty client id and clean session is
/// accepted and can subscribe and publish.
#[tokio::test]
async fn rumqttc_with_empty_client_id_is_accepted() {
    let b = Bridge::start();
    let mut m = Mq::connect(rumq::options(b.tcp_port(), "")).await;
    assert!(!m.session_present());
    assert_eq!(m.subscribe("anon/t", 1).await, Some(1));
    m.publish("anon/t", 1, false, b"self").await;
    let p = m.expect_publish().await;
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("anon/t", &b"self"[..]));
    m.disconnect().await;
}

/// MQTT 3.1 compatibility: CONNECT with protocol name "MQIsdp" and level 3 is accepted
/// (CONNACK 0) and the connection works normally.
#[test]
fn mqtt31_connect_is_accepted() {
    let b = Bridge::start();
    let (mut c, sp) =
        RawClient::connect(b.tcp_port(), &connect("old-client").protocol(Protocol::V31));
    assert!(!sp);
    assert_eq!(c.subscribe(1, &[("v31/t", 2)]), vec![2]);
    c.publish("v31/t", b"hi", 2, false, 2);
    let p = c.receive(WAIT);
    assert_eq!(p.as_publish(), Some(("v31/t", &b"hi"[..])));
    c.disconnect();
}

/// MQTT-3.1.2-18..21, 3.1.3.4/3.1.3.5: username and password fields are parsed (the payload
/// would be misread otherwise) and anonymous access is allowed by default; username without
/// password is also valid.
#[test]
fn username_and_password_are_accepted() {
    let b = Bridge::start();
    let (mut c, _) = RawClient::connect(
        b.tcp_port(),
        &connect("cred")
            .username("alice")
            .password(b"s3cret\x00\xff")
            .will("cred/will", b"w", 0, false),
    );
    c.ping();
    let (mut d, _) = RawClient::connect(b.tcp_port(), &connect("user-only").username("bob"));
    d.ping();
    c.disconnect();
    d.disconnect();
}

/// MQTT-3.1.2-18..21 with a real client: rumqttc with credentials connects and works.
#[tokio::test]
async fn rumqttc_with_credentials_is_accepted() {
    let b = Bridge::start();
    let mut o = rumq::options(b.tcp_port(), &unique("cred"));
    o.set_credentials("user", "password");
    let mut m = Mq::connect(o).await;
    assert_eq!(m.subscribe("cred/t", 0).await, Some(0));
    m.publish("cred/t", 0, false, b"ok").await;
    assert_eq!(&m.expect_publish().await.payload[..], b"ok");
    m.disconnect().await;
}

/// MQTT-3.1.2-24: with keepalive 2 s and no traffic the server disconnects the client after
/// one and a half times the keepalive (3 s); checked loosely (2.5 s .. 8 s) on a busy machine.
#[test]
fn keepalive_expiry_closes_the_connection() {
    let b = Bridge::start();
    // Timed from before the CONNECT is sent, so the measured time is never shorter than the
    // broker's own (which starts when it reads the CONNECT).
    let mut c = RawClient::open(b.tcp_port());
    let start = Instant::now();
    c.send_ok(&connect("ka2").keep_alive(2).bytes());
    assert!(matches!(c.expect(WAIT), Packet::Connack { code: 0, .. }));
    let got = c.expect_closed(Duration::from_secs(15));
    let elapsed = start.elapsed();
    assert!(got.is_empty(), "unexpected packets: {got:?}");
    assert!(
        elapsed >= Duration::from_millis(2500),
        "closed too early: {elapsed:?} (1.5 x 2 s = 3 s)"
    );
    assert!(
        elapsed <= Duration::from_secs(8),
        "closed too late: {elapsed:?} (1.5 x 2 s = 3 s)"
    );
    assert_serving(b.tcp_port());
}

/// MQTT-3.1.2-23 / 3.1.2.10: a keepalive of 0 turns the mechanism off: a silent client is
/// still connected after 4 s and is served.
#[test]
fn keepalive_zero_is_never_timed_out() {
    let b = Bridge::start();
    let (mut c, _) = RawClient::connect(b.tcp_port(), &connect("ka0").keep_alive(0));
    c.expect_silence(Duration::from_secs(4));
    c.ping();
    c.disconnect();
}

/// MQTT-3.1.2-23, MQTT-3.12.4-1: PINGREQ is answered with PINGRESP and resets the keepalive
/// timer: a client with keepalive 2 s pinging every second stays connected for 5 s.
#[test]
fn pingreq_gets_pingresp_and_keeps_the_connection_alive() {
    let b = Bridge::start();
    let (mut c, _) = RawClient::connect(b.tcp_port(), &connect("pinger").keep_alive(2));
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_secs(1));
        c.ping();
    }
    c.disconnect();
}

/// MQTT-3.1.4-2: a second connection with the same client id makes the server disconnect
/// the existing client; the new one is accepted and served.
#[test]
fn second_connection_with_same_client_id_takes_over() {
    let b = Bridge::start();
    let (mut first, _) = RawClient::connect(b.tcp_port(), &connect("twin"));
    first.ping();
    let (mut second, _) = RawClient::connect(b.tcp_port(), &connect("twin"));
    let got = first.expect_closed(WAIT);
    assert!(got.is_empty(), "old connection got {got:?}");
    second.ping();
    assert_eq!(second.subscribe(1, &[("twin/t", 1)]), vec![1]);
    second.publish("twin/t", b"x", 1, false, 2);
    assert_eq!(
        second.receive(WAIT).as_publish(),
        Some(("twin/t", &b"x"[..]))
    );
}

/// MQTT-3.1.4-2 with a real client: a rumqttc client is disconnected when another rumqttc
/// client connects with its id.
#[tokio::test]
async fn rumqttc_session_takeover_disconnects_the_first_client() {
    let b = Bridge::start();
    let id = unique("taken");
    let mut first = Mq::connect(rumq::options(b.tcp_port(), &id)).await;
    let mut second = Mq::connect(rumq::options(b.tcp_port(), &id)).await;
    first.expect_closed(WAIT).await;
    assert_eq!(second.subscribe("tk/t", 1).await, Some(1));
    second.disconnect().await;
}

/// MQTT-3.14.4-1, 3.14.4 (server SHOULD close): after DISCONNECT the server closes the
/// connection without sending anything, and other clients are unaffected.
#[test]
fn disconnect_closes_the_connection() {
    let b = Bridge::start();
    let (mut c, _) = RawClient::connect(b.tcp_port(), &connect("bye"));
    c.send_ok(&wire::disconnect());
    let got = c.expect_closed(WAIT);
    assert!(got.is_empty(), "got {got:?} after DISCONNECT");
    assert_serving(b.tcp_port());
}
