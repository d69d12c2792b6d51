//! `mqtt-bench`: loads an MQTT broker on this machine and prints one JSON line of results.
//!
//! ```text
//! mqtt-bench --url mqtt://127.0.0.1:1883 --scenario fan-in
//! mqtt-bench --url ws://127.0.0.1:8083/mqtt --scenario fan-in --window 0
//! mqtt-bench --scenario sink-ceiling
//! ```
//!
//! Every message carries a stamp (publisher, sequence number, send time) in the first 24
//! bytes of its payload; subscribers count what arrives, find losses and duplicates by
//! sequence number and measure latency against the process's one monotonic clock. See
//! `run.rs` for the flow control and `scenario.rs` for the scenarios. `scripts/bench` runs
//! every scenario against bridge and Mosquitto and prints the comparison.

mod conn;
mod hist;
mod idle;
mod procinfo;
mod run;
mod scenario;
mod seqset;
mod sink;
mod stamp;
mod target;
mod wire;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use protocol::QoS;
use serde_json::{json, Value};

use crate::hist::Histogram;
use crate::scenario::Scenario;
use crate::stamp::STAMP_LEN;
use crate::target::{Target, Transport};

/// Loads an MQTT broker on this machine and prints one JSON line of results.
#[derive(Debug, Parser)]
#[command(name = "mqtt-bench", version)]
struct Args {
    /// The broker: mqtt://HOST:PORT or ws://HOST:PORT/PATH (loopback only)
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    url: String,
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// Publishing connections [scenario default]
    #[arg(long)]
    publishers: Option<usize>,
    /// Subscribing connections [scenario default]
    #[arg(long)]
    subscribers: Option<usize>,
    /// QoS of publishes and subscriptions [scenario default]
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: Option<u8>,
    /// Payload bytes, at least 24 (the stamp)
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Seconds measured (after the warm-up); for `idle`, seconds the connections are held
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before the measurement starts
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Total messages per second over all publishers [default: as fast as the window allows]
    #[arg(long)]
    rate: Option<f64>,
    /// Undelivered messages each publisher may have; 0 = fire-hose (no flow control)
    /// [scenario default: 1000 for QoS 0, 100 for QoS 1/2]
    #[arg(long)]
    window: Option<u64>,
    /// QoS 1/2 messages each publisher may have unacknowledged (a client's "max inflight");
    /// 0 = only the 65,535 packet identifiers limit it
    #[arg(long, default_value_t = 0)]
    inflight: u32,
    /// Distinct subscriptions in the `topics` scenario
    #[arg(long)]
    topics: Option<usize>,
    /// Connections in the `idle` scenario
    #[arg(long)]
    connections: Option<usize>,
    /// Subscribers keep a session: clean session 0 (MQTT 3.1.1), one client id each for the
    /// run, subscribed before publishing starts, the sessions removed at the end
    /// [scenario default: on for qos1-persistent, off for the others]
    #[arg(long)]
    persistent: bool,
    /// Keep-alive of every connection, seconds (0 = off)
    #[arg(long, default_value_t = 600)]
    keepalive: u16,
    /// Longest wait, seconds, for acknowledgements and deliveries after publishing stops
    #[arg(long, default_value_t = 5.0)]
    drain: f64,
    /// Seconds without a delivery after which a waiting publisher writes off what is
    /// outstanding (counted as a stall) and goes on
    #[arg(long, default_value_t = 1.0)]
    stall: f64,
    /// The broker's PID: `idle` reads its VmRSS before and after; the other scenarios
    /// report its CPU use
    #[arg(long)]
    broker_pid: Option<u32>,
}

fn secs(value: f64, name: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("--{name} must be a number of seconds ≥ 0"))
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn latency_json(h: &Histogram) -> Value {
    let us = |q: f64| h.quantile(q).map(|ns| round1(ns as f64 / 1000.0));
    json!({
        "p50": us(0.5),
        "p99": us(0.99),
        "p999": us(0.999),
        "max": h.max().map(|ns| round1(ns as f64 / 1000.0)),
        "samples": h.count(),
    })
}

async fn bench(args: Args) -> Result<Value, String> {
    let defaults = scenario::defaults(args.scenario);
    let duration = secs(args.duration, "duration")?;
    let warmup = secs(args.warmup, "warmup")?;
    let mut target = Target::parse(&args.url)?;

    if args.scenario == Scenario::Idle {
        let addr = target.resolve().await?;
        let n = args.connections.unwrap_or(defaults.connections);
        let r = idle::run(&target, addr, n, args.keepalive, duration, args.broker_pid).await;
        let per_conn = match (r.rss_before_kib, r.rss_after_kib) {
            (Some(before), Some(after)) if r.opened > 0 => Some(round1(
                after.saturating_sub(before) as f64 / r.opened as f64,
            )),
            _ => None,
        };
        return Ok(json!({
            "scenario": "idle",
            "url": args.url,
            "connections": n,
            "opened": r.opened,
            "alive": r.alive,
            "connect_ms": round1(r.connect_ms),
            "held_s": duration.as_secs_f64(),
            "keepalive": args.keepalive,
            "rss_before_kib": r.rss_before_kib,
            "rss_after_kib": r.rss_after_kib,
            "kib_per_conn": per_conn,
            // Every connection that did not open, plus those that did not answer the ping.
            "errors": (r.requested - r.opened) + (r.opened - r.alive),
            "error_samples": r.errors,
        }));
    }

    if args.payload < STAMP_LEN {
        return Err(format!(
            "--payload must be at least {STAMP_LEN} bytes (the stamp)"
        ));
    }
    let qos = match args.qos {
        Some(q) => QoS::from_u8(q).expect("clap checked the range"),
        None => defaults.qos,
    };
    let publishers = args.publishers.unwrap_or(defaults.publishers);
    let subscribers = args.subscribers.unwrap_or(defaults.subscribers);
    let topics = args.topics.unwrap_or(defaults.topics);
    if publishers == 0 {
        return Err("this scenario needs at least one publisher".into());
    }
    let rate = args.rate.or(defaults.rate);
    if rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return Err("--rate must be a positive number of messages per second".into());
    }

    let sink = if args.scenario == Scenario::SinkCeiling {
        let sink = sink::start().await.map_err(|e| format!("sink: {e}"))?;
        target = Target {
            transport: Transport::Tcp,
            host: sink.addr.ip().to_string(),
            port: sink.addr.port(),
            path: String::new(),
        };
        Some(sink)
    } else {
        None
    };
    let addr = target.resolve().await?;
    let (pub_topics, sub_filters) =
        scenario::layout(args.scenario, publishers, subscribers, topics);
    let window = match (sink.is_some(), args.window) {
        (true, _) => 0,
        (false, Some(window)) => window,
        (false, None) => defaults.window,
    };
    let persistent = args.persistent || defaults.persistent;
    let plan = run::Plan {
        qos,
        payload: args.payload,
        window,
        rate,
        inflight: args.inflight,
        keep_alive: args.keepalive,
        publishers: pub_topics,
        subscribers: sub_filters,
        persistent,
        warmup,
        duration,
        drain: secs(args.drain, "drain")?,
        stall: secs(args.stall, "stall")?,
        broker_pid: args.broker_pid,
    };
    let r = run::run(
        plan,
        &target,
        addr,
        sink.as_ref().map(|s| s.publishes.clone()),
    )
    .await?;
    let per_sec = |n: u64| (n as f64 / r.measured_secs.max(1e-9)).round();
    let mut out = json!({
        "scenario": args.scenario.name(),
        "url": if sink.is_some() { format!("mqtt://{addr} (built-in sink)") } else { args.url.clone() },
        "transport": match target.transport { Transport::Tcp => "tcp", Transport::Ws => "ws" },
        "qos": qos as u8,
        "publishers": publishers,
        "subscribers": subscribers,
        "persistent": persistent,
        "payload": args.payload,
        "window": window,
        "inflight": args.inflight,
        "rate": rate,
        "measured_s": (r.measured_secs * 1000.0).round() / 1000.0,
        "msgs_per_sec": per_sec(r.delivered_in_window),
        "sent_per_sec": per_sec(r.sent_in_window),
        "sent": r.sent,
        "expected": r.expected,
        "received": r.received,
        "acked": r.acked,
        "lost": r.lost,
        "loss_detail": r.loss_detail,
        "undelivered": r.expected.saturating_sub(r.received - r.duplicates.min(r.received)),
        "duplicates": r.duplicates,
        "foreign": r.foreign,
        "latency_us": latency_json(&r.latency),
        "stalls": r.stalls,
        "written_off": r.written_off,
        "gaps": r.gaps,
        "bench_cpu": r.bench_cpu,
        "broker_cpu": r.broker_cpu,
        "cpu_busy": r.cpu_busy,
        "setup_ms": round1(r.setup_ms),
        "drain_ms": round1(r.drain_ms),
        "drain_end": r.drain_end.name(),
        "errors": r.errors,
        "error_samples": r.error_samples,
    });
    if args.scenario == Scenario::Topics {
        out["topics"] = json!(topics);
    }
    if sink.is_some() {
        out["sink_received_per_sec"] = json!(per_sec(r.extra_in_window));
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let scenario = args.scenario.name();
    let url = args.url.clone();
    match bench(args).await {
        Ok(result) => {
            println!("{result}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!(
                "{}",
                json!({ "scenario": scenario, "url": url, "error": e })
            );
            eprintln!("mqtt-bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}
