//! The scenarios: who publishes where and who subscribes to what, with their defaults.

use std::sync::Arc;

use clap::ValueEnum;
use protocol::QoS;

use crate::run::Topics;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// 10 publishers, 1 subscriber on `#`, QoS 0: the router's many-to-one path.
    FanIn,
    /// 1 publisher, 100 subscribers on one topic, QoS 0: delivery to many.
    FanOut,
    /// 10 publisher/subscriber pairs, one topic per pair, QoS 1 with PUBACKs.
    Qos1,
    /// `qos1` with persistent subscribers (clean session 0, subscribed before anyone
    /// publishes): the broker keeps every message for their sessions, on disk when its
    /// persistence is on.
    Qos1Persistent,
    /// The same with QoS 2: PUBREC, PUBREL, PUBCOMP.
    Qos2,
    /// One publisher at a fixed 1,000 msg/s, QoS 1: latency at light load.
    Latency,
    /// 10,000 idle connections held open: memory per connection.
    Idle,
    /// 10,000 distinct subscriptions with wildcards over 10 subscribers, random topics.
    Topics,
    /// The generator against a built-in trivial sink: its own ceiling.
    SinkCeiling,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::FanIn => "fan-in",
            Scenario::FanOut => "fan-out",
            Scenario::Qos1 => "qos1",
            Scenario::Qos1Persistent => "qos1-persistent",
            Scenario::Qos2 => "qos2",
            Scenario::Latency => "latency",
            Scenario::Idle => "idle",
            Scenario::Topics => "topics",
            Scenario::SinkCeiling => "sink-ceiling",
        }
    }
}

/// A scenario's defaults; every one can be overridden on the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Defaults {
    pub publishers: usize,
    pub subscribers: usize,
    pub qos: QoS,
    pub rate: Option<f64>,
    pub topics: usize,
    pub connections: usize,
    /// Undelivered messages per publisher. QoS 0 needs a deep window to keep a fast broker
    /// busy; QoS 1/2 throughput is bounded by the broker's inflight limit per subscriber
    /// (bridge 32, Mosquitto 20), so a deeper window there only adds queueing latency.
    pub window: u64,
    /// Subscribers keep a session: clean session 0 (3.1.1), one client id each for the run.
    pub persistent: bool,
}

pub fn defaults(scenario: Scenario) -> Defaults {
    let base = Defaults {
        publishers: 10,
        subscribers: 1,
        qos: QoS::AtMostOnce,
        rate: None,
        topics: 10_000,
        connections: 10_000,
        window: 1000,
        persistent: false,
    };
    match scenario {
        Scenario::FanIn => base,
        Scenario::FanOut => Defaults {
            publishers: 1,
            subscribers: 100,
            ..base
        },
        Scenario::Qos1 => Defaults {
            subscribers: 10,
            qos: QoS::AtLeastOnce,
            window: 100,
            ..base
        },
        Scenario::Qos1Persistent => Defaults {
            persistent: true,
            ..defaults(Scenario::Qos1)
        },
        Scenario::Qos2 => Defaults {
            subscribers: 10,
            qos: QoS::ExactlyOnce,
            window: 100,
            ..base
        },
        Scenario::Latency => Defaults {
            publishers: 1,
            qos: QoS::AtLeastOnce,
            rate: Some(1000.0),
            window: 100,
            ..base
        },
        Scenario::Idle => Defaults {
            publishers: 0,
            subscribers: 0,
            ..base
        },
        Scenario::Topics => Defaults {
            subscribers: 10,
            ..base
        },
        Scenario::SinkCeiling => Defaults {
            subscribers: 0,
            ..base
        },
    }
}

/// The `topics` scenario's subscription filters (half `+`, half `#`) and, for each, one
/// topic that it matches and no other filter does.
pub fn topic_space(n: usize) -> (Vec<String>, Vec<String>) {
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                (
                    format!("bench/t/{i}/+/x"),
                    format!("bench/t/{i}/{}/x", i % 7),
                )
            } else {
                (format!("bench/t/{i}/#"), format!("bench/t/{i}/{}/y", i % 7))
            }
        })
        .unzip()
}

/// Publishers' topics and subscribers' filters for a load scenario (not `idle`).
pub fn layout(
    scenario: Scenario,
    publishers: usize,
    subscribers: usize,
    topics: usize,
) -> (Vec<Topics>, Vec<Vec<String>>) {
    let fixed = |f: &dyn Fn(usize) -> String| -> Vec<Topics> {
        (0..publishers).map(|p| Topics::Fixed(f(p))).collect()
    };
    match scenario {
        Scenario::FanIn => (
            fixed(&|p| format!("bench/fanin/{p}")),
            vec![vec!["#".to_string()]; subscribers],
        ),
        Scenario::FanOut => (
            fixed(&|_| "bench/fanout".to_string()),
            vec![vec!["bench/fanout".to_string()]; subscribers],
        ),
        Scenario::Qos1 | Scenario::Qos1Persistent | Scenario::Qos2 => (
            fixed(&|p| format!("bench/pair/{}", p % subscribers.max(1))),
            (0..subscribers)
                .map(|s| vec![format!("bench/pair/{s}")])
                .collect(),
        ),
        Scenario::Latency => (
            fixed(&|_| "bench/latency".to_string()),
            vec![vec!["bench/latency".to_string()]; subscribers],
        ),
        Scenario::Topics => {
            let (filters, names) = topic_space(topics);
            let names = Arc::new(names);
            let n = subscribers.max(1);
            let mut subs = vec![Vec::new(); n];
            for (i, filter) in filters.into_iter().enumerate() {
                subs[i % n].push(filter);
            }
            subs.truncate(subscribers);
            (
                (0..publishers)
                    .map(|_| Topics::Random(names.clone()))
                    .collect(),
                subs,
            )
        }
        Scenario::SinkCeiling => (fixed(&|p| format!("bench/sink/{p}")), Vec::new()),
        Scenario::Idle => (Vec::new(), Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::topic::{matches, validate_topic_filter, validate_topic_name};

    #[test]
    fn each_topic_matches_exactly_one_filter() {
        let (filters, names) = topic_space(200);
        assert_eq!(filters.len(), 200);
        for f in &filters {
            validate_topic_filter(f).unwrap();
        }
        for (i, name) in names.iter().enumerate() {
            validate_topic_name(name).unwrap();
            let hits: Vec<usize> = (0..filters.len())
                .filter(|&j| matches(&filters[j], name))
                .collect();
            assert_eq!(hits, vec![i], "{name}");
        }
        // Half of them use each wildcard.
        assert_eq!(filters.iter().filter(|f| f.ends_with("/#")).count(), 100);
    }

    #[test]
    fn topics_spread_over_subscribers() {
        let (pubs, subs) = layout(Scenario::Topics, 3, 10, 10_000);
        assert_eq!(pubs.len(), 3);
        assert_eq!(subs.len(), 10);
        assert!(subs.iter().all(|s| s.len() == 1000));
    }

    #[test]
    fn pairs_and_fan_in() {
        let (pubs, subs) = layout(Scenario::Qos1, 10, 10, 0);
        assert!(matches!(&pubs[3], Topics::Fixed(t) if t == "bench/pair/3"));
        assert_eq!(subs[3], vec!["bench/pair/3".to_string()]);
        let (pubs, subs) = layout(Scenario::FanIn, 10, 1, 0);
        assert_eq!(pubs.len(), 10);
        assert_eq!(subs, vec![vec!["#".to_string()]]);
    }

    #[test]
    fn names_are_the_cli_names() {
        assert_eq!(Scenario::FanIn.name(), "fan-in");
        assert_eq!(Scenario::SinkCeiling.name(), "sink-ceiling");
        assert_eq!(Scenario::Qos2.name(), "qos2");
        for s in Scenario::value_variants() {
            assert_eq!(s.to_possible_value().unwrap().get_name(), s.name());
        }
        assert_eq!(defaults(Scenario::FanOut).subscribers, 100);
        assert_eq!(defaults(Scenario::Latency).rate, Some(1000.0));
    }

    #[test]
    fn qos1_persistent_is_qos1_with_sessions() {
        assert_eq!(Scenario::Qos1Persistent.name(), "qos1-persistent");
        let (p, q) = (defaults(Scenario::Qos1Persistent), defaults(Scenario::Qos1));
        assert!(p.persistent && !q.persistent);
        assert_eq!(
            Defaults {
                persistent: false,
                ..p
            },
            q
        );
        assert!(Scenario::value_variants()
            .iter()
            .all(|&s| defaults(s).persistent == (s == Scenario::Qos1Persistent)));
        let (pubs, subs) = layout(Scenario::Qos1Persistent, 10, 10, 0);
        assert!(matches!(&pubs[3], Topics::Fixed(t) if t == "bench/pair/3"));
        assert_eq!(subs[3], vec!["bench/pair/3".to_string()]);
    }
}
