//! Global limits: clients connected at once and new connections per second, refused with
//! a CONNACK that says why (5.0: 0x97 quota exceeded, 0x9F connection rate exceeded;
//! 3.1.1: 3 server unavailable).

use std::time::Duration;

use tests::harness::Bridge;
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
