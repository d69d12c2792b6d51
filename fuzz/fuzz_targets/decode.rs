//! Arbitrary bytes through the codec, in each of the decoder's modes.
//!
//! Properties checked:
//! * decoding never panics, whatever the bytes, and makes progress: `Ok(Some(_))` consumes
//!   bytes, `Ok(None)` consumes none;
//! * `missing_bytes` never panics;
//! * every packet decoded is encoded again with `encode` and decodes to an equal packet (the
//!   bytes may legitimately differ: an omitted success reason code, a 3.1 CONNECT's ignored
//!   reserved flag, a longer-than-needed remaining length encoding);
//! * the topic names (PUBLISH, will) and filters (SUBSCRIBE, UNSUBSCRIBE) decoded go through
//!   `protocol::topic` without a panic, and matching keeps its basic laws: a valid name
//!   matches itself, `#` matches every name not starting with `$`, and a literal filter
//!   matches only the identical name.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use protocol::topic::{
    is_wildcard, matches, parse_shared, validate_topic_filter, validate_topic_name,
};
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

/// Topic names and filters a packet carries.
fn topics(packet: &Packet, names: &mut Vec<String>, filters: &mut Vec<String>) {
    match packet {
        Packet::Publish(publish) => names.push(publish.topic.clone()),
        Packet::Connect(connect) => names.extend(connect.will.as_ref().map(|w| w.topic.clone())),
        Packet::Subscribe(subscribe) => {
            filters.extend(subscribe.filters.iter().map(|f| f.filter.clone()))
        }
        Packet::Unsubscribe(unsubscribe) => filters.extend(unsubscribe.filters.iter().cloned()),
        _ => {}
    }
}

fn check_topics(names: &[String], filters: &[String]) {
    let valid_names: Vec<&str> = names
        .iter()
        .filter(|n| validate_topic_name(n).is_ok())
        .map(String::as_str)
        .collect();
    for name in &valid_names {
        assert!(
            validate_topic_filter(name).is_ok(),
            "valid name {name:?} is not a valid filter"
        );
        assert!(matches(name, name), "{name:?} does not match itself");
        assert_eq!(
            matches("#", name),
            !name.starts_with('$'),
            "`#` against {name:?}"
        );
    }
    for filter in filters {
        let valid = validate_topic_filter(filter).is_ok();
        let _ = is_wildcard(filter);
        let shared = parse_shared(filter);
        // A shared subscription matches with the filter inside it.
        let inner = match shared {
            Ok(Some((_, inner))) => inner,
            _ => filter.as_str(),
        };
        for name in names {
            let matched = matches(inner, name);
            if valid && !is_wildcard(inner) && valid_names.contains(&name.as_str()) {
                assert_eq!(
                    matched,
                    inner == name,
                    "literal filter {inner:?} against {name:?}"
                );
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (mut names, mut filters) = (Vec::new(), Vec::new());
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
                    topics(&packet, &mut names, &mut filters);
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                    break;
                }
                Err(_) => break,
            }
        }
    }
    check_topics(&names, &filters);
});
