//! Global limits: clients connected at once and new connections per second, refused with
//! a CONNACK that says why (5.0: 0x97 quota exceeded, 0x9F connection rate exceeded;
//! 3.1.1: 3 server unavailable); and the bytes queued in all sessions together.

use std::time::Duration;

use tests::harness::Bridge;
use tests::unique;
use tests::wire::{connect, disconnect, Packet, RawClient};

const WAIT: Duration = Duration::from_secs(10);

/// Sends a 3.1.1 CONNECT and returns the CONNACK return code.
fn connack_v311(port: u16, id: &str) -> (RawClient, u8) {
    let mut c = RawClient::open(port);
    c.send(&connect(id).bytes());
    match c.expect(WAIT) {
        Packet::Connack { code, .. } => (c, code),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// Sends a 5.0 CONNECT (client id "v5") and returns the raw CONNACK bytes.
fn connack_v5(port: u16) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(&[
        0x10, 15, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 0, 0, 0, 2, b'v', b'5',
    ])
    .unwrap();
    let mut buf = [0u8; 32];
    let n = s.read(&mut buf).unwrap();
    buf[..n].to_vec()
}

#[test]
fn connections_beyond_the_maximum_are_refused_with_a_reason() {
    let b = Bridge::start_with(&["--max-connections", "2"]);
    let port = b.tcp_port();
    let (mut first, code) = connack_v311(port, "one");
    assert_eq!(code, 0);
    let (_second, code) = connack_v311(port, "two");
    assert_eq!(code, 0);
    let (_third, code) = connack_v311(port, "three");
    assert_eq!(code, 3, "3.1.1: server unavailable");
    let v5 = connack_v5(port);
    assert_eq!(&v5[..2], &[0x20, 0x03], "{v5:02x?}");
    assert_eq!(v5[3], 0x97, "5.0: quota exceeded, got {v5:02x?}");
    // A place frees when a client leaves.
    first.send(&disconnect());
    drop(first);
    let mut admitted = false;
    for _ in 0..50 {
        let (_c, code) = connack_v311(port, "four");
        if code == 0 {
            admitted = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(admitted, "a freed place must be usable again");
}

#[test]
fn connections_beyond_the_rate_are_refused_with_a_reason() {
    let b = Bridge::start_with(&["--max-connection-rate", "2"]);
    let port = b.tcp_port();
    let codes: Vec<u8> = (0..6)
        .map(|i| connack_v311(port, &format!("burst-{i}")).1)
        .collect();
    assert!(codes.contains(&0), "{codes:?}");
    assert!(
        codes.contains(&3),
        "a burst over the rate must be refused: {codes:?}"
    );
    let v5 = connack_v5(port);
    assert_eq!(v5[3], 0x9F, "5.0: connection rate exceeded, got {v5:02x?}");
    // The bucket refills.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(connack_v311(port, "later").1, 0);
}

/// Connects a persistent 3.1.1 session (clean session 0) and returns it with the
/// session-present flag.
fn persistent(port: u16, id: &str) -> (RawClient, bool) {
    RawClient::connect(port, &connect(id).clean(false))
}

/// The payload numbers of the QoS 1 messages a client receives (acknowledging each) until
/// nothing more comes for a second.
fn drain(client: &mut RawClient) -> Vec<u32> {
    client
        .receive_all(Duration::from_secs(1), 10_000)
        .iter()
        .map(|p| {
            let (_, payload) = p.as_publish().expect("a PUBLISH");
            std::str::from_utf8(&payload[..4]).unwrap().parse().unwrap()
        })
        .collect()
}

/// `max_queued_bytes_total` bounds the bytes (topic + payload) queued in all sessions
/// together, and what a session gives up goes back to the budget:
/// 1. three offline subscribers share a budget of exactly 100 messages, each keeping the
///    first ones it got (drop_newest);
/// 2. once they have taken them, two offline sessions can queue 50 each, 100 in all;
/// 3. one of them is discarded by a clean start, and the other can then take 50 more.
#[test]
fn the_bytes_queued_in_all_sessions_are_bounded_and_given_back() {
    const MESSAGE: usize = 100; // topic "budget/t" (8 bytes) + 92 bytes of payload
    let config = std::env::temp_dir().join(format!("{}.toml", unique("budget")));
    let total = 100 * MESSAGE;
    std::fs::write(
        &config,
        format!("[limits]\nmax_queued_bytes_total = {total}\n"),
    )
    .unwrap();
    let b = Bridge::start_with(&["--config", config.to_str().unwrap()]);
    let _ = std::fs::remove_file(&config);
    let port = b.tcp_port();
    let payload = |n: u32| format!("{n:04}{}", "x".repeat(MESSAGE - 8 - 4)).into_bytes();
    let mut publisher = RawClient::connect_clean(port, "budget-pub");
    let mut publish = |range: std::ops::Range<u32>| {
        for n in range {
            publisher.publish("budget/t", &payload(n), 1, false, n as u16 + 1);
        }
    };
    let ids = ["budget-1", "budget-2", "budget-3"];
    for id in ids {
        let (mut c, _) = persistent(port, id);
        assert_eq!(c.subscribe(1, &[("budget/#", 1)]), [1]);
        c.disconnect();
    }

    // 1. 60 messages for 3 sessions: 180 deliveries, room for 100.
    publish(0..60);
    let mut held = 0;
    for id in ids {
        let (mut c, present) = persistent(port, id);
        assert!(present, "{id}: session lost");
        let seqs = drain(&mut c);
        assert_eq!(seqs, (0..seqs.len() as u32).collect::<Vec<_>>(), "{id}");
        held += seqs.len();
        c.disconnect();
    }
    assert_eq!(held, 100, "the three sessions together");
    // The third leaves for good (a clean session ends with its connection).
    RawClient::connect(port, &connect(ids[2])).0.disconnect();

    // 2. Everything delivered went back: 50 messages for each of two sessions fit.
    publish(0..50);
    // 3. The second session is discarded by a clean start, with its 50 messages.
    let (mut second, present) = RawClient::connect(port, &connect(ids[1]));
    assert!(!present);
    second.expect_silence(Duration::from_millis(300));
    second.disconnect();
    // Its bytes went back: the first session takes 50 more and gets all 100.
    publish(50..100);
    let (mut first, _) = persistent(port, ids[0]);
    assert_eq!(drain(&mut first), (0..100).collect::<Vec<u32>>());
    first.disconnect();
    publisher.disconnect();
}
