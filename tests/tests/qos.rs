//! QoS 0/1/2 flows in both directions, SUBACK granted QoS, downgrade, ordering, and QoS 2
//! exactly-once delivery across reconnects.

use std::collections::BTreeMap;
use std::time::Duration;

use tests::rumq::{self, Mq};
use tests::wire::{self, connect, Packet, RawClient, WAIT};
use tests::{unique, Bridge};

/// How long to listen for a duplicate that must not come.
const QUIET: Duration = Duration::from_millis(1500);

/// 4.3.1, 4.3.2, 4.3.3: rumqttc publishes at QoS 0, 1 and 2 to a rumqttc subscriber granted
/// QoS 2; each message arrives once, with the QoS it was published at, and the publisher's
/// QoS 1/2 flows complete (PUBACK, PUBCOMP).
#[tokio::test]
async fn rumqttc_round_trip_at_each_qos() {
    let b = Bridge::start();
    let mut sub = Mq::connect(rumq::options(b.tcp_port(), &unique("sub"))).await;
    assert_eq!(sub.subscribe("qos/rt", 2).await, Some(2));
    let mut publ = Mq::connect(rumq::options(b.tcp_port(), &unique("pub"))).await;
    for q in 0..=2u8 {
        publ.publish("qos/rt", q, false, format!("q{q}").as_bytes())
            .await;
    }
    let mut got = BTreeMap::new();
    for _ in 0..3 {
        let p = sub.expect_publish().await;
        assert_eq!(p.topic, "qos/rt");
        let prev = got.insert(
            String::from_utf8_lossy(&p.payload).into_owned(),
            rumq::qos_num(p.qos),
        );
        assert!(prev.is_none(), "duplicate delivery of {p:?}");
    }
    let want: BTreeMap<String, u8> = (0..=2u8).map(|q| (format!("q{q}"), q)).collect();
    assert_eq!(got, want);
    sub.expect_no_publish(QUIET).await;
    publ.disconnect().await;
    sub.disconnect().await;
}

/// MQTT-3.3.4-1, MQTT-2.3.1-6 (PUBACK carries the PUBLISH's packet id), MQTT-2.3.1-1
/// (non-zero id on delivery), 4.3.2: a QoS 1 PUBLISH is acknowledged and delivered at QoS 1
/// with DUP 0; once acknowledged it is not sent again.
#[test]
fn raw_qos1_flow_in_both_directions() {
    let b = Bridge::start();
    let mut sub = RawClient::connect_clean(b.tcp_port(), "q1sub");
    assert_eq!(sub.subscribe(1, &[("q1/t", 1)]), vec![1]);
    let mut publ = RawClient::connect_clean(b.tcp_port(), "q1pub");
    publ.send_ok(&wire::publish("q1/t", b"one", 1, false, 0x1234));
    assert_eq!(publ.expect(WAIT), Packet::Puback(0x1234));
    match sub.expect_publish(WAIT) {
        Packet::Publish {
            dup,
            qos,
            retain,
            topic,
            pid,
            payload,
        } => {
            assert_eq!((dup, qos, retain), (false, 1, false));
            assert_eq!((topic.as_str(), &payload[..]), ("q1/t", &b"one"[..]));
            let pid = pid.expect("QoS 1 PUBLISH has a packet id");
            assert_ne!(pid, 0, "packet id 0 is not allowed");
            sub.send_ok(&wire::puback(pid));
        }
        _ => unreachable!(),
    }
    sub.expect_silence(QUIET);
}

/// MQTT-3.3.4-1, MQTT-3.6.1-1 (PUBREL flags 0b0010), 4.3.3: the QoS 2 handshake in both
/// directions: publisher gets PUBREC/PUBCOMP with its packet id; subscriber gets the PUBLISH
/// at QoS 2, then PUBREL after its PUBREC, and nothing more after its PUBCOMP.
#[test]
fn raw_qos2_flow_in_both_directions() {
    let b = Bridge::start();
    let mut sub = RawClient::connect_clean(b.tcp_port(), "q2sub");
    assert_eq!(sub.subscribe(1, &[("q2/t", 2)]), vec![2]);
    let mut publ = RawClient::connect_clean(b.tcp_port(), "q2pub");
    publ.send_ok(&wire::publish("q2/t", b"two", 2, false, 77));
    assert_eq!(publ.expect(WAIT), Packet::Pubrec(77));
    publ.send_ok(&wire::pubrel(77));
    assert_eq!(publ.expect(WAIT), Packet::Pubcomp(77));

    let pid = match sub.expect_publish(WAIT) {
        Packet::Publish {
            dup,
            qos,
            topic,
            pid,
            payload,
            ..
        } => {
            assert_eq!((dup, qos), (false, 2));
            assert_eq!((topic.as_str(), &payload[..]), ("q2/t", &b"two"[..]));
            pid.expect("QoS 2 PUBLISH has a packet id")
        }
        _ => unreachable!(),
    };
    assert_ne!(pid, 0);
    sub.send_ok(&wire::pubrec(pid));
    assert_eq!(sub.expect(WAIT), Packet::Pubrel { pid, flags: 2 });
    sub.send_ok(&wire::pubcomp(pid));
    sub.expect_silence(QUIET);
    publ.expect_silence(Duration::from_millis(100));
}

/// MQTT-3.8.4-5, MQTT-3.9.3-1: the SUBACK carries one return code per filter, in order, and
/// each is the requested QoS (the broker supports QoS 2, so it grants what is asked).
#[test]
fn suback_grants_the_requested_qos() {
    let b = Bridge::start();
    let mut c = RawClient::connect_clean(b.tcp_port(), "granted");
    c.send_ok(&wire::subscribe(
        0x0A0B,
        &[("g/two", 2), ("g/zero", 0), ("g/one", 1), ("g/#", 2)],
    ));
    assert_eq!(
        c.expect(WAIT),
        Packet::Suback {
            pid: 0x0A0B,
            codes: vec![2, 0, 1, 2]
        }
    );
}

/// MQTT-3.8.4-6, 4.3 (downgrade): the delivered QoS is min(published QoS, granted QoS) —
/// subscribers granted 0, 1 and 2 each receive messages published at 0, 1 and 2.
#[tokio::test]
async fn delivered_qos_is_min_of_published_and_granted() {
    let b = Bridge::start();
    let mut subs = Vec::new();
    for g in 0..=2u8 {
        let mut s = Mq::connect(rumq::options(b.tcp_port(), &unique(&format!("g{g}")))).await;
        assert_eq!(s.subscribe("dg/t", g).await, Some(g), "granted QoS");
        subs.push((g, s));
    }
    let mut publ = Mq::connect(rumq::options(b.tcp_port(), &unique("dgpub"))).await;
    for q in 0..=2u8 {
        publ.publish("dg/t", q, false, &[q]).await;
    }
    for (g, s) in subs.iter_mut() {
        let mut seen = BTreeMap::new();
        for _ in 0..3 {
            let p = s.expect_publish().await;
            let published = p.payload[0];
            assert!(
                seen.insert(published, rumq::qos_num(p.qos)).is_none(),
                "granted {g}: duplicate {p:?}"
            );
        }
        let want: BTreeMap<u8, u8> = (0..=2u8).map(|q| (q, q.min(*g))).collect();
        assert_eq!(
            seen, want,
            "subscriber granted {g}: published QoS -> delivered QoS"
        );
    }
}

/// MQTT-4.6.0-6 (ordered topic): 40 QoS 1 and 40 QoS 2 messages published on one topic
/// reach the subscriber each in publish order.
#[tokio::test]
async fn messages_on_one_topic_arrive_in_publish_order() {
    let b = Bridge::start();
    let mut sub = Mq::connect(rumq::options(b.tcp_port(), &unique("ord-sub"))).await;
    assert_eq!(sub.subscribe("ord/t", 2).await, Some(2));
    let publ = Mq::connect(rumq::options(b.tcp_port(), &unique("ord-pub"))).await;
    const N: usize = 40;
    for q in [1u8, 2] {
        for i in 0..N {
            publ.client
                .publish("ord/t", rumq::qos(q), false, format!("{q}:{i}"))
                .await
                .expect("queue publish");
        }
    }
    let mut got: BTreeMap<u8, Vec<usize>> = BTreeMap::new();
    for _ in 0..2 * N {
        let p = sub.expect_publish().await;
        let s = String::from_utf8_lossy(&p.payload).into_owned();
        let (q, i) = s.split_once(':').expect("payload q:i");
        got.entry(q.parse().unwrap())
            .or_default()
            .push(i.parse().unwrap());
    }
    let want: Vec<usize> = (0..N).collect();
    assert_eq!(got.get(&1), Some(&want), "QoS 1 order");
    assert_eq!(got.get(&2), Some(&want), "QoS 2 order");
}

/// Connects `id` with CleanSession 0 and subscribes it to `topic` at `qos`.
fn persistent_subscriber(port: u16, id: &str, topic: &str, qos: u8) -> RawClient {
    let (mut c, sp) = RawClient::connect(port, &connect(id).clean(false));
    assert!(!sp, "first connect of `{id}`: session present must be 0");
    assert_eq!(c.subscribe(1, &[(topic, qos)]), vec![qos]);
    c
}

/// Reconnects `id` with CleanSession 0 and asserts the session was resumed.
fn resume(port: u16, id: &str) -> RawClient {
    let (c, sp) = RawClient::connect(port, &connect(id).clean(false));
    assert!(
        sp,
        "reconnect of `{id}`: session present must be 1 (MQTT-3.2.2-2)"
    );
    c
}

/// MQTT-4.4.0-1, 4.3.3: a QoS 2 subscriber with a persistent session receives the PUBLISH,
/// sends PUBREC, gets PUBREL, then drops the connection before PUBCOMP. On reconnect the
/// server re-sends the PUBREL with the original packet id (not the PUBLISH), and after PUBCOMP
/// the message is never delivered again: the application saw it exactly once.
#[test]
fn qos2_pubrel_is_resent_after_reconnect_and_message_delivered_once() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let mut sub = persistent_subscriber(port, "eo-rel", "eo/rel", 2);
    RawClient::connect_clean(port, "eo-pub1").publish("eo/rel", b"once", 2, false, 1);

    let p = sub.expect_publish(WAIT);
    let Packet::Publish {
        qos: 2,
        pid: Some(pid),
        ref payload,
        ..
    } = p
    else {
        panic!("expected QoS 2 PUBLISH, got {p:?}");
    };
    assert_eq!(payload, b"once");
    let mut deliveries = 1;
    sub.send_ok(&wire::pubrec(pid));
    assert_eq!(sub.expect(WAIT), Packet::Pubrel { pid, flags: 2 });
    sub.drop_abruptly(); // no PUBCOMP

    let mut sub = resume(port, "eo-rel");
    match sub.expect(WAIT) {
        Packet::Pubrel { pid: p2, flags: 2 } => assert_eq!(p2, pid, "PUBREL keeps the id"),
        Packet::Publish { .. } => panic!("PUBLISH re-sent after PUBREC: would deliver twice"),
        other => panic!("expected the PUBREL to be re-sent, got {other:?}"),
    }
    sub.send_ok(&wire::pubcomp(pid));
    for p in sub.receive_all(QUIET, 10) {
        if p.as_publish().map(|(_, pl)| pl) == Some(b"once") {
            deliveries += 1;
        }
    }
    assert_eq!(deliveries, 1, "message must be delivered exactly once");
}

/// MQTT-4.4.0-1, MQTT-3.3.1-1 (DUP 1 on re-delivery), 4.3.3: a QoS 2 PUBLISH the subscriber
/// never acknowledged is re-sent after a persistent-session reconnect, with DUP 1 and the same
/// packet id; once PUBREC/PUBREL/PUBCOMP complete, it is not sent again.
#[test]
fn qos2_unacknowledged_publish_is_resent_with_dup_after_reconnect() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let mut sub = persistent_subscriber(port, "eo-pub", "eo/pub", 2);
    RawClient::connect_clean(port, "eo-pub2").publish("eo/pub", b"twice?", 2, false, 1);

    let first = sub.expect_publish(WAIT);
    let Packet::Publish {
        qos: 2,
        pid: Some(pid),
        dup: false,
        ..
    } = first
    else {
        panic!("expected QoS 2 PUBLISH with DUP 0, got {first:?}");
    };
    sub.drop_abruptly(); // no PUBREC: the application never accepted it

    let mut sub = resume(port, "eo-pub");
    match sub.expect_publish(WAIT) {
        Packet::Publish {
            dup,
            qos,
            pid: p2,
            topic,
            payload,
            ..
        } => {
            assert!(dup, "re-delivered PUBLISH must have DUP 1");
            assert_eq!(qos, 2);
            assert_eq!(p2, Some(pid), "re-delivery keeps the packet id");
            assert_eq!((topic.as_str(), &payload[..]), ("eo/pub", &b"twice?"[..]));
        }
        _ => unreachable!(),
    }
    sub.send_ok(&wire::pubrec(pid));
    assert_eq!(sub.expect(WAIT), Packet::Pubrel { pid, flags: 2 });
    sub.send_ok(&wire::pubcomp(pid));
    let again = sub.receive_all(QUIET, 10);
    assert!(again.is_empty(), "delivered again after PUBCOMP: {again:?}");
}

/// MQTT-4.4.0-1, MQTT-3.3.1-1: an unacknowledged QoS 1 PUBLISH is re-sent with DUP 1 and the
/// same packet id after a persistent-session reconnect, and not again once PUBACKed.
#[test]
fn qos1_unacknowledged_publish_is_resent_with_dup_after_reconnect() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let mut sub = persistent_subscriber(port, "al-once", "al/t", 1);
    RawClient::connect_clean(port, "al-pub").publish("al/t", b"m", 1, false, 1);
    let first = sub.expect_publish(WAIT);
    let Packet::Publish {
        qos: 1,
        pid: Some(pid),
        dup: false,
        ..
    } = first
    else {
        panic!("expected QoS 1 PUBLISH with DUP 0, got {first:?}");
    };
    sub.drop_abruptly();

    let mut sub = resume(port, "al-once");
    match sub.expect_publish(WAIT) {
        Packet::Publish {
            dup, pid: p2, qos, ..
        } => {
            assert!(dup, "re-delivered PUBLISH must have DUP 1");
            assert_eq!((qos, p2), (1, Some(pid)));
        }
        _ => unreachable!(),
    }
    sub.send_ok(&wire::puback(pid));
    let again = sub.receive_all(QUIET, 10);
    assert!(again.is_empty(), "delivered again after PUBACK: {again:?}");
}

/// Counts deliveries of `payload` to a QoS 0 subscriber until it has been quiet for a while.
fn count_deliveries(sub: &mut RawClient, payload: &[u8]) -> usize {
    let is_it = |p: &Packet| p.as_publish().map(|(_, pl)| pl) == Some(payload);
    sub.receive_until(|got| got.iter().any(is_it), QUIET)
        .iter()
        .filter(|p| is_it(p))
        .count()
}

/// MQTT-4.3.3-2: until it has received the PUBREL, the server acknowledges a re-sent QoS 2
/// PUBLISH (DUP 1, same packet id) with PUBREC again and does not deliver the message twice.
#[test]
fn qos2_publish_retransmitted_by_sender_is_delivered_once() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let mut sub = RawClient::connect_clean(port, "dd-sub");
    assert_eq!(sub.subscribe(1, &[("dd/t", 0)]), vec![0]);
    let mut publ = RawClient::connect_clean(port, "dd-pub");
    publ.send_ok(&wire::publish("dd/t", b"dedupe", 2, false, 9));
    assert_eq!(publ.expect(WAIT), Packet::Pubrec(9));
    publ.send_ok(&wire::publish_raw(b"dd/t", b"dedupe", 2, false, true, 9));
    assert_eq!(publ.expect(WAIT), Packet::Pubrec(9), "PUBREC again for DUP");
    publ.send_ok(&wire::pubrel(9));
    assert_eq!(publ.expect(WAIT), Packet::Pubcomp(9));
    assert_eq!(count_deliveries(&mut sub, b"dedupe"), 1);
}

/// 4.1 (server session state holds incoming QoS 2 messages not completely acknowledged),
/// MQTT-4.4.0-1: a publisher with a persistent session gets PUBREC, loses the connection,
/// reconnects and sends PUBREL: the server answers PUBCOMP and subscribers get the message
/// exactly once.
#[test]
fn qos2_publisher_pubrel_after_reconnect_completes_once() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let mut sub = RawClient::connect_clean(port, "pr-sub");
    assert_eq!(sub.subscribe(1, &[("pr/t", 0)]), vec![0]);
    let (mut publ, _) = RawClient::connect(port, &connect("pr-pub").clean(false));
    publ.send_ok(&wire::publish("pr/t", b"across", 2, false, 300));
    assert_eq!(publ.expect(WAIT), Packet::Pubrec(300));
    publ.drop_abruptly();
    let mut publ = resume(port, "pr-pub");
    publ.send_ok(&wire::pubrel(300));
    assert_eq!(publ.expect(WAIT), Packet::Pubcomp(300));
    assert_eq!(count_deliveries(&mut sub, b"across"), 1);
}

/// MQTT-4.3.3-2 with 4.1 across a reconnect: a publisher with a persistent session re-sends an
/// unreleased QoS 2 PUBLISH (DUP 1, same id) after reconnecting; the server answers PUBREC
/// and the message still reaches subscribers exactly once.
#[test]
fn qos2_publisher_dup_resend_after_reconnect_is_delivered_once() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let mut sub = RawClient::connect_clean(port, "rs-sub");
    assert_eq!(sub.subscribe(1, &[("rs/t", 0)]), vec![0]);
    let (mut publ, _) = RawClient::connect(port, &connect("rs-pub").clean(false));
    publ.send_ok(&wire::publish("rs/t", b"resent", 2, false, 301));
    assert_eq!(publ.expect(WAIT), Packet::Pubrec(301));
    publ.drop_abruptly();
    let mut publ = resume(port, "rs-pub");
    publ.send_ok(&wire::publish_raw(b"rs/t", b"resent", 2, false, true, 301));
    assert_eq!(publ.expect(WAIT), Packet::Pubrec(301));
    publ.send_ok(&wire::pubrel(301));
    assert_eq!(publ.expect(WAIT), Packet::Pubcomp(301));
    assert_eq!(count_deliveries(&mut sub, b"resent"), 1);
}

/// 4.3.3 with a real client under manual acks: rumqttc (clean session 0, manual acks) gets a
/// QoS 2 message, is cut off before acknowledging it, and on reconnect gets it again with DUP
/// 1; acknowledging it then completes the flow and it is not delivered a third time.
#[tokio::test]
async fn rumqttc_qos2_redelivery_after_reconnect() {
    let b = Bridge::start();
    let id = unique("rq2");
    let mut o = rumq::options(b.tcp_port(), &id);
    o.set_clean_session(false).set_manual_acks(true);
    let mut sub = Mq::connect(o.clone()).await;
    assert_eq!(sub.subscribe("rq2/t", 2).await, Some(2));
    let mut publ = Mq::connect(rumq::options(b.tcp_port(), &unique("rq2pub"))).await;
    publ.publish("rq2/t", 2, false, b"exactly").await;
    let p = sub.expect_publish().await;
    assert_eq!(&p.payload[..], b"exactly");
    assert!(!p.dup);
    sub.drop_abruptly().await;

    let mut sub = Mq::connect(o).await;
    assert!(sub.session_present(), "session present must be 1");
    let p = sub.expect_publish().await;
    assert_eq!(&p.payload[..], b"exactly");
    assert!(p.dup, "re-delivery has DUP 1");
    sub.client.ack(&p).await.expect("ack");
    sub.wait_for("PUBREL", |p| matches!(p, rumqttc::Packet::PubRel(_)))
        .await;
    sub.expect_no_publish(QUIET).await;
    sub.disconnect().await;
}

/// MQTT-3.3.4-1: the sender's QoS flow completes whether or not anyone is subscribed (PUBACK,
/// PUBREC/PUBCOMP with the packet ids used).
#[test]
fn publishes_are_acknowledged_without_subscribers() {
    let b = Bridge::start();
    let mut c = RawClient::connect_clean(b.tcp_port(), "lonely");
    c.publish("nobody/listens", b"1", 1, false, 11);
    c.publish("nobody/listens", b"2", 2, false, 12);
    c.publish("nobody/listens", b"3", 2, true, 13);
    c.ping();
}

/// Fan-out: 20 subscribers on one filter each receive all 20 QoS 1 messages of a publisher,
/// each exactly once and in order (MQTT-4.6.0-6 per subscriber).
#[tokio::test]
async fn fan_out_to_many_subscribers() {
    let b = Bridge::start();
    const SUBS: usize = 20;
    const MSGS: usize = 20;
    let mut subs = Vec::new();
    for i in 0..SUBS {
        let mut s = Mq::connect(rumq::options(b.tcp_port(), &unique(&format!("fan{i}")))).await;
        assert_eq!(s.subscribe("fan/#", 1).await, Some(1));
        subs.push(s);
    }
    let publ = Mq::connect(rumq::options(b.tcp_port(), &unique("fanpub"))).await;
    for i in 0..MSGS {
        publ.client
            .publish("fan/x", rumq::qos(1), false, i.to_string())
            .await
            .expect("queue publish");
    }
    for (n, s) in subs.iter_mut().enumerate() {
        let mut got = Vec::new();
        for _ in 0..MSGS {
            let p = s.expect_publish().await;
            got.push(
                String::from_utf8_lossy(&p.payload)
                    .parse::<usize>()
                    .unwrap(),
            );
        }
        assert_eq!(got, (0..MSGS).collect::<Vec<_>>(), "subscriber {n}");
        s.expect_no_publish(Duration::from_millis(300)).await;
    }
}
