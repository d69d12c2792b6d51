//! MQTT 3.1.1 packets built and parsed by hand, and a blocking raw TCP client.
//!
//! Deliberately independent of the project's `protocol` crate: if both were wrong in the same
//! way the tests would not notice. Only what the tests need is here, written straight from the
//! spec (OASIS MQTT 3.1.1, section 2 and 3).

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// Control packet types (MQTT 3.1.1 section 2.2.1).
pub mod kind {
    pub const CONNECT: u8 = 1;
    pub const CONNACK: u8 = 2;
    pub const PUBLISH: u8 = 3;
    pub const PUBACK: u8 = 4;
    pub const PUBREC: u8 = 5;
    pub const PUBREL: u8 = 6;
    pub const PUBCOMP: u8 = 7;
    pub const SUBSCRIBE: u8 = 8;
    pub const SUBACK: u8 = 9;
    pub const UNSUBSCRIBE: u8 = 10;
    pub const UNSUBACK: u8 = 11;
    pub const PINGREQ: u8 = 12;
    pub const PINGRESP: u8 = 13;
    pub const DISCONNECT: u8 = 14;
}

/// Appends the variable-length Remaining Length encoding (section 2.2.3).
pub fn put_remaining_length(mut n: usize, out: &mut Vec<u8>) {
    assert!(n <= 268_435_455, "remaining length {n} too large");
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            break;
        }
    }
}

/// Appends a length-prefixed byte string (section 1.5.3), bytes as given (may be invalid UTF-8).
pub fn put_bytes(s: &[u8], out: &mut Vec<u8>) {
    assert!(s.len() <= u16::MAX as usize);
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// A whole packet: first byte, remaining length, body.
pub fn packet(first_byte: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first_byte];
    put_remaining_length(body.len(), &mut out);
    out.extend_from_slice(body);
    out
}

/// The protocol name and level put in a CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// "MQTT", level 4.
    V311,
    /// "MQIsdp", level 3.
    V31,
    /// "MQTT" with an arbitrary level byte.
    Level(u8),
}

/// A Will message inside CONNECT.
#[derive(Debug, Clone)]
pub struct Will {
    pub topic: Vec<u8>,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
}

/// A CONNECT packet, built with chained setters then [`Connect::bytes`].
#[derive(Debug, Clone)]
pub struct Connect {
    pub protocol: Protocol,
    pub client_id: Vec<u8>,
    pub clean_session: bool,
    pub keep_alive: u16,
    pub will: Option<Will>,
    pub username: Option<Vec<u8>>,
    pub password: Option<Vec<u8>>,
    /// Extra bits OR-ed into the connect flags (to build invalid packets).
    pub extra_flags: u8,
}

/// A v3.1.1 CONNECT with clean session, keepalive 60 s.
pub fn connect(client_id: &str) -> Connect {
    Connect {
        protocol: Protocol::V311,
        client_id: client_id.as_bytes().to_vec(),
        clean_session: true,
        keep_alive: 60,
        will: None,
        username: None,
        password: None,
        extra_flags: 0,
    }
}

impl Connect {
    pub fn clean(mut self, clean: bool) -> Self {
        self.clean_session = clean;
        self
    }
    pub fn keep_alive(mut self, secs: u16) -> Self {
        self.keep_alive = secs;
        self
    }
    pub fn protocol(mut self, p: Protocol) -> Self {
        self.protocol = p;
        self
    }
    pub fn will(mut self, topic: &str, payload: &[u8], qos: u8, retain: bool) -> Self {
        self.will = Some(Will {
            topic: topic.as_bytes().to_vec(),
            payload: payload.to_vec(),
            qos,
            retain,
        });
        self
    }
    pub fn username(mut self, u: &str) -> Self {
        self.username = Some(u.as_bytes().to_vec());
        self
    }
    pub fn password(mut self, p: &[u8]) -> Self {
        self.password = Some(p.to_vec());
        self
    }
    pub fn extra_flags(mut self, f: u8) -> Self {
        self.extra_flags = f;
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut body = Vec::new();
        match self.protocol {
            Protocol::V311 => {
                put_bytes(b"MQTT", &mut body);
                body.push(4);
            }
            Protocol::V31 => {
                put_bytes(b"MQIsdp", &mut body);
                body.push(3);
            }
            Protocol::Level(l) => {
                put_bytes(b"MQTT", &mut body);
                body.push(l);
            }
        }
        let mut flags = self.extra_flags;
        if self.clean_session {
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
        put_bytes(&self.client_id, &mut body);
        if let Some(w) = &self.will {
            put_bytes(&w.topic, &mut body);
            put_bytes(&w.payload, &mut body);
        }
        if let Some(u) = &self.username {
            put_bytes(u, &mut body);
        }
        if let Some(p) = &self.password {
            put_bytes(p, &mut body);
        }
        packet(kind::CONNECT << 4, &body)
    }
}

/// PUBLISH with raw topic bytes. `pid` is required for QoS 1/2 and ignored for QoS 0.
pub fn publish_raw(
    topic: &[u8],
    payload: &[u8],
    qos: u8,
    retain: bool,
    dup: bool,
    pid: u16,
) -> Vec<u8> {
    let mut first = (kind::PUBLISH << 4) | (qos << 1);
    if retain {
        first |= 0x01;
    }
    if dup {
        first |= 0x08;
    }
    let mut body = Vec::new();
    put_bytes(topic, &mut body);
    if qos > 0 {
        body.extend_from_slice(&pid.to_be_bytes());
    }
    body.extend_from_slice(payload);
    packet(first, &body)
}

/// PUBLISH, DUP = 0.
pub fn publish(topic: &str, payload: &[u8], qos: u8, retain: bool, pid: u16) -> Vec<u8> {
    publish_raw(topic.as_bytes(), payload, qos, retain, false, pid)
}

/// SUBSCRIBE (flags 0b0010) with (filter, requested QoS) pairs.
pub fn subscribe(pid: u16, filters: &[(&str, u8)]) -> Vec<u8> {
    let raw: Vec<(&[u8], u8)> = filters.iter().map(|(f, q)| (f.as_bytes(), *q)).collect();
    subscribe_raw(0x82, pid, &raw)
}

/// SUBSCRIBE with an arbitrary first byte and raw filter bytes.
pub fn subscribe_raw(first_byte: u8, pid: u16, filters: &[(&[u8], u8)]) -> Vec<u8> {
    let mut body = pid.to_be_bytes().to_vec();
    for (f, q) in filters {
        put_bytes(f, &mut body);
        body.push(*q);
    }
    packet(first_byte, &body)
}

/// UNSUBSCRIBE (flags 0b0010).
pub fn unsubscribe(pid: u16, filters: &[&str]) -> Vec<u8> {
    let mut body = pid.to_be_bytes().to_vec();
    for f in filters {
        put_bytes(f.as_bytes(), &mut body);
    }
    packet(0xA2, &body)
}

pub fn puback(pid: u16) -> Vec<u8> {
    packet(0x40, &pid.to_be_bytes())
}
pub fn pubrec(pid: u16) -> Vec<u8> {
    packet(0x50, &pid.to_be_bytes())
}
/// PUBREL has fixed-header flags 0b0010 (MQTT-3.6.1-1).
pub fn pubrel(pid: u16) -> Vec<u8> {
    packet(0x62, &pid.to_be_bytes())
}
pub fn pubcomp(pid: u16) -> Vec<u8> {
    packet(0x70, &pid.to_be_bytes())
}
pub fn pingreq() -> Vec<u8> {
    vec![0xC0, 0x00]
}
pub fn disconnect() -> Vec<u8> {
    vec![0xE0, 0x00]
}

/// A decoded server-to-client packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connack {
        session_present: bool,
        code: u8,
    },
    Publish {
        dup: bool,
        qos: u8,
        retain: bool,
        topic: String,
        pid: Option<u16>,
        payload: Vec<u8>,
    },
    Puback(u16),
    Pubrec(u16),
    /// PUBREL; `flags` are the fixed-header flags (must be 0b0010).
    Pubrel {
        pid: u16,
        flags: u8,
    },
    Pubcomp(u16),
    Suback {
        pid: u16,
        codes: Vec<u8>,
    },
    Unsuback(u16),
    Pingresp,
    /// Anything else (including packets a server must never send).
    Other {
        first_byte: u8,
        body: Vec<u8>,
    },
}

impl Packet {
    /// Topic and payload (as lossy text) of a PUBLISH, for assertions.
    pub fn as_publish(&self) -> Option<(&str, &[u8])> {
        match self {
            Packet::Publish { topic, payload, .. } => Some((topic.as_str(), payload.as_slice())),
            _ => None,
        }
    }
}

/// Error from decoding: the bytes so far do not form a valid server packet.
#[derive(Debug)]
pub struct Malformed(pub String);

/// Decodes one packet from the front of `buf`: Ok(None) if more bytes are needed.
pub fn decode(buf: &[u8]) -> Result<Option<(Packet, usize)>, Malformed> {
    if buf.is_empty() {
        return Ok(None);
    }
    let first = buf[0];
    let mut len: usize = 0;
    let mut mult: usize = 1;
    let mut i = 1;
    loop {
        if i >= buf.len() {
            return Ok(None);
        }
        if i > 4 {
            return Err(Malformed("remaining length longer than 4 bytes".into()));
        }
        let b = buf[i];
        len += (b & 0x7F) as usize * mult;
        mult *= 128;
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
    }
    if buf.len() < i + len {
        return Ok(None);
    }
    let body = &buf[i..i + len];
    let total = i + len;
    let ptype = first >> 4;
    let flags = first & 0x0F;
    let u16_at = |b: &[u8], at: usize| -> Result<u16, Malformed> {
        if b.len() < at + 2 {
            return Err(Malformed(format!("packet {first:#04x} too short: {b:?}")));
        }
        Ok(u16::from_be_bytes([b[at], b[at + 1]]))
    };
    let pkt = match ptype {
        kind::CONNACK => {
            if body.len() != 2 {
                return Err(Malformed(format!("CONNACK with body {body:?}")));
            }
            Packet::Connack {
                session_present: body[0] & 1 == 1,
                code: body[1],
            }
        }
        kind::PUBLISH => {
            let qos = (flags >> 1) & 3;
            let tlen = u16_at(body, 0)? as usize;
            if body.len() < 2 + tlen {
                return Err(Malformed(format!("PUBLISH topic overruns: {body:?}")));
            }
            let topic = String::from_utf8(body[2..2 + tlen].to_vec())
                .map_err(|_| Malformed("PUBLISH topic not UTF-8".into()))?;
            let mut at = 2 + tlen;
            let pid = if qos > 0 {
                let p = u16_at(body, at)?;
                at += 2;
                Some(p)
            } else {
                None
            };
            Packet::Publish {
                dup: flags & 0x08 != 0,
                qos,
                retain: flags & 0x01 != 0,
                topic,
                pid,
                payload: body[at..].to_vec(),
            }
        }
        kind::PUBACK => Packet::Puback(u16_at(body, 0)?),
        kind::PUBREC => Packet::Pubrec(u16_at(body, 0)?),
        kind::PUBREL => Packet::Pubrel {
            pid: u16_at(body, 0)?,
            flags,
        },
        kind::PUBCOMP => Packet::Pubcomp(u16_at(body, 0)?),
        kind::SUBACK => Packet::Suback {
            pid: u16_at(body, 0)?,
            codes: body[2..].to_vec(),
        },
        kind::UNSUBACK => Packet::Unsuback(u16_at(body, 0)?),
        kind::PINGRESP => Packet::Pingresp,
        _ => Packet::Other {
            first_byte: first,
            body: body.to_vec(),
        },
    };
    Ok(Some((pkt, total)))
}

/// Why [`RawClient::recv`] (or the v5 [`crate::v5::wire::Client::recv`]) returned no packet.
#[derive(Debug)]
pub enum RecvError {
    /// Nothing (complete) arrived within the timeout; the connection is still open.
    Timeout,
    /// The server closed the connection (EOF or reset). Holds any trailing partial bytes.
    Closed(Vec<u8>),
    /// The bytes received are not a valid packet.
    Malformed(String),
}

/// Generous default for anything the broker should do "promptly".
pub const WAIT: Duration = Duration::from_secs(10);

/// Decodes one packet from the front of a buffer: `Ok(None)` while incomplete, otherwise the
/// packet and the bytes it used; `Err` holds why the bytes are malformed.
pub(crate) type Decode<P> = fn(&[u8]) -> Result<Option<(P, usize)>, String>;

/// The socket side shared by the raw clients ([`RawClient`] for 3.1.1 and
/// [`crate::v5::wire::Client`] for 5.0), generic over their packet type `P`: reads with a
/// deadline into a buffer, decodes packets from it, and keeps packets read ahead.
pub(crate) struct Conn<P> {
    pub(crate) stream: TcpStream,
    buf: Vec<u8>,
    /// Packets read ahead (e.g. PUBLISHes that came before an awaited SUBACK).
    pub(crate) pending: VecDeque<P>,
    closed: bool,
    pub(crate) label: String,
    /// The size in bytes (fixed header included) of every packet decoded so far.
    pub(crate) sizes: Vec<usize>,
    decode: Decode<P>,
    /// Whether a packet is a PUBLISH.
    is_publish: fn(&P) -> bool,
}

impl<P: std::fmt::Debug> Conn<P> {
    /// Opens a TCP connection (no MQTT yet); `what` starts the label ("raw client").
    pub(crate) fn open(
        port: u16,
        what: &str,
        decode: Decode<P>,
        is_publish: fn(&P) -> bool,
    ) -> Conn<P> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
        stream.set_nodelay(true).ok();
        Conn {
            stream,
            buf: Vec::new(),
            pending: VecDeque::new(),
            closed: false,
            label: format!("{what} on port {port}"),
            sizes: Vec::new(),
            decode,
            is_publish,
        }
    }

    /// Writes bytes, ignoring errors (the server may already have closed on us).
    pub(crate) fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
        let _ = self.stream.flush();
    }

    /// Writes bytes and panics on error.
    pub(crate) fn send_ok(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("{}: write failed: {e}", self.label));
    }

    /// Reads one packet within `timeout`, read-ahead packets first.
    pub(crate) fn recv(&mut self, timeout: Duration) -> Result<P, RecvError> {
        if let Some(p) = self.pending.pop_front() {
            return Ok(p);
        }
        self.recv_wire(timeout)
    }

    /// Reads one packet from the socket (ignoring read-ahead packets) within `timeout`.
    pub(crate) fn recv_wire(&mut self, timeout: Duration) -> Result<P, RecvError> {
        let deadline = Instant::now() + timeout;
        loop {
            match (self.decode)(&self.buf) {
                Ok(Some((p, used))) => {
                    self.buf.drain(..used);
                    self.sizes.push(used);
                    return Ok(p);
                }
                Ok(None) => {}
                Err(m) => return Err(RecvError::Malformed(m)),
            }
            if self.closed {
                return Err(RecvError::Closed(self.buf.clone()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RecvError::Timeout);
            }
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => self.closed = true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => self.closed = true,
            }
        }
    }

    /// Reads one packet or panics.
    pub(crate) fn expect(&mut self, timeout: Duration) -> P {
        match self.recv(timeout) {
            Ok(p) => p,
            Err(e) => panic!(
                "{}: expected a packet within {timeout:?}: {e:?}",
                self.label
            ),
        }
    }

    /// Reads one packet and panics unless it is a PUBLISH.
    pub(crate) fn expect_publish(&mut self, timeout: Duration) -> P {
        let p = self.expect(timeout);
        assert!(
            (self.is_publish)(&p),
            "{}: expected PUBLISH, got {p:?}",
            self.label
        );
        p
    }

    /// Asserts nothing arrives for `dur` and the connection stays open.
    pub(crate) fn expect_silence(&mut self, dur: Duration) {
        match self.recv(dur) {
            Err(RecvError::Timeout) => {}
            other => panic!(
                "{}: expected silence for {dur:?}, got {other:?}",
                self.label
            ),
        }
    }

    /// Waits until the server closes the connection; returns every packet received before.
    /// Panics if it stays open past `timeout`. Malformed bytes go to `malformed` (with the
    /// label and the packets so far), which panics or returns a packet that stands for them;
    /// the undecodable buffer is then dropped.
    pub(crate) fn expect_closed(
        &mut self,
        timeout: Duration,
        malformed: impl Fn(&str, String, &[P]) -> P,
    ) -> Vec<P> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left) {
                Ok(p) => got.push(p),
                Err(RecvError::Closed(_)) => return got,
                Err(RecvError::Malformed(m)) => {
                    let p = malformed(&self.label, m, &got);
                    got.push(p);
                    self.buf.clear();
                }
                Err(RecvError::Timeout) => panic!(
                    "{}: connection still open after {timeout:?} (received {got:?})",
                    self.label
                ),
            }
        }
    }

    /// Whether the server has closed the connection (as observed so far).
    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    /// Reads from the socket until `pick` accepts a packet; PUBLISHes on the way are queued
    /// for `recv`, anything else is a failure.
    pub(crate) fn await_wire<T>(&mut self, what: &str, pick: impl Fn(&P) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        let mut early = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let p = match self.recv_wire(left) {
                Ok(p) => p,
                Err(e) => panic!(
                    "{}: expected {what} within {WAIT:?}: {e:?} (before it: {early:?})",
                    self.label
                ),
            };
            if let Some(v) = pick(&p) {
                self.pending.extend(early);
                return v;
            }
            if (self.is_publish)(&p) {
                early.push(p);
            } else {
                panic!("{}: expected {what}, got {p:?}", self.label);
            }
        }
    }

    /// Sends `bytes` (a DISCONNECT), closes our side and gives the server a moment to read
    /// it before the socket is dropped.
    pub(crate) fn disconnect(mut self, bytes: &[u8]) {
        self.send(bytes);
        let _ = self.stream.shutdown(Shutdown::Write);
        let _ = self.recv(Duration::from_millis(300));
    }

    /// Closes the socket without DISCONNECT (an abnormal disconnect for the server).
    pub(crate) fn drop_abruptly(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// A blocking MQTT client over a plain TCP socket, sending hand-made bytes.
pub struct RawClient {
    conn: Conn<Packet>,
}

impl RawClient {
    /// Opens a TCP connection (no MQTT yet).
    pub fn open(port: u16) -> RawClient {
        RawClient {
            conn: Conn::open(
                port,
                "raw client",
                |b| decode(b).map_err(|Malformed(m)| m),
                |p| matches!(p, Packet::Publish { .. }),
            ),
        }
    }

    /// Opens a connection, sends `connect` and asserts CONNACK return code 0.
    /// Returns the client and the session-present flag.
    pub fn connect(port: u16, connect: &Connect) -> (RawClient, bool) {
        let mut c = RawClient::open(port);
        c.conn.label = format!(
            "raw client `{}` on port {port}",
            String::from_utf8_lossy(&connect.client_id)
        );
        c.send(&connect.bytes());
        match c.expect(WAIT) {
            Packet::Connack {
                session_present,
                code: 0,
            } => (c, session_present),
            other => panic!("{}: expected CONNACK 0, got {other:?}", c.label()),
        }
    }

    /// Connects with a clean-session v3.1.1 CONNECT for `client_id`.
    pub fn connect_clean(port: u16, client_id: &str) -> RawClient {
        RawClient::connect(port, &connect(client_id)).0
    }

    pub fn label(&self) -> &str {
        &self.conn.label
    }

    /// Writes bytes; write errors are ignored (the server may already have closed on us,
    /// which is what the violation tests provoke).
    pub fn send(&mut self, bytes: &[u8]) {
        self.conn.send(bytes)
    }

    /// Writes bytes and panics on error.
    pub fn send_ok(&mut self, bytes: &[u8]) {
        self.conn.send_ok(bytes)
    }

    /// Reads one packet within `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Result<Packet, RecvError> {
        self.conn.recv(timeout)
    }

    /// Reads one packet or panics.
    pub fn expect(&mut self, timeout: Duration) -> Packet {
        self.conn.expect(timeout)
    }

    /// Reads PUBLISH packets until one arrives; panics on anything else.
    pub fn expect_publish(&mut self, timeout: Duration) -> Packet {
        self.conn.expect_publish(timeout)
    }

    /// Asserts nothing arrives for `dur` and the connection stays open.
    pub fn expect_silence(&mut self, dur: Duration) {
        self.conn.expect_silence(dur)
    }

    /// Waits until the server closes the connection; returns every packet received before.
    /// Panics if it stays open past `timeout`.
    pub fn expect_closed(&mut self, timeout: Duration) -> Vec<Packet> {
        // Garbage then close still counts as closed; the caller checks what was received.
        self.conn.expect_closed(timeout, |_, m, _| Packet::Other {
            first_byte: 0,
            body: m.into_bytes(),
        })
    }

    /// Whether the server has closed the connection (as observed so far).
    pub fn is_closed(&self) -> bool {
        self.conn.is_closed()
    }

    /// SUBSCRIBE and expect the matching SUBACK; returns its return codes.
    /// PUBLISHes that arrive before the SUBACK (retained messages may) are kept for later
    /// `recv` calls.
    pub fn subscribe(&mut self, pid: u16, filters: &[(&str, u8)]) -> Vec<u8> {
        self.send_ok(&subscribe(pid, filters));
        self.await_ack("SUBACK", |p| match p {
            Packet::Suback { pid: p, codes } if *p == pid => Some(codes.clone()),
            _ => None,
        })
    }

    /// UNSUBSCRIBE and expect the matching UNSUBACK (PUBLISHes before it are kept).
    pub fn unsubscribe(&mut self, pid: u16, filters: &[&str]) {
        self.send_ok(&unsubscribe(pid, filters));
        self.await_ack("UNSUBACK", |p| match p {
            Packet::Unsuback(p) if *p == pid => Some(()),
            _ => None,
        })
    }

    /// Reads until `pick` accepts a packet; PUBLISHes on the way are queued for `recv`,
    /// anything else is a failure.
    fn await_ack<T>(&mut self, what: &str, pick: impl Fn(&Packet) -> Option<T>) -> T {
        self.conn.await_wire(what, pick)
    }

    /// Publishes and completes the QoS flow as a sender (PUBACK / PUBREC-PUBREL-PUBCOMP).
    /// PUBLISHes that arrive meanwhile are kept for later `recv` calls.
    pub fn publish(&mut self, topic: &str, payload: &[u8], qos: u8, retain: bool, pid: u16) {
        self.send_ok(&publish(topic, payload, qos, retain, pid));
        match qos {
            0 => {}
            1 => self.await_ack("PUBACK", |p| (*p == Packet::Puback(pid)).then_some(())),
            2 => {
                self.await_ack("PUBREC", |p| (*p == Packet::Pubrec(pid)).then_some(()));
                self.send_ok(&pubrel(pid));
                self.await_ack("PUBCOMP", |p| (*p == Packet::Pubcomp(pid)).then_some(()));
            }
            _ => panic!("bad qos {qos}"),
        }
    }

    /// Receives one PUBLISH and completes the receiver side of its QoS flow.
    /// Returns the PUBLISH.
    pub fn receive(&mut self, timeout: Duration) -> Packet {
        let p = self.expect_publish(timeout);
        if let Packet::Publish { qos, pid, .. } = &p {
            match (qos, pid) {
                (1, Some(id)) => self.send_ok(&puback(*id)),
                (2, Some(id)) => {
                    let id = *id;
                    self.send_ok(&pubrec(id));
                    self.await_ack("PUBREL", |p| {
                        (*p == Packet::Pubrel { pid: id, flags: 2 }).then_some(())
                    });
                    self.send_ok(&pubcomp(id));
                }
                _ => {}
            }
        }
        p
    }

    /// Receives PUBLISHes (acknowledging them) until nothing more arrives for `quiet`;
    /// returns them. Stops early after `max` messages.
    pub fn receive_all(&mut self, quiet: Duration, max: usize) -> Vec<Packet> {
        let mut got = Vec::new();
        while got.len() < max {
            match self.recv(quiet) {
                Ok(p @ Packet::Publish { .. }) => {
                    self.conn.pending.push_front(p);
                    got.push(self.receive(WAIT));
                }
                Ok(other) => panic!("{}: expected PUBLISH, got {other:?}", self.label()),
                Err(RecvError::Timeout) => break,
                Err(e) => panic!("{}: connection failed while receiving: {e:?}", self.label()),
            }
        }
        got
    }

    /// Receives PUBLISHes (acknowledging them) until `done` says the expected ones are all
    /// there (waiting up to [`WAIT`] for each), then keeps listening for `quiet` to catch any
    /// extra or duplicate delivery. Returns everything received; the caller asserts on it.
    pub fn receive_until(
        &mut self,
        done: impl Fn(&[Packet]) -> bool,
        quiet: Duration,
    ) -> Vec<Packet> {
        let mut got = Vec::new();
        while !done(&got) {
            match self.recv(WAIT) {
                Ok(p @ Packet::Publish { .. }) => {
                    self.conn.pending.push_front(p);
                    got.push(self.receive(WAIT));
                }
                Ok(other) => panic!("{}: expected PUBLISH, got {other:?}", self.label()),
                Err(RecvError::Timeout) => return got,
                Err(e) => panic!("{}: connection failed while receiving: {e:?}", self.label()),
            }
        }
        got.extend(self.receive_all(quiet, 1000));
        got
    }

    /// PINGREQ and expect PINGRESP: proves the connection is alive and served.
    pub fn ping(&mut self) {
        self.send_ok(&pingreq());
        match self.expect(WAIT) {
            Packet::Pingresp => {}
            other => panic!("{}: expected PINGRESP, got {other:?}", self.label()),
        }
    }

    /// DISCONNECT then close our side.
    pub fn disconnect(self) {
        self.conn.disconnect(&disconnect());
    }

    /// Closes the socket without DISCONNECT (an abnormal disconnect for the server).
    pub fn drop_abruptly(self) {
        self.conn.drop_abruptly();
    }

    /// The underlying stream, for tests that need to write partial packets.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.conn.stream
    }
}

/// Convenience: is `e` the kind of error that means the peer closed the connection?
pub fn is_closed_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::UnexpectedEof
    )
}
