//! The persistence promise: once a QoS 1 or 2 PUBLISH has been acknowledged to its
//! publisher (PUBACK, PUBREC), it reaches every matching persistent subscriber as its QoS
//! promises — at least once for QoS 1, exactly once for QoS 2 — even when the broker is
//! killed with SIGKILL in the middle of the stream and restarted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tests::harness::{crate_dir, Bridge};
use tests::unique;
use tests::wire::{
    connect, disconnect, puback, pubcomp, publish, pubrec, pubrel, subscribe, Packet, RawClient,
};

const WAIT: Duration = Duration::from_secs(20);
/// Messages the publisher tries to send; the broker is killed after `KILL_AFTER` acks.
const TOTAL: u32 = 4000;
const KILL_AFTER: usize = 1200;
const WINDOW: u32 = 64;

fn data_dir(name: &str) -> PathBuf {
    let dir =
        crate_dir()
            .join("output")
            .join(format!("{}.{}.store", unique(name), std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Sequence number carried in the payload.
fn payload(seq: u32) -> Vec<u8> {
    format!("msg-{seq:06}").into_bytes()
}

fn seq_of(payload: &[u8]) -> u32 {
    std::str::from_utf8(payload)
        .ok()
        .and_then(|s| s.strip_prefix("msg-"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unexpected payload {payload:?}"))
}

/// Connects a persistent subscriber and subscribes it to `stream/#` at `qos`.
fn persistent_subscriber(port: u16, id: &str, qos: u8) -> RawClient {
    let (mut c, _) = RawClient::connect(port, &connect(id).clean(false).keep_alive(0));
    c.send(&subscribe(1, &[("stream/#", qos)]));
    match c.expect(WAIT) {
        Packet::Suback { codes, .. } => assert_eq!(codes, vec![qos]),
        other => panic!("expected SUBACK, got {other:?}"),
    }
    c
}

/// Reconnects a persistent subscriber after the restart and reads until the stream has
/// been quiet for a while, answering like a real client (QoS 2: delivered once, on
/// PUBLISH, and not again for a duplicate before PUBREL). Returns deliveries per sequence.
fn drain(port: u16, id: &str) -> BTreeMap<u32, u32> {
    let (mut c, present) = RawClient::connect(port, &connect(id).clean(false).keep_alive(0));
    assert!(present, "{id}: the session must survive the kill");
    let mut delivered: BTreeMap<u32, u32> = BTreeMap::new();
    let mut awaiting_rel: BTreeSet<u16> = BTreeSet::new();
    loop {
        match c.recv(Duration::from_secs(4)) {
            Ok(Packet::Publish {
                qos, pid, payload, ..
            }) => {
                let seq = seq_of(&payload);
                match (qos, pid) {
                    (1, Some(pid)) => {
                        *delivered.entry(seq).or_default() += 1;
                        c.send(&puback(pid));
                    }
                    (2, Some(pid)) => {
                        if awaiting_rel.insert(pid) {
                            *delivered.entry(seq).or_default() += 1;
                        }
                        c.send(&pubrec(pid));
                    }
                    _ => *delivered.entry(seq).or_default() += 1,
                }
            }
            Ok(Packet::Pubrel { pid, .. }) => {
                awaiting_rel.remove(&pid);
                c.send(&pubcomp(pid));
            }
            Ok(other) => panic!("{id}: unexpected {other:?}"),
            Err(_) => break,
        }
    }
    c.send(&disconnect());
    delivered
}

#[test]
fn acknowledged_messages_survive_sigkill() {
    let dir = data_dir("sigkill");
    let dir_arg = dir.to_str().expect("utf-8 path").to_owned();
    let mut bridge = Bridge::start_with(&["--data-dir", &dir_arg]);
    let port = bridge.tcp_port();

    // Two persistent subscribers: one offline for the whole stream, one online (whose
    // socket we never read, so deliveries pile up in flight).
    let mut offline = persistent_subscriber(port, "sub-offline", 2);
    offline.send(&disconnect());
    drop(offline);
    let online = persistent_subscriber(port, "sub-online", 2);

    // The publisher alternates QoS 1 and QoS 2; a PUBACK or PUBREC is an acknowledgement.
    let (mut publisher, _) = RawClient::connect(port, &connect("pub").keep_alive(0));
    let mut acked: BTreeSet<u32> = BTreeSet::new();
    let mut in_flight: BTreeMap<u16, u32> = BTreeMap::new();
    let mut next: u32 = 1;
    let started = Instant::now();
    let mut killed = false;
    while acked.len() < KILL_AFTER && next <= TOTAL {
        while in_flight.len() < WINDOW as usize && next <= TOTAL {
            let pid = (next % 60_000 + 1) as u16;
            let qos = if next.is_multiple_of(2) { 2 } else { 1 };
            publisher.send(&publish("stream/data", &payload(next), qos, false, pid));
            in_flight.insert(pid, next);
            next += 1;
        }
        match publisher.recv(WAIT) {
            Ok(Packet::Puback(pid)) => {
                acked.insert(in_flight.remove(&pid).expect("known pid"));
            }
            Ok(Packet::Pubrec(pid)) => {
                acked.insert(*in_flight.get(&pid).expect("known pid"));
                publisher.send(&pubrel(pid));
            }
            Ok(Packet::Pubcomp(pid)) => {
                in_flight.remove(&pid);
            }
            other => panic!("publisher: unexpected {other:?}"),
        }
        if acked.len() >= KILL_AFTER {
            // Mid-stream, with publishes in flight: no graceful anything.
            bridge.kill();
            killed = true;
        }
    }
    assert!(killed, "the stream ended before the kill");
    // Acks already on their way before the kill still count.
    while let Ok(packet) = publisher.recv(Duration::from_millis(500)) {
        match packet {
            Packet::Puback(pid) | Packet::Pubrec(pid) => {
                if let Some(seq) = in_flight.remove(&pid) {
                    acked.insert(seq);
                }
            }
            _ => {}
        }
    }
    let sent = next - 1;
    drop(publisher);
    drop(online);

    let bridge = Bridge::start_with(&["--data-dir", &dir_arg]);
    let port = bridge.tcp_port();
    for id in ["sub-offline", "sub-online"] {
        let delivered = drain(port, id);
        let missing: Vec<u32> = acked
            .iter()
            .filter(|seq| !delivered.contains_key(seq))
            .copied()
            .collect();
        let duplicated_qos2: Vec<u32> = delivered
            .iter()
            .filter(|(seq, n)| seq.is_multiple_of(2) && **n > 1)
            .map(|(seq, _)| *seq)
            .collect();
        println!(
            "{id}: sent {sent}, acknowledged {}, received after the kill {} distinct \
             ({} deliveries) in {:?}",
            acked.len(),
            delivered.len(),
            delivered.values().sum::<u32>(),
            started.elapsed()
        );
        assert!(
            missing.is_empty(),
            "{id}: {} acknowledged messages lost, first {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
        assert!(
            duplicated_qos2.is_empty(),
            "{id}: QoS 2 messages delivered more than once: {:?}",
            &duplicated_qos2[..duplicated_qos2.len().min(10)]
        );
    }
    drop(bridge);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn retained_messages_and_subscriptions_survive_a_restart() {
    let dir = data_dir("restart");
    let dir_arg = dir.to_str().expect("utf-8 path").to_owned();
    let mut bridge = Bridge::start_with(&["--data-dir", &dir_arg]);
    let port = bridge.tcp_port();
    let mut sub = persistent_subscriber(port, "keeper", 1);
    sub.send(&disconnect());
    let (mut p, _) = RawClient::connect(port, &connect("retainer"));
    p.send(&publish("config/a", b"kept", 1, true, 1));
    assert!(matches!(p.expect(WAIT), Packet::Puback(1)));
    bridge.kill();

    let bridge = Bridge::start_with(&["--data-dir", &dir_arg]);
    let port = bridge.tcp_port();
    // The retained message is still there for a new subscriber.
    let mut fresh = RawClient::connect_clean(port, "fresh");
    fresh.send(&subscribe(1, &[("config/#", 1)]));
    let mut got_retained = false;
    for _ in 0..2 {
        match fresh.expect(WAIT) {
            Packet::Publish {
                retain, payload, ..
            } => {
                assert!(retain);
                assert_eq!(payload, b"kept");
                got_retained = true;
            }
            Packet::Suback { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(got_retained);
    // The persistent subscription is still routed: a new message reaches the session.
    let (mut p, _) = RawClient::connect(port, &connect("pub2"));
    p.send(&publish("stream/x", &payload(7), 1, false, 1));
    assert!(matches!(p.expect(WAIT), Packet::Puback(1)));
    let delivered = drain(port, "keeper");
    assert_eq!(delivered.get(&7), Some(&1), "{delivered:?}");
    drop(bridge);
    let _ = std::fs::remove_dir_all(&dir);
}
