//! MQTT 5.0 and 3.1.1 clients on one broker: messages both ways (mosquitto clients), no 5.0
//! properties on the 3.1.1 wire, and sessions created by one version resumed by the other.

use std::time::Duration;

use tests::v5::wire::{self as v5, prop, Props};
use tests::wire::{self as v3, Packet as P3, RawClient};
use tests::{run_ok, spawn_line_buffered, unique, which, Bridge, Proc};

const PROC_WAIT: Duration = Duration::from_secs(60);

fn mosquitto_sub(b: &Bridge, version: &str, topic: &str) -> Proc {
    let port = b.tcp_port().to_string();
    let mut p = spawn_line_buffered(
        "mosquitto_sub",
        [
            "-V",
            version,
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            topic,
            "-q",
            "1",
            "-C",
            "1",
            "-W",
            "60",
            "-d",
            "-F",
            "MSG %t|%p|%P",
        ],
    );
    p.wait_line(Duration::from_secs(30), |l| l.contains("SUBACK"));
    p
}

fn mosquitto_pub(b: &Bridge, args: &[&str]) {
    let port = b.tcp_port().to_string();
    let mut all = vec!["-h", "127.0.0.1", "-p", &port];
    all.extend_from_slice(args);
    run_ok(&which("mosquitto_pub"), &all, PROC_WAIT);
}

fn message(p: &mut Proc) -> String {
    let lines = p.wait_success(PROC_WAIT);
    lines
        .into_iter()
        .find(|l| l.starts_with("MSG "))
        .unwrap_or_else(|| panic!("no message from {}", p.name()))
}

/// A 5.0 publisher (with a user property) reaches a 3.1.1 subscriber, and a 3.1.1 publisher
/// reaches a 5.0 subscriber (which sees no user properties): mosquitto_pub / mosquitto_sub.
#[test]
fn mosquitto_v5_and_v311_exchange_messages() {
    let b = Bridge::start();
    let mut old = mosquitto_sub(&b, "mqttv311", "io/to311");
    mosquitto_pub(
        &b,
        &[
            "-V",
            "mqttv5",
            "-q",
            "1",
            "-t",
            "io/to311",
            "-m",
            "from v5",
            "-D",
            "publish",
            "user-property",
            "k",
            "v",
        ],
    );
    assert_eq!(message(&mut old), "MSG io/to311|from v5|");

    let mut new = mosquitto_sub(&b, "mqttv5", "io/to5");
    mosquitto_pub(
        &b,
        &[
            "-V", "mqttv311", "-q", "1", "-t", "io/to5", "-m", "from 311",
        ],
    );
    assert_eq!(message(&mut new), "MSG io/to5|from 311|");
}

/// Rich 5.0 properties, for messages that go to 3.1.1 clients.
fn rich() -> Props {
    Props::new()
        .byte(prop::PAYLOAD_FORMAT_INDICATOR, 1)
        .four(prop::MESSAGE_EXPIRY_INTERVAL, 300)
        .str(prop::CONTENT_TYPE, "text/plain")
        .str(prop::RESPONSE_TOPIC, "io/reply")
        .bin(prop::CORRELATION_DATA, b"corr")
        .user("k", "v")
        .user("k", "w")
}

/// The 3.1.1 PUBLISH format has no property section (MQTT 3.1.1 section 3.3.2): messages a 5.0
/// client published with properties reach a raw 3.1.1 subscriber with exactly their payload
/// after the topic (and packet id), at QoS 0, 1 and 2, live and retained.
#[test]
fn v311_subscriber_gets_publish_bytes_without_properties() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let mut old = RawClient::connect_clean(port, &unique("v311"));
    assert_eq!(old.subscribe(1, &[("bytes/#", 2)]), [2]);
    let mut new = v5::Client::connect_clean(port, &unique("v5-pub"));
    for qos in [0u8, 1, 2] {
        let topic = format!("bytes/q{qos}");
        new.publish_with(
            &topic,
            b"exact payload",
            qos,
            false,
            10 + qos as u16,
            &rich(),
        );
        match old.receive(v3::WAIT) {
            P3::Publish {
                topic: t,
                qos: q,
                payload,
                retain: false,
                ..
            } => {
                assert_eq!((t.as_str(), q), (topic.as_str(), qos));
                assert_eq!(
                    payload, b"exact payload",
                    "3.1.1 payload at QoS {qos} (5.0 properties leaked?)"
                );
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
    new.publish_with("ret/x", b"retained payload", 1, true, 20, &rich());
    let mut late = RawClient::connect_clean(port, &unique("v311-late"));
    assert_eq!(late.subscribe(1, &[("ret/x", 1)]), [1]);
    match late.receive(v3::WAIT) {
        P3::Publish {
            payload,
            retain: true,
            ..
        } => assert_eq!(payload, b"retained payload"),
        other => panic!("expected retained PUBLISH, got {other:?}"),
    }
}

/// The other way: a 3.1.1 PUBLISH reaches a 5.0 subscriber with an empty property section.
#[test]
fn v5_subscriber_gets_no_properties_from_a_v311_publisher() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let mut new = v5::Client::connect_clean(port, &unique("v5-sub"));
    assert_eq!(new.subscribe(1, &[("from311/t", 1)]), [1]);
    let mut old = RawClient::connect_clean(port, &unique("v311-pub"));
    old.publish("from311/t", b"plain", 1, false, 1);
    match new.receive(v5::WAIT) {
        v5::Packet::Publish { props, payload, .. } => {
            assert_eq!(payload, b"plain");
            assert!(props.is_empty(), "properties on a 3.1.1 message: {props:?}");
        }
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

/// A session created by a 3.1.1 client (clean session 0) is resumed by the same client id
/// speaking 5.0 with Clean Start 0: session present 1, the QoS 1 message queued meanwhile is
/// delivered, through the 3.1.1 subscription.
#[test]
fn v311_session_resumed_with_v5() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let id = unique("v311-then-v5");
    let (mut old, _) = RawClient::connect(port, &v3::connect(&id).clean(false));
    assert_eq!(old.subscribe(1, &[("resume/a", 1)]), [1]);
    old.disconnect();

    let mut publisher = v5::Client::connect_clean(port, &unique("pub"));
    assert_eq!(
        publisher.publish_with("resume/a", b"queued", 1, false, 1, &rich()),
        0
    );

    let (mut new, present, _) = v5::Client::connect(
        port,
        &v5::connect(&id).clean_start(false).session_expiry(60),
    );
    assert!(present, "the 3.1.1 session should be resumed");
    let p = new.receive(v5::WAIT);
    assert_eq!(p.payload(), Some(&b"queued"[..]), "{p:?}");
    new.disconnect();
}

/// A session created by a 5.0 client (Clean Start 0, Session Expiry 300) is resumed by the
/// same client id speaking 3.1.1 with clean session 0: session present 1, the queued message
/// is delivered as plain 3.1.1 bytes.
#[test]
fn v5_session_resumed_with_v311() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let id = unique("v5-then-v311");
    let (mut new, _, _) = v5::Client::connect(port, &v5::connect(&id).session_expiry(300));
    assert_eq!(new.subscribe(1, &[("resume/b", 1)]), [1]);
    new.disconnect();

    let mut publisher = v5::Client::connect_clean(port, &unique("pub"));
    assert_eq!(
        publisher.publish_with("resume/b", b"queued", 1, false, 1, &rich()),
        0
    );

    let (mut old, present) = RawClient::connect(port, &v3::connect(&id).clean(false));
    assert!(present, "the 5.0 session should be resumed");
    let p = old.receive(v3::WAIT);
    assert_eq!(p.as_publish(), Some(("resume/b", &b"queued"[..])), "{p:?}");
    old.disconnect();
}
