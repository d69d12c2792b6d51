//! Arbitrary bytes through the codec, in each of the decoder's modes.
//!
//! Properties checked:
//! * decoding never panics, whatever the bytes, and makes progress: `Ok(Some(_))` consumes
//!   bytes, `Ok(None)` consumes none;
//! * `missing_bytes` never panics;
//! * every packet decoded is encoded again with `encode` and decodes to an equal packet (the
//!   bytes may legitimately differ: an omitted success reason code, a 3.1 CONNECT's ignored
//!   reserved flag, a longer-than-needed remaining length encoding).

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use protocol::{encode, Decoder, Packet, ProtocolVersion};

/// Large enough for any packet a fuzz input can hold, small enough that the limit is hit by
/// the announced (not the actual) length of hostile headers.
const MAX_PACKET_SIZE: usize = 1 << 20;

/// The decoder's modes: fresh (before CONNECT: 3.1.1 rules, CONNECT of any version), and
/// after a 3.1.1 or a 5.0 CONNECT.
const MODES: [Option<ProtocolVersion>; 3] = [
    None,
    Some(ProtocolVersion::V3_1_1),
    Some(ProtocolVersion::V5),
];

fn decoder(mode: Option<ProtocolVersion>) -> Decoder {
    let mut decoder = Decoder::new(MAX_PACKET_SIZE);
    if let Some(version) = mode {
        decoder.set_version(version);
    }
    decoder
}

/// Encodes `packet` as a peer speaking `mode` would and decodes it again in that mode.
fn round_trip(packet: &Packet, mode: Option<ProtocolVersion>) {
    let version = mode.unwrap_or(ProtocolVersion::V3_1_1);
    let mut bytes = BytesMut::new();
    if let Err(e) = encode(packet, version, &mut bytes) {
        panic!("decoded {packet:?} in mode {mode:?}, but it cannot be encoded again: {e}");
    }
    let encoded = bytes.clone();
    let again = match decoder(mode).decode(&mut bytes) {
        Ok(Some(again)) => again,
        other => panic!(
            "decoded {packet:?} in mode {mode:?}, encoded it as {encoded:02x?}, which decodes \
             as {other:?}"
        ),
    };
    assert!(
        bytes.is_empty(),
        "re-encoded {packet:?} as {encoded:02x?}: {} bytes left over",
        bytes.len()
    );
    assert_eq!(
        &again, packet,
        "round trip in mode {mode:?} through {encoded:02x?}"
    );
}

fuzz_target!(|data: &[u8]| {
    for mode in MODES {
        let mut decoder = decoder(mode);
        let mut buf = BytesMut::from(data);
        loop {
            let _ = decoder.missing_bytes(&buf);
            let before = buf.len();
            // The version in force for this packet (a CONNECT sets it for the next one).
            let version = decoder.version();
            match decoder.decode(&mut buf) {
                Ok(Some(packet)) => {
                    assert!(buf.len() < before, "a packet was decoded from no bytes");
                    round_trip(&packet, version);
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                    break;
                }
                Err(_) => break,
            }
        }
    }
});
