//! What every connection shares: the session registry, the router and the retained store.
//!
//! Lock discipline (always in this order, never the reverse, never across an `.await`):
//! `sessions` → `router` → a session's own state. The retained store is taken alone.
//! Routing a message takes only the router's read lock and, per subscriber, that
//! subscriber's session lock: publishers on different connections run in parallel.

pub mod message;
pub mod retained;
pub mod session;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use protocol::QoS;

use crate::router::Router;
pub use message::Message;
use retained::RetainedStore;
pub use session::{Delivery, Owner, Session};

/// Limits and policies of the broker core, filled from [`crate::config::Config`].
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// Largest packet (fixed header included) accepted from a client; a larger one closes
    /// the connection before its body is read.
    pub max_packet_size: usize,
    /// QoS 1/2 messages sent to one client and not yet acknowledged.
    pub max_inflight: usize,
    /// Messages queued per session beyond the in-flight window (offline or slow);
    /// beyond it new messages are dropped and counted.
    pub max_queued_messages: usize,
    /// Whether QoS 0 messages are queued for offline persistent sessions (Mosquitto's
    /// `queue_qos0_messages`, off by default).
    pub queue_qos0_messages: bool,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        BrokerSettings {
            max_packet_size: 1024 * 1024,
            max_inflight: 32,
            max_queued_messages: 1000,
            queue_qos0_messages: false,
        }
    }
}

/// A subscription as the router stores it: the granted QoS and the subscriber's session,
/// so routing reaches the session without another lookup.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub qos: QoS,
    pub session: Arc<Session>,
}

/// Broker-wide counters.
#[derive(Debug, Default)]
pub struct Counters {
    pub messages_received: AtomicU64,
    pub messages_routed: AtomicU64,
    pub messages_dropped: AtomicU64,
}

/// The result of [`Broker::open_session`].
pub struct Opened {
    pub session: Arc<Session>,
    pub session_present: bool,
}

/// The shared core. Cheap to clone through its `Arc`.
pub struct Broker {
    pub settings: BrokerSettings,
    sessions: Mutex<HashMap<Arc<str>, Arc<Session>>>,
    router: RwLock<Router<Arc<str>, Subscription>>,
    retained: RwLock<RetainedStore>,
    next_connection_id: AtomicU64,
    id_prefix: String,
    pub counters: Counters,
}

impl Broker {
    pub fn new(settings: BrokerSettings) -> Arc<Broker> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        Arc::new(Broker {
            settings,
            sessions: Mutex::new(HashMap::new()),
            router: RwLock::new(Router::new()),
            retained: RwLock::new(RetainedStore::default()),
            next_connection_id: AtomicU64::new(1),
            id_prefix: format!("bridge-{:x}", nanos & 0xffff_ffff),
            counters: Counters::default(),
        })
    }

    /// A number identifying one connection for the life of the process.
    pub fn new_connection_id(&self) -> u64 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A client identifier for a client that sent an empty one (MQTT-3.1.3-6).
    pub fn generate_client_id(&self, connection_id: u64) -> String {
        format!("{}-{connection_id}", self.id_prefix)
    }

    fn limits(&self) -> session::Limits {
        session::Limits {
            max_inflight: self.settings.max_inflight,
            max_queued: self.settings.max_queued_messages,
            queue_qos0_offline: self.settings.queue_qos0_messages,
        }
    }

    /// Opens (or resumes) the session of `client_id` for a new connection, making `owner`
    /// its driver. Any connection that had it is kicked: a session taken over
    /// (MQTT-3.1.4-2). With `clean`, any previous session is discarded first (MQTT-3.1.2-6).
    pub fn open_session(&self, client_id: &str, clean: bool, owner: Owner) -> Opened {
        let mut sessions = self.sessions.lock();
        let existing = sessions.get(client_id).cloned();
        let (session, session_present) = match existing {
            Some(session) if !clean && !session.clean => (session, true),
            Some(old) => {
                if let Some(previous) = old.evict() {
                    previous.kick.notify_one();
                }
                self.remove_all_subscriptions(&old);
                (self.insert_new(&mut sessions, client_id, clean), false)
            }
            None => (self.insert_new(&mut sessions, client_id, clean), false),
        };
        if let Some(previous) = session.take_ownership(owner) {
            previous.kick.notify_one();
        }
        Opened {
            session,
            session_present,
        }
    }

    fn insert_new(
        &self,
        sessions: &mut HashMap<Arc<str>, Arc<Session>>,
        client_id: &str,
        clean: bool,
    ) -> Arc<Session> {
        let id: Arc<str> = Arc::from(client_id);
        let session = Arc::new(Session::new(id.clone(), clean, self.limits()));
        sessions.insert(id, session.clone());
        session
    }

    /// Ends a connection's hold on its session. A clean session ends with it; a persistent
    /// one stays, keeping its subscriptions and queueing for the client.
    pub fn close_session(&self, session: &Arc<Session>, connection_id: u64) {
        let mut sessions = self.sessions.lock();
        if !session.release(connection_id) || !session.clean {
            return;
        }
        if sessions
            .get(&session.client_id)
            .is_some_and(|s| Arc::ptr_eq(s, session))
        {
            sessions.remove(&session.client_id);
        }
        self.remove_all_subscriptions(session);
    }

    fn remove_all_subscriptions(&self, session: &Arc<Session>) {
        let mut router = self.router.write();
        for (filter, _) in session.subscriptions() {
            router.unsubscribe(&filter, &session.client_id);
        }
    }

    /// Subscribes `session` to a validated `filter`, then queues the retained messages it
    /// matches (MQTT-3.3.1-6), with the RETAIN flag set.
    pub fn subscribe(&self, session: &Arc<Session>, filter: &str, qos: QoS) {
        self.router.write().subscribe(
            filter,
            session.client_id.clone(),
            Subscription {
                qos,
                session: session.clone(),
            },
        );
        session.add_subscription(filter, qos);
        let retained = self.retained.read().matching(filter);
        for message in retained {
            session.deliver(&message, message.qos.min(qos), true);
        }
    }

    /// Removes `session`'s subscription to `filter`; returns whether it had one.
    pub fn unsubscribe(&self, session: &Arc<Session>, filter: &str) -> bool {
        self.router.write().unsubscribe(filter, &session.client_id);
        session.remove_subscription(filter)
    }

    /// Routes a message (already validated) to every matching subscription, each at the
    /// lower of the message's and the subscription's QoS, and updates the retained store.
    /// Returns the number of subscriptions it was queued for.
    pub fn publish(&self, message: Message) -> usize {
        let message = Arc::new(message);
        self.counters
            .messages_received
            .fetch_add(1, Ordering::Relaxed);
        if message.retain {
            self.retained.write().update(&message);
        }
        let mut queued = 0;
        let mut dropped = 0;
        self.router.read().for_each_match(&message.topic, |_, sub| {
            // Live deliveries carry RETAIN 0 (MQTT-3.3.1-9).
            match sub
                .session
                .deliver(&message, message.qos.min(sub.qos), false)
            {
                Delivery::Queued => queued += 1,
                Delivery::Dropped => dropped += 1,
                Delivery::Skipped => {}
            }
        });
        self.counters
            .messages_routed
            .fetch_add(queued as u64, Ordering::Relaxed);
        if dropped > 0 {
            self.counters
                .messages_dropped
                .fetch_add(dropped, Ordering::Relaxed);
        }
        queued
    }

    /// Number of sessions, online or not.
    pub fn session_count(&self) -> usize {
        self.sessions.lock().len()
    }

    pub fn subscription_count(&self) -> usize {
        self.router.read().subscription_count()
    }

    pub fn retained_count(&self) -> usize {
        self.retained.read().len()
    }
}
