//! MQTT over WebSocket (MQTT 3.1.1 section 6) and the shared router between TCP and WebSocket
//! clients. WebSocket clients: python paho-mqtt (tests/py/ws_client.py) and a raw
//! tokio-tungstenite socket carrying hand-made MQTT bytes.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use tests::wire::{self, connect, Packet, RawClient};
use tests::{py_script, require_paho, run_ok, spawn_line_buffered, which, Bridge, Proc};

const WAIT: Duration = Duration::from_secs(20);

/// `mosquitto_sub` on TCP printing `MSG <topic> <qos> <retain> <payload>`; returns once its
/// SUBACK arrived (seen through `-d`).
fn mosquitto_sub(port: u16, topic: &str, qos: u8, count: usize) -> Proc {
    let mut p = spawn_line_buffered(
        "mosquitto_sub",
        [
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            topic,
            "-q",
            &qos.to_string(),
            "-C",
            &count.to_string(),
            "-W",
            "30",
            "-d",
            "-F",
            "MSG %t %q %r %p",
        ],
    );
    p.wait_line(WAIT, |l| l.contains("SUBACK"));
    p
}

/// paho over WebSocket subscribing to `topic`; returns once its SUBACK arrived.
fn paho_sub(ws_port: u16, topic: &str, qos: u8, count: usize) -> Proc {
    let py = require_paho();
    let script = py_script("ws_client.py");
    let mut p = Proc::spawn(
        &py,
        [
            script.to_str().unwrap(),
            "sub",
            "--port",
            &ws_port.to_string(),
            "--topic",
            topic,
            "--qos",
            &qos.to_string(),
            "--count",
            &count.to_string(),
            "--timeout",
            "30",
        ],
    );
    let line = p.wait_line(WAIT, |l| {
        l.starts_with("subscribed") || l.starts_with("error")
    });
    assert_eq!(
        line,
        format!("subscribed {qos}"),
        "paho SUBACK over WebSocket"
    );
    p
}

/// paho over WebSocket publishing one message; panics unless its QoS flow completed.
fn paho_pub(ws_port: u16, topic: &str, message: &str, qos: u8, retain: bool) {
    let py = require_paho();
    let script = py_script("ws_client.py");
    let port = ws_port.to_string();
    let q = qos.to_string();
    let mut args = vec![
        script.to_str().unwrap(),
        "pub",
        "--port",
        &port,
        "--topic",
        topic,
        "--message",
        message,
        "--qos",
        &q,
    ];
    if retain {
        args.push("--retain");
    }
    let out = run_ok(&py, &args, WAIT);
    assert!(out.contains("published"), "paho pub output: {out}");
}

/// Section 6 + the shared router: in one broker, a TCP publisher (mosquitto_pub) reaches a
/// WebSocket subscriber (paho), and a WebSocket publisher (paho) reaches a TCP subscriber
/// (mosquitto_sub), with topic, QoS and payload intact.
#[test]
fn tcp_and_websocket_clients_reach_each_other() {
    let b = Bridge::start();
    let mut ws_sub = paho_sub(b.ws_port(), "x/to-ws", 1, 1);
    let mut tcp_sub = mosquitto_sub(b.tcp_port(), "x/to-tcp", 1, 1);

    run_ok(
        &which("mosquitto_pub"),
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &b.tcp_port().to_string(),
            "-t",
            "x/to-ws",
            "-q",
            "1",
            "-m",
            "from tcp",
        ],
        WAIT,
    );
    let got = ws_sub.wait_line(WAIT, |l| l.starts_with("msg "));
    assert_eq!(got, "msg x/to-ws qos=1 retain=0 from tcp");

    paho_pub(b.ws_port(), "x/to-tcp", "from ws", 1, false);
    let got = tcp_sub.wait_line(WAIT, |l| l.starts_with("MSG "));
    assert_eq!(got, "MSG x/to-tcp 1 0 from ws");

    ws_sub.wait_success(WAIT);
    tcp_sub.wait_success(WAIT);
}

/// Section 6 with retained messages and QoS 2 over WebSocket: a retained QoS 2 message
/// published by paho is delivered to a later paho subscriber with RETAIN 1 and QoS 2, and to
/// a TCP subscriber too.
#[test]
fn paho_websocket_retained_qos2() {
    let b = Bridge::start();
    paho_pub(b.ws_port(), "ws/retained", "kept over ws", 2, true);
    let mut sub = paho_sub(b.ws_port(), "ws/retained", 2, 1);
    let got = sub.wait_line(WAIT, |l| l.starts_with("msg "));
    assert_eq!(got, "msg ws/retained qos=2 retain=1 kept over ws");
    sub.wait_success(WAIT);

    let mut raw = RawClient::connect_clean(b.tcp_port(), "tcp-reader");
    assert_eq!(raw.subscribe(1, &[("ws/#", 2)]), vec![2]);
    match raw.receive(WAIT) {
        Packet::Publish {
            topic,
            payload,
            qos,
            retain,
            ..
        } => {
            assert_eq!(
                (topic.as_str(), &payload[..], qos, retain),
                ("ws/retained", &b"kept over ws"[..], 2, true)
            );
        }
        _ => unreachable!(),
    }
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket to the bridge offering subprotocol `mqtt`; returns it with the subprotocol the
/// server selected.
async fn ws_open(b: &Bridge) -> (Ws, Option<String>) {
    let mut req = b.ws_url().into_client_request().expect("ws request");
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
    let (ws, resp) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .expect("WebSocket handshake timed out")
        .unwrap_or_else(|e| panic!("WebSocket handshake with {} failed: {e}", b.ws_url()));
    let proto = resp
        .headers()
        .get("Sec-WebSocket-Protocol")
        .map(|v| v.to_str().unwrap_or("<non-ascii>").to_string());
    (ws, proto)
}

/// Reads MQTT packets out of binary frames (packets may span frames).
struct WsReader {
    buf: Vec<u8>,
}

#[derive(Debug)]
enum WsEnd {
    Timeout,
    Closed,
    TextFrame,
}

impl WsReader {
    fn new() -> Self {
        WsReader { buf: Vec::new() }
    }

    async fn next(&mut self, ws: &mut Ws, within: Duration) -> Result<Packet, WsEnd> {
        let deadline = Instant::now() + within;
        loop {
            if let Some((p, used)) = wire::decode(&self.buf).expect("valid MQTT from server") {
                self.buf.drain(..used);
                return Ok(p);
            }
            match timeout_at(deadline, ws.next()).await {
                Err(_) => return Err(WsEnd::Timeout),
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => {
                    return Err(WsEnd::Closed)
                }
                Ok(Some(Ok(Message::Binary(b)))) => self.buf.extend_from_slice(&b),
                Ok(Some(Ok(Message::Text(_)))) => return Err(WsEnd::TextFrame),
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    async fn expect(&mut self, ws: &mut Ws) -> Packet {
        match self.next(ws, WAIT).await {
            Ok(p) => p,
            Err(e) => panic!("WebSocket: expected a packet: {e:?}"),
        }
    }
}

async fn send(ws: &mut Ws, bytes: Vec<u8>) {
    ws.send(Message::Binary(bytes.into()))
        .await
        .expect("send binary frame");
}

/// MQTT-6.0.0-3/MQTT-6.0.0-4: the client offers subprotocol `mqtt` and the server selects
/// exactly `mqtt`; MQTT-6.0.0-1: MQTT packets travel in binary frames (CONNACK, SUBACK,
/// PUBLISH and PINGRESP all arrive that way).
#[tokio::test]
async fn websocket_handshake_selects_mqtt_subprotocol() {
    let b = Bridge::start();
    let (mut ws, proto) = ws_open(&b).await;
    assert_eq!(proto.as_deref(), Some("mqtt"), "selected subprotocol");
    let mut r = WsReader::new();
    send(&mut ws, connect("ws-raw").bytes()).await;
    assert_eq!(
        r.expect(&mut ws).await,
        Packet::Connack {
            session_present: false,
            code: 0
        }
    );
    send(&mut ws, wire::subscribe(1, &[("wsr/t", 0)])).await;
    assert_eq!(
        r.expect(&mut ws).await,
        Packet::Suback {
            pid: 1,
            codes: vec![0]
        }
    );
    send(&mut ws, wire::publish("wsr/t", b"loop", 0, false, 0)).await;
    assert_eq!(
        r.expect(&mut ws).await.as_publish(),
        Some(("wsr/t", &b"loop"[..]))
    );
    send(&mut ws, wire::pingreq()).await;
    assert_eq!(r.expect(&mut ws).await, Packet::Pingresp);
}

/// MQTT-6.0.0-2: a WebSocket frame may hold part of a packet or several packets; the server
/// must not assume packets align with frames.
#[tokio::test]
async fn websocket_packets_need_not_align_with_frames() {
    let b = Bridge::start();
    let (mut ws, _) = ws_open(&b).await;
    let mut r = WsReader::new();
    let c = connect("ws-split").bytes();
    for chunk in c.chunks(3) {
        send(&mut ws, chunk.to_vec()).await;
    }
    assert_eq!(
        r.expect(&mut ws).await,
        Packet::Connack {
            session_present: false,
            code: 0
        }
    );
    let mut many = wire::subscribe(5, &[("wss/t", 1)]);
    many.extend(wire::publish("wss/t", b"in one frame", 1, false, 6));
    many.extend(wire::pingreq());
    let (head, tail) = many.split_at(many.len() - 1);
    send(&mut ws, head.to_vec()).await;
    send(&mut ws, tail.to_vec()).await;
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(r.expect(&mut ws).await);
    }
    assert!(got.contains(&Packet::Suback {
        pid: 5,
        codes: vec![1]
    }));
    assert!(got.contains(&Packet::Puback(6)));
    assert!(got.contains(&Packet::Pingresp));
    assert!(
        got.iter()
            .any(|p| p.as_publish() == Some(("wss/t", &b"in one frame"[..]))),
        "got {got:?}"
    );
}

/// MQTT-6.0.0-1: a text frame is not allowed; the server closes the connection.
#[tokio::test]
async fn websocket_text_frame_closes_the_connection() {
    let b = Bridge::start();
    let (mut ws, _) = ws_open(&b).await;
    let mut r = WsReader::new();
    send(&mut ws, connect("ws-text").bytes()).await;
    assert!(matches!(
        r.expect(&mut ws).await,
        Packet::Connack { code: 0, .. }
    ));
    send(&mut ws, wire::subscribe(1, &[("tx/t", 0)])).await;
    assert!(matches!(r.expect(&mut ws).await, Packet::Suback { .. }));
    // A valid QoS 0 PUBLISH to our own subscription, all ASCII, so it is valid UTF-8 text:
    // a server that read text frames as MQTT would echo it back instead of closing.
    let publish = wire::publish("tx/t", b"text", 0, false, 0);
    let text = String::from_utf8(publish).expect("ASCII packet");
    ws.send(Message::text(text)).await.expect("send text frame");
    match r.next(&mut ws, WAIT).await {
        Err(WsEnd::Closed) => {}
        other => panic!("expected the connection to close, got {other:?}"),
    }
    tests::assert_serving(b.tcp_port());
}

/// MQTT-3.1.2-8 over WebSocket: a WebSocket client whose TCP connection drops without
/// DISCONNECT (and without a close frame) has its Will published to a TCP subscriber.
#[tokio::test]
async fn websocket_client_will_reaches_tcp_subscriber() {
    let b = Bridge::start();
    let port = b.tcp_port();
    let watcher = tokio::task::spawn_blocking(move || {
        let mut w = RawClient::connect_clean(port, "ws-will-watch");
        assert_eq!(w.subscribe(1, &[("wsw/#", 1)]), vec![1]);
        w
    })
    .await
    .unwrap();
    let (mut ws, _) = ws_open(&b).await;
    let mut r = WsReader::new();
    send(
        &mut ws,
        connect("ws-will")
            .will("wsw/gone", b"ws lost", 1, false)
            .bytes(),
    )
    .await;
    assert!(matches!(
        r.expect(&mut ws).await,
        Packet::Connack { code: 0, .. }
    ));
    drop(ws); // TCP close, no close frame, no DISCONNECT
    let p = tokio::task::spawn_blocking(move || {
        let mut w = watcher;
        w.receive(WAIT)
    })
    .await
    .unwrap();
    assert_eq!(p.as_publish(), Some(("wsw/gone", &b"ws lost"[..])));
}
