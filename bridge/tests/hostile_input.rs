//! Regression tests for what fuzzing and the hostile-client battery (issue 6) found in the
//! connection handler. Each drives `connection::serve` over an in-memory duplex stream, with
//! the exact bytes that showed the defect.

use std::net::SocketAddr;
use std::time::Duration;

use bridge::broker::{Broker, BrokerSettings};
use bridge::connection::{serve, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// Far longer than the handler needs; far shorter than its CONNECT timeout or keep-alive, so
/// only an answer to the bytes themselves counts.
const ANSWER_WITHIN: Duration = Duration::from_secs(3);

/// A 3.1.1 CONNECT: client id "pi", clean session, keep-alive 60 s.
const CONNECT: [u8; 16] = [
    0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 2, b'p', b'i',
];

fn connect_bytes() -> Vec<u8> {
    CONNECT.to_vec()
}

/// Starts a connection handler against a fresh broker; returns the client's end.
fn start() -> DuplexStream {
    let broker = Broker::new(BrokerSettings::default());
    let (client, server) = tokio::io::duplex(64 * 1024);
    let peer = SocketAddr::from(([127, 0, 0, 1], 1883));
    tokio::spawn(serve(server, peer, Transport::Tcp, broker));
    client
}

/// Reads until `want` bytes have arrived, the handler closes, or the time is up.
async fn read_some(client: &mut DuplexStream, want: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(ANSWER_WITHIN, async {
        let mut chunk = [0u8; 1024];
        while got.len() < want {
            match client.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    got
}

/// Packets that arrive in the same read as the CONNECT must be handled at once. The handler
/// reads the CONNECT (and whatever follows it in the same segment) during the handshake, but
/// then waits for the *next* read before decoding the rest of its buffer: a client that
/// pipelines CONNECT + PINGREQ (or CONNECT + PUBLISH + DISCONNECT, as a fire-and-forget
/// publisher does) gets only the CONNACK, and the packets behind the CONNECT sit unhandled
/// until the client happens to send more bytes, or its keep-alive runs out.
///
/// Found by the hostile-client battery (tests/tests/hostile.rs, invalid UTF-8 in a PUBLISH
/// sent right behind CONNECT was never answered).
#[tokio::test]
async fn packets_in_the_same_read_as_connect_are_handled() {
    let mut client = start();
    let mut bytes = connect_bytes();
    bytes.extend_from_slice(&[0xC0, 0x00]); // PINGREQ
    client.write_all(&bytes).await.unwrap();
    let got = read_some(&mut client, 6).await;
    assert_eq!(
        got,
        [0x20, 0x02, 0x00, 0x00, 0xD0, 0x00],
        "expected CONNACK then PINGRESP"
    );
}

/// The same as above, for a violation: a malformed PUBLISH (topic not UTF-8) right behind the
/// CONNECT must close the connection at once, not when the client next sends something.
#[tokio::test]
async fn violation_in_the_same_read_as_connect_closes() {
    let mut client = start();
    let mut bytes = connect_bytes();
    // PUBLISH QoS 0, topic "a/\xff", payload "x".
    bytes.extend_from_slice(&[0x30, 0x06, 0x00, 0x03, b'a', b'/', 0xff, b'x']);
    client.write_all(&bytes).await.unwrap();
    // CONNACK, then the handler closes: read_some returns at EOF with 4 bytes.
    let got = read_some(&mut client, usize::MAX).await;
    assert_eq!(got, [0x20, 0x02, 0x00, 0x00], "expected CONNACK only");
    let mut rest = [0u8; 1];
    let closed = tokio::time::timeout(ANSWER_WITHIN, client.read(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "connection still open after the malformed PUBLISH: {closed:?}"
    );
}

/// Control: the same bytes in two writes (the CONNACK awaited in between) work today.
#[tokio::test]
async fn packets_after_the_connack_are_handled() {
    let mut client = start();
    client.write_all(&connect_bytes()).await.unwrap();
    assert_eq!(read_some(&mut client, 4).await, [0x20, 0x02, 0x00, 0x00]);
    client.write_all(&[0xC0, 0x00]).await.unwrap();
    assert_eq!(read_some(&mut client, 2).await, [0xD0, 0x00]);
}
