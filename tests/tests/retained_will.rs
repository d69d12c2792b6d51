//! Retained messages and Last Will.

use std::collections::BTreeSet;
use std::time::Duration;

use rumqttc::LastWill;
use tests::rumq::{self, Mq};
use tests::wire::{self, connect, Packet, RawClient, WAIT};
use tests::{unique, Bridge};

const QUIET: Duration = Duration::from_millis(1500);

/// Fields of a PUBLISH as a tuple: (topic, payload, qos, retain).
fn fields(p: &Packet) -> (String, Vec<u8>, u8, bool) {
    match p {
        Packet::Publish {
            topic,
            payload,
            qos,
            retain,
            ..
        } => (topic.clone(), payload.clone(), *qos, *retain),
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

/// MQTT-3.3.1-5, MQTT-3.3.1-6, MQTT-3.3.1-8: a retained message is stored and sent to a new
/// subscription with RETAIN 1, at min(stored QoS, granted QoS).
#[test]
fn new_subscriber_gets_the_retained_message_with_retain_set() {
    let b = Bridge::start();
    let port = b.tcp_port();
    RawClient::connect_clean(port, "rt-pub").publish("rt/a", b"kept", 1, true, 1);

    let mut s2 = RawClient::connect_clean(port, "rt-sub2");
    assert_eq!(s2.subscribe(1, &[("rt/a", 2)]), vec![2]);
    assert_eq!(
        fields(&s2.receive(WAIT)),
        ("rt/a".into(), b"kept".to_vec(), 1, true)
    );
    s2.expect_silence(QUIET);

    let mut s0 = RawClient::connect_clean(port, "rt-sub0");
    assert_eq!(s0.subscribe(1, &[("rt/a", 0)]), vec![0]);
    assert_eq!(
        fields(&s0.receive(WAIT)),
        ("rt/a".into(), b"kept".to_vec(), 0, true)
    );
}

/// MQTT-3.3.1-9: a message published with RETAIN 1 is delivered to already-established
/// subscriptions with RETAIN 0.
#[test]
fn live_delivery_of_a_retained_publish_has_retain_0() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let mut sub = RawClient::connect_clean(port, "live-sub");
    assert_eq!(sub.subscribe(1, &[("rt/live", 1)]), vec![1]);
    RawClient::connect_clean(port, "live-pub").publish("rt/live", b"now", 1, true, 1);
    assert_eq!(
        fields(&sub.receive(WAIT)),
        ("rt/live".into(), b"now".to_vec(), 1, false)
    );
}

/// MQTT-3.3.1-5: a new retained message replaces the previous one for the topic; a new
/// subscriber gets only the latest.
#[test]
fn retained_message_is_replaced_by_the_next_one() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let mut publ = RawClient::connect_clean(port, "rep-pub");
    publ.publish("rt/rep", b"v1", 1, true, 1);
    publ.publish("rt/rep", b"v2", 2, true, 2);
    let mut sub = RawClient::connect_clean(port, "rep-sub");
    assert_eq!(sub.subscribe(1, &[("rt/rep", 2)]), vec![2]);
    assert_eq!(
        fields(&sub.receive(WAIT)),
        ("rt/rep".into(), b"v2".to_vec(), 2, true)
    );
    sub.expect_silence(QUIET);
}

/// MQTT-3.3.1-10, MQTT-3.3.1-11: a retained PUBLISH with an empty payload is delivered to
/// current subscribers as normal (RETAIN 0) and removes the retained message, so a new
/// subscriber gets nothing.
#[test]
fn empty_retained_payload_clears_the_retained_message() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let mut watcher = RawClient::connect_clean(port, "clr-watch");
    assert_eq!(watcher.subscribe(1, &[("rt/clr", 1)]), vec![1]);
    let mut publ = RawClient::connect_clean(port, "clr-pub");
    publ.publish("rt/clr", b"soon gone", 1, true, 1);
    assert_eq!(
        fields(&watcher.receive(WAIT)),
        ("rt/clr".into(), b"soon gone".to_vec(), 1, false)
    );
    publ.publish("rt/clr", b"", 1, true, 2);
    assert_eq!(
        fields(&watcher.receive(WAIT)),
        ("rt/clr".into(), Vec::new(), 1, false),
        "the clearing message is processed as normal"
    );
    let mut late = RawClient::connect_clean(port, "clr-late");
    assert_eq!(late.subscribe(1, &[("rt/clr", 1), ("rt/#", 1)]), vec![1, 1]);
    late.expect_silence(QUIET);
}

/// MQTT-3.3.1-6 with wildcards: a new wildcard subscription receives every matching retained
/// message (and only those), each with RETAIN 1.
#[test]
fn wildcard_subscription_receives_all_matching_retained_messages() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let mut publ = RawClient::connect_clean(port, "wr-pub");
    for (i, t) in ["wr/a", "wr/b", "wr/b/deep", "wx/a"].iter().enumerate() {
        publ.publish(t, t.as_bytes(), 1, true, i as u16 + 1);
    }
    let mut sub = RawClient::connect_clean(port, "wr-sub");
    assert_eq!(sub.subscribe(1, &[("wr/+", 1)]), vec![1]);
    let got: BTreeSet<(String, bool)> = sub
        .receive_until(|g| g.len() >= 2, QUIET)
        .iter()
        .map(|p| {
            let (t, _, _, r) = fields(p);
            (t, r)
        })
        .collect();
    let want: BTreeSet<(String, bool)> = [("wr/a".into(), true), ("wr/b".into(), true)].into();
    assert_eq!(got, want);
}

/// Subscribes a raw watcher to `filter` at QoS 1.
fn watcher(port: u16, id: &str, filter: &str) -> RawClient {
    let mut w = RawClient::connect_clean(port, id);
    assert_eq!(w.subscribe(1, &[(filter, 1)]), vec![1]);
    w
}

/// MQTT-3.1.2-8, 4.8 (network connection closed without DISCONNECT): the Will is published
/// with its topic, payload and QoS when the client's socket closes abnormally.
#[test]
fn will_is_published_when_the_socket_closes_without_disconnect() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let mut w = watcher(port, "will-watch", "will/#");
    let (c, _) = RawClient::connect(port, &connect("dier").will("will/dier", b"gone", 1, false));
    w.expect_silence(Duration::from_millis(500));
    c.drop_abruptly();
    assert_eq!(
        fields(&w.receive(WAIT)),
        ("will/dier".into(), b"gone".to_vec(), 1, false)
    );
    w.expect_silence(QUIET);
}

/// MQTT-3.1.2-8 with MQTT-3.1.2-24: a client that stops talking past 1.5 x keepalive is
/// disconnected and its Will is published.
#[test]
fn will_is_published_on_keepalive_timeout() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let mut w = watcher(port, "ka-watch", "will/#");
    let (mut c, _) = RawClient::connect(
        port,
        &connect("sleeper")
            .keep_alive(2)
            .will("will/sleeper", b"timed out", 0, false),
    );
    assert_eq!(
        fields(&w.receive(Duration::from_secs(15))),
        ("will/sleeper".into(), b"timed out".to_vec(), 0, false)
    );
    c.expect_closed(WAIT);
}

/// MQTT-3.1.2-10, MQTT-3.14.4-3: after a DISCONNECT the Will is discarded, never published.
#[test]
fn will_is_not_published_after_disconnect() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let mut w = watcher(port, "nw-watch", "will/#");
    let (c, _) = RawClient::connect(
        port,
        &connect("polite").will("will/polite", b"no", 1, false),
    );
    c.disconnect();
    w.expect_silence(Duration::from_secs(3));
}

/// MQTT-4.8.0-1 with MQTT-3.1.2-8: when the server closes a connection because of a protocol
/// violation (here a PUBLISH to a wildcard topic), the Will is published: only a DISCONNECT
/// discards it.
#[test]
fn will_is_published_when_the_server_closes_on_a_protocol_error() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let mut w = watcher(port, "pe-watch", "will/#");
    let (mut c, _) = RawClient::connect(
        port,
        &connect("breaker").will("will/breaker", b"broke", 1, false),
    );
    c.send(&wire::publish("will/+", b"bad", 0, false, 0));
    c.expect_closed(WAIT);
    assert_eq!(
        fields(&w.receive(WAIT)),
        ("will/breaker".into(), b"broke".to_vec(), 1, false)
    );
}

/// MQTT-3.1.2-17: a Will with Will Retain 1 is published as a retained message: a
/// subscriber arriving later gets it with RETAIN 1.
#[test]
fn retained_will_is_kept_for_later_subscribers() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let (c, _) = RawClient::connect(
        port,
        &connect("status").will("status/device", b"offline", 1, true),
    );
    c.drop_abruptly();
    // Wait until the Will has been published (a live subscriber sees it), then subscribe anew.
    let mut w = watcher(port, "rw-watch", "status/#");
    // Either the Will was already retained when `w` subscribed (RETAIN 1) or it arrives live.
    let first = w.receive(WAIT);
    assert_eq!(fields(&first).1, b"offline".to_vec());
    let mut s = RawClient::connect_clean(port, "rw-late");
    assert_eq!(s.subscribe(1, &[("status/device", 1)]), vec![1]);
    assert_eq!(
        fields(&s.receive(WAIT)),
        ("status/device".into(), b"offline".to_vec(), 1, true)
    );
}

/// MQTT-3.1.2-8 with a real client: rumqttc's Last Will is published when its connection is
/// cut without DISCONNECT, and a rumqttc subscriber receives it.
#[tokio::test]
async fn rumqttc_last_will_on_abrupt_close() {
    let b = Bridge::start();
    let mut sub = Mq::connect(rumq::options(b.tcp_port(), &unique("lw-sub"))).await;
    assert_eq!(sub.subscribe("lw/#", 1).await, Some(1));
    let mut o = rumq::options(b.tcp_port(), &unique("lw"));
    o.set_last_will(LastWill::new(
        "lw/client",
        "lost",
        rumqttc::QoS::AtLeastOnce,
        false,
    ));
    let dying = Mq::connect(o).await;
    dying.drop_abruptly().await;
    let p = sub.expect_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("lw/client", &b"lost"[..])
    );
    assert_eq!(p.qos, rumqttc::QoS::AtLeastOnce);
    sub.disconnect().await;
}

/// MQTT-3.1.2-10 with a real client: rumqttc disconnecting cleanly does not trigger its Will.
#[tokio::test]
async fn rumqttc_clean_disconnect_sends_no_will() {
    let b = Bridge::start();
    let mut sub = Mq::connect(rumq::options(b.tcp_port(), &unique("nw-sub"))).await;
    assert_eq!(sub.subscribe("nw/#", 1).await, Some(1));
    let mut o = rumq::options(b.tcp_port(), &unique("nw"));
    o.set_last_will(LastWill::new(
        "nw/client",
        "should not",
        rumqttc::QoS::AtLeastOnce,
        false,
    ));
    let polite = Mq::connect(o).await;
    polite.disconnect().await;
    sub.expect_no_publish(Duration::from_secs(3)).await;
    sub.disconnect().await;
}
