//! MQTT 5.0 topic aliases (section 3.3.2.3.4): defined and used by a publishing client, the
//! errors for invalid or undefined aliases, mappings that end with the connection, and the
//! aliases the broker itself gives a client that accepts them.

use std::collections::HashMap;
use std::time::Duration;

use tests::v5::paho::{self, json, Paho};
use tests::v5::wire::{self, connect, prop, rc, Client, Packet, Props, WAIT};
use tests::{unique, Bridge};

fn alias(n: u16) -> Props {
    Props::new().two(prop::TOPIC_ALIAS, n)
}

/// Section 3.3.2.3.4 / 3.3.4: paho publishes with a topic and alias 3 (defines it), with alias 3
/// only (uses it), with another topic and alias 3 (re-maps it) and alias only again: the
/// subscriber gets each message on the right topic, without the publisher's alias (aliases are
/// per connection).
#[test]
fn paho_defines_uses_and_remaps_a_topic_alias() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let mut sub = Paho::tcp(port)
        .step(json!({"sub": [{"filter": "al/#", "qos": 1}]}))
        .step(json!({"recv": 4}))
        .step(json!({"listen": 0.5}))
        .spawn();
    sub.wait_ev("suback", paho::RUN);
    let published = Paho::tcp(port)
        .step(json!({"pub": "al/t", "payload": "1", "qos": 1, "props": {"TopicAlias": 3}}))
        .step(json!({"pub": "", "payload": "2", "qos": 1, "props": {"TopicAlias": 3}}))
        .step(json!({"pub": "al/u", "payload": "3", "qos": 1, "props": {"TopicAlias": 3}}))
        .step(json!({"pub": "", "payload": "4", "qos": 1, "props": {"TopicAlias": 3}}))
        .run();
    for p in paho::events(&published, "published") {
        assert_eq!(p["rc"], 0, "{published:?}");
    }
    let events = sub.finish_ok();
    let got: Vec<(String, String)> = paho::messages(&events)
        .iter()
        .map(|m| {
            assert!(m["props"].get("TopicAlias").is_none(), "{m}");
            (
                m["raw_topic"].as_str().unwrap().to_owned(),
                m["payload"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [("al/t", "1"), ("al/t", "2"), ("al/u", "3"), ("al/u", "4")]
        .iter()
        .map(|(t, p)| (t.to_string(), p.to_string()))
        .collect();
    assert_eq!(got, want);
}

/// MQTT-3.3.2-8 / section 3.3.4: Topic Alias 0 is not permitted: DISCONNECT 0x94.
#[test]
fn topic_alias_0_gets_disconnect_0x94() {
    let b = Bridge::start();
    let mut c = Client::connect_clean(b.tcp_port(), &unique("alias0"));
    c.send(&wire::publish("a0/t", b"x", 1, false, 1, &alias(0)));
    let (reason, _) = c.expect_disconnect(WAIT);
    assert_eq!(reason, rc::TOPIC_ALIAS_INVALID);
}

/// MQTT-3.2.2-17 / section 3.3.4: the broker's Topic Alias Maximum is 64: alias 64 is accepted,
/// 65 gets DISCONNECT 0x94.
#[test]
fn topic_alias_above_the_maximum_gets_disconnect_0x94() {
    let b = Bridge::start();
    let (mut c, _, props) = Client::connect(b.tcp_port(), &connect(&unique("alias65")));
    let max = props
        .get_two(prop::TOPIC_ALIAS_MAXIMUM)
        .expect("topic alias maximum");
    assert_eq!(max, 64);
    assert_eq!(
        c.publish_with("a64/t", b"x", 1, false, 1, &alias(max)),
        rc::NO_MATCHING_SUBSCRIBERS
    );
    c.send(&wire::publish("a65/t", b"x", 1, false, 2, &alias(max + 1)));
    let (reason, _) = c.expect_disconnect(WAIT);
    assert_eq!(reason, rc::TOPIC_ALIAS_INVALID);
}

/// Section 3.3.4, case 3a: a PUBLISH with an empty topic and an alias that was never defined is
/// a Protocol Error: DISCONNECT 0x82.
#[test]
fn undefined_topic_alias_gets_disconnect_0x82() {
    let b = Bridge::start();
    let mut c = Client::connect_clean(b.tcp_port(), &unique("alias-undef"));
    c.send(&wire::publish("", b"x", 1, false, 1, &alias(5)));
    let (reason, _) = c.expect_disconnect(WAIT);
    assert_eq!(reason, rc::PROTOCOL_ERROR);
}

/// MQTT-3.3.2-7: alias mappings last only for the network connection: a client that defined
/// alias 1, reconnects (resuming its session) and uses alias 1 alone gets DISCONNECT 0x82.
#[test]
fn topic_aliases_do_not_outlive_the_connection() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let id = unique("alias-conn");
    let mut watcher = Client::connect_clean(port, &unique("alias-watch"));
    assert_eq!(watcher.subscribe(1, &[("ac/#", 1)]), [1]);

    let (mut c, _, _) = Client::connect(port, &connect(&id).session_expiry(60));
    assert_eq!(c.publish_with("ac/t", b"one", 1, false, 1, &alias(1)), 0);
    assert_eq!(c.publish_with("", b"two", 1, false, 2, &alias(1)), 0);
    c.disconnect();
    let got = watcher.receive_all(Duration::from_secs(1));
    assert_eq!(wire::payloads(&got), ["one", "two"]);

    let (mut c, present, _) =
        Client::connect(port, &connect(&id).clean_start(false).session_expiry(60));
    assert!(present);
    c.send(&wire::publish("", b"three", 1, false, 3, &alias(1)));
    let (reason, _) = c.expect_disconnect(WAIT);
    assert_eq!(reason, rc::PROTOCOL_ERROR);
    watcher.expect_silence(Duration::from_secs(1));
}

/// A paho client with Topic Alias Maximum 10 sees the right topic on every message, however
/// the broker chose to alias them (paho 2.2 hands an aliased PUBLISH to the application with an
/// empty topic and the alias in its properties; `v5_client.py` keeps the alias map, as a paho
/// application must). Neither rumqttc 0.25 (it reports the PUBLISH before resolving the alias)
/// nor libmosquitto 2.0.11 (it rejects an empty topic as a protocol error) can be used here.
#[test]
fn paho_sees_the_topic_of_every_aliased_message() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let sent = ["oa/t", "oa/t", "oa/u", "oa/t", "oa/u", "oa/u"];
    let mut sub = Paho::tcp(port)
        .connect_props(json!({"TopicAliasMaximum": 10}))
        .step(json!({"sub": [{"filter": "oa/#", "qos": 1}]}))
        .step(json!({"recv": sent.len()}))
        .step(json!({"listen": 0.5}))
        .spawn();
    sub.wait_ev("suback", paho::RUN);
    let mut publisher = Client::connect_clean(port, &unique("oa-pub"));
    for (i, t) in sent.iter().enumerate() {
        publisher.publish(t, format!("{t} {i}").as_bytes(), 1, false, i as u16 + 1);
    }
    let events = sub.finish_ok();
    let msgs = paho::messages(&events);
    let got: Vec<(String, String)> = msgs
        .iter()
        .map(|m| {
            (
                m["topic"].as_str().unwrap().to_owned(),
                m["payload"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = sent
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), format!("{t} {i}")))
        .collect();
    assert_eq!(got, want, "{events:#?}");
    let aliased = msgs.iter().filter(|m| m["raw_topic"] == "").count();
    println!(
        "{aliased} of {} messages came with an alias only",
        sent.len()
    );
}

/// MQTT-3.1.2-26 / -27 on the wire: a client with Topic Alias Maximum 2 only ever gets aliases
/// 1..=2, an empty topic only with an alias this connection already mapped, and every message
/// resolves to its own topic; a client without Topic Alias Maximum gets no alias at all.
#[test]
fn broker_aliases_respect_the_client_maximum() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let (mut aliased, _, _) = Client::connect(
        port,
        &connect(&unique("oa2")).props(Props::new().two(prop::TOPIC_ALIAS_MAXIMUM, 2)),
    );
    let mut plain = Client::connect_clean(port, &unique("oa0"));
    for c in [&mut aliased, &mut plain] {
        assert_eq!(c.subscribe(1, &[("ow/#", 1)]), [1]);
    }
    let sent = [
        "ow/1", "ow/1", "ow/2", "ow/3", "ow/3", "ow/1", "ow/2", "ow/3", "ow/4", "ow/1",
    ];
    let mut publisher = Client::connect_clean(port, &unique("ow-pub"));
    for (i, t) in sent.iter().enumerate() {
        publisher.publish(t, t.as_bytes(), 1, false, i as u16 + 1);
    }

    let mut map: HashMap<u16, String> = HashMap::new();
    let mut used_alias = 0;
    for (i, want) in sent.iter().enumerate() {
        let p = aliased.receive(WAIT);
        let Packet::Publish {
            topic,
            props,
            payload,
            ..
        } = &p
        else {
            unreachable!()
        };
        assert_eq!(payload, want.as_bytes(), "order");
        assert!(props.count(prop::TOPIC_ALIAS) <= 1, "{p:?}");
        let resolved = match props.get_two(prop::TOPIC_ALIAS) {
            Some(a) => {
                assert!((1..=2).contains(&a), "message {i}: alias {a} > maximum 2");
                used_alias += 1;
                if topic.is_empty() {
                    map.get(&a)
                        .unwrap_or_else(|| panic!("message {i}: alias {a} used before it was set"))
                        .clone()
                } else {
                    map.insert(a, topic.clone());
                    topic.clone()
                }
            }
            None => {
                assert!(!topic.is_empty(), "message {i}: empty topic without alias");
                topic.clone()
            }
        };
        assert_eq!(&resolved, want, "message {i}: {p:?}");
    }
    println!(
        "the broker sent {used_alias} of {} with an alias",
        sent.len()
    );

    for (i, want) in sent.iter().enumerate() {
        let p = plain.receive(WAIT);
        let Packet::Publish { topic, props, .. } = &p else {
            unreachable!()
        };
        assert_eq!(topic, want, "message {i}");
        assert_eq!(
            props.count(prop::TOPIC_ALIAS),
            0,
            "alias sent to a client without Topic Alias Maximum: {p:?}"
        );
    }
}

/// MQTT-3.3.2-7 from the broker's side: a QoS 1 message first sent with an alias only, not
/// acknowledged, is re-sent on the next connection (session resumed) with its topic name (or
/// an alias defined anew on that connection), never with the old connection's alias alone.
#[test]
fn resent_message_does_not_use_the_old_connection_alias() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let id = unique("alias-resend");
    let tam = |c: wire::Connect| {
        c.session_expiry(60)
            .props(Props::new().two(prop::TOPIC_ALIAS_MAXIMUM, 5))
    };
    let (mut sub, _, _) = Client::connect(port, &tam(connect(&id)).session_expiry(60));
    assert_eq!(sub.subscribe(1, &[("rs/t", 1)]), [1]);
    let mut publisher = Client::connect_clean(port, &unique("rs-pub"));
    publisher.publish("rs/t", b"one", 1, false, 1);
    publisher.publish("rs/t", b"two", 1, false, 2);
    let first = sub.receive(WAIT);
    assert_eq!(first.payload(), Some(&b"one"[..]));
    let second = sub.expect_publish(WAIT);
    assert_eq!(second.payload(), Some(&b"two"[..]));
    sub.drop_abruptly();

    let (mut sub, present, _) = Client::connect(
        port,
        &tam(connect(&id).clean_start(false)).session_expiry(60),
    );
    assert!(present);
    // "one" was acknowledged, but the PUBACK may have been lost with the abrupt close
    // (a reset discards what the broker had not read yet): then "one" is, rightly,
    // re-sent first. Either way it comes back with DUP and the topic.
    let mut again = sub.receive(WAIT);
    // An alias defined on this connection by a re-sent "one" may then stand for the topic.
    let mut defined_here = None;
    if again.payload() == Some(&b"one"[..]) {
        if let Packet::Publish { topic, props, .. } = &again {
            assert_eq!(
                topic, "rs/t",
                "the first re-send must name its topic: {again:?}"
            );
            defined_here = props.get_two(prop::TOPIC_ALIAS);
        }
        again = sub.receive(WAIT);
    }
    let Packet::Publish {
        topic,
        props,
        payload,
        dup,
        ..
    } = &again
    else {
        unreachable!()
    };
    assert_eq!(payload, b"two");
    assert!(
        *dup,
        "a re-sent PUBLISH must have DUP set (MQTT-4.4.0-1): {again:?}"
    );
    let alias = props.get_two(prop::TOPIC_ALIAS);
    assert!(
        topic == "rs/t" || (alias.is_some() && alias == defined_here),
        "re-sent with an alias of the previous connection: {again:?}"
    );
    assert!(props.count(prop::TOPIC_ALIAS) <= 1);
}
