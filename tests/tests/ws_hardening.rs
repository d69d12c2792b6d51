//! WebSocket hardening (issue 12): what a WebSocket peer can make the broker queue for
//! writing, and what an idle WebSocket connection costs.
//!
//! The abusive peers here are raw sockets that do the HTTP upgrade by hand and then write
//! masked frames without ever reading: a WebSocket library would read (and so drain the
//! broker's replies), which is exactly what a hostile peer does not do. Each test starts
//! its own bridge; figures are printed (`cargo test -p tests --test ws_hardening --
//! --nocapture` shows them). Timeouts are generous and nothing asserts speed: the machine is
//! shared.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use tests::memory::{rss_kib, RssPeak};
use tests::wire::{self, connect, WAIT};
use tests::{assert_serving, unique, Bridge};

/// How long the floods last.
const FLOOD: Duration = Duration::from_secs(5);
/// The bound on the broker's peak RSS during a flood (an idle debug build sits around
/// 10-20 MiB; without a bound on what the broker queues, a Ping flood takes gigabytes).
const FLOOD_RSS_BOUND_KIB: u64 = 100 * 1024;
/// The bound on the cost of one idle WebSocket connection (with its MQTT session).
const IDLE_BYTES_BOUND: u64 = 8 * 1024;

// --- a raw WebSocket client ----------------------------------------------------------------

/// Frame opcodes (RFC 6455 section 5.2).
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// One client-to-server frame: FIN set, masked (as a client must), with `payload`.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xFA, 0x21, 0x3D];
    let mut out = vec![0x80 | opcode];
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

/// A WebSocket to the broker's `/mqtt`, upgraded by hand over a blocking socket.
struct RawWs {
    stream: TcpStream,
    /// Bytes read past the last whole frame.
    buf: Vec<u8>,
}

impl RawWs {
    /// Connects and completes the upgrade (subprotocol `mqtt`); panics if it is refused.
    fn upgrade(port: u16) -> RawWs {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_nodelay(true).unwrap();
        let request = format!(
            "GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .expect("send the upgrade");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        // One byte at a time: nothing after the response is consumed.
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(0) => panic!(
                    "closed during the upgrade: {:?}",
                    String::from_utf8_lossy(&head)
                ),
                Ok(_) => head.push(byte[0]),
                Err(e) => panic!("upgrade: {e} after {:?}", String::from_utf8_lossy(&head)),
            }
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
        // The accept key for the sample nonce of RFC 6455 section 1.3.
        assert!(
            head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "wrong Sec-WebSocket-Accept: {head}"
        );
        RawWs {
            stream,
            buf: Vec::new(),
        }
    }

    /// Upgrades and completes an MQTT 3.1.1 CONNECT (keep-alive `keep_alive` s).
    fn connected(port: u16, keep_alive: u16) -> RawWs {
        let mut ws = RawWs::upgrade(port);
        let id = unique("wsh");
        ws.send(&frame(BINARY, &connect(&id).keep_alive(keep_alive).bytes()));
        let connack = ws.read_mqtt(4, WAIT);
        assert_eq!(connack, [0x20, 0x02, 0x00, 0x00], "CONNACK for {id}");
        ws
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// The next frame from the server: (opcode, payload). Server frames are unmasked.
    fn read_frame(&mut self, within: Duration) -> (u8, Vec<u8>) {
        self.try_read_frame(within)
            .unwrap_or_else(|| panic!("no WebSocket frame within {within:?}"))
    }

    /// [`RawWs::read_frame`], or `None` if no whole frame arrived within `within`.
    fn try_read_frame(&mut self, within: Duration) -> Option<(u8, Vec<u8>)> {
        let deadline = Instant::now() + within;
        loop {
            if let Some((opcode, payload, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                return Some((opcode, payload));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 16384];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("the server closed the WebSocket"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// Exactly `n` bytes of MQTT from Binary frames (Pongs skipped).
    fn read_mqtt(&mut self, n: usize, within: Duration) -> Vec<u8> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_frame(left) {
                (BINARY, payload) => out.extend_from_slice(&payload),
                (PONG, _) => {}
                (opcode, payload) => panic!("unexpected frame {opcode:#x}: {payload:?}"),
            }
        }
        assert_eq!(out.len(), n, "more MQTT than expected: {out:?}");
        out
    }
}

/// A whole server frame at the start of `buf`: (opcode, payload, bytes used).
fn parse_server_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    if buf.len() < 2 {
        return None;
    }
    assert_eq!(buf[1] & 0x80, 0, "a server frame must not be masked");
    let (len, at) = match buf[1] & 0x7F {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().unwrap()) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().unwrap()) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let payload = buf.get(at..at + len)?.to_vec();
    Some((buf[0] & 0x0F, payload, at + len))
}

// --- floods ---------------------------------------------------------------------------------

/// How a flood ended.
struct Flooded {
    /// Bytes written.
    sent: u64,
    /// When the server closed the connection (a write failed), if it did.
    closed_after: Option<Duration>,
}

/// Writes `batch` (whole frames) over and over for up to `duration`, never reading, until
/// the server closes the connection.
fn flood(stream: &mut TcpStream, batch: &[u8], duration: Duration) -> Flooded {
    // A write that times out may have written part of the batch: `at` keeps the frames
    // whole by going on from there.
    stream
        .set_write_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let started = Instant::now();
    let mut sent = 0u64;
    let mut at = 0;
    while started.elapsed() < duration {
        match stream.write(&batch[at..]) {
            Ok(0) => {
                return Flooded {
                    sent,
                    closed_after: Some(started.elapsed()),
                }
            }
            Ok(n) => {
                sent += n as u64;
                at = (at + n) % batch.len();
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // Reset or broken pipe: the server closed (with our flood unread).
            Err(_) => {
                return Flooded {
                    sent,
                    closed_after: Some(started.elapsed()),
                }
            }
        }
    }
    Flooded {
        sent,
        closed_after: None,
    }
}

/// Waits up to `within` for the broker's log to contain `needle`.
fn log_mentions(b: &Bridge, needle: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let log = std::fs::read_to_string(b.log_path()).unwrap_or_default();
        if log.contains(needle) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Floods `ws` with Pings (the largest a control frame may carry, 125 bytes) for up to
/// [`FLOOD`] without reading, while a well-behaved client is served; asserts that the
/// broker closed the connection, said why in its log, kept its memory bounded and still
/// serves MQTT.
fn ping_flood(b: &mut Bridge, mut ws: RawWs, label: &str) {
    let rss = RssPeak::start(b);
    let idle = rss_kib(b.pid());
    let batch = frame(PING, &[b'p'; 125]).repeat(512);
    let port = b.tcp_port();
    let prober = thread::spawn(move || {
        thread::sleep(FLOOD / 5);
        assert_serving(port);
    });
    let flooded = flood(&mut ws.stream, &batch, FLOOD);
    prober
        .join()
        .expect("a well-behaved client during the flood");
    b.assert_running();
    let after = rss_kib(b.pid());
    eprintln!(
        "[ws_hardening] {label}: {:.1} MiB of Pings written; connection {}; RSS idle \
         {:.1} MiB, after {:.1} MiB",
        flooded.sent as f64 / (1024.0 * 1024.0),
        match flooded.closed_after {
            Some(t) => format!("closed by the broker after {t:?}"),
            None => format!("still open after {FLOOD:?}"),
        },
        idle as f64 / 1024.0,
        after as f64 / 1024.0,
    );
    rss.finish_below(label, FLOOD_RSS_BOUND_KIB);
    assert!(
        flooded.closed_after.is_some(),
        "{label}: the broker did not close a connection that floods Pings without reading"
    );
    assert!(
        log_mentions(b, "without reading", Duration::from_secs(5)),
        "{label}: the log does not say why the connection was closed\n{}",
        b.log_tail()
    );
    assert_serving(b.tcp_port());
}

/// Issue 12 item 2: Pings before CONNECT, never reading the Pongs. The connection is
/// closed (long before the CONNECT timeout) and memory stays bounded.
#[test]
fn ping_flood_before_connect_is_closed_with_memory_bounded() {
    let mut b = Bridge::start();
    let ws = RawWs::upgrade(b.ws_port());
    ping_flood(&mut b, ws, "Ping flood before CONNECT");
}

/// The same after CONNECT: the session's keep-alive would never end it (Pings are
/// traffic), so only the bound on what it may leave unread does.
#[test]
fn ping_flood_after_connect_is_closed_with_memory_bounded() {
    let mut b = Bridge::start();
    let ws = RawWs::connected(b.ws_port(), 60);
    ping_flood(&mut b, ws, "Ping flood after CONNECT");
}

/// A Close frame followed by a flood: nothing after the Close is read (and nothing owed is
/// queued), the connection ends at once.
#[test]
fn close_then_flood_is_closed() {
    let mut b = Bridge::start();
    for connected in [false, true] {
        let mut ws = if connected {
            RawWs::connected(b.ws_port(), 60)
        } else {
            RawWs::upgrade(b.ws_port())
        };
        let mut batch = frame(CLOSE, &1000u16.to_be_bytes());
        batch.extend(frame(PING, &[b'c'; 125]).repeat(512));
        let flooded = flood(&mut ws.stream, &batch, FLOOD);
        assert!(
            flooded.closed_after.is_some(),
            "Close then Pings (connected: {connected}): still open after {FLOOD:?}"
        );
    }
    b.assert_running();
    assert_serving(b.tcp_port());
}

/// Our Binary writes: a WebSocket subscriber that does not read while a TCP publisher
/// floods its topic. What the broker keeps for it is bounded (its session queue, and at
/// most one frame in the WebSocket layer), other clients are served, and when it reads
/// again the messages flow.
#[test]
fn websocket_subscriber_that_does_not_read_keeps_memory_bounded() {
    const PAYLOAD: usize = 16 * 1024;
    let config = std::env::temp_dir().join(format!("{}.toml", unique("wsh-flood")));
    std::fs::write(&config, "[limits]\nmax_queued_messages = 1000\n").expect("write config");
    let mut b = Bridge::start_with(&["--config", config.to_str().unwrap()]);
    let _ = std::fs::remove_file(&config);
    let rss = RssPeak::start(&b);
    let port = b.tcp_port();
    let topic = unique("wsh-flood");
    let mut sleeper = RawWs::connected(b.ws_port(), 60);
    sleeper.send(&frame(BINARY, &wire::subscribe(1, &[(&topic, 0)])));
    assert_eq!(sleeper.read_mqtt(5, WAIT), [0x90, 0x03, 0x00, 0x01, 0x00]);

    let publisher = tests::spawn_flood(port, &topic, PAYLOAD, FLOOD);
    thread::sleep(FLOOD / 2);
    assert_serving(port);
    let (sent, _) = publisher.join().expect("publisher");
    b.assert_running();
    eprintln!(
        "[ws_hardening] {sent} messages of {PAYLOAD} bytes to a WebSocket that does not read"
    );
    rss.finish_below("WebSocket subscriber not reading", FLOOD_RSS_BOUND_KIB);

    // It reads again: it gets what was kept (until the stream is quiet for 2 s), then a
    // new message.
    let mut kept = 0;
    while let Some((opcode, payload)) = sleeper.try_read_frame(Duration::from_secs(2)) {
        assert_eq!(opcode, BINARY, "unexpected frame");
        kept += payload.len();
    }
    assert!(kept > 0, "the subscriber got nothing at all");
    eprintln!(
        "[ws_hardening] the subscriber then read {:.1} MiB that the broker had kept",
        kept as f64 / (1024.0 * 1024.0)
    );
    let mut p = wire::RawClient::connect_clean(port, &unique("wsh-after"));
    p.publish(&topic, b"marker", 1, false, 1);
    p.disconnect();
    let marker = wire::publish(&topic, b"marker", 0, false, 0);
    assert_eq!(sleeper.read_mqtt(marker.len(), WAIT), marker);
    assert_serving(port);
}

// --- idle connections -----------------------------------------------------------------------

/// Issue 12 item 8: 500 idle WebSocket clients (upgraded and connected with CONNECT) cost
/// the broker less than [`IDLE_BYTES_BOUND`] each, and are all still served.
#[test]
fn idle_websocket_connections_cost_a_few_kib_each() {
    const N: usize = 500;
    let b = Bridge::start();
    let port = b.ws_port();
    // A few connections first, so that one-time costs (allocator arenas of the worker
    // threads, the broker's tables) are not counted against the 500.
    drop(
        (0..8)
            .map(|_| RawWs::connected(port, 0))
            .collect::<Vec<_>>(),
    );
    thread::sleep(Duration::from_millis(500));
    let before = rss_kib(b.pid());
    let mut conns: Vec<RawWs> = (0..N).map(|_| RawWs::connected(port, 0)).collect();
    thread::sleep(Duration::from_millis(500));
    let after = rss_kib(b.pid());
    let per_conn = (after.saturating_sub(before) * 1024) / N as u64;
    eprintln!(
        "[ws_hardening] {N} idle WebSocket connections: RSS {:.1} MiB -> {:.1} MiB, \
         {per_conn} bytes ({:.1} KiB) per connection",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        per_conn as f64 / 1024.0
    );
    // All alive: PINGREQ, PINGRESP.
    for ws in &mut conns {
        ws.send(&frame(BINARY, &wire::pingreq()));
    }
    for ws in &mut conns {
        assert_eq!(ws.read_mqtt(2, WAIT), [0xD0, 0x00], "PINGRESP");
    }
    assert!(
        per_conn < IDLE_BYTES_BOUND,
        "an idle WebSocket connection costs {per_conn} bytes, more than {IDLE_BYTES_BOUND}"
    );
}
