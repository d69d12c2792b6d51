//! Clean sessions vs persistent sessions (CleanSession 0): stored subscriptions, messages
//! queued while offline, the session-present flag.

use std::collections::BTreeMap;
use std::time::Duration;

use tests::rumq::{self, Mq};
use tests::wire::{connect, Packet, RawClient, WAIT};
use tests::{unique, Bridge};

const QUIET: Duration = Duration::from_millis(1500);

/// MQTT-3.1.2-4, MQTT-3.1.2-5, MQTT-3.2.2-2, MQTT-3.2.2-3, 4.1: a client with CleanSession 0
/// first gets session present 0; after it disconnects, QoS 1 and 2 messages published to its
/// subscription are stored; on reconnect it gets session present 1 and, without subscribing
/// again, receives them (at the QoS published); its subscription still works for new
/// messages.
#[test]
fn persistent_session_keeps_subscriptions_and_queues_qos1_and_qos2() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let (mut sub, sp) = RawClient::connect(port, &connect("keeper").clean(false));
    assert!(!sp, "no session yet: session present 0 (MQTT-3.2.2-3)");
    assert_eq!(sub.subscribe(1, &[("ps/t", 2)]), vec![2]);
    sub.disconnect();

    let mut publ = RawClient::connect_clean(port, "ps-pub");
    publ.publish("ps/t", b"offline-1", 1, false, 1);
    publ.publish("ps/t", b"offline-2", 2, false, 2);
    publ.publish("ps/t", b"offline-0", 0, false, 0);

    let (mut sub, sp) = RawClient::connect(port, &connect("keeper").clean(false));
    assert!(sp, "stored session: session present 1 (MQTT-3.2.2-2)");
    let mut got = BTreeMap::new();
    let has = |got: &[Packet], m: &[u8]| got.iter().any(|p| p.as_publish().unwrap().1 == m);
    let received = sub.receive_until(|g| has(g, b"offline-1") && has(g, b"offline-2"), QUIET);
    for p in received {
        let Packet::Publish {
            topic,
            payload,
            qos,
            ..
        } = p
        else {
            unreachable!()
        };
        assert_eq!(topic, "ps/t");
        let prev = got.insert(String::from_utf8(payload).unwrap(), qos);
        assert!(prev.is_none(), "duplicate delivery");
    }
    // QoS 0 messages for an offline client may or may not be queued (4.1): not checked.
    got.remove("offline-0");
    let want: BTreeMap<String, u8> = [("offline-1".to_string(), 1), ("offline-2".to_string(), 2)]
        .into_iter()
        .collect();
    assert_eq!(got, want, "messages queued while offline");

    publ.publish("ps/t", b"live", 1, false, 3);
    let p = sub.receive(WAIT);
    assert_eq!(p.as_publish(), Some(("ps/t", &b"live"[..])));
}

/// The same with rumqttc: a persistent-session rumqttc subscriber that went away gets session
/// present 1 and the QoS 1 messages published while it was offline.
#[tokio::test]
async fn rumqttc_persistent_session_receives_messages_queued_while_offline() {
    let b = Bridge::start();
    let id = unique("rps");
    let mut o = rumq::options(b.tcp_port(), &id);
    o.set_clean_session(false);
    let mut sub = Mq::connect(o.clone()).await;
    assert!(!sub.session_present());
    assert_eq!(sub.subscribe("rps/+", 1).await, Some(1));
    sub.disconnect().await;

    let mut publ = Mq::connect(rumq::options(b.tcp_port(), &unique("rps-pub"))).await;
    for i in 0..5 {
        publ.publish(&format!("rps/{i}"), 1, false, format!("m{i}").as_bytes())
            .await;
    }
    let mut sub = Mq::connect(o).await;
    assert!(sub.session_present(), "session present must be 1");
    let mut got = Vec::new();
    for _ in 0..5 {
        let p = sub.expect_publish().await;
        got.push(String::from_utf8_lossy(&p.payload).into_owned());
    }
    got.sort();
    assert_eq!(got, ["m0", "m1", "m2", "m3", "m4"]);
    sub.expect_no_publish(QUIET).await;
    sub.disconnect().await;
}

/// MQTT-3.1.2-6, MQTT-3.2.2-1: reconnecting with CleanSession 1 discards the stored session:
/// session present 0, no queued messages, no old subscriptions. And since a clean session
/// ends with its connection, a later CleanSession 0 connect also finds no session.
#[test]
fn clean_session_reconnect_discards_the_old_session() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let (mut sub, _) = RawClient::connect(port, &connect("wiper").clean(false));
    assert_eq!(sub.subscribe(1, &[("cs/t", 1)]), vec![1]);
    sub.disconnect();
    let mut publ = RawClient::connect_clean(port, "cs-pub");
    publ.publish("cs/t", b"queued", 1, false, 1);

    let (mut sub, sp) = RawClient::connect(port, &connect("wiper").clean(true));
    assert!(!sp, "clean session: session present 0");
    sub.expect_silence(QUIET);
    publ.publish("cs/t", b"after-clean", 1, false, 2);
    sub.expect_silence(QUIET);
    sub.disconnect();

    let (mut sub, sp) = RawClient::connect(port, &connect("wiper").clean(false));
    assert!(
        !sp,
        "clean session ended with its connection: session present 0"
    );
    publ.publish("cs/t", b"after-clean-2", 1, false, 3);
    sub.expect_silence(QUIET);
}

/// MQTT-3.1.4-2 with MQTT-3.1.2-4: when a persistent session is taken over by a new
/// connection, the session (subscriptions included) continues on the new connection, which
/// gets session present 1.
#[test]
fn takeover_of_a_persistent_session_keeps_its_subscriptions() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let (mut old, _) = RawClient::connect(port, &connect("handover").clean(false));
    assert_eq!(old.subscribe(1, &[("ho/t", 1)]), vec![1]);
    let (mut new, sp) = RawClient::connect(port, &connect("handover").clean(false));
    assert!(sp, "session present 1 on takeover of a stored session");
    old.expect_closed(WAIT);
    RawClient::connect_clean(port, "ho-pub").publish("ho/t", b"to-new", 1, false, 1);
    let p = new.receive(WAIT);
    assert_eq!(p.as_publish(), Some(("ho/t", &b"to-new"[..])));
}

/// MQTT-3.1.2-4, MQTT-4.4.0-1: messages queued for an offline persistent session that
/// exceed one in-flight window are all delivered, in order per topic, after reconnect.
#[test]
fn many_queued_messages_are_delivered_in_order_after_reconnect() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let (mut sub, _) = RawClient::connect(port, &connect("backlog").clean(false));
    assert_eq!(sub.subscribe(1, &[("bl/t", 1)]), vec![1]);
    sub.disconnect();
    let mut publ = RawClient::connect_clean(port, "bl-pub");
    const N: u16 = 100;
    for i in 0..N {
        publ.publish("bl/t", format!("{i}").as_bytes(), 1, false, i + 1);
    }
    let (mut sub, sp) = RawClient::connect(port, &connect("backlog").clean(false));
    assert!(sp);
    let got: Vec<u16> = sub
        .receive_until(|g| g.len() >= N as usize, QUIET)
        .iter()
        .map(|p| {
            std::str::from_utf8(p.as_publish().unwrap().1)
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(got, (0..N).collect::<Vec<_>>());
}
