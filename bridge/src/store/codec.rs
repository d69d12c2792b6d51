//! Byte layouts of the stored records. Messages are stored as an MQTT 5.0 PUBLISH
//! (through the shared codec) after a small header, so every property survives.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use protocol::{encode_publish, Decoder, Packet, Properties, ProtocolVersion, PublishRef, QoS};

use super::StoredEntry;

/// A message as stored: everything the broker's `Message` holds, with the expiry as a
/// wall-clock time so it means the same after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub properties: Properties,
    /// Unix milliseconds.
    pub expires_at: Option<u64>,
    pub origin: Option<String>,
}

/// The Subscription Identifiers one delivery carries (MQTT 5.0): one for each subscription
/// of the client that the message matched and that has one (MQTT-3.3.4-4).
///
/// Nearly always none or one: those are held inline, and the whole is 16 bytes, as every
/// queued message holds one (a general small vector is 24, and made fan-out measurably
/// slower). Identifiers are never 0 (MQTT 5.0 §3.8.2.1.2), so 0 stands for none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionIds(Ids);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ids {
    /// None (0), or one.
    One(u32),
    /// Two or more.
    Many(Box<[u32]>),
}

#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<SubscriptionIds>() == 16);

impl SubscriptionIds {
    /// No identifiers.
    pub const fn new() -> SubscriptionIds {
        SubscriptionIds(Ids::One(0))
    }

    #[inline]
    pub fn as_slice(&self) -> &[u32] {
        match &self.0 {
            Ids::One(0) => &[],
            Ids::One(id) => std::slice::from_ref(id),
            Ids::Many(ids) => ids,
        }
    }

    /// Bytes held outside the value itself (identifiers beyond one).
    #[inline]
    pub fn heap_bytes(&self) -> usize {
        match &self.0 {
            Ids::One(_) => 0,
            Ids::Many(ids) => std::mem::size_of_val::<[u32]>(ids),
        }
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        // `Many` is only ever made with two or more.
        matches!(self.0, Ids::One(0))
    }
}

impl Default for SubscriptionIds {
    fn default() -> Self {
        SubscriptionIds::new()
    }
}

impl From<Option<u32>> for SubscriptionIds {
    fn from(id: Option<u32>) -> Self {
        SubscriptionIds(Ids::One(id.unwrap_or(0)))
    }
}

/// The identifiers in `ids` that are identifiers (not 0), in order.
impl From<Vec<u32>> for SubscriptionIds {
    fn from(mut ids: Vec<u32>) -> Self {
        ids.retain(|&id| id != 0);
        match ids.as_slice() {
            [] => SubscriptionIds::new(),
            [id] => SubscriptionIds(Ids::One(*id)),
            _ => SubscriptionIds(Ids::Many(ids.into_boxed_slice())),
        }
    }
}

/// The options of a stored subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubRecord {
    pub qos: u8,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: u8,
    pub subscription_id: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
#[error("corrupt record: {0}")]
pub struct CorruptRecord(&'static str);

fn need(buf: &[u8], n: usize, what: &'static str) -> Result<(), CorruptRecord> {
    if buf.len() < n {
        Err(CorruptRecord(what))
    } else {
        Ok(())
    }
}

pub fn encode_message(message: &MessageRecord) -> Vec<u8> {
    let mut buf = BytesMut::with_capacity(32 + message.topic.len() + message.payload.len());
    buf.put_u64(message.expires_at.unwrap_or(0));
    let origin = message.origin.as_deref().unwrap_or("");
    buf.put_u16(origin.len() as u16);
    buf.put_slice(origin.as_bytes());
    let result = encode_publish(
        PublishRef {
            dup: false,
            qos: message.qos,
            retain: message.retain,
            topic: &message.topic,
            pkid: 1,
            payload: &message.payload,
            properties: &message.properties,
        },
        ProtocolVersion::V5,
        &mut buf,
    );
    debug_assert!(result.is_ok(), "{result:?}");
    buf.to_vec()
}

pub fn decode_message(bytes: &[u8]) -> Result<MessageRecord, CorruptRecord> {
    let mut buf = bytes;
    need(buf, 10, "message header")?;
    let expires_at = buf.get_u64();
    let origin_len = buf.get_u16() as usize;
    need(buf, origin_len, "message origin")?;
    let origin = std::str::from_utf8(&buf[..origin_len])
        .map_err(|_| CorruptRecord("message origin"))?
        .to_owned();
    buf.advance(origin_len);
    let mut decoder = Decoder::new(usize::MAX);
    decoder.set_version(ProtocolVersion::V5);
    let mut packet = BytesMut::from(buf);
    let Ok(Some(Packet::Publish(publish))) = decoder.decode(&mut packet) else {
        return Err(CorruptRecord("message body"));
    };
    Ok(MessageRecord {
        topic: publish.topic,
        payload: publish.payload,
        qos: publish.qos,
        retain: publish.retain,
        properties: publish.properties,
        expires_at: (expires_at != 0).then_some(expires_at),
        origin: (!origin.is_empty()).then_some(origin),
    })
}

pub fn encode_session(
    expiry: u32,
    disconnected_at: Option<u64>,
    username: Option<&str>,
) -> Vec<u8> {
    let mut buf = Vec::with_capacity(16);
    buf.put_u32(expiry);
    buf.put_u64(disconnected_at.unwrap_or(0));
    match username {
        Some(name) => {
            buf.put_u8(1);
            buf.put_u16(name.len() as u16);
            buf.put_slice(name.as_bytes());
        }
        None => buf.put_u8(0),
    }
    buf
}

pub type SessionFields = (u32, Option<u64>, Option<String>);

pub fn decode_session(bytes: &[u8]) -> Result<SessionFields, CorruptRecord> {
    let mut buf = bytes;
    need(buf, 13, "session")?;
    let expiry = buf.get_u32();
    let disconnected_at = buf.get_u64();
    let username = if buf.get_u8() == 1 {
        need(buf, 2, "session user")?;
        let len = buf.get_u16() as usize;
        need(buf, len, "session user")?;
        Some(
            std::str::from_utf8(&buf[..len])
                .map_err(|_| CorruptRecord("session user"))?
                .to_owned(),
        )
    } else {
        None
    };
    Ok((
        expiry,
        (disconnected_at != 0).then_some(disconnected_at),
        username,
    ))
}

pub fn encode_sub(record: &SubRecord) -> Vec<u8> {
    let mut buf = Vec::with_capacity(8);
    buf.put_u8(record.qos);
    buf.put_u8(record.no_local as u8 | (record.retain_as_published as u8) << 1);
    buf.put_u8(record.retain_handling);
    buf.put_u32(record.subscription_id.unwrap_or(0));
    buf
}

pub fn decode_sub(bytes: &[u8]) -> Result<SubRecord, CorruptRecord> {
    let mut buf = bytes;
    need(buf, 7, "subscription")?;
    let qos = buf.get_u8();
    let flags = buf.get_u8();
    let retain_handling = buf.get_u8();
    let id = buf.get_u32();
    Ok(SubRecord {
        qos,
        no_local: flags & 1 != 0,
        retain_as_published: flags & 2 != 0,
        retain_handling,
        subscription_id: (id != 0).then_some(id),
    })
}

/// A queue entry: message id, QoS, retain, the first subscription identifier (0: none),
/// packet id, stage, then any further subscription identifiers (an entry of the first
/// layout, without them, reads back the same).
pub fn encode_entry(
    message_id: u64,
    qos: u8,
    retain: bool,
    subscription_ids: &SubscriptionIds,
    pkid: u16,
    stage: u8,
) -> Vec<u8> {
    let subscription_ids = subscription_ids.as_slice();
    let mut buf = Vec::with_capacity(17 + 4 * subscription_ids.len().saturating_sub(1));
    buf.put_u64(message_id);
    buf.put_u8(qos);
    buf.put_u8(retain as u8);
    buf.put_u32(subscription_ids.first().copied().unwrap_or(0));
    buf.put_u16(pkid);
    buf.put_u8(stage);
    for id in subscription_ids.iter().skip(1) {
        buf.put_u32(*id);
    }
    buf
}

/// The message id of a stored entry (the writer needs it for reference counting).
pub fn entry_message_id(bytes: &[u8]) -> Option<u64> {
    bytes
        .get(..8)
        .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
}

pub fn decode_entry(seq: u64, bytes: &[u8]) -> Result<StoredEntry, CorruptRecord> {
    let mut buf = bytes;
    need(buf, 17, "queue entry")?;
    let message_id = buf.get_u64();
    let qos = buf.get_u8();
    let retain = buf.get_u8() != 0;
    let sid = buf.get_u32();
    let pkid = buf.get_u16();
    let stage = buf.get_u8();
    let mut ids = vec![sid];
    while buf.len() >= 4 {
        ids.push(buf.get_u32());
    }
    let subscription_ids = SubscriptionIds::from(ids);
    Ok(StoredEntry {
        seq,
        message_id,
        // Filled in by the loader from the messages table.
        message: Arc::new(MessageRecord {
            topic: String::new(),
            payload: Bytes::new(),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Properties::default(),
            expires_at: None,
            origin: None,
        }),
        qos,
        retain,
        subscription_ids,
        pkid,
        stage,
    })
}

/// Rewrites the stage and packet id of an encoded entry.
pub fn restage_entry(bytes: &[u8], pkid: u16, stage: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if out.len() >= 17 {
        out[14..16].copy_from_slice(&pkid.to_be_bytes());
        out[16] = stage;
    }
    out
}

pub fn encode_will(fire_at: u64, message: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(8 + message.len());
    buf.put_u64(fire_at);
    buf.put_slice(message);
    buf
}

pub fn decode_will(bytes: &[u8]) -> Result<(u64, MessageRecord), CorruptRecord> {
    need(bytes, 8, "will")?;
    let fire_at = u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
    Ok((fire_at, decode_message(&bytes[8..])?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let message = MessageRecord {
            topic: "a/b".into(),
            payload: Bytes::from_static(b"payload"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: Properties {
                user_properties: vec![("k".into(), "v".into())],
                content_type: Some("text/plain".into()),
                ..Properties::default()
            },
            expires_at: Some(1_700_000_000_000),
            origin: Some("dev-1".into()),
        };
        assert_eq!(decode_message(&encode_message(&message)).unwrap(), message);
        assert_eq!(
            decode_session(&encode_session(60, Some(5), Some("alice"))).unwrap(),
            (60, Some(5), Some("alice".into()))
        );
        let sub = SubRecord {
            qos: 2,
            no_local: true,
            retain_as_published: false,
            retain_handling: 1,
            subscription_id: Some(7),
        };
        assert_eq!(decode_sub(&encode_sub(&sub)).unwrap(), sub);
        for ids in [&[][..], &[3], &[3, 70_000, 268_435_455]] {
            let list = SubscriptionIds::from(ids.to_vec());
            assert_eq!(list.as_slice(), ids);
            assert_eq!(list.is_empty(), ids.is_empty());
            let entry = encode_entry(42, 1, true, &list, 0, 0);
            let restaged = restage_entry(&entry, 9, 2);
            let decoded = decode_entry(5, &restaged).unwrap();
            assert_eq!(
                (
                    decoded.message_id,
                    decoded.qos,
                    decoded.retain,
                    decoded.subscription_ids.as_slice(),
                    decoded.pkid,
                    decoded.stage
                ),
                (42, 1, true, ids, 9, 2)
            );
            assert_eq!(entry_message_id(&entry), Some(42));
        }
        let will = encode_will(99, &encode_message(&message));
        assert_eq!(decode_will(&will).unwrap(), (99, message));
    }

    #[test]
    fn corrupt_records_are_errors_not_panics() {
        for bytes in [&b""[..], b"\x00"] {
            assert!(decode_message(bytes).is_err());
            assert!(decode_session(bytes).is_err());
            assert!(decode_sub(bytes).is_err());
            assert!(decode_entry(1, bytes).is_err());
            assert!(decode_will(bytes).is_err());
        }
        // An origin length running past the record, and a body that is no PUBLISH.
        assert!(decode_message(b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x05ab").is_err());
        assert!(decode_message(b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xc0\x00").is_err());
    }
}
