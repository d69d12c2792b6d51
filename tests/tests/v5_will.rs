//! MQTT 5.0 Will messages: Will Delay Interval (section 3.1.3.2.2), DISCONNECT with reason
//! 0x04, normal DISCONNECT, and the will's own properties and message expiry.

use std::time::{Duration, Instant};

use tests::v5::paho::{self, json, Paho};
use tests::v5::wire::{connect, prop, Client, Packet, Props, WAIT};
use tests::{unique, Bridge};

/// A raw 5.0 client subscribed to `filter` at QoS 1.
fn watcher(port: u16, filter: &str) -> Client {
    let mut w = Client::connect_clean(port, &unique("watcher"));
    assert_eq!(w.subscribe(1, &[(filter, 1)]), [1]);
    w
}

fn will_props(delay: u32) -> Props {
    Props::new().four(prop::WILL_DELAY_INTERVAL, delay)
}

/// MQTT-3.1.3-9: a client with Will Delay 3 s (session expiry 60 s) whose connection breaks
/// and that reconnects (Clean Start 0) within 1 s: the will is not published.
#[test]
fn will_delay_reconnect_in_time_sends_no_will() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let mut w = watcher(port, "wd/cancel");
    let id = unique("wd-back");
    let (c, _, _) = Client::connect(
        port,
        &connect(&id)
            .session_expiry(60)
            .will("wd/cancel", b"should not", 1, false, will_props(3)),
    );
    c.drop_abruptly();
    std::thread::sleep(Duration::from_millis(300));
    let (back, present, _) =
        Client::connect(port, &connect(&id).clean_start(false).session_expiry(60));
    assert!(present, "the session should still be there");
    w.expect_silence(Duration::from_secs(6));
    back.disconnect();
    w.expect_silence(Duration::from_secs(1));
}

/// Section 3.1.3.2.2: with Will Delay 3 s and no reconnect the will is published after the
/// delay: not within the first 2 s of the connection breaking, but within a generous 20 s.
#[test]
fn will_delay_postpones_the_will() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let mut w = watcher(port, "wd/late");
    let (c, _, _) = Client::connect(
        port,
        &connect(&unique("wd-late")).session_expiry(60).will(
            "wd/late",
            b"late will",
            1,
            false,
            will_props(3),
        ),
    );
    let dropped = Instant::now();
    c.drop_abruptly();
    w.expect_silence(Duration::from_secs(2));
    let will = w.receive(Duration::from_secs(20));
    let elapsed = dropped.elapsed();
    assert_eq!(will.payload(), Some(&b"late will"[..]));
    assert!(
        elapsed >= Duration::from_millis(2500),
        "will delay 3 s, published after {elapsed:?}"
    );
}

/// MQTT-3.1.3-9: the will goes out when the delay passes or the session ends, whichever is
/// first: Will Delay 60 s with Session Expiry 2 s publishes it when the session ends (~2 s).
#[test]
fn will_is_published_when_the_session_ends_before_the_delay() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let mut w = watcher(port, "wd/expiry");
    let (c, _, _) = Client::connect(
        port,
        &connect(&unique("wd-exp")).session_expiry(2).will(
            "wd/expiry",
            b"session ended",
            1,
            false,
            will_props(60),
        ),
    );
    let dropped = Instant::now();
    c.drop_abruptly();
    let will = w.receive(Duration::from_secs(20));
    let elapsed = dropped.elapsed();
    assert_eq!(will.payload(), Some(&b"session ended"[..]));
    assert!(
        elapsed >= Duration::from_millis(1500),
        "session expiry 2 s, will published after {elapsed:?}"
    );
}

/// Section 3.14.2.1: DISCONNECT with reason 0x04 (disconnect with will message) closes
/// cleanly and publishes the will (paho).
#[test]
fn disconnect_with_reason_0x04_publishes_the_will() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let mut w = watcher(port, "will/04");
    Paho::tcp(port)
        .id(&unique("will04"))
        .will(json!({"topic": "will/04", "payload": "bye with will", "qos": 1}))
        .step(json!({"disconnect": 4}))
        .run();
    let will = w.receive(WAIT);
    assert_eq!(will.payload(), Some(&b"bye with will"[..]));
}

/// MQTT-3.1.2-10 / section 3.14.2.1: DISCONNECT with reason 0x00 deletes the will: nothing is
/// published, also not after a will delay.
#[test]
fn normal_disconnect_discards_the_will() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let mut w = watcher(port, "will/00");
    Paho::tcp(port)
        .id(&unique("will00"))
        .connect_props(json!({"SessionExpiryInterval": 10}))
        .will(json!({"topic": "will/00", "payload": "must not", "qos": 1,
                     "props": {"WillDelayInterval": 1}}))
        .step(json!({"disconnect": 0}))
        .run();
    w.expect_silence(Duration::from_secs(4));
}

/// Section 3.1.3.2: the will's properties (payload format, content type, response topic,
/// correlation data, user properties in order) travel with it; its Message Expiry Interval
/// is sent reduced or equal; the Will Delay Interval is not a PUBLISH property and is not
/// forwarded. The will comes when paho dies without DISCONNECT.
#[test]
fn will_properties_are_forwarded() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let mut w = watcher(port, "will/props");
    let mut c = Paho::tcp(port)
        .id(&unique("willp"))
        .will(
            json!({"topic": "will/props", "payload": "{\"gone\":true}", "qos": 1,
            "props": {
               "PayloadFormatIndicator": 1,
               "ContentType": "application/json",
               "ResponseTopic": "will/reply",
               "CorrelationData": "c0ffee",
               "UserProperty": [["b", "2"], ["a", "1"], ["b", "2"]],
               "MessageExpiryInterval": 100,
            }}),
        )
        .step(json!({"mark": "connected"}))
        .step(json!({"listen": 60}))
        .spawn();
    c.wait_mark("connected", paho::RUN);
    c.kill();
    let will = w.receive(WAIT);
    let Packet::Publish { payload, props, .. } = &will else {
        unreachable!()
    };
    assert_eq!(payload, b"{\"gone\":true}");
    assert_eq!(props.get_byte(prop::PAYLOAD_FORMAT_INDICATOR), Some(1));
    assert_eq!(props.get_str(prop::CONTENT_TYPE), Some("application/json"));
    assert_eq!(props.get_str(prop::RESPONSE_TOPIC), Some("will/reply"));
    assert_eq!(
        props.get_bin(prop::CORRELATION_DATA),
        Some(&[0xc0, 0xff, 0xee][..])
    );
    let users: Vec<(String, String)> = [("b", "2"), ("a", "1"), ("b", "2")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(props.users(), users);
    let expiry = props.get_four(prop::MESSAGE_EXPIRY_INTERVAL).unwrap_or(0);
    assert!(
        (1..=100).contains(&expiry),
        "will expiry {expiry}: {props:?}"
    );
    assert_eq!(props.count(prop::WILL_DELAY_INTERVAL), 0, "{props:?}");
}

/// MQTT-3.3.2-5 for wills: a will with Message Expiry Interval 2 s, queued for an offline
/// subscriber that comes back after 5 s, is not delivered; one with 100 s is.
#[test]
fn will_message_expiry_applies_to_offline_subscribers() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let id = unique("will-offline");
    let (mut sub, _, _) = Client::connect(port, &connect(&id).session_expiry(300));
    assert_eq!(sub.subscribe(1, &[("wexp/#", 1)]), [1]);
    sub.disconnect();

    for (topic, expiry) in [("wexp/short", 2), ("wexp/long", 100)] {
        let (c, _, _) = Client::connect(
            port,
            &connect(&unique("dying")).will(
                topic,
                topic.as_bytes(),
                1,
                false,
                Props::new().four(prop::MESSAGE_EXPIRY_INTERVAL, expiry),
            ),
        );
        c.drop_abruptly();
    }
    std::thread::sleep(Duration::from_secs(5));
    let (mut sub, present, _) =
        Client::connect(port, &connect(&id).clean_start(false).session_expiry(300));
    assert!(present);
    let got = sub.receive_all(Duration::from_secs(2));
    assert_eq!(tests::v5::wire::payloads(&got), ["wexp/long"], "{got:?}");
}

/// Section 3.1.4 (non-normative note after MQTT-3.1.4-3): when a session is taken over and the
/// existing connection's Will Delay Interval is 0, its will is sent because its network
/// connection is closed; with a Will Delay (and Clean Start 0 on the new connection) it is not,
/// since a new connection to the session was made before the delay passed (MQTT-3.1.3-9).
#[test]
fn takeover_publishes_the_will_only_without_a_delay() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let mut w = watcher(port, "takeover/#");

    let id = unique("to-nodelay");
    let (mut old, _, _) = Client::connect(
        port,
        &connect(&id)
            .session_expiry(60)
            .will("takeover/now", b"no delay", 1, false, Props::new()),
    );
    let (new, present, _) =
        Client::connect(port, &connect(&id).clean_start(false).session_expiry(60));
    assert!(present);
    old.expect_disconnect(WAIT);
    let will = w.receive(WAIT);
    assert_eq!(will.payload(), Some(&b"no delay"[..]), "{will:?}");
    new.disconnect();

    let id = unique("to-delay");
    let (mut old, _, _) = Client::connect(
        port,
        &connect(&id).session_expiry(60).will(
            "takeover/later",
            b"delayed",
            1,
            false,
            will_props(2),
        ),
    );
    let (new, present, _) =
        Client::connect(port, &connect(&id).clean_start(false).session_expiry(60));
    assert!(present);
    old.expect_disconnect(WAIT);
    w.expect_silence(Duration::from_secs(5));
    new.disconnect();
}
