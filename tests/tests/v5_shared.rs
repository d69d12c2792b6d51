//! MQTT 5.0 shared subscriptions (`$share/{group}/{filter}`, section 4.8.2): each message
//! goes to one member of the group; members leaving hand their messages to the others.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use tests::v5::paho::{self, json, Paho};
use tests::v5::wire::{self, connect, prop, Client, Packet, Props, RecvError, WAIT};
use tests::{unique, Bridge};

/// A file whose creation tells paho clients waiting on it to go on.
struct Go(PathBuf);

impl Go {
    fn new() -> Go {
        Go(std::env::temp_dir().join(unique("v5-shared-go")))
    }
    fn path(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }
    fn set(&self) {
        std::fs::write(&self.0, b"").expect("create the go file");
    }
}

impl Drop for Go {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Reads events from all `clients` until together they printed `total` messages (or the
/// deadline passes); returns the payloads each received so far.
fn collect(clients: &mut [&mut paho::Client], total: usize) -> Vec<Vec<String>> {
    let mut got: Vec<Vec<String>> = vec![Vec::new(); clients.len()];
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.iter().map(Vec::len).sum::<usize>() < total && Instant::now() < deadline {
        for (i, c) in clients.iter_mut().enumerate() {
            if let Some(e) = c.next_event(Duration::from_millis(50)) {
                if e["ev"] == "msg" {
                    got[i].push(e["payload"].as_str().unwrap_or_default().to_owned());
                }
            }
        }
    }
    got
}

fn member(port: u16, filter: &str, stop: &Go) -> paho::Client {
    let mut c = Paho::tcp(port)
        .id(&unique("member"))
        .step(json!({"sub": [{"filter": filter, "qos": 1}]}))
        .step(json!({"wait_file": stop.path(), "timeout": 60}))
        .step(json!({"listen": 1.5}))
        .spawn();
    c.wait_ev("suback", paho::RUN);
    c
}

fn msg_payloads(events: &[Value]) -> Vec<String> {
    paho::payloads(events)
}

fn numbered(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("m{i:02}")).collect()
}

/// MQTT 5.0 section 4.8.2: two paho members of `$share/g/sh/t` and 10 QoS 1 messages: each
/// member gets some, together exactly the 10, none twice; an ordinary subscriber to `sh/t`
/// gets all 10, and so does the only member of another group.
#[test]
fn shared_subscription_splits_messages_between_members() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let stop = Go::new();
    let mut a = member(port, "$share/g/sh/t", &stop);
    let mut c = member(port, "$share/g/sh/t", &stop);
    let mut plain = Client::connect_clean(port, &unique("plain"));
    assert_eq!(plain.subscribe(1, &[("sh/t", 1)]), [1]);
    let mut other_group = Client::connect_clean(port, &unique("g2"));
    assert_eq!(other_group.subscribe(1, &[("$share/g2/sh/#", 1)]), [1]);

    let mut publisher = Client::connect_clean(port, &unique("sh-pub"));
    let sent = numbered(0..10);
    for (i, m) in sent.iter().enumerate() {
        assert_eq!(
            publisher.publish("sh/t", m.as_bytes(), 1, false, i as u16 + 1),
            0
        );
    }
    collect(&mut [&mut a, &mut c], sent.len());
    stop.set();
    let got_a = msg_payloads(&a.finish_ok());
    let got_c = msg_payloads(&c.finish_ok());
    assert!(
        !got_a.is_empty() && !got_c.is_empty(),
        "one member got nothing: {got_a:?} / {got_c:?}"
    );
    let mut all: Vec<String> = got_a.iter().chain(&got_c).cloned().collect();
    all.sort();
    assert_eq!(all, sent, "members got {got_a:?} and {got_c:?}");

    for (what, c) in [("plain", &mut plain), ("group g2", &mut other_group)] {
        let got = wire::payloads(&c.receive_all(Duration::from_secs(1)));
        assert_eq!(got, sent, "{what}");
    }
}

/// Section 4.8.2: when a member disconnects, the other member of the group gets every
/// message published afterwards.
#[test]
fn remaining_member_gets_everything_after_the_other_leaves() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let stop = Go::new();
    let leave = Go::new();
    let mut leaver = Paho::tcp(port)
        .id(&unique("leaver"))
        .step(json!({"sub": [{"filter": "$share/g/leave/t", "qos": 1}]}))
        .step(json!({"wait_file": leave.path(), "timeout": 60}))
        .spawn();
    leaver.wait_ev("suback", paho::RUN);
    let mut stayer = member(port, "$share/g/leave/t", &stop);

    let mut publisher = Client::connect_clean(port, &unique("leave-pub"));
    let first = numbered(0..4);
    for (i, m) in first.iter().enumerate() {
        publisher.publish("leave/t", m.as_bytes(), 1, false, i as u16 + 1);
    }
    let before = collect(&mut [&mut leaver, &mut stayer], first.len());
    assert_eq!(
        before.iter().map(Vec::len).sum::<usize>(),
        first.len(),
        "before the member left: {before:?}"
    );
    leave.set();
    let left = leaver.finish_ok();
    // The leaver disconnected normally (session expiry 0): its session is gone.
    let second = numbered(4..10);
    for (i, m) in second.iter().enumerate() {
        publisher.publish("leave/t", m.as_bytes(), 1, false, i as u16 + 10);
    }
    let after = collect(&mut [&mut stayer], second.len());
    stop.set();
    let stayed = stayer.finish_ok();

    let got_leaver = msg_payloads(&left);
    let got_stayer = msg_payloads(&stayed);
    for m in &second {
        assert!(
            got_stayer.contains(m),
            "{m} did not reach the remaining member: {got_stayer:?} (collected {after:?})"
        );
    }
    let mut all: Vec<String> = got_leaver.iter().chain(&got_stayer).cloned().collect();
    all.sort();
    let mut want: Vec<String> = first.iter().chain(&second).cloned().collect();
    want.sort();
    assert_eq!(all, want, "leaver {got_leaver:?}, stayer {got_stayer:?}");
}

/// Reads PUBLISHes without acknowledging them: the first `at_least` within [`WAIT`] each, then
/// more until nothing arrives for `quiet`.
fn unacked(c: &mut Client, at_least: usize, quiet: Duration) -> Vec<Packet> {
    let mut got = Vec::new();
    loop {
        let wait = if got.len() < at_least { WAIT } else { quiet };
        match c.recv(wait) {
            Ok(p @ Packet::Publish { .. }) => got.push(p),
            Ok(other) => panic!("expected PUBLISH, got {other:?}"),
            Err(RecvError::Timeout) => return got,
            Err(e) => panic!("connection failed: {e:?}"),
        }
    }
}

/// Section 4.8.2: QoS 1 messages a member received but did not acknowledge, and those still
/// queued for it (receive maximum 2), go to the other member when its connection breaks and
/// its session ends (session expiry 0): the other member ends up with all 10, each once.
#[test]
fn unacknowledged_and_queued_messages_go_to_the_other_member() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let (mut silent, _, _) = Client::connect(
        port,
        &connect(&unique("silent")).props(Props::new().two(prop::RECEIVE_MAXIMUM, 2)),
    );
    assert_eq!(silent.subscribe(1, &[("$share/g/un/t", 1)]), [1]);
    let mut helper = Client::connect_clean(port, &unique("helper"));
    assert_eq!(helper.subscribe(1, &[("$share/g/un/t", 1)]), [1]);

    let mut publisher = Client::connect_clean(port, &unique("un-pub"));
    let sent = numbered(0..10);
    for (i, m) in sent.iter().enumerate() {
        publisher.publish("un/t", m.as_bytes(), 1, false, i as u16 + 1);
    }
    let held = unacked(&mut silent, 1, Duration::from_secs(1));
    assert!(
        !held.is_empty() && held.len() <= 2,
        "the silent member (receive maximum 2) got {held:?}"
    );
    let early = helper.receive_all(Duration::from_secs(1));
    assert!(
        early.len() < sent.len(),
        "the helper got everything before the silent member left"
    );
    silent.drop_abruptly();

    let mut got = wire::payloads(&early);
    let deadline = Instant::now() + WAIT;
    while got.len() < sent.len() && Instant::now() < deadline {
        got.extend(wire::payloads(&helper.receive_all(Duration::from_secs(1))));
    }
    got.extend(wire::payloads(&helper.receive_all(Duration::from_secs(1))));
    let unique_got: BTreeSet<&String> = got.iter().collect();
    assert_eq!(
        unique_got.len(),
        got.len(),
        "the helper got a message twice: {got:?}"
    );
    got.sort();
    assert_eq!(
        got,
        sent,
        "held by the silent member: {:?}",
        wire::payloads(&held)
    );
}

/// MQTT-3.8.3-4: No Local on a shared subscription is a Protocol Error: DISCONNECT 0x82.
#[test]
fn no_local_on_a_shared_subscription_is_a_protocol_error() {
    let b = Bridge::start();
    let mut c = Client::connect_clean(b.tcp_port(), &unique("nl-shared"));
    c.send(&wire::subscribe(
        1,
        &Props::new(),
        &[("$share/g/nl/t", wire::sub_options(1, true, false, 0))],
    ));
    let (reason, _) = c.expect_disconnect(WAIT);
    assert_eq!(reason, wire::rc::PROTOCOL_ERROR);
}

/// Section 3.3.1.3: retained messages are sent when a new *non-shared* subscription is made;
/// a shared subscription gets none on subscribe, but does get later messages.
#[test]
fn shared_subscription_gets_no_retained_messages_on_subscribe() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let mut publisher = Client::connect_clean(port, &unique("ret-pub"));
    publisher.publish("shret/t", b"retained", 1, true, 1);
    let mut member = Client::connect_clean(port, &unique("ret-member"));
    assert_eq!(member.subscribe(1, &[("$share/g/shret/t", 1)]), [1]);
    member.expect_silence(Duration::from_secs(1));
    publisher.publish("shret/t", b"live", 1, false, 2);
    let p = member.receive(WAIT);
    assert_eq!(p.payload(), Some(&b"live"[..]), "{p:?}");
}

/// MQTT-4.8.2-5: a QoS 2 message whose delivery to a member had begun is not sent to another
/// member when the first member's session ends (connection broken, session expiry 0); the
/// messages still queued for it are.
#[test]
fn qos2_in_flight_to_a_departed_member_is_not_sent_to_another() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let (mut silent, _, _) = Client::connect(
        port,
        &connect(&unique("silent2")).props(Props::new().two(prop::RECEIVE_MAXIMUM, 1)),
    );
    assert_eq!(silent.subscribe(1, &[("$share/g/q2/t", 2)]), [2]);
    let mut helper = Client::connect_clean(port, &unique("helper2"));
    assert_eq!(helper.subscribe(1, &[("$share/g/q2/t", 2)]), [2]);

    let mut publisher = Client::connect_clean(port, &unique("q2-pub"));
    let sent = numbered(0..6);
    for (i, m) in sent.iter().enumerate() {
        publisher.publish("q2/t", m.as_bytes(), 2, false, i as u16 + 1);
    }
    let held = unacked(&mut silent, 1, Duration::from_secs(1));
    assert_eq!(held.len(), 1, "receive maximum 1: {held:?}");
    let held = wire::payloads(&held).remove(0);
    let mut got = wire::payloads(&helper.receive_all(Duration::from_secs(1)));
    silent.drop_abruptly();
    let deadline = Instant::now() + WAIT;
    while got.len() < sent.len() - 1 && Instant::now() < deadline {
        got.extend(wire::payloads(&helper.receive_all(Duration::from_secs(1))));
    }
    // Long enough for the held message to show up, were it wrongly handed over.
    got.extend(wire::payloads(&helper.receive_all(Duration::from_secs(2))));
    got.sort();
    let want: Vec<String> = sent.iter().filter(|m| **m != held).cloned().collect();
    assert_eq!(
        got, want,
        "the helper should get everything but {held} (in flight to the departed member)"
    );
}
