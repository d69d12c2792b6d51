//! Topic filters: `+`, `#`, `$` topics, empty levels; re-subscribing and UNSUBSCRIBE.

use std::collections::BTreeMap;
use std::time::Duration;

use tests::rumq::{self, Mq};
use tests::wire::{self, Packet, RawClient, WAIT};
use tests::{unique, Bridge};

const QUIET: Duration = Duration::from_millis(1500);

/// Subscribes one fresh client to `filter`, publishes every topic in `matching` and
/// `not_matching` (payload = topic) from another client, and asserts the subscriber received
/// exactly the `matching` ones, each once.
fn check_filter(port: u16, filter: &str, matching: &[&str], not_matching: &[&str]) {
    let mut sub = RawClient::connect_clean(port, &unique("wsub"));
    assert_eq!(
        sub.subscribe(1, &[(filter, 1)]),
        vec![1],
        "SUBACK for `{filter}`"
    );
    let mut publ = RawClient::connect_clean(port, &unique("wpub"));
    for (i, t) in matching.iter().chain(not_matching).enumerate() {
        publ.publish(t, t.as_bytes(), 1, false, i as u16 + 1);
    }
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    let all_seen = |got: &[Packet]| {
        matching.iter().all(|t| {
            got.iter()
                .any(|p| p.as_publish().map(|(topic, _)| topic) == Some(*t))
        })
    };
    for p in sub.receive_until(all_seen, QUIET) {
        let (topic, payload) = p.as_publish().unwrap();
        if !matching.contains(&topic) && !not_matching.contains(&topic) {
            // The broker's own messages (e.g. `$SYS/...` statistics) are not ours to judge.
            continue;
        }
        assert_eq!(topic.as_bytes(), payload, "topic name delivered unchanged");
        *got.entry(topic.to_string()).or_default() += 1;
    }
    let want: BTreeMap<String, usize> = matching.iter().map(|t| (t.to_string(), 1)).collect();
    assert_eq!(
        got, want,
        "filter `{filter}`: topics received (each must be exactly once); should not match: {not_matching:?}"
    );
    sub.disconnect();
    publ.disconnect();
}

/// 4.7.1.3 (`+` matches exactly one level, including an empty one; MQTT-4.7.1-3).
#[test]
fn plus_matches_exactly_one_level() {
    let b = Bridge::start();
    check_filter(
        b.tcp_port(),
        "sport/tennis/+",
        &[
            "sport/tennis/player1",
            "sport/tennis/player2",
            "sport/tennis/",
        ],
        &[
            "sport/tennis/player1/ranking",
            "sport/tennis",
            "sport/tennisx/p",
            "sport",
        ],
    );
    check_filter(
        b.tcp_port(),
        "sport/+",
        &["sport/", "sport/x"],
        &["sport", "sport/x/y"],
    );
    check_filter(b.tcp_port(), "+", &["a", "bcd"], &["a/b", "/a", "/"]);
    check_filter(
        b.tcp_port(),
        "+/+/c",
        &["a/b/c", "//c", "x/y/c"],
        &["a/b/c/d", "a/c", "a/b/cc"],
    );
}

/// 4.7.1.2, MQTT-4.7.1-2: `#` matches the parent level and any number of child levels.
#[test]
fn hash_matches_the_parent_and_all_children() {
    let b = Bridge::start();
    check_filter(
        b.tcp_port(),
        "sport/#",
        &[
            "sport",
            "sport/",
            "sport/tennis",
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
        ],
        &["sports", "sportx/tennis", "other/sport"],
    );
    check_filter(
        b.tcp_port(),
        "a/+/#",
        &["a/b", "a/b/c", "a/b/c/d", "a//"],
        &["a", "b/a/c"],
    );
}

/// MQTT-4.7.2-1, 4.7.2: `#` and filters starting with `+` do not match topics starting with
/// `$`; MQTT-4.7.3-1 aside, everything else is matched by `#`.
#[test]
fn leading_wildcards_do_not_match_dollar_topics() {
    let b = Bridge::start();
    check_filter(
        b.tcp_port(),
        "#",
        &["a", "a/b", "/x", "x$y"],
        &["$SYS/e2e/x", "$SYS", "$app/status"],
    );
    check_filter(
        b.tcp_port(),
        "+/monitor/Clients",
        &["x/monitor/Clients"],
        &["$SYS/monitor/Clients"],
    );
}

/// 4.7.2: a filter whose first level is a `$` level matches `$` topics, with `+` and `#`
/// working as usual after it.
#[test]
fn dollar_filters_match_dollar_topics() {
    let b = Bridge::start();
    check_filter(
        b.tcp_port(),
        "$app/+",
        &["$app/status", "$app/"],
        &["app/status", "$app/status/x", "$apps/status"],
    );
    check_filter(
        b.tcp_port(),
        "$app/#",
        &["$app", "$app/status/x"],
        &["app/x", "x/$app"],
    );
}

/// 4.7.2: `$SYS/#` matches `$SYS` topics: the broker's own (clients may not publish there
/// since issue 12; `hardening::clients_cannot_publish_under_sys`), and not `SYS/...` or
/// `x/$SYS/...`, which clients publish.
#[test]
fn sys_filter_matches_sys_topics() {
    let b = Bridge::start_with(&["--sys-interval", "1"]);
    let mut publ = RawClient::connect_clean(b.tcp_port(), &unique("wpub"));
    publ.publish("SYS/e2e", b"x", 1, true, 1);
    publ.publish("x/$SYS/e2e", b"x", 1, true, 2);
    // The broker's `$SYS` values are retained: a new `$SYS/#` subscriber gets them all.
    let lines = tests::procs::mosquitto_sub_lines(&b, &["-t", "$SYS/#", "-F", "%t", "-W", "3"]);
    let topics: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert!(topics.contains(&"$SYS/broker/version"), "{topics:?}");
    assert!(topics.iter().all(|t| t.starts_with("$SYS/")), "{topics:?}");
    publ.disconnect();
}

/// 4.7.1, 4.7.3 (empty levels are legal; `/` separates levels, so `a//b` has three levels and
/// `/` has two empty ones).
#[test]
fn empty_levels_are_legal_and_matched_exactly() {
    let b = Bridge::start();
    check_filter(b.tcp_port(), "a//b", &["a//b"], &["a/b", "a///b", "a/x/b"]);
    check_filter(
        b.tcp_port(),
        "+/+",
        &["/", "/x", "x/"],
        &["x", "/x/y", "//"],
    );
    check_filter(b.tcp_port(), "/#", &["/", "/x", "/x/y"], &["x", "x/"]);
    check_filter(b.tcp_port(), "/", &["/"], &["//", "x/", "/x"]);
}

/// 4.7.3: topic names and filters are case sensitive and may contain spaces.
#[test]
fn matching_is_case_sensitive_and_allows_spaces() {
    let b = Bridge::start();
    check_filter(
        b.tcp_port(),
        "Sport/+",
        &["Sport/Tennis", "Sport/a b"],
        &["sport/Tennis", "SPORT/x"],
    );
    check_filter(b.tcp_port(), "a b/#", &["a b", "a b/c d"], &["ab", "a  b"]);
}

/// MQTT-3.8.4-3: a SUBSCRIBE for a filter identical to an existing subscription replaces it
/// (new QoS applies) and messages are not delivered twice.
#[test]
fn resubscribing_replaces_the_subscription() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let mut sub = RawClient::connect_clean(port, "resub");
    assert_eq!(sub.subscribe(1, &[("rs/t", 0)]), vec![0]);
    assert_eq!(sub.subscribe(2, &[("rs/t", 2)]), vec![2]);
    RawClient::connect_clean(port, "resub-pub").publish("rs/t", b"x", 2, false, 1);
    let got = sub.receive_until(|g| !g.is_empty(), QUIET);
    assert_eq!(got.len(), 1, "exactly one delivery: {got:?}");
    let Packet::Publish { qos, .. } = &got[0] else {
        unreachable!()
    };
    assert_eq!(*qos, 2, "the replacing subscription's QoS applies");
}

/// MQTT-3.10.4-1, MQTT-3.10.4-2, MQTT-3.10.4-4, MQTT-3.10.4-5: UNSUBSCRIBE is answered with
/// UNSUBACK carrying the same packet id (also for a filter that was never subscribed), and
/// delivery for the removed filter stops; an overlapping filter that was not removed still
/// delivers.
#[test]
fn unsubscribe_stops_delivery() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let mut sub = RawClient::connect_clean(port, "unsub");
    assert_eq!(sub.subscribe(1, &[("un/t", 1), ("un2/#", 1)]), vec![1, 1]);
    let mut publ = RawClient::connect_clean(port, "unsub-pub");
    publ.publish("un/t", b"before", 1, false, 1);
    assert_eq!(
        sub.receive(WAIT).as_publish(),
        Some(("un/t", &b"before"[..]))
    );

    sub.send_ok(&wire::unsubscribe(0x4242, &["un/t"]));
    assert_eq!(sub.expect(WAIT), Packet::Unsuback(0x4242));
    publ.publish("un/t", b"after", 1, false, 2);
    sub.expect_silence(QUIET);

    sub.send_ok(&wire::unsubscribe(7, &["never/subscribed"]));
    assert_eq!(sub.expect(WAIT), Packet::Unsuback(7));

    // Filters are compared character by character: "un2/x" is not "un2/#".
    sub.unsubscribe(8, &["un2/x"]);
    publ.publish("un2/x", b"still", 1, false, 3);
    assert_eq!(
        sub.receive(WAIT).as_publish(),
        Some(("un2/x", &b"still"[..]))
    );
}

/// UNSUBSCRIBE with a real client: rumqttc stops receiving after unsubscribing.
#[tokio::test]
async fn rumqttc_unsubscribe_stops_delivery() {
    let b = Bridge::start();
    let mut sub = Mq::connect(rumq::options(b.tcp_port(), &unique("un-sub"))).await;
    assert_eq!(sub.subscribe("ru/+", 1).await, Some(1));
    let mut publ = Mq::connect(rumq::options(b.tcp_port(), &unique("un-pub"))).await;
    publ.publish("ru/a", 1, false, b"1").await;
    assert_eq!(&sub.expect_publish().await.payload[..], b"1");
    sub.unsubscribe("ru/+").await;
    publ.publish("ru/a", 1, false, b"2").await;
    sub.expect_no_publish(QUIET).await;
    sub.disconnect().await;
}

/// MQTT-3.3.5-1: when a client's subscriptions overlap, the message is delivered respecting the
/// maximum QoS of the matching subscriptions: once, at that QoS (the spec also allows one copy
/// per subscription; clients expect one).
#[test]
fn overlapping_subscriptions_deliver_at_the_highest_granted_qos() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let mut sub = RawClient::connect_clean(port, "overlap");
    assert_eq!(
        sub.subscribe(1, &[("ov/#", 0), ("ov/t", 2), ("ov/+", 1)]),
        vec![0, 2, 1]
    );
    RawClient::connect_clean(port, "ov-pub").publish("ov/t", b"o", 2, false, 1);
    let got = sub.receive_all(QUIET, 10);
    assert!(
        matches!(got.as_slice(), [Packet::Publish { qos: 2, .. }]),
        "one delivery, at QoS 2 (the maximum): {got:?}"
    );
}

/// 1.5.3, 4.7.3: topic names are UTF-8 strings compared as such; multi-byte characters in
/// levels route like any other, and wildcards span whole (multi-byte) levels.
#[test]
fn non_ascii_topics_route_and_match() {
    let b = Bridge::start();
    check_filter(
        b.tcp_port(),
        "温度/+/°C",
        &["温度/室内/°C", "温度/ü/°C"],
        &["温度/室内/°F", "温度/°C", "温/室内/°C"],
    );
    check_filter(b.tcp_port(), "ключ/#", &["ключ", "ключ/😀"], &["клю"]);
}
