//! MQTT 5.0 subscription options (section 3.8.3.1) — no local, retain as published, retain
//! handling — subscription identifiers on delivery, and the reason codes of SUBACK, UNSUBACK,
//! PUBACK/PUBREC and PUBCOMP.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use tests::v5::paho::{self, json, Paho};
use tests::v5::wire::{self, prop, rc, sub_options, Client, Packet, Props, WAIT};
use tests::{unique, Bridge};

/// The messages between the mark `from` (or the start) and the mark `to`.
fn between<'a>(events: &'a [Value], from: Option<&str>, to: &str) -> Vec<&'a Value> {
    let mut on = from.is_none();
    let mut got = Vec::new();
    for e in events {
        if e["ev"] == "mark" {
            if Some(e["name"].as_str().unwrap_or_default()) == from {
                on = true;
            } else if e["name"] == to {
                return got;
            }
        } else if on && e["ev"] == "msg" {
            got.push(e);
        }
    }
    panic!("no mark {to:?} in {events:#?}");
}

fn payloads_of(msgs: &[&Value]) -> Vec<String> {
    msgs.iter()
        .map(|m| m["payload"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// MQTT-3.8.3-3: with No Local the client's own messages are not sent back to it; messages of
/// other clients are; the same client's subscription without No Local gets its own messages.
#[test]
fn no_local_suppresses_only_own_messages() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let mut me = Paho::tcp(port)
        .id(&unique("nl"))
        .step(json!({"sub": [{"filter": "nl/quiet", "qos": 1, "nl": true},
                             {"filter": "nl/echo", "qos": 1}]}))
        .step(json!({"pub": "nl/quiet", "payload": "own quiet", "qos": 1}))
        .step(json!({"pub": "nl/echo", "payload": "own echo", "qos": 1}))
        .step(json!({"mark": "published"}))
        .step(json!({"recv": 2}))
        .step(json!({"listen": 2}))
        .spawn();
    me.wait_mark("published", paho::RUN);
    Paho::tcp(port)
        .step(json!({"pub": "nl/quiet", "payload": "other", "qos": 1}))
        .run();
    let events = me.finish_ok();
    assert_eq!(paho::event(&events, "suback")["codes"], json!([1, 1]));
    let mut got = paho::payloads(&events);
    got.sort();
    assert_eq!(got, ["other", "own echo"], "{events:#?}");
}

/// MQTT-3.3.1-12 / -13: a live retained message is forwarded with RETAIN 1 under Retain As
/// Published and RETAIN 0 without it; a message published without RETAIN has RETAIN 0 either
/// way; MQTT-3.3.1-9: a retained message sent because of a new subscription has RETAIN 1 even
/// without Retain As Published.
#[test]
fn retain_as_published_keeps_the_flag_on_live_delivery() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let spawn = |rap: bool| {
        let mut c = Paho::tcp(port)
            .step(json!({"sub": [{"filter": "rap/t", "qos": 1, "rap": rap}]}))
            .step(json!({"recv": 2}))
            .step(json!({"listen": 0.5}))
            .spawn();
        c.wait_ev("suback", paho::RUN);
        c
    };
    let mut keep = spawn(true);
    let mut clear = spawn(false);
    Paho::tcp(port)
        .step(json!({"pub": "rap/t", "payload": "retained", "qos": 1, "retain": true}))
        .step(json!({"pub": "rap/t", "payload": "live", "qos": 1}))
        .run();
    let flags = |events: &[Value]| -> Vec<(String, bool)> {
        paho::messages(events)
            .iter()
            .map(|m| {
                (
                    m["payload"].as_str().unwrap().to_owned(),
                    m["retain"].as_bool().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        flags(&keep.finish_ok()),
        [("retained".to_owned(), true), ("live".to_owned(), false)],
        "retain as published"
    );
    assert_eq!(
        flags(&clear.finish_ok()),
        [("retained".to_owned(), false), ("live".to_owned(), false)],
        "without retain as published"
    );
    let late = Paho::tcp(port)
        .step(json!({"sub": [{"filter": "rap/t", "qos": 1}]}))
        .step(json!({"recv": 1}))
        .run();
    assert_eq!(
        flags(&late),
        [("retained".to_owned(), true)],
        "sent on subscribe"
    );
}

/// MQTT-3.3.1-9, -10, -11: Retain Handling 0 sends the retained message on every SUBSCRIBE
/// (re-subscribing included); 1 only when the subscription did not exist (not on a re-subscribe,
/// again after an unsubscribe); 2 never — while live messages still arrive.
#[test]
fn retain_handling_0_1_2() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let mut publisher = Client::connect_clean(port, &unique("rh-pub"));
    for n in 0..3 {
        let t = format!("rh/{n}");
        publisher.publish(&t, format!("retained {n}").as_bytes(), 1, true, n + 1);
    }
    let sub = |n: u8| json!({"sub": [{"filter": format!("rh/{n}"), "qos": 1, "rh": n}]});
    let quiet = json!({"listen": 2});
    let events = Paho::tcp(port)
        .step(sub(0))
        .step(quiet.clone())
        .step(json!({"mark": "rh0 new"}))
        .step(sub(0))
        .step(quiet.clone())
        .step(json!({"mark": "rh0 again"}))
        .step(sub(1))
        .step(quiet.clone())
        .step(json!({"mark": "rh1 new"}))
        .step(sub(1))
        .step(quiet.clone())
        .step(json!({"mark": "rh1 again"}))
        .step(json!({"unsub": ["rh/1"]}))
        .step(sub(1))
        .step(quiet.clone())
        .step(json!({"mark": "rh1 after unsubscribe"}))
        .step(sub(2))
        .step(quiet.clone())
        .step(json!({"mark": "rh2 new"}))
        .step(sub(2))
        .step(quiet.clone())
        .step(json!({"mark": "rh2 again"}))
        .step(json!({"pub": "rh/2", "payload": "live 2", "qos": 1}))
        .step(json!({"recv": 5}))
        .step(quiet.clone())
        .step(json!({"mark": "end"}))
        .run();
    let cases: [(Option<&str>, &str, &[&str]); 7] = [
        (None, "rh0 new", &["retained 0"]),
        (Some("rh0 new"), "rh0 again", &["retained 0"]),
        (Some("rh0 again"), "rh1 new", &["retained 1"]),
        (Some("rh1 new"), "rh1 again", &[]),
        (Some("rh1 again"), "rh1 after unsubscribe", &["retained 1"]),
        (Some("rh1 after unsubscribe"), "rh2 new", &[]),
        (Some("rh2 new"), "rh2 again", &[]),
    ];
    for (from, to, want) in cases {
        let got = between(&events, from, to);
        assert_eq!(payloads_of(&got), want, "{from:?} .. {to:?}: {got:?}");
        for m in got {
            assert_eq!(m["retain"], true, "{m}");
        }
    }
    let live = between(&events, Some("rh2 again"), "end");
    assert_eq!(payloads_of(&live), ["live 2"], "{live:?}");
}

/// Subscription ids seen on the messages of `topic`.
fn ids_by_copy(events: &[Value], topic: &str) -> Vec<Vec<u64>> {
    paho::messages(events)
        .iter()
        .filter(|m| m["topic"] == topic)
        .map(|m| {
            let mut ids: Vec<u64> = m["props"]["SubscriptionIdentifier"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default();
            ids.sort();
            ids
        })
        .collect()
}

/// MQTT-3.3.4-3 / -4 (section 3.8.2.1.2): a message matching two subscriptions with
/// identifiers 1 and 2 is delivered once, carrying both identifiers (one copy, as clients expect);
/// a subscription without an identifier delivers without one; a re-subscription with a new
/// identifier replaces the old one (MQTT-3.8.4-3).
#[test]
fn subscription_identifiers_are_sent_with_each_matching_subscription() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let go = std::env::temp_dir().join(unique("v5-subid-go"));
    let mut sub = Paho::tcp(port)
        .step(json!({"sub": [{"filter": "si/+", "qos": 1}], "id": 1}))
        .step(json!({"sub": [{"filter": "si/#", "qos": 1}], "id": 2}))
        .step(json!({"sub": [{"filter": "plain/#", "qos": 1}]}))
        .step(json!({"mark": "subscribed"}))
        .step(json!({"wait_file": go.to_string_lossy(), "timeout": 60}))
        .step(json!({"listen": 1}))
        .step(json!({"mark": "resubscribe"}))
        .step(json!({"sub": [{"filter": "si/+", "qos": 1}], "id": 7}))
        .step(json!({"pub": "si/y", "payload": "after", "qos": 1}))
        .step(json!({"listen": 2}))
        .spawn();
    sub.wait_mark("subscribed", paho::RUN);
    Paho::tcp(port)
        .step(json!({"pub": "si/x", "payload": "both", "qos": 1}))
        .step(json!({"pub": "plain/x", "payload": "none", "qos": 1}))
        .run();
    // Both messages are routed (queued for the subscriber) before their PUBACKs.
    std::fs::write(&go, b"").expect("create the go file");
    let events = sub.finish_ok();
    let _ = std::fs::remove_file(&go);

    let copies = ids_by_copy(&events, "si/x");
    let all: BTreeSet<u64> = copies.iter().flatten().copied().collect();
    assert_eq!(
        all,
        BTreeSet::from([1, 2]),
        "identifiers on si/x: {copies:?}"
    );
    assert_eq!(copies.len(), 1, "one copy: {copies:?}");
    assert_eq!(
        ids_by_copy(&events, "plain/x"),
        [Vec::<u64>::new()],
        "identifier on a subscription without one"
    );
    let after: BTreeSet<u64> = ids_by_copy(&events, "si/y").into_iter().flatten().collect();
    assert_eq!(
        after,
        BTreeSet::from([2, 7]),
        "after re-subscribing si/+ with id 7"
    );
}

/// Subscription identifiers are variable byte integers: 200000 (3 bytes) and 268435455 (the
/// maximum, 4 bytes) come back exactly, on the wire.
#[test]
fn large_subscription_identifiers_on_the_wire() {
    let b = Bridge::start();
    let mut c = Client::connect_clean(b.tcp_port(), &unique("sid"));
    for (pid, id, filter) in [(1, 200_000, "sid/+"), (2, 268_435_455, "sid/#")] {
        let codes = c.subscribe_with(
            pid,
            &Props::new().var(prop::SUBSCRIPTION_IDENTIFIER, id),
            &[(filter, 1)],
        );
        assert_eq!(codes, [1]);
    }
    c.publish("sid/a", b"x", 1, false, 10);
    let got = c.receive_all(Duration::from_secs(2));
    let mut ids: Vec<u32> = got
        .iter()
        .flat_map(|p| match p {
            Packet::Publish { props, .. } => props.subscription_ids(),
            _ => Vec::new(),
        })
        .collect();
    ids.sort();
    assert_eq!(ids, [200_000, 268_435_455], "{got:?}");
}

/// Section 3.9.3: one SUBSCRIBE with valid and invalid filters gets one reason code per
/// filter, in order: the granted QoS for valid ones, 0x8F (topic filter invalid) for "a/#/b",
/// "a+/b", and a shared subscription without a share name (MQTT-4.8.2-1); the connection
/// stays up and the valid subscriptions work. (A shared subscription with no filter at all,
/// `$share/g`, makes the SUBSCRIBE malformed instead: conformance.rs.)
#[test]
fn suback_has_one_reason_code_per_filter() {
    let b = Bridge::start();
    let mut c = Client::connect_clean(b.tcp_port(), &unique("suback"));
    let codes = c.subscribe(
        1,
        &[
            ("ok/0", 0),
            ("bad/#/x", 1),
            ("ok/1", 1),
            ("ok/2", 2),
            ("a+/b", 0),
            ("$share//t", 1),
        ],
    );
    assert_eq!(
        codes,
        [
            0x00,
            rc::TOPIC_FILTER_INVALID,
            0x01,
            0x02,
            rc::TOPIC_FILTER_INVALID,
            rc::TOPIC_FILTER_INVALID,
        ]
    );
    c.ping();
    c.publish("ok/2", b"works", 2, false, 5);
    assert_eq!(c.receive(WAIT).payload(), Some(&b"works"[..]));
}

/// Section 3.11.3: UNSUBACK has one reason code per filter: 0x00 for a subscription that
/// existed, 0x11 (no subscription existed) otherwise — also for one already removed.
#[test]
fn unsuback_reports_filters_that_were_not_subscribed() {
    let b = Bridge::start();
    let mut c = Client::connect_clean(b.tcp_port(), &unique("unsuback"));
    assert_eq!(c.subscribe(1, &[("have/x", 1)]), [1]);
    assert_eq!(
        c.unsubscribe(2, &["have/x", "never/x"]),
        [rc::SUCCESS, rc::NO_SUBSCRIPTION_EXISTED]
    );
    assert_eq!(c.unsubscribe(3, &["have/x"]), [rc::NO_SUBSCRIPTION_EXISTED]);
    // paho sees the same codes.
    let events = Paho::tcp(b.tcp_port())
        .step(json!({"sub": [{"filter": "p/have", "qos": 0}]}))
        .step(json!({"unsub": ["p/have", "p/never"]}))
        .run();
    assert_eq!(paho::event(&events, "unsuback")["codes"], json!([0, 0x11]));
}

/// Section 3.4.2.1 / 3.5.2.1: a QoS 1 or 2 PUBLISH that matches no subscription is
/// acknowledged with 0x10 (no matching subscribers); once a subscription matches, with 0x00.
#[test]
fn puback_and_pubrec_say_no_matching_subscribers() {
    let b = Bridge::start();
    let mut c = Client::connect_clean(b.tcp_port(), &unique("nomatch"));
    assert_eq!(
        c.publish("nm/t", b"1", 1, false, 1),
        rc::NO_MATCHING_SUBSCRIBERS
    );
    assert_eq!(
        c.publish("nm/t", b"2", 2, false, 2),
        rc::NO_MATCHING_SUBSCRIBERS
    );
    let mut s = Client::connect_clean(b.tcp_port(), &unique("nm-sub"));
    assert_eq!(s.subscribe(1, &[("nm/#", 2)]), [2]);
    assert_eq!(c.publish("nm/t", b"3", 1, false, 3), rc::SUCCESS);
    assert_eq!(c.publish("nm/t", b"4", 2, false, 4), rc::SUCCESS);
    assert_eq!(
        wire::payloads(&s.receive_all(Duration::from_secs(1))),
        ["3", "4"]
    );
}

/// Section 3.7.2.1: a PUBREL for a packet identifier the broker does not know gets PUBCOMP
/// with 0x92 (packet identifier not found); the connection stays up.
#[test]
fn pubrel_for_an_unknown_packet_id_gets_pubcomp_0x92() {
    let b = Bridge::start();
    let mut c = Client::connect_clean(b.tcp_port(), &unique("pubrel"));
    c.send_ok(&wire::pubrel(4242));
    match c.expect(WAIT) {
        Packet::Ack {
            kind: wire::PUBCOMP,
            pid: 4242,
            reason,
            ..
        } => assert_eq!(reason, rc::PACKET_IDENTIFIER_NOT_FOUND),
        other => panic!("expected PUBCOMP 4242, got {other:?}"),
    }
    c.ping();
}

/// Section 3.8.3.1 on the wire: an options byte with QoS 2, No Local, Retain As Published and
/// Retain Handling 2 is granted QoS 2, and No Local holds (the client's own message is not
/// sent back).
#[test]
fn raw_subscription_options_byte_is_honoured() {
    let b = Bridge::start();
    let mut c = Client::connect_clean(b.tcp_port(), &unique("opts"));
    let codes = c.subscribe_with(
        1,
        &Props::new(),
        &[("opt/a", sub_options(2, true, true, 2))],
    );
    assert_eq!(codes, [2]);
    c.publish("opt/a", b"self", 1, false, 2);
    c.expect_silence(Duration::from_secs(1));
}

/// MQTT-3.1.2-29: with Request Problem Information 0 the broker sends no Reason String or User
/// Property on SUBACK, UNSUBACK, PUBACK, PUBREC or PUBCOMP, even when they carry error or
/// information reason codes.
#[test]
fn request_problem_information_0_keeps_acks_bare() {
    let b = Bridge::start();
    let (mut c, _, _) = Client::connect(
        b.tcp_port(),
        &wire::connect(&unique("rpi0"))
            .props(Props::new().byte(prop::REQUEST_PROBLEM_INFORMATION, 0)),
    );
    c.send_ok(&wire::subscribe(1, &Props::new(), &[("bad/#/x", 1)]));
    c.send_ok(&wire::unsubscribe(2, &["never/x"]));
    c.send_ok(&wire::publish("rpi/t", b"x", 1, false, 3, &Props::new()));
    c.send_ok(&wire::publish("rpi/t", b"x", 2, false, 4, &Props::new()));
    c.send_ok(&wire::pubrel(999));
    let mut seen = Vec::new();
    for _ in 0..5 {
        let p = c.expect(WAIT);
        let props = match &p {
            Packet::Suback { props, .. }
            | Packet::Unsuback { props, .. }
            | Packet::Ack { props, .. } => props.clone(),
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(props.count(prop::REASON_STRING), 0, "{p:?}");
        assert_eq!(props.count(prop::USER_PROPERTY), 0, "{p:?}");
        seen.push(p);
    }
    assert!(
        seen.iter().any(
            |p| matches!(p, Packet::Suback { codes, .. } if codes == &[rc::TOPIC_FILTER_INVALID])
        ),
        "{seen:?}"
    );
}
