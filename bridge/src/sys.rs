//! Broker statistics over time, and the Mosquitto-style `$SYS/broker/...` topics.
//!
//! [`Stats`] is the one place that turns the core's raw counters into the figures every
//! consumer shows (admin API, Prometheus, `$SYS`), so they always agree. It keeps the
//! `$SYS` publisher's own messages out of "messages received" and "no subscribers", as
//! Mosquitto does: an idle broker should show zero traffic, not one message per topic
//! per interval. (Deliveries of `$SYS` messages to subscribers are real traffic and are
//! counted as sent.)
//!
//! A sampler task ([`run_sampler`]) records the counters every [`SAMPLE_PERIOD`] and keeps
//! [`HISTORY`] of them, from which rates per second (admin API, dashboard chart) and the
//! per-minute loads of `$SYS` are computed.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::Mutex;
use protocol::QoS;
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, Message, Metrics};
use crate::store::StoreHealth;

/// How often the sampler records the counters.
pub const SAMPLE_PERIOD: Duration = Duration::from_secs(2);
/// How far back the sampler remembers.
pub const HISTORY: Duration = Duration::from_secs(10 * 60);

/// The broker's cumulative counters at one moment, with `$SYS`'s own messages taken out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Application messages received from clients, wills and API publishes.
    pub messages_received: u64,
    /// PUBLISH packets written to clients.
    pub messages_sent: u64,
    /// Messages that matched no subscription.
    pub dropped_no_subscribers: u64,
    /// Deliveries dropped because a session's queue was full.
    pub dropped_queue_full: u64,
    /// QoS 0 deliveries not kept for an offline session.
    pub dropped_qos0_offline: u64,
    /// Deliveries whose 5.0 message expiry ran out first.
    pub dropped_expired: u64,
    /// Deliveries larger than a 5.0 client's maximum packet size.
    pub dropped_too_large: u64,
    /// Queued or in-flight deliveries the reader's ACL refused when they were to be sent.
    pub dropped_not_authorized: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub connections_accepted: u64,
    /// Connections closed for breaking the protocol.
    pub protocol_violations: u64,
    pub keepalive_timeouts: u64,
}

impl Counters {
    /// Every message or delivery dropped, whatever the reason.
    pub fn messages_dropped(&self) -> u64 {
        self.dropped_no_subscribers
            + self.dropped_queue_full
            + self.dropped_qos0_offline
            + self.dropped_expired
            + self.dropped_too_large
            + self.dropped_not_authorized
    }
}

/// Rates per second over some window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    pub received: f64,
    pub sent: f64,
    pub dropped: f64,
    pub bytes_received: f64,
    pub bytes_sent: f64,
}

/// One point of the history, for the dashboard chart.
#[derive(Debug, Clone, Copy)]
pub struct Point {
    /// Milliseconds since the Unix epoch, at the end of the interval.
    pub t: u64,
    /// Rates over the interval that ends at `t`.
    pub rates: Rates,
    /// Clients connected at `t`.
    pub connections: usize,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    wall: SystemTime,
    counters: Counters,
    connections: usize,
}

/// Shared statistics: the broker, what `$SYS` published itself, and the sample history.
pub struct Stats {
    broker: Arc<Broker>,
    /// Messages `$SYS` published, all counted as received by the core.
    own_published: AtomicU64,
    /// Of those, how many matched no subscription.
    own_unrouted: AtomicU64,
    samples: Mutex<VecDeque<Sample>>,
    started_at: SystemTime,
}

impl Stats {
    /// Statistics of `broker`, with an empty history.
    pub fn new(broker: Arc<Broker>) -> Arc<Stats> {
        Arc::new(Stats {
            broker,
            own_published: AtomicU64::new(0),
            own_unrouted: AtomicU64::new(0),
            samples: Mutex::new(VecDeque::new()),
            started_at: SystemTime::now(),
        })
    }

    /// The broker these statistics describe.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// The persistent store's state (failing or not, failed writes, refusals), if the
    /// broker persists.
    pub fn store(&self) -> Option<StoreHealth> {
        self.broker.store().map(|store| store.health())
    }

    /// When the broker started (wall clock).
    pub fn started_at(&self) -> SystemTime {
        self.started_at
    }

    /// The counters now.
    pub fn counters(&self) -> Counters {
        let m = &self.broker.metrics;
        let own_published = self.own_published.load(Ordering::Relaxed);
        let own_unrouted = self.own_unrouted.load(Ordering::Relaxed);
        Counters {
            // Saturating: the core counts a message a moment before we count ours.
            messages_received: Metrics::get(&m.messages_received).saturating_sub(own_published),
            messages_sent: Metrics::get(&m.messages_sent),
            dropped_no_subscribers: Metrics::get(&m.messages_unrouted).saturating_sub(own_unrouted),
            dropped_queue_full: Metrics::get(&m.dropped_queue_full),
            dropped_qos0_offline: Metrics::get(&m.dropped_offline_qos0),
            dropped_expired: Metrics::get(&m.dropped_expired),
            dropped_too_large: Metrics::get(&m.dropped_too_large),
            dropped_not_authorized: Metrics::get(&m.dropped_not_authorized),
            bytes_received: Metrics::get(&m.bytes_in),
            bytes_sent: Metrics::get(&m.bytes_out),
            connections_accepted: Metrics::get(&m.connections_accepted),
            protocol_violations: Metrics::get(&m.protocol_violations),
            keepalive_timeouts: Metrics::get(&m.keep_alive_timeouts),
        }
    }

    /// Records one sample, forgetting those older than [`HISTORY`].
    pub fn record(&self) {
        let sample = Sample {
            at: Instant::now(),
            wall: SystemTime::now(),
            counters: self.counters(),
            connections: self.broker.connection_count(),
        };
        let mut samples = self.samples.lock();
        samples.push_back(sample);
        while samples
            .front()
            .is_some_and(|s| sample.at.duration_since(s.at) > HISTORY)
        {
            samples.pop_front();
        }
    }

    /// Rates over the last sampling interval; zero until two samples exist.
    pub fn current_rates(&self) -> Rates {
        let samples = self.samples.lock();
        match (samples.len().checked_sub(2), samples.back()) {
            (Some(before), Some(last)) => rates(&samples[before], last),
            _ => Rates::default(),
        }
    }

    /// Average rates over (at most) the last `window`, from the samples kept.
    pub fn average_rates(&self, window: Duration) -> Rates {
        let samples = self.samples.lock();
        let Some(last) = samples.back() else {
            return Rates::default();
        };
        let first = samples
            .iter()
            .find(|s| last.at.duration_since(s.at) <= window)
            .unwrap_or(last);
        rates(first, last)
    }

    /// Rates per sampling interval, oldest first.
    pub fn history(&self) -> Vec<Point> {
        let samples = self.samples.lock();
        samples
            .iter()
            .zip(samples.iter().skip(1))
            .map(|(before, after)| Point {
                t: unix_millis(after.wall),
                rates: rates(before, after),
                connections: after.connections,
            })
            .collect()
    }

    /// Publishes a `$SYS` message through the core, keeping it out of the counters.
    fn publish_own(&self, topic: &str, payload: String) {
        let routed = self.broker.has_subscribers(topic);
        // Count first, so a concurrent reader never sees the core's count without ours.
        self.own_published.fetch_add(1, Ordering::Relaxed);
        if !routed {
            self.own_unrouted.fetch_add(1, Ordering::Relaxed);
        }
        self.broker.publish(Message::new(
            topic,
            Bytes::from(payload),
            QoS::AtMostOnce,
            true,
        ));
    }
}

fn rates(before: &Sample, after: &Sample) -> Rates {
    let seconds = after.at.duration_since(before.at).as_secs_f64();
    if seconds <= 0.0 {
        return Rates::default();
    }
    let per_second = |a: u64, b: u64| b.saturating_sub(a) as f64 / seconds;
    let (a, b) = (&before.counters, &after.counters);
    Rates {
        received: per_second(a.messages_received, b.messages_received),
        sent: per_second(a.messages_sent, b.messages_sent),
        dropped: per_second(a.messages_dropped(), b.messages_dropped()),
        bytes_received: per_second(a.bytes_received, b.bytes_received),
        bytes_sent: per_second(a.bytes_sent, b.bytes_sent),
    }
}

/// Milliseconds since the Unix epoch (0 for a clock set before it).
pub fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Records a sample every [`SAMPLE_PERIOD`] until `stop`.
pub async fn run_sampler(stats: Arc<Stats>, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(SAMPLE_PERIOD);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => stats.record(),
        }
    }
}

/// Publishes the `$SYS/broker/...` topics, retained, every `interval` until `stop`.
/// Only values that changed since the last round are published again, so a `$SYS/#`
/// subscriber is not sent the same figures over and over.
pub async fn run_sys(stats: Arc<Stats>, interval: Duration, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: HashMap<&'static str, String> = HashMap::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        for (topic, payload) in sys_values(&stats) {
            if last.get(topic) != Some(&payload) {
                stats.publish_own(topic, payload.clone());
                last.insert(topic, payload);
            }
        }
    }
}

/// The `$SYS` topics and their current values, with Mosquitto's names and formats.
fn sys_values(stats: &Stats) -> Vec<(&'static str, String)> {
    let broker = stats.broker();
    let counters = stats.counters();
    let connected = broker.connection_count();
    let sessions = broker.session_count();
    // Mosquitto's loads are per minute.
    let per_minute = |rate: f64| format!("{:.2}", rate * 60.0);
    let load_1 = stats.average_rates(Duration::from_secs(60));
    let load_5 = stats.average_rates(Duration::from_secs(5 * 60));
    vec![
        (
            "$SYS/broker/version",
            format!("bridge version {}", env!("CARGO_PKG_VERSION")),
        ),
        (
            "$SYS/broker/uptime",
            format!("{} seconds", broker.uptime().as_secs()),
        ),
        ("$SYS/broker/clients/connected", connected.to_string()),
        (
            "$SYS/broker/clients/disconnected",
            sessions.saturating_sub(connected).to_string(),
        ),
        ("$SYS/broker/clients/total", sessions.to_string()),
        (
            "$SYS/broker/messages/received",
            counters.messages_received.to_string(),
        ),
        (
            "$SYS/broker/messages/sent",
            counters.messages_sent.to_string(),
        ),
        (
            "$SYS/broker/messages/dropped",
            counters.messages_dropped().to_string(),
        ),
        (
            "$SYS/broker/subscriptions/count",
            broker.subscription_count().to_string(),
        ),
        (
            "$SYS/broker/retained messages/count",
            broker.retained_count().to_string(),
        ),
        (
            "$SYS/broker/bytes/received",
            counters.bytes_received.to_string(),
        ),
        ("$SYS/broker/bytes/sent", counters.bytes_sent.to_string()),
        (
            "$SYS/broker/load/messages/received/1min",
            per_minute(load_1.received),
        ),
        (
            "$SYS/broker/load/messages/sent/1min",
            per_minute(load_1.sent),
        ),
        (
            "$SYS/broker/load/messages/received/5min",
            per_minute(load_5.received),
        ),
        (
            "$SYS/broker/load/messages/sent/5min",
            per_minute(load_5.sent),
        ),
        (
            "$SYS/broker/load/bytes/received/1min",
            per_minute(load_1.bytes_received),
        ),
        (
            "$SYS/broker/load/bytes/sent/1min",
            per_minute(load_1.bytes_sent),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::broker::BrokerSettings;

    fn message(topic: &str) -> Message {
        Message::new(topic, Bytes::from_static(b"x"), QoS::AtMostOnce, false)
    }

    #[test]
    fn own_messages_are_not_counted() {
        let broker = Broker::new(BrokerSettings::default());
        let stats = Stats::new(broker.clone());
        broker.publish(message("a"));
        for (topic, payload) in sys_values(&stats) {
            stats.publish_own(topic, payload);
        }
        let counters = stats.counters();
        assert_eq!(counters.messages_received, 1);
        assert_eq!(counters.dropped_no_subscribers, 1);
        // ...but they are retained for later subscribers.
        let uptime = broker.retained_message("$SYS/broker/uptime").unwrap();
        assert!(uptime.retain);
        assert!(std::str::from_utf8(&uptime.payload)
            .unwrap()
            .ends_with(" seconds"));
    }

    #[test]
    fn rates_come_from_samples() {
        let broker = Broker::new(BrokerSettings::default());
        let stats = Stats::new(broker.clone());
        assert_eq!(stats.current_rates(), Rates::default());
        stats.record();
        for _ in 0..10 {
            broker.publish(message("a"));
        }
        std::thread::sleep(Duration::from_millis(20));
        stats.record();
        let rates = stats.current_rates();
        assert!(rates.received > 0.0, "{rates:?}");
        assert_eq!(rates.sent, 0.0);
        let history = stats.history();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].rates, rates);
        assert!(stats.average_rates(Duration::from_secs(60)).received > 0.0);
    }
}
