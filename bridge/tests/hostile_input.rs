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

/// An MQTT 5.0 CONNECT (client id "mx", clean start) whose only property is Maximum Packet
/// Size `max`.
fn v5_connect_with_maximum_packet_size(max: u32) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60];
    body.push(5); // property length
    body.push(0x27);
    body.extend_from_slice(&max.to_be_bytes());
    body.extend_from_slice(&[0, 2, b'm', b'x']);
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend_from_slice(&body);
    packet
}

/// Splits whole packets (first byte, body) off the front of `bytes`.
fn packets(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while bytes.len() >= 2 {
        let (mut len, mut at) = (0usize, 1);
        loop {
            let byte = bytes[at];
            len |= usize::from(byte & 0x7F) << (7 * (at - 1));
            at += 1;
            if byte & 0x80 == 0 || at > 4 || at >= bytes.len() {
                break;
            }
        }
        if bytes.len() < at + len {
            break;
        }
        out.push((bytes[0], bytes[at..at + len].to_vec()));
        bytes = &bytes[at + len..];
    }
    out
}

/// MQTT-3.1.2-24: "The Server MUST NOT send packets exceeding Maximum Packet Size to the
/// Client". The CONNACK to a 5.0 client that announced 16 bytes is 24 bytes long (its
/// optional properties: receive maximum, maximum packet size, topic alias maximum, retain /
/// wildcard / subscription identifier / shared subscription available), where a CONNACK
/// without them (5 bytes) would fit. Found by the `connection` fuzz target, which checks that
/// everything the broker writes decodes within the client's Maximum Packet Size.
#[tokio::test]
async fn connack_fits_the_clients_maximum_packet_size() {
    let mut client = start();
    client
        .write_all(&v5_connect_with_maximum_packet_size(16))
        .await
        .unwrap();
    let got = read_some(&mut client, 5).await;
    // Bodies here are shorter than 128 bytes: one remaining-length byte.
    let sizes: Vec<usize> = packets(&got)
        .iter()
        .map(|(_, body)| 2 + body.len())
        .collect();
    assert!(
        sizes.iter().all(|&size| size <= 16),
        "packets of {sizes:?} bytes to a client whose Maximum Packet Size is 16: {got:02x?}"
    );
}

/// MQTT-3.14.2-3: the Reason String of a DISCONNECT must be left out if it would make the
/// packet exceed the receiver's Maximum Packet Size. A 5.0 client announcing 64 bytes (its
/// CONNACK, 24 bytes, fits) that publishes to a wildcard topic gets a DISCONNECT (0x90 topic
/// name invalid) whose reason string alone is longer than that (fixed in c2497c2).
#[tokio::test]
async fn disconnect_reason_string_respects_maximum_packet_size() {
    let mut client = start();
    client
        .write_all(&v5_connect_with_maximum_packet_size(64))
        .await
        .unwrap();
    let connack = read_some(&mut client, 24).await;
    assert_eq!(connack.first(), Some(&0x20), "CONNACK: {connack:02x?}");
    // PUBLISH QoS 0 to "a/+" (a wildcard: not a valid topic name), no properties.
    client
        .write_all(&[0x30, 0x07, 0x00, 0x03, b'a', b'/', b'+', 0x00, b'x'])
        .await
        .unwrap();
    let got = read_some(&mut client, usize::MAX).await;
    let disconnects: Vec<(u8, Vec<u8>)> = packets(&got)
        .into_iter()
        .filter(|(first, _)| *first == 0xE0)
        .collect();
    assert_eq!(disconnects.len(), 1, "expected one DISCONNECT: {got:02x?}");
    let (_, body) = &disconnects[0];
    let size = 1 + if body.len() < 128 { 1 } else { 2 } + body.len();
    assert!(
        size <= 64,
        "DISCONNECT of {size} bytes to a client whose Maximum Packet Size is 64: {:?}",
        String::from_utf8_lossy(body)
    );
}
