//! MQTT 5.0 packets built and parsed by hand, and a blocking raw TCP client for them.
//!
//! Like [`crate::wire`] (3.1.1), this is written straight from the OASIS MQTT 5.0 spec
//! (sections 1.5, 2 and 3) and shares nothing with the project's `protocol` crate, so the tests
//! keep an independent view of the wire format: properties, reason codes, topic aliases, and
//! the DISCONNECT packets a server sends before closing.

use std::time::Duration;

use crate::wire::Conn;
pub use crate::wire::{packet, put_bytes, put_remaining_length, WAIT};

/// Property identifiers (MQTT 5.0 section 2.2.2.2).
pub mod prop {
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const REASON_STRING: u8 = 0x1F;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

/// Reason codes (MQTT 5.0 section 2.4) the tests look for.
pub mod rc {
    pub const SUCCESS: u8 = 0x00;
    pub const GRANTED_QOS_1: u8 = 0x01;
    pub const GRANTED_QOS_2: u8 = 0x02;
    pub const DISCONNECT_WITH_WILL: u8 = 0x04;
    pub const NO_MATCHING_SUBSCRIBERS: u8 = 0x10;
    pub const NO_SUBSCRIPTION_EXISTED: u8 = 0x11;
    pub const MALFORMED_PACKET: u8 = 0x81;
    pub const PROTOCOL_ERROR: u8 = 0x82;
    pub const BAD_AUTHENTICATION_METHOD: u8 = 0x8C;
    pub const KEEP_ALIVE_TIMEOUT: u8 = 0x8D;
    pub const SESSION_TAKEN_OVER: u8 = 0x8E;
    pub const TOPIC_FILTER_INVALID: u8 = 0x8F;
    pub const TOPIC_NAME_INVALID: u8 = 0x90;
    pub const PACKET_IDENTIFIER_NOT_FOUND: u8 = 0x92;
    pub const RECEIVE_MAXIMUM_EXCEEDED: u8 = 0x93;
    pub const TOPIC_ALIAS_INVALID: u8 = 0x94;
    pub const PACKET_TOO_LARGE: u8 = 0x95;
}

/// The data type of a property (MQTT 5.0 section 1.5), by identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Byte,
    Two,
    Four,
    Var,
    Str,
    Bin,
    Pair,
}

fn kind_of(id: u8) -> Option<Kind> {
    use prop::*;
    Some(match id {
        PAYLOAD_FORMAT_INDICATOR
        | REQUEST_PROBLEM_INFORMATION
        | REQUEST_RESPONSE_INFORMATION
        | MAXIMUM_QOS
        | RETAIN_AVAILABLE
        | WILDCARD_SUBSCRIPTION_AVAILABLE
        | SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | SHARED_SUBSCRIPTION_AVAILABLE => Kind::Byte,
        SERVER_KEEP_ALIVE | RECEIVE_MAXIMUM | TOPIC_ALIAS_MAXIMUM | TOPIC_ALIAS => Kind::Two,
        MESSAGE_EXPIRY_INTERVAL
        | SESSION_EXPIRY_INTERVAL
        | WILL_DELAY_INTERVAL
        | MAXIMUM_PACKET_SIZE => Kind::Four,
        SUBSCRIPTION_IDENTIFIER => Kind::Var,
        CONTENT_TYPE
        | RESPONSE_TOPIC
        | ASSIGNED_CLIENT_IDENTIFIER
        | AUTHENTICATION_METHOD
        | RESPONSE_INFORMATION
        | SERVER_REFERENCE
        | REASON_STRING => Kind::Str,
        CORRELATION_DATA | AUTHENTICATION_DATA => Kind::Bin,
        USER_PROPERTY => Kind::Pair,
        _ => return None,
    })
}

/// One property value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Byte(u8),
    Two(u16),
    Four(u32),
    Var(u32),
    Str(String),
    Bin(Vec<u8>),
    Pair(String, String),
}

/// A property list in wire order (repeats kept: user properties, subscription identifiers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Props(pub Vec<(u8, Value)>);

impl Props {
    pub fn new() -> Props {
        Props::default()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn byte(mut self, id: u8, v: u8) -> Self {
        self.0.push((id, Value::Byte(v)));
        self
    }
    pub fn two(mut self, id: u8, v: u16) -> Self {
        self.0.push((id, Value::Two(v)));
        self
    }
    pub fn four(mut self, id: u8, v: u32) -> Self {
        self.0.push((id, Value::Four(v)));
        self
    }
    pub fn var(mut self, id: u8, v: u32) -> Self {
        self.0.push((id, Value::Var(v)));
        self
    }
    pub fn str(mut self, id: u8, v: &str) -> Self {
        self.0.push((id, Value::Str(v.to_owned())));
        self
    }
    pub fn bin(mut self, id: u8, v: &[u8]) -> Self {
        self.0.push((id, Value::Bin(v.to_vec())));
        self
    }
    pub fn user(mut self, k: &str, v: &str) -> Self {
        self.0
            .push((prop::USER_PROPERTY, Value::Pair(k.to_owned(), v.to_owned())));
        self
    }

    /// Every value with identifier `id`, in order.
    pub fn all(&self, id: u8) -> Vec<&Value> {
        self.0
            .iter()
            .filter(|(i, _)| *i == id)
            .map(|(_, v)| v)
            .collect()
    }
    /// How many times `id` occurs.
    pub fn count(&self, id: u8) -> usize {
        self.0.iter().filter(|(i, _)| *i == id).count()
    }
    pub fn get(&self, id: u8) -> Option<&Value> {
        self.0.iter().find(|(i, _)| *i == id).map(|(_, v)| v)
    }
    pub fn get_byte(&self, id: u8) -> Option<u8> {
        match self.get(id)? {
            Value::Byte(v) => Some(*v),
            _ => None,
        }
    }
    pub fn get_two(&self, id: u8) -> Option<u16> {
        match self.get(id)? {
            Value::Two(v) => Some(*v),
            _ => None,
        }
    }
    pub fn get_four(&self, id: u8) -> Option<u32> {
        match self.get(id)? {
            Value::Four(v) => Some(*v),
            _ => None,
        }
    }
    pub fn get_str(&self, id: u8) -> Option<&str> {
        match self.get(id)? {
            Value::Str(v) => Some(v),
            _ => None,
        }
    }
    pub fn get_bin(&self, id: u8) -> Option<&[u8]> {
        match self.get(id)? {
            Value::Bin(v) => Some(v),
            _ => None,
        }
    }
    /// Subscription identifiers, in order.
    pub fn subscription_ids(&self) -> Vec<u32> {
        self.all(prop::SUBSCRIPTION_IDENTIFIER)
            .into_iter()
            .filter_map(|v| match v {
                Value::Var(n) => Some(*n),
                _ => None,
            })
            .collect()
    }
    /// User properties, in order, duplicates kept.
    pub fn users(&self) -> Vec<(String, String)> {
        self.all(prop::USER_PROPERTY)
            .into_iter()
            .filter_map(|v| match v {
                Value::Pair(k, v) => Some((k.clone(), v.clone())),
                _ => None,
            })
            .collect()
    }

    /// The encoded property section: its length (a variable byte integer), then the properties.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut body = Vec::new();
        for (id, v) in &self.0 {
            body.push(*id);
            match v {
                Value::Byte(b) => body.push(*b),
                Value::Two(n) => body.extend_from_slice(&n.to_be_bytes()),
                Value::Four(n) => body.extend_from_slice(&n.to_be_bytes()),
                Value::Var(n) => put_remaining_length(*n as usize, &mut body),
                Value::Str(s) => put_bytes(s.as_bytes(), &mut body),
                Value::Bin(b) => put_bytes(b, &mut body),
                Value::Pair(k, v) => {
                    put_bytes(k.as_bytes(), &mut body);
                    put_bytes(v.as_bytes(), &mut body);
                }
            }
        }
        put_remaining_length(body.len(), out);
        out.extend_from_slice(&body);
    }
}

/// Error from decoding: the bytes do not form a valid MQTT 5.0 server packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

fn bad<T>(msg: impl Into<String>) -> Result<T, Malformed> {
    Err(Malformed(msg.into()))
}

/// A cursor over a packet body.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(b: &'a [u8], what: &'static str) -> Self {
        Reader { b, at: 0, what }
    }
    fn left(&self) -> usize {
        self.b.len() - self.at
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.left() < n {
            return bad(format!(
                "{}: needs {n} more bytes at offset {}, has {} ({:?})",
                self.what,
                self.at,
                self.left(),
                self.b
            ));
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Malformed> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, Malformed> {
        let s = self.take(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn var(&mut self) -> Result<u32, Malformed> {
        let mut n: u32 = 0;
        for i in 0..4 {
            let b = self.u8()?;
            n |= u32::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        bad(format!(
            "{}: variable byte integer longer than 4 bytes",
            self.what
        ))
    }
    fn bin(&mut self) -> Result<Vec<u8>, Malformed> {
        let n = self.u16()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn string(&mut self) -> Result<String, Malformed> {
        let b = self.bin()?;
        String::from_utf8(b).map_err(|_| Malformed(format!("{}: string not UTF-8", self.what)))
    }
    fn rest(&mut self) -> &'a [u8] {
        let s = &self.b[self.at..];
        self.at = self.b.len();
        s
    }
    fn props(&mut self) -> Result<Props, Malformed> {
        let len = self.var()? as usize;
        let section = self.take(len)?;
        let mut r = Reader::new(section, self.what);
        let mut props = Props::new();
        while r.left() > 0 {
            let id = r.u8()?;
            let Some(kind) = kind_of(id) else {
                return bad(format!(
                    "{}: unknown property identifier {id:#04x}",
                    self.what
                ));
            };
            let v = match kind {
                Kind::Byte => Value::Byte(r.u8()?),
                Kind::Two => Value::Two(r.u16()?),
                Kind::Four => Value::Four(r.u32()?),
                Kind::Var => Value::Var(r.var()?),
                Kind::Str => Value::Str(r.string()?),
                Kind::Bin => Value::Bin(r.bin()?),
                Kind::Pair => Value::Pair(r.string()?, r.string()?),
            };
            props.0.push((id, v));
        }
        Ok(props)
    }
    fn end(&self) -> Result<(), Malformed> {
        if self.left() != 0 {
            return bad(format!(
                "{}: {} trailing bytes ({:?})",
                self.what,
                self.left(),
                self.b
            ));
        }
        Ok(())
    }
}

/// A Will message inside a 5.0 CONNECT.
#[derive(Debug, Clone)]
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    pub props: Props,
}

/// A 5.0 CONNECT, built with chained setters then [`Connect::bytes`].
#[derive(Debug, Clone)]
pub struct Connect {
    pub client_id: String,
    pub clean_start: bool,
    pub keep_alive: u16,
    pub props: Props,
    pub will: Option<Will>,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
}

/// A 5.0 CONNECT with clean start, keep-alive 60 s and no properties.
pub fn connect(client_id: &str) -> Connect {
    Connect {
        client_id: client_id.to_owned(),
        clean_start: true,
        keep_alive: 60,
        props: Props::new(),
        will: None,
        username: None,
        password: None,
    }
}

impl Connect {
    pub fn clean_start(mut self, clean: bool) -> Self {
        self.clean_start = clean;
        self
    }
    pub fn keep_alive(mut self, secs: u16) -> Self {
        self.keep_alive = secs;
        self
    }
    pub fn props(mut self, props: Props) -> Self {
        self.props = props;
        self
    }
    /// Adds the Session Expiry Interval property.
    pub fn session_expiry(mut self, secs: u32) -> Self {
        self.props = self.props.four(prop::SESSION_EXPIRY_INTERVAL, secs);
        self
    }
    pub fn will(
        mut self,
        topic: &str,
        payload: &[u8],
        qos: u8,
        retain: bool,
        props: Props,
    ) -> Self {
        self.will = Some(Will {
            topic: topic.to_owned(),
            payload: payload.to_vec(),
            qos,
            retain,
            props,
        });
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut body = Vec::new();
        put_bytes(b"MQTT", &mut body);
        body.push(5);
        let mut flags = 0u8;
        if self.clean_start {
            flags |= 0x02;
        }
        if let Some(w) = &self.will {
            flags |= 0x04 | (w.qos << 3);
            if w.retain {
                flags |= 0x20;
            }
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        if self.username.is_some() {
            flags |= 0x80;
        }
        body.push(flags);
        body.extend_from_slice(&self.keep_alive.to_be_bytes());
        self.props.encode(&mut body);
        put_bytes(self.client_id.as_bytes(), &mut body);
        if let Some(w) = &self.will {
            w.props.encode(&mut body);
            put_bytes(w.topic.as_bytes(), &mut body);
            put_bytes(&w.payload, &mut body);
        }
        if let Some(u) = &self.username {
            put_bytes(u.as_bytes(), &mut body);
        }
        if let Some(p) = &self.password {
            put_bytes(p, &mut body);
        }
        packet(0x10, &body)
    }
}

/// A 5.0 PUBLISH (DUP 0). `pid` is ignored for QoS 0.
pub fn publish(
    topic: &str,
    payload: &[u8],
    qos: u8,
    retain: bool,
    pid: u16,
    props: &Props,
) -> Vec<u8> {
    let mut first = 0x30 | (qos << 1);
    if retain {
        first |= 0x01;
    }
    let mut body = Vec::new();
    put_bytes(topic.as_bytes(), &mut body);
    if qos > 0 {
        body.extend_from_slice(&pid.to_be_bytes());
    }
    props.encode(&mut body);
    body.extend_from_slice(payload);
    packet(first, &body)
}

/// Subscription options byte (MQTT 5.0 section 3.8.3.1).
pub fn sub_options(qos: u8, no_local: bool, retain_as_published: bool, retain_handling: u8) -> u8 {
    qos | (u8::from(no_local) << 2) | (u8::from(retain_as_published) << 3) | (retain_handling << 4)
}

/// SUBSCRIBE with (filter, options byte) pairs.
pub fn subscribe(pid: u16, props: &Props, filters: &[(&str, u8)]) -> Vec<u8> {
    let mut body = pid.to_be_bytes().to_vec();
    props.encode(&mut body);
    for (f, o) in filters {
        put_bytes(f.as_bytes(), &mut body);
        body.push(*o);
    }
    packet(0x82, &body)
}

pub fn unsubscribe(pid: u16, filters: &[&str]) -> Vec<u8> {
    let mut body = pid.to_be_bytes().to_vec();
    Props::new().encode(&mut body);
    for f in filters {
        put_bytes(f.as_bytes(), &mut body);
    }
    packet(0xA2, &body)
}

/// PUBACK / PUBREC / PUBREL / PUBCOMP with a reason code (`first_byte` 0x40, 0x50, 0x62, 0x70).
pub fn ack(first_byte: u8, pid: u16, reason: u8) -> Vec<u8> {
    let mut body = pid.to_be_bytes().to_vec();
    if reason != 0 {
        body.push(reason);
    }
    packet(first_byte, &body)
}
pub fn puback(pid: u16) -> Vec<u8> {
    ack(0x40, pid, 0)
}
pub fn pubrec(pid: u16) -> Vec<u8> {
    ack(0x50, pid, 0)
}
pub fn pubrel(pid: u16) -> Vec<u8> {
    ack(0x62, pid, 0)
}
pub fn pubcomp(pid: u16) -> Vec<u8> {
    ack(0x70, pid, 0)
}

/// DISCONNECT with a reason code and properties.
pub fn disconnect(reason: u8, props: &Props) -> Vec<u8> {
    let mut body = vec![reason];
    props.encode(&mut body);
    packet(0xE0, &body)
}

/// A decoded server-to-client 5.0 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connack {
        session_present: bool,
        reason: u8,
        props: Props,
    },
    Publish {
        dup: bool,
        qos: u8,
        retain: bool,
        /// As sent: empty when only a topic alias is given.
        topic: String,
        pid: Option<u16>,
        props: Props,
        payload: Vec<u8>,
    },
    /// PUBACK (4), PUBREC (5), PUBREL (6) or PUBCOMP (7): packet type, id, reason, properties.
    Ack {
        kind: u8,
        pid: u16,
        reason: u8,
        props: Props,
    },
    Suback {
        pid: u16,
        props: Props,
        codes: Vec<u8>,
    },
    Unsuback {
        pid: u16,
        props: Props,
        codes: Vec<u8>,
    },
    Pingresp,
    Disconnect {
        reason: u8,
        props: Props,
    },
    Auth {
        reason: u8,
        props: Props,
    },
}

pub const PUBACK: u8 = 4;
pub const PUBREC: u8 = 5;
pub const PUBREL: u8 = 6;
pub const PUBCOMP: u8 = 7;

impl Packet {
    pub fn is_publish(&self) -> bool {
        matches!(self, Packet::Publish { .. })
    }
    /// The payload of a PUBLISH.
    pub fn payload(&self) -> Option<&[u8]> {
        match self {
            Packet::Publish { payload, .. } => Some(payload),
            _ => None,
        }
    }
}

/// Decodes one packet from the front of `buf`: Ok(None) if more bytes are needed.
pub fn decode(buf: &[u8]) -> Result<Option<(Packet, usize)>, Malformed> {
    if buf.is_empty() {
        return Ok(None);
    }
    let first = buf[0];
    let mut len: usize = 0;
    let mut i = 1;
    loop {
        if i >= buf.len() {
            return Ok(None);
        }
        if i > 4 {
            return bad("remaining length longer than 4 bytes");
        }
        let b = buf[i];
        len += ((b & 0x7F) as usize) << (7 * (i - 1));
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
    }
    if buf.len() < i + len {
        return Ok(None);
    }
    let body = &buf[i..i + len];
    let flags = first & 0x0F;
    let kind = first >> 4;
    let p = match kind {
        2 => {
            let mut r = Reader::new(body, "CONNACK");
            let ack_flags = r.u8()?;
            if ack_flags & 0xFE != 0 {
                return bad(format!("CONNACK flags {ack_flags:#04x}"));
            }
            let reason = r.u8()?;
            let props = r.props()?;
            r.end()?;
            Packet::Connack {
                session_present: ack_flags & 1 == 1,
                reason,
                props,
            }
        }
        3 => {
            let mut r = Reader::new(body, "PUBLISH");
            let qos = (flags >> 1) & 3;
            if qos == 3 {
                return bad("PUBLISH with QoS 3");
            }
            let topic = r.string()?;
            let pid = if qos > 0 { Some(r.u16()?) } else { None };
            let props = r.props()?;
            Packet::Publish {
                dup: flags & 0x08 != 0,
                qos,
                retain: flags & 1 != 0,
                topic,
                pid,
                props,
                payload: r.rest().to_vec(),
            }
        }
        4..=7 => {
            let want = if kind == PUBREL { 2 } else { 0 };
            if flags != want {
                return bad(format!("ack type {kind} with flags {flags:#x}"));
            }
            let mut r = Reader::new(body, "PUBACK/PUBREC/PUBREL/PUBCOMP");
            let pid = r.u16()?;
            let reason = if r.left() > 0 { r.u8()? } else { 0 };
            let props = if r.left() > 0 {
                r.props()?
            } else {
                Props::new()
            };
            r.end()?;
            Packet::Ack {
                kind,
                pid,
                reason,
                props,
            }
        }
        9 | 11 => {
            let mut r = Reader::new(body, if kind == 9 { "SUBACK" } else { "UNSUBACK" });
            let pid = r.u16()?;
            let props = r.props()?;
            let codes = r.rest().to_vec();
            if kind == 9 {
                Packet::Suback { pid, props, codes }
            } else {
                Packet::Unsuback { pid, props, codes }
            }
        }
        13 => {
            if !body.is_empty() {
                return bad("PINGRESP with a body");
            }
            Packet::Pingresp
        }
        14 | 15 => {
            let mut r = Reader::new(body, if kind == 14 { "DISCONNECT" } else { "AUTH" });
            let reason = if r.left() > 0 { r.u8()? } else { 0 };
            let props = if r.left() > 0 {
                r.props()?
            } else {
                Props::new()
            };
            r.end()?;
            if kind == 14 {
                Packet::Disconnect { reason, props }
            } else {
                Packet::Auth { reason, props }
            }
        }
        _ => {
            return bad(format!(
                "packet type {kind} is not sent by a server ({first:#04x})"
            ))
        }
    };
    Ok(Some((p, i + len)))
}

pub use crate::wire::RecvError;

/// A blocking MQTT 5.0 client over a plain TCP socket, sending hand-made bytes. Incoming
/// PUBLISHes are returned as sent (topic aliases unresolved).
pub struct Client {
    conn: Conn<Packet>,
}

impl Client {
    /// Opens a TCP connection (no MQTT yet).
    pub fn open(port: u16) -> Client {
        Client {
            conn: Conn::open(
                port,
                "v5 client",
                |b| decode(b).map_err(|Malformed(m)| m),
                Packet::is_publish,
            ),
        }
    }

    /// Sends `connect` and returns the first packet the server answers with.
    pub fn try_connect(port: u16, connect: &Connect) -> (Client, Packet) {
        let mut c = Client::open(port);
        c.conn.label = format!("v5 client `{}` on port {port}", connect.client_id);
        c.send(&connect.bytes());
        let p = c.expect(WAIT);
        (c, p)
    }

    /// Sends `connect`, asserts CONNACK reason 0; returns the client, session present and
    /// the CONNACK properties.
    pub fn connect(port: u16, connect: &Connect) -> (Client, bool, Props) {
        let (c, p) = Client::try_connect(port, connect);
        match p {
            Packet::Connack {
                session_present,
                reason: 0,
                props,
            } => (c, session_present, props),
            other => panic!("{}: expected CONNACK 0, got {other:?}", c.label()),
        }
    }

    /// Connects with clean start, no properties.
    pub fn connect_clean(port: u16, client_id: &str) -> Client {
        Client::connect(port, &connect(client_id)).0
    }

    pub fn label(&self) -> &str {
        &self.conn.label
    }

    /// Writes bytes, ignoring errors (the server may already have closed on us).
    pub fn send(&mut self, bytes: &[u8]) {
        self.conn.send(bytes)
    }

    pub fn send_ok(&mut self, bytes: &[u8]) {
        self.conn.send_ok(bytes)
    }

    pub fn recv(&mut self, timeout: Duration) -> Result<Packet, RecvError> {
        self.conn.recv(timeout)
    }

    /// Reads one packet or panics.
    pub fn expect(&mut self, timeout: Duration) -> Packet {
        self.conn.expect(timeout)
    }

    /// Reads one packet and panics unless it is a PUBLISH.
    pub fn expect_publish(&mut self, timeout: Duration) -> Packet {
        self.conn.expect_publish(timeout)
    }

    /// Asserts nothing arrives for `dur` and the connection stays open.
    pub fn expect_silence(&mut self, dur: Duration) {
        self.conn.expect_silence(dur)
    }

    /// Waits until the server closes the connection; returns every packet received before.
    pub fn expect_closed(&mut self, timeout: Duration) -> Vec<Packet> {
        self.conn.expect_closed(timeout, |label, m, got| {
            panic!("{label}: server sent a malformed packet ({m}) after {got:?}")
        })
    }

    /// Waits for the server to close the connection and returns the reason code and properties
    /// of the DISCONNECT it sent before closing; panics if it closed without one or sent
    /// anything other than PUBLISHes and acknowledgements before it.
    pub fn expect_disconnect(&mut self, timeout: Duration) -> (u8, Props) {
        let got = self.expect_closed(timeout);
        let disconnects: Vec<&Packet> = got
            .iter()
            .filter(|p| matches!(p, Packet::Disconnect { .. }))
            .collect();
        match (disconnects.as_slice(), got.last()) {
            ([Packet::Disconnect { reason, props }], Some(Packet::Disconnect { .. })) => {
                (*reason, props.clone())
            }
            _ => panic!(
                "{}: expected exactly one DISCONNECT, as the last packet before the close; got {got:?}",
                self.label()
            ),
        }
    }

    /// Whether the server has closed the connection (as observed so far).
    pub fn is_closed(&self) -> bool {
        self.conn.is_closed()
    }

    /// The size in bytes (fixed header included) of every packet received so far, in order.
    pub fn received_sizes(&self) -> &[usize] {
        &self.conn.sizes
    }

    /// Reads until `pick` accepts a packet; PUBLISHes on the way are queued for `recv`,
    /// anything else is a failure.
    pub fn await_packet<T>(&mut self, what: &str, pick: impl Fn(&Packet) -> Option<T>) -> T {
        // Already read ahead?
        if let Some(i) = self.conn.pending.iter().position(|p| pick(p).is_some()) {
            let p = self.conn.pending.remove(i).unwrap();
            return pick(&p).unwrap();
        }
        self.conn.await_wire(what, pick)
    }

    /// SUBSCRIBE with (filter, options byte) pairs and `props`; returns the SUBACK codes.
    pub fn subscribe_with(&mut self, pid: u16, props: &Props, filters: &[(&str, u8)]) -> Vec<u8> {
        self.send_ok(&subscribe(pid, props, filters));
        self.await_packet("SUBACK", |p| match p {
            Packet::Suback { pid: p, codes, .. } if *p == pid => Some(codes.clone()),
            _ => None,
        })
    }

    /// SUBSCRIBE with (filter, QoS) pairs and default options.
    pub fn subscribe(&mut self, pid: u16, filters: &[(&str, u8)]) -> Vec<u8> {
        self.subscribe_with(pid, &Props::new(), filters)
    }

    /// UNSUBSCRIBE; returns the UNSUBACK reason codes.
    pub fn unsubscribe(&mut self, pid: u16, filters: &[&str]) -> Vec<u8> {
        self.send_ok(&unsubscribe(pid, filters));
        self.await_packet("UNSUBACK", |p| match p {
            Packet::Unsuback { pid: p, codes, .. } if *p == pid => Some(codes.clone()),
            _ => None,
        })
    }

    /// Publishes and completes the sender's QoS flow; returns the reason code of the PUBACK
    /// (QoS 1) or PUBREC (QoS 2), 0 for QoS 0.
    pub fn publish_with(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: u8,
        retain: bool,
        pid: u16,
        props: &Props,
    ) -> u8 {
        self.send_ok(&publish(topic, payload, qos, retain, pid, props));
        let want = match qos {
            0 => return 0,
            1 => PUBACK,
            2 => PUBREC,
            _ => panic!("bad qos {qos}"),
        };
        let reason = self.await_packet("PUBACK/PUBREC", |p| match p {
            Packet::Ack {
                kind,
                pid: p,
                reason,
                ..
            } if *kind == want && *p == pid => Some(*reason),
            _ => None,
        });
        if qos == 2 && reason < 0x80 {
            self.send_ok(&pubrel(pid));
            let comp = self.await_packet("PUBCOMP", |p| match p {
                Packet::Ack {
                    kind: PUBCOMP,
                    pid: p,
                    reason,
                    ..
                } if *p == pid => Some(*reason),
                _ => None,
            });
            assert_eq!(comp, 0, "{}: PUBCOMP reason for {pid}", self.label());
        }
        reason
    }

    /// Publishes without properties.
    pub fn publish(&mut self, topic: &str, payload: &[u8], qos: u8, retain: bool, pid: u16) -> u8 {
        self.publish_with(topic, payload, qos, retain, pid, &Props::new())
    }

    /// Waits for the PUBREL of packet identifier `pid` (PUBLISHes on the way are kept for
    /// `recv`); returns its reason code.
    pub fn await_pubrel(&mut self, pid: u16) -> u8 {
        self.await_packet("PUBREL", |p| match p {
            Packet::Ack {
                kind: PUBREL,
                pid: got,
                reason,
                ..
            } if *got == pid => Some(*reason),
            _ => None,
        })
    }

    /// Receives one PUBLISH and completes the receiver side of its QoS flow.
    pub fn receive(&mut self, timeout: Duration) -> Packet {
        let p = self.expect_publish(timeout);
        if let Packet::Publish { qos, pid, .. } = &p {
            match (qos, pid) {
                (1, Some(id)) => self.send_ok(&puback(*id)),
                (2, Some(id)) => {
                    let id = *id;
                    self.send_ok(&pubrec(id));
                    assert_eq!(self.await_pubrel(id), 0, "{}: PUBREL reason", self.label());
                    self.send_ok(&pubcomp(id));
                }
                _ => {}
            }
        }
        p
    }

    /// Receives (and acknowledges) PUBLISHes until nothing more arrives for `quiet`.
    pub fn receive_all(&mut self, quiet: Duration) -> Vec<Packet> {
        let mut got = Vec::new();
        loop {
            match self.recv(quiet) {
                Ok(p @ Packet::Publish { .. }) => {
                    self.conn.pending.push_front(p);
                    got.push(self.receive(WAIT));
                }
                Ok(other) => panic!("{}: expected PUBLISH, got {other:?}", self.label()),
                Err(RecvError::Timeout) => return got,
                Err(e) => panic!("{}: connection failed while receiving: {e:?}", self.label()),
            }
        }
    }

    /// PINGREQ and expect PINGRESP.
    pub fn ping(&mut self) {
        self.send_ok(&[0xC0, 0x00]);
        self.await_packet("PINGRESP", |p| (*p == Packet::Pingresp).then_some(()));
    }

    /// DISCONNECT (reason 0, no properties) then close our side.
    pub fn disconnect(self) {
        self.disconnect_with(0, &Props::new());
    }

    /// DISCONNECT with a reason and properties, then close our side.
    pub fn disconnect_with(self, reason: u8, props: &Props) {
        self.conn.disconnect(&disconnect(reason, props));
    }

    /// Closes the socket without DISCONNECT.
    pub fn drop_abruptly(self) {
        self.conn.drop_abruptly();
    }

    /// The underlying stream, for tests that write from another thread.
    pub fn stream(&mut self) -> &mut std::net::TcpStream {
        &mut self.conn.stream
    }
}

/// Payloads of PUBLISH packets, as text.
pub fn payloads(packets: &[Packet]) -> Vec<String> {
    packets
        .iter()
        .filter_map(|p| p.payload())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect()
}
