//! MQTT 5.0 properties, read and written here for every packet.
//!
//! `mqttbytes-ng`'s property readers do not notice a property that runs past the
//! declared property length (they read on into the payload), accept a property given
//! twice, and do not reject U+0000 in strings; so properties are ours, with one table
//! of which property each packet allows.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::frame::{read_vbi, vbi_len, write_vbi};
use super::{read_binary, read_string, DecodeError, EncodeError};

/// Every MQTT 5.0 property. A packet carries the few its type allows; the rest stay empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    pub payload_format_indicator: Option<u8>,
    pub message_expiry_interval: Option<u32>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    /// Several in a PUBLISH to a subscriber; at most one in a SUBSCRIBE.
    pub subscription_identifiers: Vec<u32>,
    pub session_expiry_interval: Option<u32>,
    pub assigned_client_identifier: Option<String>,
    pub server_keep_alive: Option<u16>,
    pub authentication_method: Option<String>,
    pub authentication_data: Option<Bytes>,
    pub request_problem_information: Option<u8>,
    pub will_delay_interval: Option<u32>,
    pub request_response_information: Option<u8>,
    pub response_information: Option<String>,
    pub server_reference: Option<String>,
    pub reason_string: Option<String>,
    pub receive_maximum: Option<u16>,
    pub topic_alias_maximum: Option<u16>,
    pub topic_alias: Option<u16>,
    pub maximum_qos: Option<u8>,
    pub retain_available: Option<u8>,
    /// In the order given; names may repeat (MQTT-3.3.2-17/18 keep the order).
    pub user_properties: Vec<(String, String)>,
    pub maximum_packet_size: Option<u32>,
    pub wildcard_subscription_available: Option<u8>,
    pub subscription_identifier_available: Option<u8>,
    pub shared_subscription_available: Option<u8>,
}

/// Which packet (or the will) properties belong to: each allows its own set (MQTT 5.0 §2.2.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Connect,
    Will,
    ConnAck,
    Publish,
    Ack,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

impl Context {
    fn name(self) -> &'static str {
        match self {
            Context::Connect => "CONNECT",
            Context::Will => "CONNECT",
            Context::ConnAck => "CONNACK",
            Context::Publish => "PUBLISH",
            Context::Ack => "acknowledgement",
            Context::Subscribe => "SUBSCRIBE",
            Context::SubAck => "SUBACK",
            Context::Unsubscribe => "UNSUBSCRIBE",
            Context::UnsubAck => "UNSUBACK",
            Context::Disconnect => "DISCONNECT",
            Context::Auth => "AUTH",
        }
    }

    /// Whether property `id` may appear here.
    fn allows(self, id: u8) -> bool {
        use Context::*;
        match id {
            0x01 | 0x02 | 0x03 | 0x08 | 0x09 => matches!(self, Publish | Will),
            0x0B => matches!(self, Publish | Subscribe),
            0x11 => matches!(self, Connect | ConnAck | Disconnect),
            0x12 | 0x13 | 0x1A | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => self == ConnAck,
            0x15 | 0x16 => matches!(self, Connect | ConnAck | Auth),
            0x17 | 0x19 => self == Connect,
            0x18 => self == Will,
            0x1C => matches!(self, ConnAck | Disconnect),
            0x1F => matches!(self, ConnAck | Ack | SubAck | UnsubAck | Disconnect | Auth),
            0x21 | 0x22 | 0x27 => matches!(self, Connect | ConnAck),
            0x23 => self == Publish,
            0x26 => true,
            _ => false,
        }
    }
}

impl Properties {
    /// No properties, usable in a `static` (the same as `Properties::default()`).
    pub const EMPTY: Properties = Properties {
        payload_format_indicator: None,
        message_expiry_interval: None,
        content_type: None,
        response_topic: None,
        correlation_data: None,
        subscription_identifiers: Vec::new(),
        session_expiry_interval: None,
        assigned_client_identifier: None,
        server_keep_alive: None,
        authentication_method: None,
        authentication_data: None,
        request_problem_information: None,
        will_delay_interval: None,
        request_response_information: None,
        response_information: None,
        server_reference: None,
        reason_string: None,
        receive_maximum: None,
        topic_alias_maximum: None,
        topic_alias: None,
        maximum_qos: None,
        retain_available: None,
        user_properties: Vec::new(),
        maximum_packet_size: None,
        wildcard_subscription_available: None,
        subscription_identifier_available: None,
        shared_subscription_available: None,
    };

    pub fn is_empty(&self) -> bool {
        *self == Properties::default()
    }

    /// Reads a property length and the properties it covers.
    pub(crate) fn read(body: &mut Bytes, context: Context) -> Result<Properties, DecodeError> {
        let packet = context.name();
        let len = read_vbi(body).map_err(|reason| DecodeError::malformed(packet, reason))? as usize;
        if body.remaining() < len {
            return Err(DecodeError::malformed(
                packet,
                "property length runs past the packet",
            ));
        }
        let mut block = body.split_to(len);
        let mut p = Properties::default();
        let mut seen = [false; 0x30];
        while block.has_remaining() {
            let id = block.get_u8();
            if !context.allows(id) {
                return Err(DecodeError::malformed(
                    packet,
                    format!("property {id:#04x} is not allowed here"),
                ));
            }
            // Only user properties and (in PUBLISH) subscription identifiers may repeat.
            let repeatable = id == 0x26 || (id == 0x0B && context == Context::Publish);
            if seen[id as usize] && !repeatable {
                // MQTT 5.0 §2.2.2.2: "a Protocol Error to include the same property twice".
                return Err(DecodeError::protocol(
                    packet,
                    format!("property {id:#04x} given twice"),
                ));
            }
            seen[id as usize] = true;
            let b = &mut block;
            let need = |b: &Bytes, n: usize| {
                if b.remaining() < n {
                    Err(DecodeError::malformed(
                        packet,
                        "property runs past the property length",
                    ))
                } else {
                    Ok(())
                }
            };
            let byte = |b: &mut Bytes| -> Result<u8, DecodeError> {
                need(b, 1)?;
                Ok(b.get_u8())
            };
            let two = |b: &mut Bytes| -> Result<u16, DecodeError> {
                need(b, 2)?;
                Ok(b.get_u16())
            };
            let four = |b: &mut Bytes| -> Result<u32, DecodeError> {
                need(b, 4)?;
                Ok(b.get_u32())
            };
            let flag = |b: &mut Bytes| -> Result<u8, DecodeError> {
                let v = byte(b)?;
                if v > 1 {
                    return Err(DecodeError::protocol(
                        packet,
                        format!("property {id:#04x} must be 0 or 1"),
                    ));
                }
                Ok(v)
            };
            match id {
                0x01 => p.payload_format_indicator = Some(flag(b)?),
                0x02 => p.message_expiry_interval = Some(four(b)?),
                0x03 => p.content_type = Some(read_string(b, packet, "content type")?),
                0x08 => p.response_topic = Some(read_string(b, packet, "response topic")?),
                0x09 => p.correlation_data = Some(read_binary(b, packet, "correlation data")?),
                0x0B => {
                    let id =
                        read_vbi(b).map_err(|reason| DecodeError::malformed(packet, reason))?;
                    if id == 0 {
                        return Err(DecodeError::protocol(packet, "subscription identifier 0"));
                    }
                    p.subscription_identifiers.push(id);
                }
                0x11 => p.session_expiry_interval = Some(four(b)?),
                0x12 => {
                    p.assigned_client_identifier =
                        Some(read_string(b, packet, "assigned client identifier")?)
                }
                0x13 => p.server_keep_alive = Some(two(b)?),
                0x15 => {
                    p.authentication_method = Some(read_string(b, packet, "authentication method")?)
                }
                0x16 => {
                    p.authentication_data = Some(read_binary(b, packet, "authentication data")?)
                }
                0x17 => p.request_problem_information = Some(flag(b)?),
                0x18 => p.will_delay_interval = Some(four(b)?),
                0x19 => p.request_response_information = Some(flag(b)?),
                0x1A => {
                    p.response_information = Some(read_string(b, packet, "response information")?)
                }
                0x1C => p.server_reference = Some(read_string(b, packet, "server reference")?),
                0x1F => p.reason_string = Some(read_string(b, packet, "reason string")?),
                0x21 => {
                    let v = two(b)?;
                    if v == 0 {
                        return Err(DecodeError::protocol(packet, "receive maximum 0"));
                    }
                    p.receive_maximum = Some(v);
                }
                0x22 => p.topic_alias_maximum = Some(two(b)?),
                0x23 => p.topic_alias = Some(two(b)?),
                0x24 => p.maximum_qos = Some(flag(b)?),
                0x25 => p.retain_available = Some(flag(b)?),
                0x26 => {
                    let key = read_string(b, packet, "user property name")?;
                    let value = read_string(b, packet, "user property value")?;
                    p.user_properties.push((key, value));
                }
                0x27 => {
                    let v = four(b)?;
                    if v == 0 {
                        return Err(DecodeError::protocol(packet, "maximum packet size 0"));
                    }
                    p.maximum_packet_size = Some(v);
                }
                0x28 => p.wildcard_subscription_available = Some(flag(b)?),
                0x29 => p.subscription_identifier_available = Some(flag(b)?),
                0x2A => p.shared_subscription_available = Some(flag(b)?),
                _ => unreachable!("allows() admits only known ids"),
            }
        }
        Ok(p)
    }

    /// Bytes the properties take, without their length prefix.
    pub(crate) fn len(&self) -> usize {
        let s = |v: &Option<String>| v.as_ref().map_or(0, |s| 3 + s.len());
        let b = |v: &Option<Bytes>| v.as_ref().map_or(0, |s| 3 + s.len());
        let n = |present: bool, size: usize| if present { 1 + size } else { 0 };
        n(self.payload_format_indicator.is_some(), 1)
            + n(self.message_expiry_interval.is_some(), 4)
            + s(&self.content_type)
            + s(&self.response_topic)
            + b(&self.correlation_data)
            + self
                .subscription_identifiers
                .iter()
                .map(|id| 1 + vbi_len(*id as usize))
                .sum::<usize>()
            + n(self.session_expiry_interval.is_some(), 4)
            + s(&self.assigned_client_identifier)
            + n(self.server_keep_alive.is_some(), 2)
            + s(&self.authentication_method)
            + b(&self.authentication_data)
            + n(self.request_problem_information.is_some(), 1)
            + n(self.will_delay_interval.is_some(), 4)
            + n(self.request_response_information.is_some(), 1)
            + s(&self.response_information)
            + s(&self.server_reference)
            + s(&self.reason_string)
            + n(self.receive_maximum.is_some(), 2)
            + n(self.topic_alias_maximum.is_some(), 2)
            + n(self.topic_alias.is_some(), 2)
            + n(self.maximum_qos.is_some(), 1)
            + n(self.retain_available.is_some(), 1)
            + self
                .user_properties
                .iter()
                .map(|(k, v)| 5 + k.len() + v.len())
                .sum::<usize>()
            + n(self.maximum_packet_size.is_some(), 4)
            + n(self.wildcard_subscription_available.is_some(), 1)
            + n(self.subscription_identifier_available.is_some(), 1)
            + n(self.shared_subscription_available.is_some(), 1)
    }

    /// Bytes the properties take with their length prefix.
    pub(crate) fn encoded_len(&self) -> usize {
        let len = self.len();
        vbi_len(len) + len
    }

    /// Writes the property length and the properties.
    pub(crate) fn write(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        write_vbi(buf, self.len());
        let s = |buf: &mut BytesMut, id: u8, v: &Option<String>| -> Result<(), EncodeError> {
            if let Some(v) = v {
                buf.put_u8(id);
                super::connect::put_field(buf, v.as_bytes())?;
            }
            Ok(())
        };
        let b = |buf: &mut BytesMut, id: u8, v: &Option<Bytes>| -> Result<(), EncodeError> {
            if let Some(v) = v {
                buf.put_u8(id);
                super::connect::put_field(buf, v)?;
            }
            Ok(())
        };
        let u8p = |buf: &mut BytesMut, id: u8, v: Option<u8>| {
            if let Some(v) = v {
                buf.put_u8(id);
                buf.put_u8(v);
            }
        };
        let u16p = |buf: &mut BytesMut, id: u8, v: Option<u16>| {
            if let Some(v) = v {
                buf.put_u8(id);
                buf.put_u16(v);
            }
        };
        let u32p = |buf: &mut BytesMut, id: u8, v: Option<u32>| {
            if let Some(v) = v {
                buf.put_u8(id);
                buf.put_u32(v);
            }
        };
        u8p(buf, 0x01, self.payload_format_indicator);
        u32p(buf, 0x02, self.message_expiry_interval);
        s(buf, 0x03, &self.content_type)?;
        s(buf, 0x08, &self.response_topic)?;
        b(buf, 0x09, &self.correlation_data)?;
        for id in &self.subscription_identifiers {
            buf.put_u8(0x0B);
            write_vbi(buf, *id as usize);
        }
        u32p(buf, 0x11, self.session_expiry_interval);
        s(buf, 0x12, &self.assigned_client_identifier)?;
        u16p(buf, 0x13, self.server_keep_alive);
        s(buf, 0x15, &self.authentication_method)?;
        b(buf, 0x16, &self.authentication_data)?;
        u8p(buf, 0x17, self.request_problem_information);
        u32p(buf, 0x18, self.will_delay_interval);
        u8p(buf, 0x19, self.request_response_information);
        s(buf, 0x1A, &self.response_information)?;
        s(buf, 0x1C, &self.server_reference)?;
        s(buf, 0x1F, &self.reason_string)?;
        u16p(buf, 0x21, self.receive_maximum);
        u16p(buf, 0x22, self.topic_alias_maximum);
        u16p(buf, 0x23, self.topic_alias);
        u8p(buf, 0x24, self.maximum_qos);
        u8p(buf, 0x25, self.retain_available);
        for (k, v) in &self.user_properties {
            buf.put_u8(0x26);
            super::connect::put_field(buf, k.as_bytes())?;
            super::connect::put_field(buf, v.as_bytes())?;
        }
        u32p(buf, 0x27, self.maximum_packet_size);
        u8p(buf, 0x28, self.wildcard_subscription_available);
        u8p(buf, 0x29, self.subscription_identifier_available);
        u8p(buf, 0x2A, self.shared_subscription_available);
        Ok(())
    }
}
