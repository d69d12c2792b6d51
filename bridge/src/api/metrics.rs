//! Figures about the broker: summary stats, broker facts, detailed metrics with rates,
//! the rate history for the dashboard chart, and the Prometheus text exposition.
//!
//! All counters come from [`crate::sys::Stats`], so the API, Prometheus and `$SYS` agree.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;

use super::{rfc3339, ApiState};
use crate::broker::Metrics;
use crate::sys::{Rates, SAMPLE_PERIOD};

/// `GET /api/v1/stats` answer.
#[derive(Debug, Serialize)]
pub struct StatsView {
    /// Clients connected now.
    pub connections: usize,
    /// Sessions, connected or not.
    pub sessions: usize,
    pub subscriptions: usize,
    /// Distinct subscribed topic filters.
    pub topics: usize,
    /// Retained messages.
    pub retained: usize,
    /// Bytes (topic + payload) of the retained messages counted against
    /// `max_retained_bytes` (all but `$SYS`).
    pub retained_bytes: usize,
    /// Bytes (topic + payload) queued in all sessions, waiting to be sent.
    pub queued_bytes: usize,
    pub messages_received: u64,
    pub messages_sent: u64,
    /// Messages or deliveries dropped for any reason (see `/metrics` for which).
    pub messages_dropped: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// Seconds since the broker started.
    pub uptime: u64,
    /// The persistent store's state; `null` when nothing is persisted.
    pub store: Option<StoreView>,
    /// What in the configuration probably does not mean what it says (e.g. an ACL rule
    /// whose access word is misspelled), one line each naming the file and line.
    pub warnings: Vec<String>,
}

/// The store's state in `GET /api/v1/stats`.
#[derive(Debug, Serialize)]
pub struct StoreView {
    /// Writes fail (a full disk, an I/O error) and are being retried: persistent CONNECTs
    /// and QoS 1/2 publishes that must be stored are refused, acks that wait on the store
    /// are held, until a retry succeeds.
    pub failing: bool,
    /// RFC 3339: when the current failure began; `null` when not failing.
    pub failing_since: Option<String>,
    /// The latest write error (of the current failure or the last one); `null` if none.
    pub last_error: Option<String>,
    /// Write attempts that failed since the start.
    pub failed_writes: u64,
    /// Times the store recovered from failing.
    pub recoveries: u64,
    /// Persistent CONNECTs and publishes refused because the store was failing.
    pub refused: u64,
    /// Operations submitted and not durable yet.
    pub pending: u64,
}

/// `GET /api/v1/stats`: the headline figures.
pub async fn stats(State(state): State<ApiState>) -> Json<StatsView> {
    let broker = &state.broker;
    let counters = state.stats.counters();
    Json(StatsView {
        connections: broker.connection_count(),
        sessions: broker.session_count(),
        subscriptions: broker.subscription_count(),
        topics: broker.topic_count(),
        retained: broker.retained_count(),
        retained_bytes: broker.retained_bytes(),
        queued_bytes: broker.queued_bytes(),
        messages_received: counters.messages_received,
        messages_sent: counters.messages_sent,
        messages_dropped: counters.messages_dropped(),
        bytes_received: counters.bytes_received,
        bytes_sent: counters.bytes_sent,
        uptime: broker.uptime().as_secs(),
        store: state.stats.store().map(|h| StoreView {
            failing: h.failing,
            failing_since: h
                .failing_since
                .map(|ms| rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))),
            last_error: h.last_error,
            failed_writes: h.failed_writes,
            recoveries: h.recoveries,
            refused: h.refused,
            pending: h.pending,
        }),
        warnings: broker.config_warnings(),
    })
}

/// `GET /api/v1/broker` answer.
#[derive(Debug, Serialize)]
pub struct BrokerView {
    pub version: &'static str,
    /// Seconds since start.
    pub uptime: u64,
    /// RFC 3339.
    pub started_at: String,
    pub listeners: Vec<ListenerView>,
    /// Seconds between `$SYS` updates; 0 when they are off.
    pub sys_interval: u64,
}

/// One bound listener.
#[derive(Debug, Serialize)]
pub struct ListenerView {
    /// `tcp`, `ws` or `http`.
    pub kind: &'static str,
    /// `IP:PORT` as bound.
    pub address: String,
    /// The WebSocket endpoint's path (`ws` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// `GET /api/v1/broker`: version, uptime and listeners.
pub async fn broker(State(state): State<ApiState>) -> Json<BrokerView> {
    Json(BrokerView {
        version: env!("CARGO_PKG_VERSION"),
        uptime: state.broker.uptime().as_secs(),
        started_at: rfc3339(state.stats.started_at()),
        listeners: state
            .info
            .listeners
            .iter()
            .map(|l| ListenerView {
                kind: l.kind,
                address: l.address.to_string(),
                path: l.path.clone(),
            })
            .collect(),
        sys_interval: state.info.sys_interval,
    })
}

/// `GET /api/v1/metrics` answer.
#[derive(Debug, Serialize)]
pub struct MetricsView {
    pub messages: MessageMetrics,
    pub packets: PacketMetrics,
    pub bytes: InOut,
    pub connections: ConnectionMetrics,
    /// Per second, over the last sampling interval.
    pub rates: RatesView,
    /// Per second, averaged over the last minute.
    pub rates_1min: RatesView,
    /// Seconds between samples.
    pub sample_period: u64,
}

#[derive(Debug, Serialize)]
pub struct MessageMetrics {
    pub received: u64,
    pub sent: u64,
    pub dropped: u64,
    pub dropped_by_reason: DroppedByReason,
}

#[derive(Debug, Serialize)]
pub struct DroppedByReason {
    /// Messages that matched no subscription.
    pub no_subscribers: u64,
    /// Deliveries dropped because a session's queue was full.
    pub queue_full: u64,
    /// QoS 0 deliveries not kept for offline sessions.
    pub qos0_offline: u64,
    /// Deliveries whose 5.0 message expiry ran out first.
    pub expired: u64,
    /// Deliveries larger than a 5.0 client's maximum packet size.
    pub too_large: u64,
    /// Queued or in-flight deliveries the reader's ACL refused when they were to be sent.
    pub not_authorized: u64,
}

/// Packets by type name (`connect`, `publish`, …).
#[derive(Debug, Serialize)]
pub struct PacketMetrics {
    pub received: BTreeMap<&'static str, u64>,
    pub sent: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Serialize)]
pub struct InOut {
    pub received: u64,
    pub sent: u64,
}

#[derive(Debug, Serialize)]
pub struct ConnectionMetrics {
    /// Connected now.
    pub current: usize,
    /// Accepted since start (before CONNECT).
    pub accepted: u64,
    /// Closed for breaking the protocol.
    pub protocol_violations: u64,
    /// Closed for missing their keep-alive.
    pub keepalive_timeouts: u64,
}

/// Rates per second.
#[derive(Debug, Serialize)]
pub struct RatesView {
    pub received: f64,
    pub sent: f64,
    pub dropped: f64,
    pub bytes_received: f64,
    pub bytes_sent: f64,
}

impl From<Rates> for RatesView {
    fn from(r: Rates) -> RatesView {
        RatesView {
            received: round(r.received),
            sent: round(r.sent),
            dropped: round(r.dropped),
            bytes_received: round(r.bytes_received),
            bytes_sent: round(r.bytes_sent),
        }
    }
}

/// Two decimals are plenty for a chart, and keep the JSON short.
fn round(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// `GET /api/v1/metrics`: every counter, with current rates.
pub async fn metrics(State(state): State<ApiState>) -> Json<MetricsView> {
    let c = state.stats.counters();
    let mut received = BTreeMap::new();
    let mut sent = BTreeMap::new();
    for (name, packets_in, packets_out) in state.broker.metrics.packets() {
        received.insert(name, packets_in);
        sent.insert(name, packets_out);
    }
    Json(MetricsView {
        messages: MessageMetrics {
            received: c.messages_received,
            sent: c.messages_sent,
            dropped: c.messages_dropped(),
            dropped_by_reason: DroppedByReason {
                no_subscribers: c.dropped_no_subscribers,
                queue_full: c.dropped_queue_full,
                qos0_offline: c.dropped_qos0_offline,
                expired: c.dropped_expired,
                too_large: c.dropped_too_large,
                not_authorized: c.dropped_not_authorized,
            },
        },
        packets: PacketMetrics { received, sent },
        bytes: InOut {
            received: c.bytes_received,
            sent: c.bytes_sent,
        },
        connections: ConnectionMetrics {
            current: state.broker.connection_count(),
            accepted: c.connections_accepted,
            protocol_violations: c.protocol_violations,
            keepalive_timeouts: c.keepalive_timeouts,
        },
        rates: state.stats.current_rates().into(),
        rates_1min: state
            .stats
            .average_rates(std::time::Duration::from_secs(60))
            .into(),
        sample_period: SAMPLE_PERIOD.as_secs(),
    })
}

/// `GET /api/v1/metrics/history` answer.
#[derive(Debug, Serialize)]
pub struct HistoryView {
    /// Seconds between points.
    pub sample_period: u64,
    /// Oldest first, up to about ten minutes.
    pub data: Vec<HistoryPoint>,
}

/// One point of the chart.
#[derive(Debug, Serialize)]
pub struct HistoryPoint {
    /// Milliseconds since the Unix epoch.
    pub t: u64,
    pub received_rate: f64,
    pub sent_rate: f64,
    pub dropped_rate: f64,
    pub bytes_received_rate: f64,
    pub bytes_sent_rate: f64,
    pub connections: usize,
}

/// `GET /api/v1/metrics/history`: rates per sampling interval for the last ten minutes.
pub async fn history(State(state): State<ApiState>) -> Json<HistoryView> {
    Json(HistoryView {
        sample_period: SAMPLE_PERIOD.as_secs(),
        data: state
            .stats
            .history()
            .into_iter()
            .map(|p| HistoryPoint {
                t: p.t,
                received_rate: round(p.rates.received),
                sent_rate: round(p.rates.sent),
                dropped_rate: round(p.rates.dropped),
                bytes_received_rate: round(p.rates.bytes_received),
                bytes_sent_rate: round(p.rates.bytes_sent),
                connections: p.connections,
            })
            .collect(),
    })
}

/// `GET /metrics`: Prometheus text exposition (format 0.0.4), every name prefixed
/// `bridge_`.
pub async fn prometheus(State(state): State<ApiState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        exposition(&state),
    )
}

fn exposition(state: &ApiState) -> String {
    let broker = &state.broker;
    let c = state.stats.counters();
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: u64| {
        metric(&mut out, name, "gauge", help, &[(None, value)]);
    };
    gauge(
        "bridge_connections",
        "Clients connected now.",
        broker.connection_count() as u64,
    );
    gauge(
        "bridge_sessions",
        "Sessions, connected or not.",
        broker.session_count() as u64,
    );
    gauge(
        "bridge_subscriptions",
        "Subscriptions.",
        broker.subscription_count() as u64,
    );
    gauge(
        "bridge_topics",
        "Distinct subscribed topic filters.",
        broker.topic_count() as u64,
    );
    gauge(
        "bridge_retained_messages",
        "Retained messages.",
        broker.retained_count() as u64,
    );
    gauge(
        "bridge_retained_bytes",
        "Bytes (topic + payload) of retained messages, as max_retained_bytes counts them.",
        broker.retained_bytes() as u64,
    );
    gauge(
        "bridge_queued_bytes",
        "Bytes (topic + payload) queued in all sessions, waiting to be sent.",
        broker.queued_bytes() as u64,
    );
    gauge(
        "bridge_uptime_seconds",
        "Seconds since the broker started.",
        broker.uptime().as_secs(),
    );

    let mut counter = |name: &str, help: &str, values: &[(Option<(&str, &str)>, u64)]| {
        metric(&mut out, name, "counter", help, values);
    };
    counter(
        "bridge_messages_received_total",
        "Application messages received (clients, wills, API), $SYS excluded.",
        &[(None, c.messages_received)],
    );
    counter(
        "bridge_messages_sent_total",
        "PUBLISH packets sent to clients.",
        &[(None, c.messages_sent)],
    );
    counter(
        "bridge_messages_dropped_total",
        "Messages or deliveries dropped, by reason.",
        &[
            (Some(("reason", "no_subscribers")), c.dropped_no_subscribers),
            (Some(("reason", "queue_full")), c.dropped_queue_full),
            (Some(("reason", "qos0_offline")), c.dropped_qos0_offline),
            (Some(("reason", "expired")), c.dropped_expired),
            (Some(("reason", "too_large")), c.dropped_too_large),
            (Some(("reason", "not_authorized")), c.dropped_not_authorized),
        ],
    );
    let m = &broker.metrics;
    counter(
        "bridge_retained_refused_total",
        "Retained publishes refused because the retained store was full.",
        &[(None, Metrics::get(&m.retained_refused))],
    );
    counter(
        "bridge_retained_dropped_on_subscribe_total",
        "Retained messages a new subscription matched that its session's queue had no room for.",
        &[(None, Metrics::get(&m.retained_dropped_on_subscribe))],
    );
    counter(
        "bridge_subscriptions_refused_total",
        "SUBSCRIBE filters refused because the client held max_subscriptions_per_client.",
        &[(None, Metrics::get(&m.subscriptions_refused))],
    );
    let checks = &broker.credential_checks;
    counter(
        "bridge_auth_refused_total",
        "CONNECTs refused before their password check, by reason.",
        &[
            (
                Some(("reason", "throttled")),
                Metrics::get(&checks.throttled),
            ),
            (Some(("reason", "busy")), Metrics::get(&checks.busy)),
        ],
    );
    counter(
        "bridge_bytes_received_total",
        "Bytes read from MQTT clients.",
        &[(None, c.bytes_received)],
    );
    counter(
        "bridge_bytes_sent_total",
        "Bytes written to MQTT clients.",
        &[(None, c.bytes_sent)],
    );
    counter(
        "bridge_connections_accepted_total",
        "Connections accepted.",
        &[(None, c.connections_accepted)],
    );
    counter(
        "bridge_protocol_violations_total",
        "Connections closed for breaking the protocol.",
        &[(None, c.protocol_violations)],
    );
    counter(
        "bridge_keepalive_timeouts_total",
        "Connections closed for missing their keep-alive.",
        &[(None, c.keepalive_timeouts)],
    );
    let packets = broker.metrics.packets();
    let received: Vec<_> = packets
        .iter()
        .map(|(name, n, _)| (Some(("type", *name)), *n))
        .collect();
    let sent: Vec<_> = packets
        .iter()
        .map(|(name, _, n)| (Some(("type", *name)), *n))
        .collect();
    counter(
        "bridge_packets_received_total",
        "MQTT packets received, by type.",
        &received,
    );
    counter(
        "bridge_packets_sent_total",
        "MQTT packets sent, by type.",
        &sent,
    );
    if let Some(store) = state.stats.store() {
        metric(
            &mut out,
            "bridge_store_failing",
            "gauge",
            "1 while writes to the persistent store fail and are retried (a full disk?).",
            &[(None, u64::from(store.failing))],
        );
        metric(
            &mut out,
            "bridge_store_pending_operations",
            "gauge",
            "Operations submitted to the persistent store and not durable yet.",
            &[(None, store.pending)],
        );
        metric(
            &mut out,
            "bridge_store_write_failures_total",
            "counter",
            "Write attempts to the persistent store that failed.",
            &[(None, store.failed_writes)],
        );
        metric(
            &mut out,
            "bridge_store_recoveries_total",
            "counter",
            "Times the persistent store recovered from failing writes.",
            &[(None, store.recoveries)],
        );
        metric(
            &mut out,
            "bridge_store_refused_total",
            "counter",
            "Persistent CONNECTs and publishes refused while the store was failing.",
            &[(None, store.refused)],
        );
    }
    let _ = writeln!(
        out,
        "# HELP bridge_info The broker's version.\n# TYPE bridge_info gauge\n\
         bridge_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    out
}

/// Writes one metric family. Label values here are fixed identifiers, so they need no
/// escaping.
fn metric(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    values: &[(Option<(&str, &str)>, u64)],
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (label, value) in values {
        match label {
            Some((key, label_value)) => {
                let _ = writeln!(out, "{name}{{{key}=\"{label_value}\"}} {value}");
            }
            None => {
                let _ = writeln!(out, "{name} {value}");
            }
        }
    }
}
