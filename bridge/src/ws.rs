//! MQTT over WebSocket: the handshake, then the WebSocket seen as a plain byte stream.
//!
//! MQTT (MQTT-6.0.0) carries its packets in Binary frames without any alignment: one packet
//! may span several frames and one frame may hold several packets. So the connection layer
//! does not see frames at all: [`WsStream`] yields the payloads of the client's Binary
//! frames through [`AsyncRead`] and sends each write as a Binary frame, which lets the same
//! packet codec serve TCP and WebSocket clients.
//!
//! tungstenite does the HTTP upgrade; the framing (RFC 6455 section 5) is done here, for
//! what a connection costs and what a peer can make it queue:
//!
//! * Nothing is buffered per connection. Payload bytes are read straight into the reader's
//!   buffer and unmasked there, past the frame headers; a write goes to the socket as a
//!   frame header and the caller's bytes, in one vectored write. A read goes on reading
//!   the socket and decoding frames while the reader's buffer has room and the socket has
//!   bytes, so one read hands on the payload of many small frames (one MQTT packet per
//!   frame is what browsers send), and a buffer that fills tells the reader to read more at
//!   once, as over TCP. (tungstenite keeps a read
//!   buffer per connection, 128 KiB by default and allocated up front, gathers each
//!   message whole, and copies every write into an output buffer that keeps its largest
//!   size: an idle WebSocket connection cost about 135 KiB, against 2 KiB over TCP.)
//! * Replies the peer causes (Pong, Close) wait in one fixed slot. Only the newest Ping is
//!   answered (RFC 6455 section 5.5.3 allows it), and a peer that keeps sending Pings while
//!   their Pongs cannot be written, because it does not read, is disconnected once it is
//!   owed [`MAX_OWED_PONGS`] bytes of them. (tungstenite queued a Pong per Ping without
//!   bound: a client that sent Pings and never read took the broker to gigabytes.)
//! * Our own writes are never queued here: a write the socket cannot take waits (the
//!   connection bounds what it buffers for a client that does not read).
//! * A client that breaks the protocol gets a Close frame with the status code that says
//!   why (RFC 6455 sections 7.1.7 and 7.4.1), written if the socket has room (we do not wait
//!   for it, nor for the client's answer), and reading fails with
//!   [`io::ErrorKind::InvalidData`]. Payload decoded before the fault is handed on first.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::handshake::machine::TryParse;
use tokio_tungstenite::tungstenite::handshake::server::{
    create_response, write_response, ErrorResponse, Request, Response,
};
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, StatusCode};

/// Subprotocols we answer, most preferred first: `mqtt` is the registered name (MQTT 3.1.1
/// and 5), `mqttv3.1` is what MQTT 3.1 clients (and some old libraries) still send.
pub const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// The longest upgrade request we read: the HTTP listener's limit on a request head.
/// Browsers send a few hundred bytes, more with the host's cookies (those of the web app on
/// the HTTP port too: cookies do not depend on the port).
const MAX_REQUEST: usize = 32 * 1024;

/// The most payload one frame we send carries: a larger write goes out as several Binary
/// frames, so that clients with a frame size limit (tungstenite's is 16 MiB) take packets
/// of any size.
const MAX_FRAME_OUT: usize = 1024 * 1024;

/// The least and most bytes read from the socket at once. They are read into the caller's
/// buffer, whose unfilled part must be zeroed first (no `unsafe` here), so the size adapts
/// to what the reads bring: doubled when a read fills it, halved when one brings less than
/// a quarter. It only bounds each read of the socket: a read of the stream goes on reading
/// the socket until the caller's buffer is full or the socket has nothing more. (tungstenite
/// zeroed 128 KiB before every read.)
const READ_MIN: usize = 1024;
const READ_MAX: usize = 64 * 1024;

/// How many bytes of Pongs a peer may make us owe, by sending Pings while it does not read
/// what we write, before it is disconnected. About 500 Pings with the largest payload (125
/// bytes), 32,768 without payload. Nothing is allocated for them (only the newest Ping is
/// answered): this ends a peer that would otherwise keep us busy for nothing.
pub const MAX_OWED_PONGS: usize = 64 * 1024;

/// Frame opcodes (RFC 6455 section 5.2).
const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// A control frame's payload is at most this long (RFC 6455 section 5.5).
const MAX_CONTROL: usize = 125;
/// The longest frame header: 2 bytes, a 64-bit length and the 4-byte mask.
const MAX_HEADER: usize = 14;

/// Close status codes we send when failing the connection (RFC 6455 section 7.4.1).
const CLOSE_PROTOCOL_ERROR: u16 = 1002;
const CLOSE_UNSUPPORTED_DATA: u16 = 1003;
const CLOSE_INVALID_PAYLOAD: u16 = 1007;
const CLOSE_POLICY_VIOLATION: u16 = 1008;
const CLOSE_MESSAGE_TOO_BIG: u16 = 1009;

/// Why a WebSocket handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub enum WsAcceptError {
    /// We answered the request with an HTTP error (wrong path, no MQTT subprotocol).
    #[error("refused with HTTP {status}: {reason}")]
    Rejected { status: u16, reason: String },
    /// The request was not a valid WebSocket upgrade, or the socket failed.
    #[error("WebSocket handshake failed: {0}")]
    Handshake(#[source] tungstenite::Error),
}

/// Performs the server side of the WebSocket handshake on `stream` (a TCP stream, or a TLS
/// stream over one for `wss`).
///
/// The request must be for exactly `path` (the query string is ignored), otherwise it is
/// answered 404. If the client offers subprotocols, one of [`SUBPROTOCOLS`] must be among
/// them and is echoed back; otherwise the answer is 400. A client offering no subprotocol
/// at all is accepted, as Mosquitto does, because some clients never send one. A request
/// that is not a valid upgrade, or is followed by bytes before our answer (RFC 6455: the
/// client waits for it), is a handshake error and gets no answer.
///
/// `max_message_size` bounds one WebSocket message: a frame whose header takes the message
/// past it is refused before any of its payload is read. Nothing is buffered whole any more,
/// but a client has no reason to send messages larger than two MQTT packets, and refusing
/// them early is what Mosquitto and the previous implementation did.
pub async fn accept<S>(
    mut stream: S,
    path: &str,
    max_message_size: usize,
) -> Result<WsStream<S>, WsAcceptError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let request = read_request(&mut stream).await?;
    let response = create_response(&request).map_err(WsAcceptError::Handshake)?;
    let mut answer = Vec::with_capacity(256);
    match negotiate(&request, response, path) {
        Ok((response, subprotocol)) => {
            write_response(&mut answer, &response).map_err(WsAcceptError::Handshake)?;
            send(&mut stream, &answer).await?;
            Ok(WsStream::new(stream, subprotocol, max_message_size))
        }
        Err(refusal) => {
            write_response(&mut answer, &refusal).map_err(WsAcceptError::Handshake)?;
            let reason = refusal.body().clone().unwrap_or_default();
            answer.extend_from_slice(reason.as_bytes());
            send(&mut stream, &answer).await?;
            Err(WsAcceptError::Rejected {
                status: refusal.status().as_u16(),
                reason,
            })
        }
    }
}

/// Reads the upgrade request, and nothing after it.
async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Request, WsAcceptError> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        // One byte past the limit, to tell a request at the limit from a longer one.
        let room = MAX_REQUEST + 1 - buf.len();
        buf.reserve(room.min(4096));
        let read = (&mut *stream)
            .take(room as u64)
            .read_buf(&mut buf)
            .await
            .map_err(|e| WsAcceptError::Handshake(e.into()))?;
        if read == 0 {
            return Err(WsAcceptError::Handshake(
                ProtocolError::HandshakeIncomplete.into(),
            ));
        }
        match Request::try_parse(&buf) {
            Ok(Some((len, request))) if len == buf.len() => return Ok(request),
            Ok(Some(_)) => {
                return Err(WsAcceptError::Handshake(
                    ProtocolError::JunkAfterRequest.into(),
                ))
            }
            Ok(None) if buf.len() > MAX_REQUEST => {
                return Err(WsAcceptError::Handshake(
                    CapacityError::MessageTooLong {
                        size: buf.len(),
                        max_size: MAX_REQUEST,
                    }
                    .into(),
                ))
            }
            Ok(None) => {}
            Err(e) => return Err(WsAcceptError::Handshake(e)),
        }
    }
}

async fn send<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> Result<(), WsAcceptError> {
    let sent = async {
        stream.write_all(bytes).await?;
        stream.flush().await
    };
    sent.await.map_err(|e| WsAcceptError::Handshake(e.into()))
}

/// Checks the path and picks the subprotocol: the answer to send, or the refusal.
// The error type is tungstenite's `ErrorResponse` (an HTTP response), large by nature.
#[allow(clippy::result_large_err)]
fn negotiate(
    request: &Request,
    mut response: Response,
    path: &str,
) -> Result<(Response, Option<&'static str>), ErrorResponse> {
    if request.uri().path() != path {
        return Err(reject(
            StatusCode::NOT_FOUND,
            format!(
                "no WebSocket endpoint at {}; MQTT over WebSocket is at {path}",
                request.uri().path()
            ),
        ));
    }
    let offered = request.headers().get_all(header::SEC_WEBSOCKET_PROTOCOL);
    if offered.iter().next().is_none() {
        return Ok((response, None));
    }
    let offered: Vec<&str> = offered
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    match SUBPROTOCOLS.into_iter().find(|p| offered.contains(p)) {
        Some(protocol) => {
            response.headers_mut().insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static(protocol),
            );
            Ok((response, Some(protocol)))
        }
        None => Err(reject(
            StatusCode::BAD_REQUEST,
            format!(
                "unsupported WebSocket subprotocol(s) {}; this endpoint speaks mqtt",
                offered.join(", ")
            ),
        )),
    }
}

fn reject(status: StatusCode, reason: String) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(reason));
    *response.status_mut() = status;
    response
}

/// An accepted WebSocket, read and written as a byte stream (see the module docs).
///
/// Reading may write (a Pong, the answer to a Close) and writing may first finish those
/// replies, so both halves must be polled from one task, as the connection does (through
/// [`tokio::io::split`]): a reply that finds the socket full registers the reading task.
pub struct WsStream<S = TcpStream> {
    inner: S,
    subprotocol: Option<&'static str>,
    /// The largest message the client may send, in bytes.
    max_message: u64,
    /// Where reading is in the client's frames.
    incoming: Incoming,
    /// Payload bytes of the current message so far (a message may span frames).
    message_len: u64,
    /// A Binary message whose final frame has not arrived yet.
    in_message: bool,
    /// How many bytes to read next, from [`READ_MIN`] to [`READ_MAX`].
    read_size: u32,
    /// The data frame being written.
    outgoing: Outgoing,
    /// We sent (or are about to send) a Close frame: no data frame may start (one in
    /// progress is finished first, then the Close goes out).
    closing: bool,
    /// Control frames read and replies owed; allocated with the first control frame, which
    /// most connections never see (MQTT has its own PINGREQ).
    control: Option<Box<Control>>,
    /// Why reading failed: every read reports it from then on (the first one that has no
    /// payload to hand on).
    failure: Option<Failure>,
}

/// Why reading failed, and the Close frame that the failure calls for.
struct Failure {
    error: io::Error,
    /// The status code of the Close to send the client, until the failure is first reported
    /// (then it is queued). None when the socket itself failed or ended.
    close: Option<u16>,
}

impl Failure {
    /// The client broke the protocol: fail the connection with `code`.
    fn new(code: u16, message: impl Into<String>) -> Failure {
        Failure {
            error: invalid(message.into()),
            close: Some(code),
        }
    }

    /// A protocol error (RFC 6455 status code 1002).
    fn protocol(message: impl Into<String>) -> Failure {
        Failure::new(CLOSE_PROTOCOL_ERROR, message)
    }
}

impl From<io::Error> for Failure {
    fn from(error: io::Error) -> Failure {
        Failure { error, close: None }
    }
}

/// Where reading is in the client's frames.
enum Incoming {
    /// Between frames or in a header: `len` bytes of it so far.
    Header { bytes: [u8; MAX_HEADER], len: u8 },
    /// In a data frame's payload: `left` bytes to go, unmasked with `mask` (rotated so that
    /// its first byte is the next one's).
    Data { left: u64, mask: [u8; 4] },
    /// In a control frame's payload, collected in [`Control::payload`].
    Control {
        opcode: u8,
        len: u8,
        have: u8,
        mask: [u8; 4],
    },
    /// The client sent Close (or the stream ended): reads return end-of-file. (After a
    /// failure, [`WsStream::failure`] is what reads return.)
    Closed,
}

impl Incoming {
    const NEXT_FRAME: Incoming = Incoming::Header {
        bytes: [0; MAX_HEADER],
        len: 0,
    };
}

/// The data frame being written: its header, then `left` more bytes of the caller's.
#[derive(Default)]
struct Outgoing {
    header: [u8; 10],
    header_len: u8,
    header_sent: u8,
    left: u64,
}

impl Outgoing {
    /// Between frames: a control frame may go out.
    fn is_idle(&self) -> bool {
        self.header_sent == self.header_len && self.left == 0
    }

    /// Starts a final, unmasked Binary frame of `len` bytes.
    fn start(&mut self, len: usize) {
        self.header[0] = 0x80 | OP_BINARY;
        self.header_len = if len <= 125 {
            self.header[1] = len as u8;
            2
        } else if let Ok(len) = u16::try_from(len) {
            self.header[1] = 126;
            self.header[2..4].copy_from_slice(&len.to_be_bytes());
            4
        } else {
            self.header[1] = 127;
            self.header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        };
        self.header_sent = 0;
        self.left = len as u64;
    }
}

/// Control frames: the one being read, and the replies owed to the client.
struct Control {
    /// The payload of the control frame being read.
    payload: [u8; MAX_CONTROL],
    /// The control frame being written, and how much of it is out.
    frame: [u8; 2 + MAX_CONTROL],
    frame_len: u8,
    frame_sent: u8,
    /// The payload of the newest Ping not answered yet; its Pong follows `frame`.
    ping: [u8; MAX_CONTROL],
    ping_len: u8,
    pong_due: bool,
    /// Our Close frame (with its status code, if any), due after `frame`; nothing follows it.
    close_due: Option<Option<u16>>,
    /// Bytes written since the last flush of the socket (TLS buffers them).
    unflushed: bool,
    /// Bytes of Pongs owed: Pings that came while the previous Pong could not be written.
    /// Back to zero once every reply is out.
    owed: usize,
}

impl Control {
    fn boxed() -> Box<Control> {
        Box::new(Control {
            payload: [0; MAX_CONTROL],
            frame: [0; 2 + MAX_CONTROL],
            frame_len: 0,
            frame_sent: 0,
            ping: [0; MAX_CONTROL],
            ping_len: 0,
            pong_due: false,
            close_due: None,
            unflushed: false,
            owed: 0,
        })
    }

    fn set_frame(&mut self, opcode: u8, payload_len: usize) {
        self.frame[0] = 0x80 | opcode;
        self.frame[1] = payload_len as u8;
        self.frame_len = 2 + payload_len as u8;
        self.frame_sent = 0;
    }

    fn has_work(&self) -> bool {
        self.frame_sent < self.frame_len || self.pong_due || self.close_due.is_some()
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// A frame length not in its shortest form (RFC 6455 section 5.2).
fn not_minimal(len: u64) -> Failure {
    Failure::protocol(format!(
        "WebSocket frame length {len} not in its shortest form (RFC 6455 section 5.2)"
    ))
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the WebSocket is closed")
}

/// Whether a Close frame may carry `code` (RFC 6455 section 7.4, and the IANA registry).
fn close_code_is_valid(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Unmasks `len` bytes at `from` into `to` (not after `from`, so that copying forwards
/// never overwrites what is still to be read), the first of them with `mask[0]`.
fn unmask_into(data: &mut [u8], from: usize, to: usize, len: usize, mask: [u8; 4]) {
    debug_assert!(to <= from && from + len <= data.len());
    let key = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut i = 0;
    while i + 8 <= len {
        let word = u64::from_ne_bytes(data[from + i..from + i + 8].try_into().expect("8 bytes"));
        data[to + i..to + i + 8].copy_from_slice(&(word ^ key).to_ne_bytes());
        i += 8;
    }
    while i < len {
        data[to + i] = data[from + i] ^ mask[i % 4];
        i += 1;
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsStream<S> {
    fn new(inner: S, subprotocol: Option<&'static str>, max_message: usize) -> WsStream<S> {
        WsStream {
            inner,
            subprotocol,
            max_message: max_message as u64,
            incoming: Incoming::NEXT_FRAME,
            message_len: 0,
            in_message: false,
            read_size: READ_MIN as u32,
            outgoing: Outgoing::default(),
            closing: false,
            control: None,
            failure: None,
        }
    }

    /// The subprotocol agreed in the handshake (`mqtt` or `mqttv3.1`), if the client
    /// offered any.
    pub fn subprotocol(&self) -> Option<&'static str> {
        self.subprotocol
    }

    /// Decodes `data`, raw bytes from the socket, in place: the payload of data frames,
    /// unmasked, ends up at its front, and `payload` counts it (also when decoding fails:
    /// what came before the fault is good). Headers and control frames are consumed (a Ping
    /// is answered from here, if the socket has room).
    fn decode(
        &mut self,
        cx: &mut Context<'_>,
        data: &mut [u8],
        payload: &mut usize,
    ) -> Result<(), Failure> {
        let mut from = 0;
        let to = payload;
        *to = 0;
        while from < data.len() {
            match &mut self.incoming {
                Incoming::Header { bytes, len } => {
                    let have = usize::from(*len);
                    let want = if have < 2 {
                        2
                    } else {
                        2 + match bytes[1] & 0x7F {
                            126 => 2,
                            127 => 8,
                            _ => 0,
                        } + 4
                    };
                    let take = (want - have).min(data.len() - from);
                    bytes[have..have + take].copy_from_slice(&data[from..from + take]);
                    *len += take as u8;
                    from += take;
                    if have + take == 2 {
                        let (b0, b1) = (bytes[0], bytes[1]);
                        self.check_frame_start(b0, b1)?;
                    } else if have + take == want {
                        let header = *bytes;
                        self.start_frame(cx, &header[..want])?;
                    }
                }
                Incoming::Data { left, mask } => {
                    let n = (data.len() - from).min(usize::try_from(*left).unwrap_or(usize::MAX));
                    unmask_into(data, from, *to, n, *mask);
                    mask.rotate_left(n % 4);
                    *left -= n as u64;
                    from += n;
                    *to += n;
                    if *left == 0 {
                        self.incoming = Incoming::NEXT_FRAME;
                    }
                }
                Incoming::Control {
                    opcode,
                    len,
                    have,
                    mask,
                } => {
                    let control = self.control.get_or_insert_with(Control::boxed);
                    let at = usize::from(*have);
                    let n = (usize::from(*len) - at).min(data.len() - from);
                    for i in 0..n {
                        control.payload[at + i] = data[from + i] ^ mask[(at + i) % 4];
                    }
                    *have += n as u8;
                    from += n;
                    if *have == *len {
                        let (opcode, len) = (*opcode, usize::from(*len));
                        self.incoming = Incoming::NEXT_FRAME;
                        self.on_control(cx, opcode, len)?;
                    }
                }
                // Nothing after a Close is read.
                Incoming::Closed => break,
            }
        }
        Ok(())
    }

    /// Checks the first two bytes of a frame: what can be refused before the rest.
    fn check_frame_start(&self, b0: u8, b1: u8) -> Result<(), Failure> {
        if b0 & 0x70 != 0 {
            return Err(Failure::protocol(
                "WebSocket frame with reserved bits set (no extension was negotiated)",
            ));
        }
        if b1 & 0x80 == 0 {
            return Err(Failure::protocol(
                "unmasked WebSocket frame from the client (RFC 6455 section 5.1)",
            ));
        }
        let fin = b0 & 0x80 != 0;
        match b0 & 0x0F {
            OP_CLOSE | OP_PING | OP_PONG if !fin => {
                Err(Failure::protocol("fragmented WebSocket control frame"))
            }
            OP_CLOSE | OP_PING | OP_PONG if usize::from(b1 & 0x7F) > MAX_CONTROL => {
                Err(Failure::protocol("WebSocket control frame over 125 bytes"))
            }
            OP_CLOSE | OP_PING | OP_PONG => Ok(()),
            opcode @ (OP_BINARY | OP_TEXT) if self.in_message => Err(Failure::protocol(format!(
                "WebSocket {} frame inside a fragmented message",
                if opcode == OP_TEXT { "Text" } else { "Binary" }
            ))),
            OP_CONTINUATION if !self.in_message => Err(Failure::protocol(
                "WebSocket continuation frame without a message to continue",
            )),
            OP_BINARY | OP_CONTINUATION => Ok(()),
            OP_TEXT => Err(Failure::new(
                CLOSE_UNSUPPORTED_DATA,
                "text WebSocket frame: MQTT must be sent in binary frames (MQTT-6.0.0-1)",
            )),
            opcode => Err(Failure::protocol(format!(
                "unknown WebSocket opcode {opcode:#x}"
            ))),
        }
    }

    /// A whole frame header (checked by [`Self::check_frame_start`]) was read.
    fn start_frame(&mut self, cx: &mut Context<'_>, header: &[u8]) -> Result<(), Failure> {
        let fin = header[0] & 0x80 != 0;
        let opcode = header[0] & 0x0F;
        // RFC 6455 section 5.2: "the minimal number of bytes MUST be used to encode the
        // length", and a 64-bit length has its most significant bit 0.
        let (len, at) = match header[1] & 0x7F {
            126 => {
                let len = u16::from_be_bytes([header[2], header[3]]);
                if len <= 125 {
                    return Err(not_minimal(len.into()));
                }
                (u64::from(len), 4)
            }
            127 => {
                let len = u64::from_be_bytes(header[2..10].try_into().expect("8 bytes"));
                if len >> 63 != 0 {
                    return Err(Failure::protocol(
                        "WebSocket frame length with its most significant bit set \
                         (RFC 6455 section 5.2)",
                    ));
                }
                if len <= 0xFFFF {
                    return Err(not_minimal(len));
                }
                (len, 10)
            }
            len => (u64::from(len), 2),
        };
        let mask: [u8; 4] = header[at..at + 4].try_into().expect("4 bytes");
        if opcode >= OP_CLOSE {
            if len == 0 {
                self.incoming = Incoming::NEXT_FRAME;
                return self.on_control(cx, opcode, 0);
            }
            self.incoming = Incoming::Control {
                opcode,
                len: len as u8,
                have: 0,
                mask,
            };
            return Ok(());
        }
        let before = if opcode == OP_BINARY {
            0
        } else {
            self.message_len
        };
        let total = before.saturating_add(len);
        if total > self.max_message {
            return Err(Failure::new(
                CLOSE_MESSAGE_TOO_BIG,
                format!(
                    "WebSocket message of at least {total} bytes, over the limit of {} \
                     (two maximum-size packets)",
                    self.max_message
                ),
            ));
        }
        self.message_len = total;
        self.in_message = !fin;
        self.incoming = if len == 0 {
            Incoming::NEXT_FRAME
        } else {
            Incoming::Data { left: len, mask }
        };
        Ok(())
    }

    /// A whole control frame was read; its payload is in [`Control::payload`].
    fn on_control(&mut self, cx: &mut Context<'_>, opcode: u8, len: usize) -> Result<(), Failure> {
        let control = self.control.get_or_insert_with(Control::boxed);
        match opcode {
            OP_PING => {
                // No Pong after our Close.
                if self.closing {
                    return Ok(());
                }
                if control.pong_due {
                    // The previous Pong has not gone out: the client is not reading.
                    control.owed += 2 + len;
                    if control.owed > MAX_OWED_PONGS {
                        return Err(Failure {
                            error: io::Error::other(format!(
                                "WebSocket client sends Pings without reading the Pongs \
                                 ({} bytes of them unsent, the limit is {MAX_OWED_PONGS})",
                                control.owed
                            )),
                            close: Some(CLOSE_POLICY_VIOLATION),
                        });
                    }
                }
                control.ping[..len].copy_from_slice(&control.payload[..len]);
                control.ping_len = len as u8;
                control.pong_due = true;
                // Answered now if the socket has room; otherwise later (or never).
                if let Poll::Ready(Err(e)) = self.poll_control(cx) {
                    return Err(e.into());
                }
            }
            OP_CLOSE => {
                // Nothing after a Close is read, whether it is valid or not.
                self.incoming = Incoming::Closed;
                let code = match len {
                    0 => None,
                    1 => return Err(Failure::protocol("WebSocket Close frame of 1 byte")),
                    _ => {
                        let code = u16::from_be_bytes([control.payload[0], control.payload[1]]);
                        if !close_code_is_valid(code) {
                            return Err(Failure::protocol(format!(
                                "WebSocket Close frame with status code {code}, not one to \
                                 send (RFC 6455 section 7.4)"
                            )));
                        }
                        if std::str::from_utf8(&control.payload[2..len]).is_err() {
                            return Err(Failure::new(
                                CLOSE_INVALID_PAYLOAD,
                                "WebSocket Close frame whose reason is not UTF-8 \
                                 (RFC 6455 section 5.5.1)",
                            ));
                        }
                        Some(code)
                    }
                };
                // Unless it answers ours, a Close is answered with its own code (RFC 6455
                // section 5.5.1).
                if !self.closing {
                    self.queue_close(code);
                }
            }
            // Unsolicited Pongs are allowed (a heartbeat), and so are answers to nothing.
            _ => {}
        }
        Ok(())
    }

    /// Queues our Close frame: after it, nothing but the end of the stream.
    fn queue_close(&mut self, code: Option<u16>) {
        self.closing = true;
        let control = self.control.get_or_insert_with(Control::boxed);
        control.close_due = Some(code);
        control.pong_due = false;
    }

    /// Writes the replies owed (the control frame being written, then a Close or the Pong
    /// to the newest Ping) and flushes them. Only between data frames: in the middle of one,
    /// `Pending` without waiting for anything (the data frame's writer is waiting, and
    /// replies go out after it, from its next write or flush).
    fn poll_control(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(control) = self.control.as_deref_mut() else {
            return Poll::Ready(Ok(()));
        };
        if control.has_work() && !self.outgoing.is_idle() {
            return Poll::Pending;
        }
        loop {
            let (sent, len) = (
                usize::from(control.frame_sent),
                usize::from(control.frame_len),
            );
            if sent < len {
                let n =
                    ready!(Pin::new(&mut self.inner).poll_write(cx, &control.frame[sent..len]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                control.frame_sent += n as u8;
                control.unflushed = true;
            } else if let Some(code) = control.close_due.take() {
                let payload = code.map(u16::to_be_bytes);
                let payload: &[u8] = payload.as_ref().map_or(&[], |p| &p[..]);
                control.frame[2..2 + payload.len()].copy_from_slice(payload);
                control.set_frame(OP_CLOSE, payload.len());
            } else if control.pong_due {
                control.pong_due = false;
                let len = usize::from(control.ping_len);
                control.frame[2..2 + len].copy_from_slice(&control.ping[..len]);
                control.set_frame(OP_PONG, len);
            } else {
                break;
            }
        }
        if control.unflushed {
            ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
            control.unflushed = false;
        }
        control.owed = 0;
        Poll::Ready(Ok(()))
    }

    /// Writes (more of) the data frame in progress from `buf`, its header first.
    fn poll_write_frame(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let out = &mut self.outgoing;
        let payload = &buf[..buf
            .len()
            .min(usize::try_from(out.left).unwrap_or(usize::MAX))];
        loop {
            let header = &out.header[usize::from(out.header_sent)..usize::from(out.header_len)];
            if header.is_empty() {
                let n = ready!(Pin::new(&mut self.inner).poll_write(cx, payload))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                out.left -= n as u64;
                return Poll::Ready(Ok(n));
            }
            let written = if self.inner.is_write_vectored() {
                let slices = [IoSlice::new(header), IoSlice::new(payload)];
                Pin::new(&mut self.inner).poll_write_vectored(cx, &slices)
            } else {
                Pin::new(&mut self.inner).poll_write(cx, header)
            };
            let n = match written {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    if out.header_sent == 0 {
                        // Nothing of it went out: no frame is started, and replies owed
                        // may go first when the socket has room.
                        *out = Outgoing::default();
                    }
                    return Poll::Pending;
                }
            };
            let of_header = n.min(header.len());
            out.header_sent += of_header as u8;
            let of_payload = n - of_header;
            if of_payload > 0 {
                out.left -= of_payload as u64;
                return Poll::Ready(Ok(of_payload));
            }
        }
    }

    /// Reports the failure (there must be one): the first report queues the Close it calls
    /// for and tries to write it, without waiting (the caller ends the connection now).
    fn report(&mut self, cx: &mut Context<'_>) -> io::Error {
        let failure = self.failure.as_mut().expect("a failure to report");
        let close = failure.close.take();
        // Every read from now on reports it; the first gets the error itself.
        let again = io::Error::new(failure.error.kind(), failure.error.to_string());
        let error = std::mem::replace(&mut failure.error, again);
        if let Some(code) = close {
            if !self.closing {
                self.queue_close(Some(code));
            }
            // Best effort: a client that does not read, or a data frame of ours half
            // written, keeps it from going out (then it goes after that frame, if the
            // stream is still written and flushed).
            let _ = self.poll_control(cx);
        }
        error
    }

    /// The socket ended.
    fn end_of_stream(&mut self) -> io::Result<()> {
        match self.incoming {
            Incoming::Header { len: 0, .. } if !self.in_message => {
                self.incoming = Incoming::Closed;
                Ok(())
            }
            Incoming::Closed => Ok(()),
            _ => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the WebSocket ended in the middle of a message",
            )),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let start = buf.filled().len();
        // Reads the socket and decodes into the caller's buffer until it is full or the
        // socket has nothing more: a read hands on the payload of every frame that came
        // (one small frame per MQTT packet is common), and a read that fills the caller's
        // buffer tells it to read more at once next time.
        loop {
            if this.failure.is_none() {
                // Replies owed that found the socket full go out once it has room (this
                // task is woken then): only an error matters here.
                if let Poll::Ready(Err(e)) = this.poll_control(cx) {
                    this.failure = Some(e.into());
                }
            }
            let produced = buf.filled().len() > start;
            if this.failure.is_some() {
                // Payload decoded before the failure is handed on first; the next read
                // reports it.
                return Poll::Ready(if produced {
                    Ok(())
                } else {
                    Err(this.report(cx))
                });
            }
            if matches!(this.incoming, Incoming::Closed) || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            // Raw bytes into the caller's buffer, then decoded there (what is zeroed for
            // one read is not zeroed again for the next).
            let read_size = this.read_size as usize;
            let room = buf.remaining().min(read_size);
            let mut raw = ReadBuf::new(buf.initialize_unfilled_to(room));
            match Pin::new(&mut this.inner).poll_read(cx, &mut raw) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => {
                    this.failure = Some(e.into());
                    continue;
                }
                // What was decoded goes now; this task is woken when more comes.
                Poll::Pending if produced => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
            let n = raw.filled().len();
            if n == 0 {
                if let Err(e) = this.end_of_stream() {
                    this.failure = Some(e.into());
                }
                continue;
            }
            if n == room {
                // A read the caller's buffer cut short says nothing about the next ones.
                if room == read_size {
                    this.read_size = (read_size * 2).min(READ_MAX) as u32;
                }
            } else if n < read_size / 4 {
                this.read_size = (read_size / 2).max(READ_MIN) as u32;
            }
            let mut payload = 0;
            let decoded = this.decode(cx, raw.filled_mut(), &mut payload);
            buf.advance(payload);
            if let Err(failure) = decoded {
                this.failure = Some(failure);
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    /// Sends `buf` as (the start of) one Binary frame.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let idle = this.outgoing.is_idle();
        if this.closing && idle {
            // No frame starts after our Close, but a frame in progress is finished (its
            // length was announced): the Close goes out after it, here or on a flush.
            ready!(this.poll_control(cx))?;
            return Poll::Ready(Err(closed()));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if idle {
            // Replies owed go first: between frames is the only place for them.
            ready!(this.poll_control(cx))?;
            this.outgoing.start(buf.len().min(MAX_FRAME_OUT));
        }
        this.poll_write_frame(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.outgoing.is_idle() {
            // The frame's length was announced: its bytes must be written first.
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "flush in the middle of a WebSocket frame",
            )));
        }
        ready!(this.poll_control(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    /// Sends a Close frame (unless one was sent), then shuts the socket down for writing.
    /// The client's Close in answer ends reading.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.outgoing.is_idle() {
            if !this.closing {
                this.queue_close(Some(1000));
            }
            ready!(this.poll_control(cx))?;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    use bytes::Bytes;
    use futures_util::{FutureExt, SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

    type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

    const LIMIT: Duration = Duration::from_secs(20);
    /// The message size limit of the test server.
    const MAX_MESSAGE: usize = 1024 * 1024;

    /// Listens on a loopback port and runs `accept(_, "/mqtt")` on the first connection.
    async fn server() -> (String, JoinHandle<Result<WsStream, WsAcceptError>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            accept(tcp, "/mqtt", MAX_MESSAGE).await
        });
        (format!("ws://{addr}"), task)
    }

    /// Connects to `url` offering `protocols` (none if empty).
    async fn client(
        url: &str,
        protocols: &str,
    ) -> Result<(Client, Option<String>), tungstenite::Error> {
        let mut request = url.into_client_request().unwrap();
        if !protocols.is_empty() {
            request.headers_mut().insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_str(protocols).unwrap(),
            );
        }
        let (ws, response) = tokio_tungstenite::connect_async(request).await?;
        let protocol = response
            .headers()
            .get(header::SEC_WEBSOCKET_PROTOCOL)
            .map(|v| v.to_str().unwrap().to_owned());
        Ok((ws, protocol))
    }

    async fn connected() -> (Client, WsStream) {
        let (url, server) = server().await;
        let (client, protocol) = client(&format!("{url}/mqtt"), "mqtt").await.unwrap();
        assert_eq!(protocol.as_deref(), Some("mqtt"));
        let stream = server.await.unwrap().unwrap();
        assert_eq!(stream.subprotocol(), Some("mqtt"));
        (client, stream)
    }

    const UPGRADE: &[u8] = b"GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    /// A raw client (frames written by hand) and the server's stream.
    async fn raw_connected() -> (TcpStream, WsStream) {
        let (url, server) = server().await;
        let mut tcp = TcpStream::connect(url.trim_start_matches("ws://"))
            .await
            .unwrap();
        tcp.write_all(UPGRADE).await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            tcp.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
        (tcp, server.await.unwrap().unwrap())
    }

    /// A client frame: `first` is the first byte (FIN, opcode), the payload is masked.
    fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0xA1, 0x02, 0xF3, 0x54];
        let mut out = vec![first];
        match payload.len() {
            n @ 0..=125 => out.push(0x80 | n as u8),
            n @ 126..=0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    /// A client frame whose length is given as is: `marker` (126 or 127, or the length
    /// itself) and the bytes after it, whatever the payload's length.
    fn masked_with_len(first: u8, marker: u8, len: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut out = masked(first, payload);
        let at = match out[1] & 0x7F {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        out.splice(1..at, [[0x80 | marker].as_slice(), len].concat());
        out
    }

    /// A stream over an in-memory pipe of `capacity` bytes each way, and the client's end:
    /// what is written to the client's end is all there for the next read.
    fn piped(capacity: usize) -> (DuplexStream, WsStream<DuplexStream>) {
        let (client, server) = tokio::io::duplex(capacity);
        (client, WsStream::new(server, Some("mqtt"), MAX_MESSAGE))
    }

    /// The next frame the server sent: its first byte and its payload.
    async fn server_frame<R: AsyncRead + Unpin>(tcp: &mut R) -> (u8, Vec<u8>) {
        let mut head = [0u8; 2];
        tcp.read_exact(&mut head).await.unwrap();
        assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
        let len = match head[1] {
            126 => usize::from(tcp.read_u16().await.unwrap()),
            127 => tcp.read_u64().await.unwrap() as usize,
            n => usize::from(n),
        };
        let mut payload = vec![0u8; len];
        tcp.read_exact(&mut payload).await.unwrap();
        (head[0], payload)
    }

    /// Bytes that are not the same every 4 (or 8): unmasking mistakes show.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(LIMIT, future)
            .await
            .expect("timed out")
    }

    #[tokio::test]
    async fn packet_split_across_frames_is_reassembled() {
        within(async {
            let (mut client, mut stream) = connected().await;
            // PUBLISH QoS 0, topic "a/b", payload "hi", cut inside the topic.
            let packet = [0x30, 0x07, 0x00, 0x03, b'a', b'/', b'b', b'h', b'i'];
            client
                .send(Message::binary(packet[..5].to_vec()))
                .await
                .unwrap();
            client.send(Message::Ping(Bytes::new())).await.unwrap();
            client
                .send(Message::binary(packet[5..].to_vec()))
                .await
                .unwrap();
            let mut got = [0u8; 9];
            stream.read_exact(&mut got).await.unwrap();
            assert_eq!(got, packet);
        })
        .await;
    }

    /// A message over the limit is refused at its header, before any of it is handed on.
    #[tokio::test]
    async fn message_over_the_size_limit_is_an_error() {
        within(async {
            let (mut client, mut stream) = connected().await;
            // The client may fail to finish sending once the server gives up: ignore that.
            let _ = client
                .send(Message::binary(vec![0u8; 2 * MAX_MESSAGE]))
                .await;
            let mut got = Vec::new();
            let error = stream.read_to_end(&mut got).await.unwrap_err();
            assert!(error.to_string().contains("over the limit"), "{error}");
            assert!(got.is_empty());
        })
        .await;
    }

    /// A message at the limit is read whole, unmasked, whatever the reads' sizes.
    #[tokio::test]
    async fn message_at_the_size_limit_is_read_whole() {
        within(async {
            let (mut client, mut stream) = connected().await;
            let sent = pattern(MAX_MESSAGE);
            client.send(Message::binary(sent.clone())).await.unwrap();
            let mut got = vec![0u8; MAX_MESSAGE];
            // Odd read sizes: payload bytes cross every read boundary.
            let mut at = 0;
            while at < got.len() {
                let end = (at + 65_537).min(got.len());
                let n = stream.read(&mut got[at..end]).await.unwrap();
                assert!(n > 0);
                at += n;
            }
            assert!(got == sent, "the payload came out changed");
        })
        .await;
    }

    /// Fragments count together against the limit.
    #[tokio::test]
    async fn fragmented_message_over_the_limit_is_an_error() {
        within(async {
            let (mut tcp, mut stream) = raw_connected().await;
            let half = vec![0u8; MAX_MESSAGE / 2 + 1];
            let mut frames = masked(OP_BINARY, &half);
            frames.extend(masked(0x80 | OP_CONTINUATION, &half));
            let _ = tcp.write_all(&frames).await;
            let mut got = vec![0u8; half.len()];
            stream.read_exact(&mut got).await.unwrap();
            let error = stream.read(&mut got).await.unwrap_err();
            assert!(error.to_string().contains("over the limit"), "{error}");
        })
        .await;
    }

    /// Continuation frames, a Ping between them, and every read one byte long: the state
    /// machine stops at every point of every frame, headers of all three length forms
    /// included.
    #[tokio::test]
    async fn fragments_and_control_frames_read_a_byte_at_a_time() {
        within(async {
            let (mut tcp, mut stream) = raw_connected().await;
            let data = pattern(70_000);
            let mut frames = masked(OP_BINARY, &data[..5]);
            frames.extend(masked(0x80 | OP_PING, b"are you there"));
            frames.extend(masked(OP_CONTINUATION, &data[5..300]));
            frames.extend(masked(0x80 | OP_PONG, b""));
            frames.extend(masked(0x80 | OP_CONTINUATION, &data[300..]));
            frames.extend(masked(0x80 | OP_BINARY, b""));
            frames.extend(masked(0x80 | OP_BINARY, b"!"));
            tcp.write_all(&frames).await.unwrap();
            let mut got = Vec::new();
            let mut byte = [0u8; 1];
            while got.len() < data.len() + 1 {
                stream.read_exact(&mut byte).await.unwrap();
                got.push(byte[0]);
            }
            assert!(
                got[..data.len()] == data[..],
                "the payload came out changed"
            );
            assert_eq!(got[data.len()], b'!');
            assert_eq!(
                server_frame(&mut tcp).await,
                (0x80 | OP_PONG, b"are you there".to_vec())
            );
        })
        .await;
    }

    #[tokio::test]
    async fn several_packets_in_one_frame_are_all_read() {
        within(async {
            let (mut client, mut stream) = connected().await;
            let pingreq = [0xC0, 0x00];
            let disconnect = [0xE0, 0x00];
            client
                .send(Message::binary([pingreq, disconnect].concat()))
                .await
                .unwrap();
            let mut got = [0u8; 2];
            stream.read_exact(&mut got).await.unwrap();
            assert_eq!(got, pingreq);
            stream.read_exact(&mut got).await.unwrap();
            assert_eq!(got, disconnect);
        })
        .await;
    }

    #[tokio::test]
    async fn each_write_goes_out_as_one_binary_frame() {
        within(async {
            let (mut client, mut stream) = connected().await;
            let connack = [0x20, 0x02, 0x00, 0x00];
            let pingresp = [0xD0, 0x00];
            stream
                .write_all(&[&connack[..], &pingresp].concat())
                .await
                .unwrap();
            stream.write_all(&pingresp).await.unwrap();
            stream.flush().await.unwrap();
            // A flush with nothing written sends no empty frame.
            stream.flush().await.unwrap();
            stream.shutdown().await.unwrap();

            let first = client.next().await.unwrap().unwrap();
            assert_eq!(first, Message::binary([&connack[..], &pingresp].concat()));
            let second = client.next().await.unwrap().unwrap();
            assert_eq!(second, Message::binary(pingresp.to_vec()));
            match client.next().await.unwrap().unwrap() {
                Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 1000),
                other => panic!("expected Close 1000, got {other:?}"),
            }
        })
        .await;
    }

    /// A large write goes out in frames of at most [`MAX_FRAME_OUT`] bytes, its bytes intact.
    #[tokio::test]
    async fn large_write_is_split_into_frames() {
        within(async {
            let (mut client, mut stream) = connected().await;
            let sent = pattern(2 * MAX_FRAME_OUT + 12_345);
            let writer = tokio::spawn(async move {
                stream.write_all(&sent).await.unwrap();
                stream.flush().await.unwrap();
                (stream, sent)
            });
            let mut got = Vec::new();
            let mut frames = 0;
            while got.len() < 2 * MAX_FRAME_OUT + 12_345 {
                match client.next().await.unwrap().unwrap() {
                    Message::Binary(payload) => {
                        assert!(payload.len() <= MAX_FRAME_OUT);
                        got.extend_from_slice(&payload);
                        frames += 1;
                    }
                    other => panic!("expected Binary, got {other:?}"),
                }
            }
            let (_stream, sent) = writer.await.unwrap();
            assert!(got == sent, "the bytes came out changed");
            assert!(frames >= 3);
        })
        .await;
    }

    #[tokio::test]
    async fn ping_is_answered_with_its_payload() {
        within(async {
            let (mut tcp, mut stream) = raw_connected().await;
            let mut frames = masked(0x80 | OP_PING, b"hello");
            frames.extend(masked(0x80 | OP_BINARY, &[0xC0]));
            tcp.write_all(&frames).await.unwrap();
            let mut got = [0u8; 1];
            stream.read_exact(&mut got).await.unwrap();
            assert_eq!(got, [0xC0]);
            assert_eq!(
                server_frame(&mut tcp).await,
                (0x80 | OP_PONG, b"hello".to_vec())
            );
            // A reply owed does not get in the way of data.
            stream.write_all(&[0xD0, 0x00]).await.unwrap();
            stream.flush().await.unwrap();
            assert_eq!(
                server_frame(&mut tcp).await,
                (0x80 | OP_BINARY, vec![0xD0, 0x00])
            );
        })
        .await;
    }

    /// A burst of Pings from a client that reads is no flood: it gets (at least) the last
    /// Pong, and the connection goes on.
    #[tokio::test]
    async fn ping_burst_from_a_reading_client_is_fine() {
        within(async {
            let (tcp, mut stream) = raw_connected().await;
            let (mut rx, mut tx) = tcp.into_split();
            let mut burst = Vec::new();
            for i in 0..5_000u32 {
                burst.extend(masked(
                    0x80 | OP_PING,
                    &[&i.to_be_bytes()[..], &[0u8; 121]].concat(),
                ));
            }
            burst.extend(masked(0x80 | OP_BINARY, &[0xC0]));
            let reader = tokio::spawn(async move {
                // Pongs until the one for the last Ping.
                loop {
                    let mut head = [0u8; 2];
                    rx.read_exact(&mut head).await.unwrap();
                    let mut payload = vec![0u8; usize::from(head[1])];
                    rx.read_exact(&mut payload).await.unwrap();
                    assert_eq!(head[0], 0x80 | OP_PONG);
                    if payload[..4] == 4_999u32.to_be_bytes() {
                        return;
                    }
                }
            });
            tx.write_all(&burst).await.unwrap();
            let mut got = [0u8; 1];
            stream.read_exact(&mut got).await.unwrap();
            assert_eq!(got, [0xC0]);
            reader.await.unwrap();
        })
        .await;
    }

    /// Pings from a client that never reads: the Pongs cannot go out, and once it is owed
    /// more than [`MAX_OWED_PONGS`] bytes of them, reading fails.
    #[tokio::test]
    async fn ping_flood_without_reading_is_an_error() {
        within(async {
            let (mut tcp, mut stream) = raw_connected().await;
            let batch = masked(0x80 | OP_PING, &[7u8; 125]).repeat(256);
            let flooder = tokio::spawn(async move {
                // Until the server gives up (a write fails).
                while tcp.write_all(&batch).await.is_ok() {}
            });
            let mut got = Vec::new();
            let error = stream.read_to_end(&mut got).await.unwrap_err();
            assert!(error.to_string().contains("without reading"), "{error}");
            assert!(got.is_empty());
            drop(stream);
            flooder.await.unwrap();
        })
        .await;
    }

    #[tokio::test]
    async fn text_frame_is_an_error() {
        within(async {
            let (mut client, mut stream) = connected().await;
            client.send(Message::text("hello")).await.unwrap();
            let mut buf = [0u8; 16];
            let error = stream.read(&mut buf).await.unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData);
            match client.next().await.unwrap().unwrap() {
                Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 1003),
                other => panic!("expected Close 1003, got {other:?}"),
            }
        })
        .await;
    }

    /// Frames RFC 6455 forbids (or that MQTT has no use for) make reading fail, and the
    /// client gets a Close with the status code that says why (RFC 6455 section 7.4.1).
    #[tokio::test]
    async fn protocol_errors() {
        within(async {
            let unmasked = {
                let mut frame = masked(0x80 | OP_BINARY, b"ab");
                frame[1] &= 0x7F;
                frame.truncate(2);
                frame.extend_from_slice(b"ab");
                frame
            };
            let close = |code: u16, reason: &[u8]| {
                masked(0x80 | OP_CLOSE, &[&code.to_be_bytes()[..], reason].concat())
            };
            let over_the_limit = (MAX_MESSAGE as u64 + 1).to_be_bytes();
            let cases: [(&str, Vec<u8>, u16); 19] = [
                ("unmasked", unmasked, 1002),
                ("reserved bits", masked(0xC0 | OP_BINARY, b"ab"), 1002),
                ("reserved bits", masked(0x90 | OP_PING, b""), 1002),
                ("continuation", masked(0x80 | OP_CONTINUATION, b"ab"), 1002),
                (
                    "Binary frame inside a fragmented",
                    [masked(OP_BINARY, b"a"), masked(0x80 | OP_BINARY, b"b")].concat(),
                    1002,
                ),
                (
                    "Text frame inside a fragmented",
                    [masked(OP_BINARY, b"a"), masked(0x80 | OP_TEXT, b"b")].concat(),
                    1002,
                ),
                ("fragmented WebSocket control", masked(OP_PING, b""), 1002),
                ("over 125 bytes", masked(0x80 | OP_PING, &[0u8; 126]), 1002),
                ("unknown WebSocket opcode", masked(0x80 | 0x3, b""), 1002),
                ("unknown WebSocket opcode", masked(0x80 | 0xB, b""), 1002),
                ("text WebSocket frame", masked(0x80 | OP_TEXT, b"ab"), 1003),
                ("Close frame of 1 byte", masked(0x80 | OP_CLOSE, b"x"), 1002),
                ("status code 1005", close(1005, b""), 1002),
                ("status code 5000", close(5000, b""), 1002),
                ("not UTF-8", close(1000, b"\xff\xfe"), 1007),
                (
                    "length 2 not in its shortest form",
                    masked_with_len(0x80 | OP_BINARY, 126, &[0, 2], b"ab"),
                    1002,
                ),
                (
                    "length 65535 not in its shortest form",
                    masked_with_len(0x80 | OP_BINARY, 127, &0xFFFFu64.to_be_bytes(), b""),
                    1002,
                ),
                (
                    "most significant bit",
                    masked_with_len(0x80 | OP_BINARY, 127, &(1u64 << 63).to_be_bytes(), b""),
                    1002,
                ),
                (
                    "over the limit",
                    masked_with_len(0x80 | OP_BINARY, 127, &over_the_limit, b""),
                    1009,
                ),
            ];
            for (expected, bytes, code) in cases {
                let (mut tcp, mut stream) = raw_connected().await;
                tcp.write_all(&bytes).await.unwrap();
                let mut buf = [0u8; 16];
                // The "a" of a message the error is in comes first.
                let error = loop {
                    match stream.read(&mut buf).await {
                        Ok(n) => assert!(n > 0, "{expected}: end of stream instead of an error"),
                        Err(e) => break e,
                    }
                };
                assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{expected}");
                assert!(error.to_string().contains(expected), "{expected}: {error}");
                assert_eq!(
                    server_frame(&mut tcp).await,
                    (0x80 | OP_CLOSE, code.to_be_bytes().to_vec()),
                    "{expected}"
                );
                // The failure stays: reading again fails again.
                let again = stream.read(&mut buf).await.unwrap_err();
                assert!(again.to_string().contains(expected), "{expected}: {again}");
            }
        })
        .await;
    }

    /// A read hands on the payload of every frame the socket has, not one frame's: for
    /// clients that send each MQTT packet in its own frame, the reader's buffer fills (and
    /// its next reads are larger), instead of one read per packet.
    #[tokio::test]
    async fn small_frames_come_out_in_one_read() {
        within(async {
            let (mut client, mut stream) = piped(64 * 1024);
            let payload = pattern(300);
            let frames: Vec<u8> = payload
                .chunks(3)
                .flat_map(|packet| masked(0x80 | OP_BINARY, packet))
                .collect();
            client.write_all(&frames).await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = stream.read(&mut buf).await.unwrap();
            assert_eq!(n, 300, "100 frames of 3 bytes, all there: one read");
            assert_eq!(buf[..n], payload[..]);

            // A buffer the frames do not fit is filled, to the byte.
            client.write_all(&frames).await.unwrap();
            let mut small = [0u8; 250];
            assert_eq!(stream.read(&mut small).await.unwrap(), 250);
            assert_eq!(small[..], payload[..250]);
            assert_eq!(stream.read(&mut small).await.unwrap(), 50);
            assert_eq!(small[..50], payload[250..]);

            // Nothing more: the next read waits.
            assert!(stream.read(&mut buf).now_or_never().is_none());
        })
        .await;
    }

    /// Frames arriving a byte at a time, read with a large buffer: a header in pieces
    /// across reads of the socket is put together, a read with no payload yet waits, and
    /// one with some returns it without waiting for more.
    #[tokio::test]
    async fn frames_arriving_a_byte_at_a_time_into_a_large_buffer() {
        within(async {
            let (mut client, mut stream) = piped(64 * 1024);
            let data = pattern(70_000);
            let mut frames = masked(OP_BINARY, &data[..5]);
            frames.extend(masked(0x80 | OP_PING, b"ping"));
            frames.extend(masked(OP_CONTINUATION, &data[5..300]));
            frames.extend(masked(0x80 | OP_CONTINUATION, &data[300..]));
            frames.extend(masked(0x80 | OP_BINARY, b"!"));
            let mut got = Vec::new();
            let mut buf = vec![0u8; 8192];
            for (i, byte) in frames.iter().enumerate() {
                client.write_all(&[*byte]).await.unwrap();
                match stream.read(&mut buf).now_or_never() {
                    Some(Ok(n)) => {
                        assert!(n > 0, "end of stream at byte {i}");
                        got.extend_from_slice(&buf[..n]);
                    }
                    Some(Err(e)) => panic!("at byte {i}: {e}"),
                    // Header and control bytes: no payload yet.
                    None => {}
                }
            }
            assert_eq!(got.len(), data.len() + 1);
            assert!(
                got[..data.len()] == data[..],
                "the payload came out changed"
            );
            assert_eq!(got[data.len()], b'!');
        })
        .await;
    }

    /// Payload decoded before a fault, in the same read of the socket, is handed on; the
    /// next read reports the fault, and the client gets its Close.
    #[tokio::test]
    async fn payload_before_a_fault_is_handed_on_first() {
        within(async {
            let (mut client, mut stream) = piped(64 * 1024);
            let mut bytes = masked(0x80 | OP_BINARY, &[0xC0, 0x00]);
            bytes.extend(masked(OP_BINARY, &[0xE0]));
            bytes.extend(masked(0x80 | 0x3, b""));
            bytes.extend(masked(0x80 | OP_BINARY, b"never read"));
            client.write_all(&bytes).await.unwrap();
            let mut buf = [0u8; 64];
            let n = stream.read(&mut buf).await.unwrap();
            assert_eq!(buf[..n], [0xC0, 0x00, 0xE0]);
            let error = stream.read(&mut buf).await.unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData);
            assert!(error.to_string().contains("opcode 0x3"), "{error}");
            assert_eq!(
                server_frame(&mut client).await,
                (0x80 | OP_CLOSE, 1002u16.to_be_bytes().to_vec())
            );
            assert!(stream.read(&mut buf).await.is_err());
        })
        .await;
    }

    /// Lengths at the bounds of their forms, in the shortest form, are fine.
    #[tokio::test]
    async fn lengths_in_their_shortest_form_are_read() {
        within(async {
            let (mut client, mut stream) = piped(256 * 1024);
            let sizes = [125, 126, 0xFFFF, 0x10000];
            let data = pattern(sizes.iter().sum());
            let mut frames = Vec::new();
            let mut at = 0;
            for size in sizes {
                frames.extend(masked(0x80 | OP_BINARY, &data[at..at + size]));
                at += size;
            }
            client.write_all(&frames).await.unwrap();
            let mut got = vec![0u8; data.len()];
            stream.read_exact(&mut got).await.unwrap();
            assert!(got == data, "the payload came out changed");
        })
        .await;
    }

    /// A Close that comes while one of our data frames is half written: the frame is
    /// finished (its length was announced), then the Close is answered; no frame starts
    /// after it.
    #[tokio::test]
    async fn close_during_a_frame_is_answered_after_it() {
        within(async {
            let (mut client, mut stream) = piped(64);
            let data = pattern(1000);
            let n = stream.write(&data).await.unwrap();
            assert!(n < data.len(), "the pipe takes 64 bytes");
            client
                .write_all(&masked(0x80 | OP_CLOSE, &1001u16.to_be_bytes()))
                .await
                .unwrap();
            let mut buf = [0u8; 16];
            assert_eq!(stream.read(&mut buf).await.unwrap(), 0);
            let reader = tokio::spawn(async move {
                let frames = (
                    server_frame(&mut client).await,
                    server_frame(&mut client).await,
                );
                (frames, client)
            });
            stream.write_all(&data[n..]).await.unwrap();
            stream.flush().await.unwrap();
            let ((first, second), _client) = reader.await.unwrap();
            assert_eq!(first.0, 0x80 | OP_BINARY);
            assert!(first.1 == data, "the frame came out changed");
            assert_eq!(second, (0x80 | OP_CLOSE, 1001u16.to_be_bytes().to_vec()));
            let error = stream.write_all(b"late").await.unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::BrokenPipe);
        })
        .await;
    }

    #[tokio::test]
    async fn close_is_end_of_stream() {
        within(async {
            let (mut client, mut stream) = connected().await;
            client.send(Message::binary(vec![0xC0])).await.unwrap();
            client.close(None).await.unwrap();
            let mut got = Vec::new();
            stream.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, [0xC0]);
        })
        .await;
    }

    /// A Close is answered with its status code (one not to be sent is a protocol error,
    /// see [`protocol_errors`]); nothing may be written after it, and nothing after it is
    /// read.
    #[tokio::test]
    async fn close_is_answered_with_its_code() {
        within(async {
            for (code, reason) in [(1001u16, ""), (1000, "bye ✓"), (4000, "")] {
                let (mut tcp, mut stream) = raw_connected().await;
                let payload = [&code.to_be_bytes()[..], reason.as_bytes()].concat();
                let mut frames = masked(0x80 | OP_CLOSE, &payload);
                frames.extend(masked(0x80 | OP_BINARY, b"ignored"));
                tcp.write_all(&frames).await.unwrap();
                let mut got = Vec::new();
                stream.read_to_end(&mut got).await.unwrap();
                assert!(got.is_empty());
                assert_eq!(
                    server_frame(&mut tcp).await,
                    (0x80 | OP_CLOSE, code.to_be_bytes().to_vec())
                );
                let error = stream.write_all(b"late").await.unwrap_err();
                assert_eq!(error.kind(), io::ErrorKind::BrokenPipe);
            }
        })
        .await;
    }

    #[tokio::test]
    async fn wrong_path_is_404() {
        within(async {
            let (url, server) = server().await;
            let error = client(&format!("{url}/other"), "mqtt").await.unwrap_err();
            match error {
                tungstenite::Error::Http(response) => assert_eq!(response.status(), 404),
                other => panic!("expected HTTP 404, got {other}"),
            }
            match server.await.unwrap() {
                Err(WsAcceptError::Rejected {
                    status: 404,
                    reason,
                }) => {
                    assert!(reason.contains("/mqtt"), "{reason}")
                }
                Err(other) => panic!("expected a 404 rejection, got {other}"),
                Ok(_) => panic!("expected a 404 rejection, got a connection"),
            }
        })
        .await;
    }

    #[tokio::test]
    async fn query_string_does_not_affect_the_path() {
        within(async {
            let (url, server) = server().await;
            client(&format!("{url}/mqtt?client=1"), "mqtt")
                .await
                .unwrap();
            server.await.unwrap().unwrap();
        })
        .await;
    }

    #[tokio::test]
    async fn subprotocol_negotiation() {
        within(async {
            for (offered, answered) in [
                ("mqtt", Some("mqtt")),
                ("mqttv3.1", Some("mqttv3.1")),
                ("mqttv3.1, mqtt", Some("mqtt")),
                ("chat, mqttv3.1", Some("mqttv3.1")),
                ("", None),
            ] {
                let (url, server) = server().await;
                let (_client, protocol) = client(&format!("{url}/mqtt"), offered)
                    .await
                    .unwrap_or_else(|e| panic!("offering {offered:?}: {e}"));
                assert_eq!(protocol.as_deref(), answered, "offering {offered:?}");
                let stream = server.await.unwrap().unwrap();
                assert_eq!(stream.subprotocol(), answered, "offering {offered:?}");
            }

            let (url, server) = server().await;
            match client(&format!("{url}/mqtt"), "chat, superchat").await {
                Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 400),
                Err(other) => panic!("expected HTTP 400, got {other}"),
                Ok(_) => panic!("expected HTTP 400, got a connection"),
            }
            assert!(matches!(
                server.await.unwrap(),
                Err(WsAcceptError::Rejected { status: 400, .. })
            ));
        })
        .await;
    }

    #[tokio::test]
    async fn plain_http_request_is_a_handshake_error() {
        within(async {
            let (url, server) = server().await;
            let addr = url.trim_start_matches("ws://");
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            tcp.write_all(b"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            assert!(server.await.unwrap().is_err());
        })
        .await;
    }

    /// The upgrade request arriving a byte at a time is fine; bytes after it (before our
    /// answer) and an endless request are handshake errors.
    #[tokio::test]
    async fn upgrade_request_limits() {
        within(async {
            let (url, task) = server().await;
            let mut tcp = TcpStream::connect(url.trim_start_matches("ws://"))
                .await
                .unwrap();
            for byte in UPGRADE {
                tcp.write_all(&[*byte]).await.unwrap();
            }
            task.await.unwrap().unwrap();

            let (url, task) = server().await;
            let mut tcp = TcpStream::connect(url.trim_start_matches("ws://"))
                .await
                .unwrap();
            let early = [UPGRADE, &masked(0x80 | OP_BINARY, b"x")].concat();
            tcp.write_all(&early).await.unwrap();
            assert!(matches!(
                task.await.unwrap(),
                Err(WsAcceptError::Handshake(tungstenite::Error::Protocol(
                    ProtocolError::JunkAfterRequest
                )))
            ));

            let (url, task) = server().await;
            let mut tcp = TcpStream::connect(url.trim_start_matches("ws://"))
                .await
                .unwrap();
            let long = format!(
                "GET /mqtt HTTP/1.1\r\nX-Long: {}\r\n",
                "y".repeat(MAX_REQUEST)
            );
            let _ = tcp.write_all(long.as_bytes()).await;
            assert!(matches!(
                task.await.unwrap(),
                Err(WsAcceptError::Handshake(tungstenite::Error::Capacity(_)))
            ));
        })
        .await;
    }

    #[test]
    fn unmasking_moves_and_unmasks() {
        let mask = [1, 2, 3, 4];
        for len in 0..40 {
            for gap in [0, 1, 3, 8, 13] {
                let plain = pattern(len);
                let mut data = vec![0xEE; gap];
                data.extend(plain.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
                unmask_into(&mut data, gap, 0, len, mask);
                assert_eq!(data[..len], plain[..], "len {len}, gap {gap}");
            }
        }
    }
}
