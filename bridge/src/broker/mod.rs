//! What every connection shares: the session registry, the router and the retained store.
//!
//! Lock discipline (always in this order, never the reverse, never across an `.await`):
//! `sessions` → `router` → a session's own state. The retained store is taken alone.
//! Routing a message takes only the router's read lock and, per subscriber, that
//! subscriber's session lock: publishers on different connections run in parallel.

pub mod message;
pub mod metrics;
pub mod retained;
pub mod session;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use protocol::topic::validate_topic_filter;
use protocol::{reason, ProtocolVersion, QoS};

use crate::connection::Transport;
use crate::router::Router;
pub use message::Message;
pub use metrics::Metrics;
use retained::RetainedStore;
pub use session::{Delivery, Kick, Owner, Session};

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

/// Who is behind a connection: what the admin API lists, and what the session writes for.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    pub connection_id: u64,
    pub client_id: Arc<str>,
    pub username: Option<String>,
    pub peer: SocketAddr,
    pub transport: Transport,
    pub version: ProtocolVersion,
    pub keep_alive: u16,
    pub clean_start: bool,
    pub connected_at: SystemTime,
}

/// A session as listings show it.
#[derive(Debug, Clone)]
pub struct SessionSnapshot {
    pub client_id: Arc<str>,
    /// The live connection, if the client is online.
    pub connection: Option<Arc<ConnectionInfo>>,
    /// Whether the session ends with its connection.
    pub clean: bool,
    pub subscriptions: usize,
    pub queued: usize,
    pub in_flight: usize,
    pub dropped: u64,
}

/// Why an admin request about a client failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("no client with id {0:?}")]
    UnknownClient(String),
    #[error("invalid topic filter: {0}")]
    InvalidFilter(String),
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
    pub metrics: Metrics,
    started: Instant,
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
            metrics: Metrics::default(),
            started: Instant::now(),
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
                    previous.kick.kick(reason::SESSION_TAKEN_OVER);
                }
                self.remove_all_subscriptions(&old);
                (self.insert_new(&mut sessions, client_id, clean), false)
            }
            None => (self.insert_new(&mut sessions, client_id, clean), false),
        };
        if let Some(previous) = session.take_ownership(owner) {
            previous.kick.kick(reason::SESSION_TAKEN_OVER);
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
        Metrics::add(&self.metrics.messages_received, 1);
        if message.retain {
            self.retained.write().update(&message);
        }
        let (mut matched, mut queued, mut dropped, mut skipped) = (0, 0, 0, 0);
        self.router.read().for_each_match(&message.topic, |_, sub| {
            matched += 1;
            // Live deliveries carry RETAIN 0 (MQTT-3.3.1-9).
            match sub
                .session
                .deliver(&message, message.qos.min(sub.qos), false)
            {
                Delivery::Queued => queued += 1,
                Delivery::Dropped => dropped += 1,
                Delivery::Skipped => skipped += 1,
            }
        });
        if matched == 0 {
            Metrics::add(&self.metrics.messages_unrouted, 1);
        }
        Metrics::add(&self.metrics.dropped_queue_full, dropped);
        Metrics::add(&self.metrics.dropped_offline_qos0, skipped);
        queued
    }

    /// Number of sessions, online or not.
    pub fn session_count(&self) -> usize {
        self.sessions.lock().len()
    }

    /// Number of clients connected now.
    pub fn connection_count(&self) -> usize {
        self.sessions
            .lock()
            .values()
            .filter(|s| s.connection().is_some())
            .count()
    }

    /// Distinct subscribed topic filters.
    pub fn topic_count(&self) -> usize {
        self.router.read().filter_count()
    }

    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// Every session, online or not, sorted by client id.
    pub fn sessions(&self) -> Vec<SessionSnapshot> {
        let sessions: Vec<Arc<Session>> = self.sessions.lock().values().cloned().collect();
        let mut list: Vec<SessionSnapshot> = sessions.iter().map(|s| snapshot(s)).collect();
        list.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        list
    }

    /// One session by client id.
    pub fn session(&self, client_id: &str) -> Option<SessionSnapshot> {
        let session = self.sessions.lock().get(client_id).cloned()?;
        Some(snapshot(&session))
    }

    /// One client's subscriptions, sorted by filter.
    pub fn client_subscriptions(&self, client_id: &str) -> Option<Vec<(String, QoS)>> {
        let session = self.sessions.lock().get(client_id).cloned()?;
        let mut subscriptions = session.subscriptions();
        subscriptions.sort();
        Some(subscriptions)
    }

    /// Every (filter, client id, QoS), sorted by filter then client.
    pub fn subscriptions(&self) -> Vec<(String, Arc<str>, QoS)> {
        let mut list: Vec<(String, Arc<str>, QoS)> = self
            .router
            .read()
            .subscriptions()
            .into_iter()
            .map(|(filter, client, sub)| (filter, client, sub.qos))
            .collect();
        list.sort();
        list
    }

    /// Every retained message, sorted by topic.
    pub fn retained_messages(&self) -> Vec<Arc<Message>> {
        let mut list = self.retained.read().all();
        list.sort_by(|a, b| a.topic.cmp(&b.topic));
        list
    }

    /// Deletes the retained message of `topic`; returns whether there was one.
    pub fn delete_retained(&self, topic: &str) -> bool {
        self.retained.write().remove(topic)
    }

    /// Disconnects a client (the session stays, as after any disconnect). 5.0 clients are
    /// told "administrative action".
    pub fn kick(&self, client_id: &str) -> Result<(), ClientError> {
        let session = self
            .sessions
            .lock()
            .get(client_id)
            .cloned()
            .ok_or_else(|| ClientError::UnknownClient(client_id.to_owned()))?;
        match session.evict() {
            Some(owner) => {
                owner.kick.kick(reason::ADMINISTRATIVE_ACTION);
                Ok(())
            }
            None => Err(ClientError::UnknownClient(client_id.to_owned())),
        }
    }

    /// Ends a session: disconnects its client if online and forgets its subscriptions and
    /// queued messages.
    pub fn remove_session(&self, client_id: &str) -> Result<(), ClientError> {
        let session = self
            .sessions
            .lock()
            .remove(client_id)
            .ok_or_else(|| ClientError::UnknownClient(client_id.to_owned()))?;
        if let Some(owner) = session.evict() {
            owner.kick.kick(reason::ADMINISTRATIVE_ACTION);
        }
        self.remove_all_subscriptions(&session);
        Ok(())
    }

    /// Subscribes an existing session to `filter` on its behalf (as EMQX's API does).
    pub fn subscribe_for(
        &self,
        client_id: &str,
        filter: &str,
        qos: QoS,
    ) -> Result<(), ClientError> {
        validate_topic_filter(filter).map_err(|e| ClientError::InvalidFilter(e.to_string()))?;
        let session = self
            .sessions
            .lock()
            .get(client_id)
            .cloned()
            .ok_or_else(|| ClientError::UnknownClient(client_id.to_owned()))?;
        self.subscribe(&session, filter, qos);
        Ok(())
    }

    /// Unsubscribes an existing session from `filter` on its behalf.
    pub fn unsubscribe_for(&self, client_id: &str, filter: &str) -> Result<bool, ClientError> {
        let session = self
            .sessions
            .lock()
            .get(client_id)
            .cloned()
            .ok_or_else(|| ClientError::UnknownClient(client_id.to_owned()))?;
        Ok(self.unsubscribe(&session, filter))
    }

    pub fn subscription_count(&self) -> usize {
        self.router.read().subscription_count()
    }

    pub fn retained_count(&self) -> usize {
        self.retained.read().len()
    }
}

fn snapshot(session: &Session) -> SessionSnapshot {
    let (queued, in_flight) = session.backlog();
    SessionSnapshot {
        client_id: session.client_id.clone(),
        connection: session.connection(),
        clean: session.clean,
        subscriptions: session.subscriptions().len(),
        queued,
        in_flight,
        dropped: session.dropped(),
    }
}
