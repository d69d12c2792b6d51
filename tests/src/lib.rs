//! End-to-end test harness for the `bridge` MQTT broker.
//!
//! * [`harness`] starts the real `bridge` binary ([`Bridge`]) on ephemeral ports and runs the
//!   external clients (mosquitto_pub/sub, python paho) as processes ([`Proc`]).
//! * [`wire`] builds and parses MQTT 3.1.1 packets by hand and drives a raw TCP socket with
//!   them ([`wire::RawClient`]): exact control for QoS flows and protocol violations.
//! * [`rumq`] wraps the `rumqttc` client for ordinary Rust-side clients.
//!
//! Each test starts its own bridge, so tests run in parallel without sharing state. The
//! bridge's stderr (RUST_LOG=debug unless set) goes to `tests/output/<binary>-<test>.log`.

pub mod harness;
pub mod memory;
pub mod procs;
pub mod rumq;
pub mod v5;
pub mod wire;

pub use harness::{py_script, require_paho, run, run_ok, spawn_line_buffered, which, Bridge, Proc};

use std::sync::atomic::{AtomicU32, Ordering};

/// A unique name (per process) for client ids and topics: `prefix-<pid>-<n>`.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A TCP connection to 127.0.0.1:`port` from the loopback address `source` (any of
/// 127.0.0.0/8): how a test plays several client machines, e.g. for per-address throttles.
pub fn tcp_from(source: std::net::Ipv4Addr, port: u16) -> std::net::TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime to connect with");
    let stream = runtime
        .block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind((source, 0).into())?;
            let stream = socket.connect(([127, 0, 0, 1], port).into()).await?;
            stream.into_std()
        })
        .unwrap_or_else(|e| panic!("connect from {source} to port {port}: {e}"));
    stream.set_nonblocking(false).expect("blocking mode");
    stream
}

/// Starts a raw client publishing QoS 0 messages of `payload` bytes to `topic` as fast as
/// the broker takes them, for `how_long`: returns how many it sent and how long it took.
pub fn spawn_flood(
    port: u16,
    topic: &str,
    payload: usize,
    how_long: std::time::Duration,
) -> std::thread::JoinHandle<(u64, std::time::Duration)> {
    let batch = wire::publish(topic, &vec![b'f'; payload], 0, false, 0).repeat(16);
    std::thread::spawn(move || {
        let mut c = wire::RawClient::connect_clean(port, &unique("flooder"));
        let started = std::time::Instant::now();
        let mut sent = 0u64;
        while started.elapsed() < how_long {
            c.send_ok(&batch);
            sent += 16;
        }
        c.ping();
        c.disconnect();
        (sent, started.elapsed())
    })
}

/// Proves the broker still serves clients: a fresh raw client subscribes to a unique topic and
/// gets its own QoS 1 message back.
pub fn assert_serving(port: u16) {
    let topic = unique("alive");
    let mut c = wire::RawClient::connect_clean(port, &unique("probe"));
    assert_eq!(c.subscribe(1, &[(&topic, 1)]), vec![1], "probe SUBACK");
    c.publish(&topic, b"ping", 1, false, 2);
    let p = c.receive(wire::WAIT);
    assert_eq!(
        p.as_publish(),
        Some((topic.as_str(), &b"ping"[..])),
        "probe got {p:?}"
    );
    c.disconnect();
}
