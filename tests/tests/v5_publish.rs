//! MQTT 5.0 PUBLISH properties forwarded to subscribers (section 3.3.2.3): payload format
//! indicator, content type, response topic, correlation data, user properties (order and
//! duplicates kept), and message expiry (expired messages dropped, the interval reduced on
//! delivery).

use std::time::Duration;

use tests::v5::paho::{self, json, Paho};
use tests::v5::wire::{self, connect, prop, Client, Packet, Props, WAIT};
use tests::{run_ok, spawn_line_buffered, unique, which, Bridge};

/// User properties with a repeated key and an exact duplicate pair, deliberately unsorted.
fn user_pairs() -> Vec<(&'static str, &'static str)> {
    vec![
        ("zeta", "1"),
        ("alpha", "2"),
        ("zeta", "3"),
        ("alpha", "2"),
        ("ünï", "cødé"),
    ]
}

/// MQTT-3.3.2-4 (payload format indicator), -20 (content type), -15 (response topic), -16
/// (correlation data), -17 and -18 (user properties unaltered, order kept), -6 (message expiry
/// reduced by the time waited): paho to paho, QoS 1.
#[test]
fn paho_properties_are_forwarded_unaltered() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let mut sub = Paho::tcp(port)
        .step(json!({"sub": [{"filter": "props/#", "qos": 1}]}))
        .step(json!({"recv": 2}))
        .step(json!({"listen": 0.5}))
        .spawn();
    sub.wait_ev("suback", paho::RUN);
    let users: Vec<[&str; 2]> = user_pairs().iter().map(|(k, v)| [*k, *v]).collect();
    Paho::tcp(port)
        .step(
            json!({"pub": "props/full", "payload": "{\"a\":1}", "qos": 1, "props": {
                "PayloadFormatIndicator": 1,
                "ContentType": "application/json",
                "ResponseTopic": "reply/here",
                "CorrelationData": "00ff10abcdef",
                "UserProperty": users,
                "MessageExpiryInterval": 120,
            }}),
        )
        .step(json!({"pub": "props/bare", "payload": "plain", "qos": 1}))
        .run();
    let events = sub.finish_ok();
    let msgs = paho::messages(&events);
    assert_eq!(msgs.len(), 2, "{events:#?}");
    let full = msgs[0];
    assert_eq!(full["topic"], "props/full");
    let props = &full["props"];
    assert_eq!(props["PayloadFormatIndicator"], 1, "{full}");
    assert_eq!(props["ContentType"], "application/json", "{full}");
    assert_eq!(props["ResponseTopic"], "reply/here", "{full}");
    assert_eq!(props["CorrelationData"], "00ff10abcdef", "{full}");
    assert_eq!(props["UserProperty"], json!(users), "{full}");
    let expiry = props["MessageExpiryInterval"].as_u64().unwrap_or(0);
    assert!(
        (1..=120).contains(&expiry),
        "message expiry interval {expiry}, expected 1..=120: {full}"
    );
    for absent in ["TopicAlias", "SubscriptionIdentifier"] {
        assert!(props.get(absent).is_none(), "unexpected {absent}: {full}");
    }

    let bare = msgs[1];
    assert_eq!(bare["topic"], "props/bare");
    assert_eq!(
        bare["props"],
        json!({}),
        "a message published without properties got some"
    );
}

/// The same on the wire, for QoS 0 and 2 from and to raw 5.0 clients: each single-valued
/// property appears once with the value published, user properties come in the published
/// order with duplicates, the payload is untouched, and a message published without a
/// Message Expiry Interval is delivered without one (MQTT-3.3.2-5 applies only when set).
#[test]
fn raw_properties_are_forwarded_in_order() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let mut sub = Client::connect_clean(port, &unique("raw-sub"));
    assert_eq!(sub.subscribe(1, &[("rawp/#", 2)]), [2]);
    let mut props = Props::new()
        .byte(prop::PAYLOAD_FORMAT_INDICATOR, 0)
        .str(prop::CONTENT_TYPE, "application/octet-stream")
        .str(prop::RESPONSE_TOPIC, "rawp/reply")
        .bin(prop::CORRELATION_DATA, &[0, 1, 2, 0xfe, 0xff]);
    for (k, v) in user_pairs() {
        props = props.user(k, v);
    }
    let mut publisher = Client::connect_clean(port, &unique("raw-pub"));
    let payload = [0u8, 159, 146, 150, 255];
    for qos in [0u8, 2] {
        publisher.publish_with(&format!("rawp/{qos}"), &payload, qos, false, 7, &props);
        let p = sub.receive(WAIT);
        let Packet::Publish {
            topic,
            qos: got_qos,
            props: got,
            payload: got_payload,
            ..
        } = &p
        else {
            unreachable!()
        };
        assert_eq!(topic, &format!("rawp/{qos}"));
        assert_eq!(*got_qos, qos);
        assert_eq!(got_payload, &payload, "payload");
        for id in [
            prop::PAYLOAD_FORMAT_INDICATOR,
            prop::CONTENT_TYPE,
            prop::RESPONSE_TOPIC,
            prop::CORRELATION_DATA,
        ] {
            assert_eq!(got.count(id), 1, "property {id:#04x} in {got:?}");
            assert_eq!(got.get(id), props.get(id), "property {id:#04x}");
        }
        assert_eq!(got.users(), props.users(), "user properties");
        assert_eq!(
            got.count(prop::MESSAGE_EXPIRY_INTERVAL),
            0,
            "expiry interval on a message published without one: {got:?}"
        );
        assert_eq!(
            got.0.len(),
            4 + user_pairs().len(),
            "unexpected extra properties: {got:?}"
        );
    }
    publisher.disconnect();
    sub.disconnect();
}

/// mosquitto_pub -V mqttv5 to mosquitto_sub -V mqttv5: user properties (repeated key kept),
/// content type, response topic, correlation data and message expiry reach the subscriber.
#[test]
fn mosquitto_v5_properties_are_forwarded() {
    let b = Bridge::start();
    let port = b.tcp_port().to_string();
    let mut sub = spawn_line_buffered(
        "mosquitto_sub",
        [
            "-V",
            "mqttv5",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "mq5/#",
            "-q",
            "1",
            "-C",
            "1",
            "-W",
            "60",
            "-d",
            "-F",
            "MSG %t|%p|%P|%C|%R|%D|%E",
        ],
    );
    sub.wait_line(Duration::from_secs(30), |l| l.contains("SUBACK"));
    run_ok(
        &which("mosquitto_pub"),
        &[
            "-V",
            "mqttv5",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-q",
            "1",
            "-t",
            "mq5/x",
            "-m",
            "hello",
            "-D",
            "publish",
            "user-property",
            "k1",
            "v1",
            "-D",
            "publish",
            "user-property",
            "k2",
            "v2",
            "-D",
            "publish",
            "user-property",
            "k1",
            "v3",
            "-D",
            "publish",
            "content-type",
            "text/plain",
            "-D",
            "publish",
            "response-topic",
            "mq5/reply",
            "-D",
            "publish",
            "correlation-data",
            "corr-7",
            "-D",
            "publish",
            "message-expiry-interval",
            "300",
        ],
        Duration::from_secs(30),
    );
    let lines = sub.wait_success(Duration::from_secs(60));
    let msg = lines
        .iter()
        .find(|l| l.starts_with("MSG "))
        .unwrap_or_else(|| panic!("no message: {lines:?}"));
    let fields: Vec<&str> = msg["MSG ".len()..].split('|').collect();
    assert_eq!(
        &fields[..6],
        [
            "mq5/x",
            "hello",
            "k1:v1 k2:v2 k1:v3",
            "text/plain",
            "mq5/reply",
            "corr-7"
        ],
        "{msg}"
    );
    let expiry: u32 = fields[6]
        .parse()
        .unwrap_or_else(|_| panic!("no expiry: {msg}"));
    assert!((1..=300).contains(&expiry), "{msg}");
}

/// MQTT-3.3.2-5: a message whose expiry interval (2 s) passed while the subscriber was offline
/// is not delivered when it comes back after 4 s; one with 60 s is, with the interval reduced by
/// the time it waited (MQTT-3.3.2-6); one without an interval is delivered without one.
#[test]
fn expired_messages_are_not_delivered_to_a_returning_client() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let id = unique("exp");
    Paho::tcp(port)
        .id(&id)
        .connect_props(json!({"SessionExpiryInterval": 300}))
        .step(json!({"sub": [{"filter": "exp/t", "qos": 1}]}))
        .run();
    Paho::tcp(port)
        .step(json!({"pub": "exp/t", "payload": "short", "qos": 1,
                     "props": {"MessageExpiryInterval": 2}}))
        .step(json!({"pub": "exp/t", "payload": "long", "qos": 1,
                     "props": {"MessageExpiryInterval": 60}}))
        .step(json!({"pub": "exp/t", "payload": "forever", "qos": 1}))
        .run();
    std::thread::sleep(Duration::from_secs(4));
    let events = Paho::tcp(port)
        .id(&id)
        .resume()
        .connect_props(json!({"SessionExpiryInterval": 300}))
        .step(json!({"recv": 2}))
        .step(json!({"listen": 1.5}))
        .run();
    assert_eq!(paho::event(&events, "connack")["session_present"], true);
    assert_eq!(paho::payloads(&events), ["long", "forever"], "{events:#?}");
    let msgs = paho::messages(&events);
    let left = msgs[0]["props"]["MessageExpiryInterval"]
        .as_u64()
        .unwrap_or_else(|| panic!("no expiry interval on the 60 s message: {}", msgs[0]));
    assert!(
        (1..=57).contains(&left),
        "60 s message delivered after waiting 4 s with interval {left}, expected at most 57"
    );
    assert!(
        msgs[1]["props"].get("MessageExpiryInterval").is_none(),
        "{}",
        msgs[1]
    );
}

/// Section 3.3.2.3.3 with retained messages: a retained message with expiry 2 s is no longer
/// sent to a new subscriber after 4 s; one with 60 s is, with RETAIN 1 and the interval
/// reduced.
#[test]
fn expired_retained_message_is_not_sent_to_new_subscribers() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let mut publisher = Client::connect_clean(port, &unique("rexp-pub"));
    publisher.publish_with(
        "rexp/short",
        b"short",
        1,
        true,
        1,
        &Props::new().four(prop::MESSAGE_EXPIRY_INTERVAL, 2),
    );
    publisher.publish_with(
        "rexp/long",
        b"long",
        1,
        true,
        2,
        &Props::new().four(prop::MESSAGE_EXPIRY_INTERVAL, 60),
    );
    publisher.disconnect();
    std::thread::sleep(Duration::from_secs(4));
    let (mut sub, _, _) = Client::connect(port, &connect(&unique("rexp-sub")));
    assert_eq!(sub.subscribe(1, &[("rexp/#", 1)]), [1]);
    let got = sub.receive_all(Duration::from_secs(2));
    assert_eq!(wire::payloads(&got), ["long"], "{got:?}");
    let Packet::Publish { retain, props, .. } = &got[0] else {
        unreachable!()
    };
    assert!(*retain, "retained message sent on subscribe without RETAIN");
    let left = props.get_four(prop::MESSAGE_EXPIRY_INTERVAL).unwrap_or(0);
    assert!(
        (1..=57).contains(&left),
        "expiry interval {left} after waiting 4 s of 60"
    );
}

/// MQTT-3.3.2-4 / section 3.3.2.3.2: a receiver MAY check a payload whose Payload Format
/// Indicator says UTF-8. Whichever the broker chooses, it must be consistent: either it refuses
/// an invalid one (PUBACK 0x99) and does not forward it, or it accepts it (PUBACK < 0x80) and
/// forwards it with the indicator unaltered.
#[test]
fn invalid_utf8_with_payload_format_indicator_is_refused_or_forwarded_unaltered() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let mut sub = Client::connect_clean(port, &unique("pfi-sub"));
    assert_eq!(sub.subscribe(1, &[("pfi/t", 1)]), [1]);
    let mut publisher = Client::connect_clean(port, &unique("pfi-pub"));
    let bad = [0xC3u8, 0x28, 0xFF];
    let code = publisher.publish_with(
        "pfi/t",
        &bad,
        1,
        false,
        1,
        &Props::new().byte(prop::PAYLOAD_FORMAT_INDICATOR, 1),
    );
    let got = sub.receive_all(Duration::from_secs(2));
    match code {
        0x99 => assert!(got.is_empty(), "refused with 0x99 but forwarded: {got:?}"),
        c if c < 0x80 => {
            assert_eq!(got.len(), 1, "accepted ({c:#04x}) but not forwarded");
            let Packet::Publish { payload, props, .. } = &got[0] else {
                unreachable!()
            };
            assert_eq!(payload, &bad);
            assert_eq!(props.get_byte(prop::PAYLOAD_FORMAT_INDICATOR), Some(1));
        }
        c => panic!("unexpected PUBACK reason {c:#04x}"),
    }
    publisher.publish("pfi/t", b"valid", 1, false, 2);
    assert_eq!(sub.receive(WAIT).payload(), Some(&b"valid"[..]));
}
