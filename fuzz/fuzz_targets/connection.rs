//! Arbitrary bytes from clients into the broker's connection handler.
//!
//! `bridge::connection::serve` runs over in-memory duplex streams against a fresh broker, on
//! a current-thread runtime whose clock is paused: the broker's timers (CONNECT timeout,
//! keep-alive, will delay, the one-second final flush) fire in virtual time, so an input that
//! leaves a connection waiting costs no real time, and the whole exchange is bounded by a
//! virtual deadline. It must never panic; everything it writes must decode as MQTT of the
//! client's version, within the client's Maximum Packet Size (5.0); a connection still open at
//! the deadline must end when the broker shuts down (as on SIGTERM); and once every session is
//! removed, nothing may stay allocated (LeakSanitizer checks: an `Arc` cycle would show up as
//! a leak).
//!
//! Input layout: the first byte is the plan, the rest is what the client(s) send.
//! * bits 0-1: each client's bytes are cut into 1 to 4 chunks of equal size, written one
//!   after the other with a (virtual) pause between them, so packets arrive split across
//!   reads;
//! * bit 6: two clients instead of one, on the same broker at the same time: the first half
//!   of the bytes is the first client's, the second half the second's (so takeovers, shared
//!   subscriptions, wills and deliveries between clients are reached);
//! * bit 7: after its last chunk a client closes its side (EOF); otherwise it stays open and
//!   silent, leaving the broker's timers (or the shutdown at the deadline) to end it.

#![no_main]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bridge::broker::{Broker, BrokerSettings};
use bridge::connection::{serve, Transport};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use protocol::{Decoder, Packet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Virtual time the exchange may take: past the CONNECT timeout (10 s), a short keep-alive
/// and the final flush, so those paths run too. Costs nothing real while the clock is paused.
const DEADLINE: Duration = Duration::from_secs(30);
/// Virtual pause between chunks: long enough that the broker reads each chunk separately.
const BETWEEN_CHUNKS: Duration = Duration::from_millis(1);
/// The broker's maximum packet size here: small enough for a fuzz input to reach, with room
/// for ordinary packets.
const MAX_PACKET_SIZE: usize = 64 * 1024;

/// One client: sends `stream` in `chunks` pieces, closes its side if `close`, and reads
/// everything the broker sends until the broker closes or the deadline passes. Returns how
/// the connection handler ended: `Err` if it panicked.
async fn client(
    broker: Arc<Broker>,
    port: u16,
    stream: Vec<u8>,
    chunks: usize,
    close: bool,
) -> Result<(), tokio::task::JoinError> {
    let chunk_len = stream.len().div_ceil(chunks).max(1);
    // What the client announced, as the broker reads it: the version to read the broker's
    // answers in, and the largest packet the broker may send (MQTT 5.0 Maximum Packet Size).
    let (version, max_packet_size) =
        match Decoder::new(MAX_PACKET_SIZE).decode(&mut BytesMut::from(&stream[..])) {
            Ok(Some(Packet::Connect(connect))) => (
                Some(connect.version),
                connect
                    .properties
                    .maximum_packet_size
                    .map_or(usize::MAX, |max| max as usize),
            ),
            _ => (None, usize::MAX),
        };
    let (client, server) = tokio::io::duplex(16 * 1024);
    let peer = SocketAddr::from(([127, 0, 0, 1], port));
    let mut served = tokio::spawn(serve(server, peer, Transport::Tcp, broker.clone()));

    let (mut from_broker, mut to_broker) = tokio::io::split(client);
    let send = async move {
        for chunk in stream.chunks(chunk_len) {
            // The broker may have closed already; that ends the client's writing too.
            if to_broker.write_all(chunk).await.is_err() {
                return None;
            }
            tokio::time::sleep(BETWEEN_CHUNKS).await;
        }
        if close {
            let _ = to_broker.shutdown().await;
        }
        // Kept open (and silent) until the broker closes, unless shut down above.
        Some(to_broker)
    };
    // Reads what the broker writes (so it never blocks on a full pipe) until it closes, and
    // checks that it is valid MQTT for this client.
    let mut output = Decoder::new(usize::MAX);
    if let Some(version) = version {
        output.set_version(version);
    }
    let drain = async move {
        let mut buf = BytesMut::new();
        let mut sink = [0u8; 4096];
        while let Ok(n) = from_broker.read(&mut sink).await {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&sink[..n]);
            loop {
                let before = buf.len();
                match output.decode(&mut buf) {
                    Ok(Some(packet)) => {
                        let size = before - buf.len();
                        // MQTT-3.1.2-24, the CONNACK included.
                        assert!(
                            size <= max_packet_size,
                            "the broker sent a {} of {size} bytes to a client whose Maximum \
                             Packet Size is {max_packet_size}: {packet:?}",
                            packet.name()
                        );
                    }
                    Ok(None) => break,
                    Err(e) => panic!(
                        "the broker sent a {version:?} client bytes that do not decode ({e}): \
                         {:02x?}",
                        &buf[..buf.len().min(64)]
                    ),
                }
            }
        }
    };
    let talk = async { tokio::join!(send, drain) };
    let finished = tokio::time::timeout(DEADLINE, async {
        let (_, result) = tokio::join!(talk, &mut served);
        result
    })
    .await;
    match finished {
        Ok(result) => result,
        Err(_) => {
            // Still connected at the deadline (keep-alive 0, or a client that stays quiet
            // within its keep-alive): end it as a server shutdown does.
            broker.shutdown();
            match tokio::time::timeout(DEADLINE, &mut served).await {
                Ok(result) => result,
                Err(_) => panic!("the connection did not end after a shutdown kick"),
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&plan, stream)) = data.split_first() else {
        return;
    };
    let chunks = usize::from(plan & 0b11) + 1;
    let two = plan & 0x40 != 0;
    let close = plan & 0x80 != 0;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let broker = Broker::new(BrokerSettings {
            max_packet_size: MAX_PACKET_SIZE,
            ..BrokerSettings::default()
        });
        let (first, second) = if two {
            stream.split_at(stream.len() / 2)
        } else {
            (stream, &[][..])
        };
        let one = client(broker.clone(), 1, first.to_vec(), chunks, close);
        let results = if two {
            let other = client(broker.clone(), 2, second.to_vec(), chunks, close);
            let (a, b) = tokio::join!(one, other);
            vec![a, b]
        } else {
            vec![one.await]
        };
        for result in results {
            if let Err(e) = result {
                if e.is_panic() {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        }
        // Persistent sessions outlive their connection; remove them so that whatever is
        // left allocated afterwards (LeakSanitizer reports it) is a real leak, not state the
        // broker still holds on purpose.
        for session in broker.sessions() {
            let _ = broker.remove_session(&session.client_id);
        }
    });
    // Dropping the runtime cancels whatever is still running (a delayed will, an expiry
    // timer).
});
