//! What every connection shares: the session registry, the router, shared-subscription
//! groups and the retained store.
//!
//! Lock discipline (always in this order, never the reverse, never across an `.await`):
//! `sessions` → `router` → `shared` → a shared group's members → a session's own state.
//! The retained store is taken alone. Routing a message takes only the router's read
//! lock and, per subscriber, that subscriber's session lock: publishers on different
//! connections run in parallel.

pub mod access;
mod admin;
pub mod message;
pub mod metrics;
pub mod retained;
pub mod session;
pub mod shared;
mod timers;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use protocol::topic::{parse_shared, validate_topic_filter};
use protocol::{reason, ProtocolVersion, QoS, SubscribeFilter};
use smallvec::SmallVec;

use crate::connection::Transport;
use crate::logsafe::untrusted;
use crate::router::Router;
use crate::store::{Durability, Op, Snapshot, Store, SubRecord, SubscriptionIds};
pub use access::{Access, Action, CredentialChecks, Identity};
pub use message::Message;
pub use metrics::Metrics;
use retained::RetainedStore;
pub use session::{
    Delivery, Kick, Owner, Queued, Session, TopicAliases, Written, WrongAck, NEVER_EXPIRES,
};
use shared::SharedGroup;
use timers::{Kind as TimerKind, Timers};

/// How often [`Broker::sweep_keep_alive`] runs: a silent client is disconnected between
/// 1.5 times its keep-alive and that plus this.
pub const KEEP_ALIVE_SWEEP: Duration = Duration::from_millis(250);

/// Limits and policies of the broker core, filled from [`crate::config::Config`].
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// Largest packet (fixed header included) accepted from a client; a larger one closes
    /// the connection before its body is read.
    pub max_packet_size: usize,
    /// QoS 1/2 messages sent to one client and not yet acknowledged.
    pub max_inflight: usize,
    /// Messages queued per session beyond the in-flight window (offline or slow); past
    /// it, or past `max_queued_bytes`, `queue_full_policy` decides and the drop is counted.
    pub max_queued_messages: usize,
    /// Bytes (topic + payload) queued per session.
    pub max_queued_bytes: usize,
    /// Bytes queued in all sessions together (0: no limit); past it a session's
    /// `queue_full_policy` decides, as for its own limit.
    pub max_queued_bytes_total: usize,
    /// What a full session queue does with one more message.
    pub queue_full_policy: QueuePolicy,
    /// Whether QoS 0 messages are queued for offline persistent sessions (Mosquitto's
    /// `queue_qos0_messages`, off by default).
    pub queue_qos0_messages: bool,
    /// Incoming QoS 2 exchanges a 5.0 client may have open at once (our receive maximum).
    pub receive_maximum: u16,
    /// Topic aliases a 5.0 client may define towards us.
    pub topic_alias_maximum: u16,
    /// Clients connected at once (0: no limit).
    pub max_connections: usize,
    /// New connections per second, with a burst of as many (0: no limit).
    pub max_connection_rate: u32,
    /// Longest keep-alive a client may ask for, in seconds; `u16::MAX`: no limit.
    pub max_keepalive: u16,
    /// Retained messages kept at most (0: no limit); `$SYS` topics do not count.
    pub max_retained_messages: usize,
    /// Topic + payload bytes of all retained messages (0: no limit).
    pub max_retained_bytes: usize,
    /// Subscriptions one client may hold (0: no limit).
    pub max_subscriptions_per_client: usize,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        BrokerSettings {
            max_packet_size: 1024 * 1024,
            max_inflight: 32,
            // Mosquitto and EMQX default to 1000 and silently drop the rest; queues here
            // are also on disk, so the default is a hundred times that, bounded in bytes.
            max_queued_messages: 100_000,
            max_queued_bytes: 256 * 1024 * 1024,
            // Four sessions at their own limit: the queues are in memory (and on disk).
            max_queued_bytes_total: 1024 * 1024 * 1024,
            queue_full_policy: QueuePolicy::DropNewest,
            queue_qos0_messages: false,
            receive_maximum: 1024,
            topic_alias_maximum: 64,
            max_connections: 100_000,
            max_connection_rate: 0,
            max_keepalive: u16::MAX,
            // Mosquitto and EMQX have no limit by default: one client could fill memory
            // and disk with retained messages that survive restarts.
            max_retained_messages: 100_000,
            max_retained_bytes: 256 * 1024 * 1024,
            // EMQX's max_subscriptions defaults to infinity; a device needs a handful.
            max_subscriptions_per_client: 10_000,
        }
    }
}

/// What a session whose queue is full does with another message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueuePolicy {
    /// Keep the queue, drop the new message.
    DropNewest,
    /// Drop the oldest queued message to make room.
    DropOldest,
    /// Disconnect the (slow) client, with 5.0 reason 0x97 "quota exceeded"; for an
    /// offline session, drop the new message.
    Disconnect,
}

/// A direct subscription as the router stores it: its options and the subscriber's
/// session, so routing reaches the session without another lookup.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub qos: QoS,
    pub session: Arc<Session>,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub subscription_id: Option<u32>,
}

/// Who a router entry delivers to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RouteKey {
    Client(Arc<str>),
    /// A shared subscription group, by share name.
    Group(Arc<str>),
}

/// What a router entry delivers to.
#[derive(Debug, Clone)]
pub enum Route {
    Direct(Subscription),
    Shared(Arc<SharedGroup>),
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
    /// The client's receive maximum (5.0; 65535 when not given).
    pub receive_maximum: u16,
    /// The client's maximum packet size (5.0; unlimited when not given).
    pub max_packet_size: u32,
    /// How many topic aliases the client accepts from us (5.0).
    pub topic_alias_maximum: u16,
}

/// A session as listings show it.
#[derive(Debug, Clone)]
pub struct SessionSnapshot {
    pub client_id: Arc<str>,
    /// The live connection, if the client is online.
    pub connection: Option<Arc<ConnectionInfo>>,
    /// The last connection (the live one while online): who the client was and from where,
    /// for listing offline sessions.
    pub last_connection: Option<Arc<ConnectionInfo>>,
    /// Session expiry interval in seconds (0: ends with the connection).
    pub expiry: u32,
    pub subscriptions: usize,
    pub queued: usize,
    pub in_flight: usize,
    pub dropped: u64,
}

impl SessionSnapshot {
    /// Whether the session ends with its connection ("clean session" in 3.1.1 terms).
    pub fn clean(&self) -> bool {
        self.expiry == 0
    }
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
    /// The session limits of `settings`, shared by every session.
    limits: Arc<session::Limits>,
    sessions: Mutex<HashMap<Arc<str>, Arc<Session>>>,
    router: RwLock<Router<RouteKey, Route>>,
    /// (share name, filter) → group.
    shared: Mutex<HashMap<(String, String), Arc<SharedGroup>>>,
    retained: RwLock<RetainedStore>,
    /// Whether the warning that the retained store is full was logged (once per start).
    retained_full_logged: std::sync::atomic::AtomicBool,
    next_connection_id: AtomicU64,
    id_prefix: String,
    pub metrics: Metrics,
    started: Instant,
    /// Replaced whole when the policy is (re)loaded; readers take a cheap `Arc` clone.
    access: RwLock<Arc<Access>>,
    /// The limits on slow password checks, kept across policy reloads.
    pub credential_checks: CredentialChecks,
    /// What in the configuration probably does not mean what it says (set at start and
    /// on each reload), for the dashboard.
    config_warnings: RwLock<Vec<String>>,
    /// Clients past CONNACK now (see [`Broker::admit`]).
    online: std::sync::atomic::AtomicUsize,
    /// Token bucket of the connection rate limit: (tokens, last refill).
    connect_tokens: Mutex<(f64, Instant)>,
    /// Whether any policy is configured, and whether it checks deliveries: read on every
    /// publish, so the common case (no policy) costs a load, not a shared refcount bump.
    access_active: std::sync::atomic::AtomicBool,
    reads_checked: std::sync::atomic::AtomicBool,
    /// Where persistent sessions and retained messages are kept (none: memory only).
    store: Option<Arc<Store>>,
    /// Delayed wills and session expiry: one timer structure, one task.
    timers: Timers,
}

impl Broker {
    /// A broker that keeps everything in memory.
    pub fn new(settings: BrokerSettings) -> Arc<Broker> {
        Broker::build(settings, None)
    }

    /// A broker that keeps persistent sessions and retained messages in `store`, starting
    /// from what the store held. Must run inside the Tokio runtime: outside one, the delayed
    /// wills and expiry timers of the sessions read back are not armed.
    pub fn with_store(
        settings: BrokerSettings,
        store: Arc<Store>,
        snapshot: Snapshot,
    ) -> Arc<Broker> {
        let broker = Broker::build(settings, Some(store));
        broker.restore(snapshot);
        broker
    }

    /// The store, if the broker persists.
    pub fn store(&self) -> Option<&Arc<Store>> {
        self.store.as_ref()
    }

    fn build(settings: BrokerSettings, store: Option<Arc<Store>>) -> Arc<Broker> {
        // The rate limiter starts full: a restart may see every client reconnect at once.
        let rate = settings.max_connection_rate;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let limits = Arc::new(session::Limits {
            max_inflight: settings.max_inflight,
            max_queued: settings.max_queued_messages,
            max_queued_bytes: settings.max_queued_bytes,
            policy: settings.queue_full_policy,
            queue_qos0_offline: settings.queue_qos0_messages,
            budget: session::QueueBudget::new(settings.max_queued_bytes_total),
        });
        let retained =
            RetainedStore::new(settings.max_retained_messages, settings.max_retained_bytes);
        Arc::new(Broker {
            settings,
            limits,
            sessions: Mutex::new(HashMap::new()),
            router: RwLock::new(Router::new()),
            shared: Mutex::new(HashMap::new()),
            retained: RwLock::new(retained),
            retained_full_logged: Default::default(),
            next_connection_id: AtomicU64::new(1),
            id_prefix: format!("bridge-{:x}", nanos & 0xffff_ffff),
            metrics: Metrics::default(),
            started: Instant::now(),
            access: RwLock::new(Arc::new(Access::allow_all())),
            credential_checks: CredentialChecks::new(access::default_concurrent_checks()),
            config_warnings: RwLock::default(),
            online: Default::default(),
            connect_tokens: Mutex::new((f64::from(rate), Instant::now())),
            access_active: Default::default(),
            reads_checked: Default::default(),
            store,
            timers: Timers::new(),
        })
    }

    /// Rebuilds sessions, subscriptions, queues, pending wills and retained messages from
    /// the store; re-arms expiry timers for the time already spent offline.
    fn restore(self: &Arc<Self>, snapshot: Snapshot) {
        let now = message::unix_ms_now();
        for record in snapshot.retained {
            let message = Message::from_record(&record, None);
            if !message.is_expired(Instant::now()) {
                self.retained.write().restore(Arc::new(message));
            }
        }
        let mut restored = 0;
        for stored in snapshot.sessions {
            let id: Arc<str> = Arc::from(stored.client.as_str());
            let session = Arc::new(Session::new(
                id.clone(),
                stored.expiry,
                self.limits(),
                self.store.clone(),
            ));
            // Messages are shared between sessions in the store: share them here too.
            let mut messages: HashMap<u64, Arc<Message>> = HashMap::new();
            let entries = stored
                .queue
                .iter()
                .map(|entry| {
                    let message = messages
                        .entry(entry.message_id)
                        .or_insert_with(|| {
                            Arc::new(Message::from_record(&entry.message, Some(entry.message_id)))
                        })
                        .clone();
                    let queued = Queued {
                        message,
                        qos: QoS::from_u8(entry.qos).unwrap_or(QoS::AtLeastOnce),
                        retain: entry.retain,
                        subscription_ids: entry.subscription_ids.clone(),
                        shared: None,
                        seq: entry.seq,
                    };
                    (queued, entry.pkid, entry.stage)
                })
                .collect();
            session.restore(
                stored.username.clone(),
                stored.subscriptions.clone(),
                entries,
                stored.incoming_qos2.clone(),
            );
            self.sessions.lock().insert(id.clone(), session.clone());
            for (filter, record) in &stored.subscriptions {
                self.route(
                    &session,
                    &subscribe_filter(filter, record),
                    record.subscription_id,
                );
            }
            let offline_ms = stored
                .disconnected_at
                .map_or(0, |at| now.saturating_sub(at));
            let generation = if let Some((fire_at, will)) = &stored.will {
                let generation = session.restore_will(Message::from_record(will, None));
                let delay = Duration::from_millis(fire_at.saturating_sub(now));
                self.fire_will_later(&session, generation, delay);
                generation
            } else {
                0
            };
            if stored.expiry != NEVER_EXPIRES {
                let left = (u64::from(stored.expiry) * 1000).saturating_sub(offline_ms);
                self.expire_later(&session, generation, Duration::from_millis(left));
            }
            restored += 1;
        }
        if restored > 0 || self.retained_count() > 0 {
            tracing::info!(
                sessions = restored,
                retained = self.retained_count(),
                "restored from the store"
            );
        }
    }

    /// Publishes `session`'s pending will after `delay`, unless the client is back by then
    /// (the absence `generation` has ended). See [`timers`].
    fn fire_will_later(self: &Arc<Self>, session: &Arc<Session>, generation: u64, delay: Duration) {
        self.timers
            .arm(self, TimerKind::Will, session, generation, delay);
    }

    /// Ends `session` after `after`, unless the client is back by then (the absence
    /// `generation` has ended). See [`timers`].
    fn expire_later(self: &Arc<Self>, session: &Arc<Session>, generation: u64, after: Duration) {
        self.timers
            .arm(self, TimerKind::Expiry, session, generation, after);
    }

    /// A timer of [`Self::fire_will_later`] or [`Self::expire_later`] ran out: it acts only
    /// if the session has stayed offline since the absence `generation` began. An expiry
    /// also only if the session is still the one registered: one discarded or removed
    /// meanwhile has ended already, and ending it again would delete its successor's rows
    /// from the store (same client id).
    fn timer_fired(&self, kind: TimerKind, session: &Arc<Session>, generation: u64) {
        match kind {
            TimerKind::Will => {
                let unwaited = Durability::unwaited();
                if let Some(will) = session.take_pending_will(generation, &unwaited) {
                    self.publish(will);
                }
            }
            TimerKind::Expiry => {
                if session.offline_since(generation) && self.is_registered(session) {
                    self.end_session(session, &Durability::unwaited());
                }
            }
        }
    }

    /// The access policy in force.
    pub fn access(&self) -> Arc<Access> {
        self.access.read().clone()
    }

    /// Puts a new access policy in force for every later check.
    pub fn set_access(&self, access: Access) {
        let mut current = self.access.write();
        self.access_active
            .store(access.is_active(), Ordering::Relaxed);
        self.reads_checked
            .store(access.checks_reads(), Ordering::Relaxed);
        *current = Arc::new(access);
    }

    /// The access policy when it has rules that can refuse a read (so deliveries must be
    /// checked), else `None`.
    pub fn read_checks(&self) -> Option<Arc<Access>> {
        self.reads_checked
            .load(Ordering::Relaxed)
            .then(|| self.access())
    }

    /// Replaces the configuration warnings shown in the dashboard.
    pub fn set_config_warnings(&self, warnings: Vec<String>) {
        *self.config_warnings.write() = warnings;
    }

    /// What in the configuration probably does not mean what it says.
    pub fn config_warnings(&self) -> Vec<String> {
        self.config_warnings.read().clone()
    }

    /// Whether `who` may do `action` on `topic`; true at no cost when no policy is set.
    pub fn may(&self, who: Identity<'_>, action: Action, topic: &str) -> bool {
        if !self.access_active.load(Ordering::Relaxed) {
            // No policy, but `$SYS` stays the broker's own (see `Access::authorize`).
            return !(action == Action::Publish && access::is_broker_topic(topic));
        }
        self.access().authorize(who, action, topic)
    }

    /// Admits a new client under the global limits: `Err` is the CONNACK reason to refuse
    /// it with (0x97 quota exceeded: too many connected; 0x9F connection rate exceeded).
    /// On success the returned guard counts the client as online until it is dropped.
    pub fn admit(self: &Arc<Self>) -> Result<Online, u8> {
        let max = self.settings.max_connections;
        if max > 0 && self.online.load(Ordering::Relaxed) >= max {
            return Err(reason::QUOTA_EXCEEDED);
        }
        let rate = self.settings.max_connection_rate;
        if rate > 0 {
            let mut bucket = self.connect_tokens.lock();
            let now = Instant::now();
            let refill = now.duration_since(bucket.1).as_secs_f64() * f64::from(rate);
            bucket.0 = (bucket.0 + refill).min(f64::from(rate));
            bucket.1 = now;
            if bucket.0 < 1.0 {
                return Err(reason::CONNECTION_RATE_EXCEEDED);
            }
            bucket.0 -= 1.0;
        }
        self.online.fetch_add(1, Ordering::Relaxed);
        Ok(Online(Arc::clone(self)))
    }

    /// A number identifying one connection for the life of the process.
    pub fn new_connection_id(&self) -> u64 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A client identifier for a client that sent an empty one (MQTT-3.1.3-6).
    pub fn generate_client_id(&self, connection_id: u64) -> String {
        format!("{}-{connection_id}", self.id_prefix)
    }

    fn limits(&self) -> Arc<session::Limits> {
        self.limits.clone()
    }

    /// Opens (or resumes) the session of `client_id` for a new connection, making `owner`
    /// its driver. Any connection that had it is kicked: a session taken over
    /// (MQTT-3.1.4-2). With `clean_start`, any previous session is discarded first
    /// (MQTT-3.1.2-6, MQTT-3.1.2-4), publishing a will it was holding back.
    /// `expiry` is the new session expiry interval (3.1.1: 0 for clean session, else never).
    ///
    /// A session is resumed only by the user name that held it: one left by another user
    /// (or anonymously) is discarded as with a clean start, so that its subscriptions and
    /// queued messages never reach a client the ACL gave no right to them.
    pub fn open_session(
        &self,
        client_id: &Arc<str>,
        clean_start: bool,
        expiry: u32,
        owner: Owner,
        durability: &Durability,
    ) -> Opened {
        let mut sessions = self.sessions.lock();
        let existing = sessions.get(&**client_id).cloned();
        let mut will = None;
        let (session, session_present) = match existing {
            Some(session) if !clean_start && session.username() == owner.info.username => {
                (session, true)
            }
            Some(old) => {
                if !clean_start {
                    tracing::info!(
                        client_id = %untrusted(client_id),
                        "session held by another user name: starting it clean"
                    );
                }
                if let Some(previous) = old.evict() {
                    previous.kick.kick(reason::SESSION_TAKEN_OVER);
                }
                self.remove_all_subscriptions(&old, durability);
                will = old.end(durability);
                (self.insert_new(&mut sessions, client_id, expiry), false)
            }
            None => (self.insert_new(&mut sessions, client_id, expiry), false),
        };
        session.set_expiry(expiry, durability);
        if let Some(previous) = session.take_ownership(owner, durability) {
            previous.kick.kick(reason::SESSION_TAKEN_OVER);
        }
        drop(sessions);
        if let Some(will) = will {
            self.publish(will);
        }
        Opened {
            session,
            session_present,
        }
    }

    fn insert_new(
        &self,
        sessions: &mut HashMap<Arc<str>, Arc<Session>>,
        client_id: &Arc<str>,
        expiry: u32,
    ) -> Arc<Session> {
        // The connection's own copy of the identifier: one allocation per client, not one
        // per holder.
        let id = client_id.clone();
        let session = Arc::new(Session::new(
            id.clone(),
            expiry,
            self.limits(),
            self.store.clone(),
        ));
        sessions.insert(id, session.clone());
        session
    }

    /// Ends a connection's hold on its session. `will` is the will to publish, with its
    /// delay in seconds (0: now). A session with expiry 0 ends now; one with a finite
    /// expiry ends when it runs out unless a client resumes it; one that never expires stays.
    /// Messages of shared subscriptions that the client did not receive go to another
    /// member of their group.
    pub fn close_session(
        self: &Arc<Self>,
        session: &Arc<Session>,
        connection_id: u64,
        will: Option<(Message, u32)>,
        durability: &Durability,
    ) {
        let expiry = session.expiry();
        let (will_now, will_later) = match will {
            Some((will, delay)) if delay > 0 && expiry > 0 => (None, Some((will, delay))),
            Some((will, _)) => (Some(will), None),
            None => (None, None),
        };
        let delay = will_later.as_ref().map(|(_, d)| *d);
        let Some(generation) = session.release(connection_id, will_later, durability) else {
            // Taken over or evicted meanwhile: the new owner (or the eviction) handles it.
            if let Some(will) = will_now {
                self.publish(will);
            }
            return;
        };
        if let Some(will) = will_now {
            self.publish(will);
        }
        self.redistribute_shared(session, durability);

        if expiry == 0 {
            self.end_session(session, durability);
            return;
        }
        if let Some(delay) = delay {
            // The will goes out after its delay, or when the session ends, whichever is first.
            let delay = delay.min(expiry);
            self.fire_will_later(session, generation, Duration::from_secs(u64::from(delay)));
        }
        if expiry != NEVER_EXPIRES {
            self.expire_later(session, generation, Duration::from_secs(u64::from(expiry)));
        }
    }

    /// Removes a session that has ended: from the registry (if it is still the one
    /// registered), from the router, and publishes its pending will.
    fn end_session(&self, session: &Arc<Session>, durability: &Durability) {
        {
            let mut sessions = self.sessions.lock();
            if sessions
                .get(&session.client_id)
                .is_some_and(|s| Arc::ptr_eq(s, session))
            {
                sessions.remove(&session.client_id);
            }
        }
        self.remove_all_subscriptions(session, durability);
        if let Some(will) = session.end(durability) {
            self.publish(will);
        }
    }

    /// Gives shared-subscription messages a departed member did not receive to another
    /// member of their group.
    fn redistribute_shared(&self, session: &Arc<Session>, durability: &Durability) {
        let backlog = session.take_shared_backlog(durability);
        let access = self.read_checks();
        for queued in backlog {
            let group = queued.shared.expect("only shared messages are taken");
            if group.has_other_member(session) {
                group.deliver(
                    &queued.message,
                    Some(session),
                    access.as_deref(),
                    durability,
                );
            } else {
                // Nobody else to take it: it stays with this member.
                session.deliver(
                    Queued {
                        shared: Some(group),
                        ..queued
                    },
                    durability,
                );
            }
        }
    }

    fn remove_all_subscriptions(&self, session: &Arc<Session>, durability: &Durability) {
        for (filter, _) in session.subscriptions() {
            self.unsubscribe(session, &filter, durability);
        }
    }

    /// Subscribes `session` with a validated filter's options, then queues the retained
    /// messages it matches, as its retain handling says (MQTT-3.3.1-6, MQTT-3.8.4-3).
    /// Shared subscriptions get no retained messages (MQTT 5.0 §4.8.2).
    pub fn subscribe(
        &self,
        session: &Arc<Session>,
        filter: &SubscribeFilter,
        subscription_id: Option<u32>,
        durability: &Durability,
    ) {
        session.add_subscription(
            &filter.filter,
            sub_record(filter, subscription_id),
            durability,
        );
        let is_new = self.route(session, filter, subscription_id);
        if parse_shared(&filter.filter).ok().flatten().is_some() {
            return;
        }
        let send_retained = match filter.retain_handling {
            0 => true,
            1 => is_new,
            _ => false,
        };
        if !send_retained {
            return;
        }
        let now = Instant::now();
        let retained = self.retained.read().matching(&filter.filter);
        let access = self.read_checks();
        let username = access.as_ref().and_then(|_| session.username());
        let (mut matched, mut dropped) = (0usize, 0usize);
        for message in retained {
            if message.is_expired(now) {
                continue;
            }
            let may_read = access.as_deref().is_none_or(|access| {
                let who = Identity {
                    client_id: &session.client_id,
                    username: username.as_deref(),
                };
                access.authorize(who, Action::Read, &message.topic)
            });
            if !may_read {
                continue;
            }
            matched += 1;
            let qos = message.qos.min(filter.qos);
            let delivery = session.deliver(
                Queued {
                    message,
                    qos,
                    retain: true,
                    subscription_ids: subscription_id.into(),
                    shared: None,
                    seq: 0,
                },
                durability,
            );
            dropped += match delivery {
                Delivery::Dropped => 1,
                Delivery::QueuedDroppingOldest(n) => n as usize,
                Delivery::Queued | Delivery::Skipped => 0,
            };
        }
        if dropped > 0 {
            // The session's queue (or the broker-wide budget) had no room for all of them:
            // never silently.
            Metrics::add(&self.metrics.dropped_queue_full, dropped as u64);
            Metrics::add(&self.metrics.retained_dropped_on_subscribe, dropped as u64);
            tracing::warn!(
                client_id = %untrusted(&session.client_id),
                filter = %untrusted(&filter.filter),
                "{dropped} of {matched} retained messages not delivered: the session's \
                 queue is full (max_queued_messages / max_queued_bytes)"
            );
        }
    }

    /// Puts a subscription into the router (or its shared group); returns whether it is
    /// new rather than a replacement.
    fn route(
        &self,
        session: &Arc<Session>,
        filter: &SubscribeFilter,
        subscription_id: Option<u32>,
    ) -> bool {
        let qos = filter.qos;
        if let Ok(Some((group, inner))) = parse_shared(&filter.filter) {
            let mut router = self.router.write();
            let mut shared = self.shared.lock();
            let group_arc = shared
                .entry((group.to_owned(), inner.to_owned()))
                .or_insert_with(|| {
                    let g = Arc::new(SharedGroup::new(group, inner));
                    router.subscribe(
                        inner,
                        RouteKey::Group(Arc::from(group)),
                        Route::Shared(g.clone()),
                    );
                    g
                })
                .clone();
            drop(shared);
            drop(router);
            return group_arc.join(session, qos, filter.retain_as_published, subscription_id);
        }
        let previous = self.router.write().subscribe(
            &filter.filter,
            RouteKey::Client(session.client_id.clone()),
            Route::Direct(Subscription {
                qos,
                session: session.clone(),
                no_local: filter.no_local,
                retain_as_published: filter.retain_as_published,
                subscription_id,
            }),
        );
        previous.is_none()
    }

    /// Removes `session`'s subscription to `filter`; returns whether it had one.
    pub fn unsubscribe(
        &self,
        session: &Arc<Session>,
        filter: &str,
        durability: &Durability,
    ) -> bool {
        if let Ok(Some((group, inner))) = parse_shared(filter) {
            let mut router = self.router.write();
            let mut shared = self.shared.lock();
            let key = (group.to_owned(), inner.to_owned());
            if let Some(g) = shared.get(&key) {
                if g.leave(session) {
                    shared.remove(&key);
                    router.unsubscribe(inner, &RouteKey::Group(Arc::from(group)));
                }
            }
        } else {
            self.router
                .write()
                .unsubscribe(filter, &RouteKey::Client(session.client_id.clone()));
        }
        session.remove_subscription(filter, durability)
    }

    /// Routes a message (already validated) to every matching subscription, each at the
    /// lower of the message's and the subscription's QoS, and updates the retained store.
    /// Returns the number of subscriptions that matched.
    ///
    /// For messages nobody acknowledges ($SYS, the admin API, wills fired by a timer):
    /// what it stores is not waited for.
    pub fn publish(&self, message: Message) -> usize {
        self.publish_retaining(message, true, &Durability::unwaited())
    }

    /// [`Self::publish`]; with `keep_retained` false, a retained message is delivered but
    /// does not replace the topic's retained message (a QoS 0 retained publish while the
    /// store fails: kept, it would have to be stored).
    pub fn publish_retaining(
        &self,
        message: Message,
        keep_retained: bool,
        durability: &Durability,
    ) -> usize {
        self.try_publish(message, keep_retained, durability)
            .unwrap_or(0)
    }

    /// [`Self::publish_retaining`], or `Err(0x97)` "quota exceeded" when the message is
    /// retained and the retained store is full (`max_retained_messages`,
    /// `max_retained_bytes`): then it is neither kept nor delivered, and counted.
    /// What it stores (the retained message, the subscribers' queue entries) is noted in
    /// `durability`, for the publisher's acknowledgement to wait for.
    pub fn try_publish(
        &self,
        message: Message,
        keep_retained: bool,
        durability: &Durability,
    ) -> Result<usize, u8> {
        let message = Arc::new(message);
        Metrics::add(&self.metrics.messages_received, 1);
        if message.retain && keep_retained {
            if let Err(full) = self.retained.write().update(&message) {
                Metrics::add(&self.metrics.retained_refused, 1);
                if self.retained_full_logged.swap(true, Ordering::Relaxed) {
                    tracing::debug!(topic = %untrusted(&message.topic), "{full}: refused");
                } else {
                    tracing::warn!(
                        topic = %untrusted(&message.topic),
                        "{full}: retained publishes to new topics are refused (5.0: 0x97) \
                         until some are cleared; counted as bridge_retained_refused_total"
                    );
                }
                return Err(reason::QUOTA_EXCEEDED);
            }
            if let Some(store) = &self.store {
                let op = if message.payload.is_empty() {
                    Op::RetainDelete {
                        topic: message.topic.clone(),
                    }
                } else {
                    Op::RetainPut {
                        topic: message.topic.clone(),
                        bytes: crate::store::encode_message(&message.to_record()),
                    }
                };
                store.submit(op, durability);
            }
        }
        let access = self.read_checks();
        let access = access.as_deref();
        let mut tally = Tally::default();
        let router = self.router.read();
        // The subscribers of each matching filter: nearly always one set, or two.
        let mut sets: SmallVec<[&HashMap<RouteKey, Route>; 4]> = SmallVec::new();
        router.for_each_matching_set(&message.topic, |set| sets.push(set));
        match sets.as_slice() {
            // The common case: one matching filter, so one subscription per client.
            [set] => set.iter().for_each(|(_, route)| match route {
                Route::Shared(group) => {
                    tally.count(group.deliver(&message, None, access, durability))
                }
                Route::Direct(sub) => {
                    if !excluded_by_no_local(&message, sub) && readable(access, &message.topic, sub)
                    {
                        tally.count(sub.session.deliver(delivery_for(&message, sub), durability));
                    }
                }
            }),
            sets => route_overlapping(&message, sets, access, &mut tally, durability),
        }
        drop(sets);
        drop(router);
        if tally.matched == 0 {
            Metrics::add(&self.metrics.messages_unrouted, 1);
        }
        Metrics::add(&self.metrics.dropped_queue_full, tally.dropped);
        Metrics::add(&self.metrics.dropped_offline_qos0, tally.skipped);
        Ok(tally.matched)
    }

    /// Whether publishing `message` would write to the store: a retained message, or a
    /// QoS 1/2 one that a persistent session would queue at QoS 1/2 (a shared group counts
    /// whatever its members: which one gets the message is chosen on delivery). Asked
    /// only while the store fails, to refuse such a publish rather than hold its ack.
    pub fn publish_needs_store(&self, message: &Message) -> bool {
        if self.store.is_none() || message.retain {
            return self.store.is_some();
        }
        if message.qos == QoS::AtMostOnce {
            return false;
        }
        let mut needs = false;
        self.router
            .read()
            .for_each_matching_set(&message.topic, |set| {
                needs = needs
                    || set.values().any(|route| match route {
                        Route::Shared(_) => true,
                        Route::Direct(sub) => {
                            sub.qos != QoS::AtMostOnce && sub.session.expiry() > 0
                        }
                    });
            });
        needs
    }

    /// Number of sessions, online or not.
    pub fn session_count(&self) -> usize {
        self.sessions.lock().len()
    }

    /// Number of clients connected now.
    /// The admitted-client counter [`Broker::admit`] keeps: no walk over every session
    /// (the admin API and `$SYS` ask every few seconds).
    pub fn connection_count(&self) -> usize {
        self.online.load(Ordering::Relaxed)
    }

    pub fn subscription_count(&self) -> usize {
        let groups: usize = self.shared.lock().values().map(|g| g.len()).sum();
        let router = self.router.read();
        router.subscription_count() - self.shared.lock().len() + groups
    }

    /// Distinct subscribed topic filters.
    pub fn topic_count(&self) -> usize {
        self.router.read().filter_count()
    }

    pub fn retained_count(&self) -> usize {
        self.retained.read().len()
    }

    /// Topic + payload bytes of the retained messages (those counted against
    /// `max_retained_bytes`: all but `$SYS`).
    pub fn retained_bytes(&self) -> usize {
        self.retained.read().bytes()
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The broker's clock for keep-alive deadlines: milliseconds since it started.
    pub fn clock_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Kicks every connected client whose keep-alive deadline has passed. Called every
    /// [`KEEP_ALIVE_SWEEP`] by the server: one timer for all connections.
    pub fn sweep_keep_alive(&self) {
        // Checked outside the registry lock, which connects and disconnects need.
        let sessions: Vec<Arc<Session>> = self.sessions.lock().values().cloned().collect();
        let now = self.clock_ms();
        for session in sessions {
            session.check_keep_alive(now);
        }
    }

    /// Bytes (topic + payload) queued in all sessions now (the broker-wide budget's use).
    pub fn queued_bytes(&self) -> usize {
        self.limits.budget.used()
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
    pub fn client_subscriptions(&self, client_id: &str) -> Option<Vec<(String, SubRecord)>> {
        let session = self.sessions.lock().get(client_id).cloned()?;
        let mut subscriptions = session.subscriptions();
        subscriptions.sort_by(|a, b| a.0.cmp(&b.0));
        Some(subscriptions)
    }

    /// Every (filter, client id, options), sorted by filter then client. Shared
    /// subscriptions are listed per member with their `$share/{group}/` filter.
    pub fn subscriptions(&self) -> Vec<(String, Arc<str>, SubRecord)> {
        let sessions: Vec<Arc<Session>> = self.sessions.lock().values().cloned().collect();
        let mut list: Vec<(String, Arc<str>, SubRecord)> = sessions
            .iter()
            .flat_map(|s| {
                s.subscriptions()
                    .into_iter()
                    .map(|(filter, record)| (filter, s.client_id.clone(), record))
            })
            .collect();
        list.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
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
        let removed = self.retained.write().remove(topic);
        if let (Some(store), true) = (&self.store, removed) {
            let op = Op::RetainDelete {
                topic: topic.to_owned(),
            };
            store.submit(op, &Durability::unwaited());
        }
        removed
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
        match session.connection() {
            Some(_) => {
                // The connection releases the session itself, publishing its will.
                if let Some(owner) = session.owner_kick() {
                    owner.kick(reason::ADMINISTRATIVE_ACTION);
                }
                Ok(())
            }
            None => Err(ClientError::UnknownClient(client_id.to_owned())),
        }
    }

    /// Ends a session: disconnects its client if online and forgets its subscriptions and
    /// queued messages.
    pub fn remove_session(&self, client_id: &str) -> Result<(), ClientError> {
        let durability = &Durability::unwaited();
        let session = self
            .sessions
            .lock()
            .remove(client_id)
            .ok_or_else(|| ClientError::UnknownClient(client_id.to_owned()))?;
        if let Some(owner) = session.evict() {
            owner.kick.kick(reason::ADMINISTRATIVE_ACTION);
        }
        self.remove_all_subscriptions(&session, durability);
        if let Some(will) = session.end(durability) {
            self.publish(will);
        }
        Ok(())
    }

    /// Subscribes an existing session to `filter` on its behalf (as EMQX's API does), with
    /// a SUBSCRIBE's default options; returns the subscription as stored.
    pub fn subscribe_for(
        &self,
        client_id: &str,
        filter: &str,
        qos: QoS,
    ) -> Result<SubRecord, ClientError> {
        let durability = &Durability::unwaited();
        validate_topic_filter(filter).map_err(|e| ClientError::InvalidFilter(e.to_string()))?;
        if let Err(e) = parse_shared(filter) {
            return Err(ClientError::InvalidFilter(e.to_string()));
        }
        let session = self
            .sessions
            .lock()
            .get(client_id)
            .cloned()
            .ok_or_else(|| ClientError::UnknownClient(client_id.to_owned()))?;
        let filter = SubscribeFilter::new(filter, qos);
        self.subscribe(&session, &filter, None, durability);
        Ok(sub_record(&filter, None))
    }

    /// Unsubscribes an existing session from `filter` on its behalf.
    pub fn unsubscribe_for(&self, client_id: &str, filter: &str) -> Result<bool, ClientError> {
        let durability = &Durability::unwaited();
        let session = self
            .sessions
            .lock()
            .get(client_id)
            .cloned()
            .ok_or_else(|| ClientError::UnknownClient(client_id.to_owned()))?;
        Ok(self.unsubscribe(&session, filter, durability))
    }

    /// Tells every connected client the server is going away (5.0 clients get DISCONNECT
    /// 0x8B, "server shutting down").
    pub fn shutdown(&self) {
        let sessions: Vec<Arc<Session>> = self.sessions.lock().values().cloned().collect();
        for session in sessions {
            if let Some(kick) = session.owner_kick() {
                kick.kick(reason::SERVER_SHUTTING_DOWN);
            }
        }
    }
}

fn snapshot(session: &Session) -> SessionSnapshot {
    let (queued, in_flight) = session.backlog();
    SessionSnapshot {
        client_id: session.client_id.clone(),
        connection: session.connection(),
        last_connection: session.last_connection(),
        expiry: session.expiry(),
        subscriptions: session.subscription_count(),
        queued,
        in_flight,
        dropped: session.dropped(),
    }
}

/// A stored subscription's options as a SUBSCRIBE filter.
/// What a session stores of a subscription (the inverse of [`subscribe_filter`]).
fn sub_record(filter: &SubscribeFilter, subscription_id: Option<u32>) -> SubRecord {
    SubRecord {
        qos: filter.qos as u8,
        no_local: filter.no_local,
        retain_as_published: filter.retain_as_published,
        retain_handling: filter.retain_handling,
        subscription_id,
    }
}

fn subscribe_filter(filter: &str, record: &SubRecord) -> SubscribeFilter {
    SubscribeFilter {
        filter: filter.to_owned(),
        qos: QoS::from_u8(record.qos).unwrap_or(QoS::AtMostOnce),
        no_local: record.no_local,
        retain_as_published: record.retain_as_published,
        retain_handling: record.retain_handling,
    }
}

/// Routes `message` to the subscribers of several matching filter sets. A client with
/// several matching filters gets one copy for all of them (MQTT-3.3.4-2 … -4).
///
/// With few sets, the clients in more than one are found by looking the keys of the smaller
/// set of each pair up in the larger (so a `#` monitor beside a thousand subscribers costs
/// one lookup, not a thousand); every other client is served as on the one-set path, and an
/// overlapping one gets its copy where its first filter is met. With many sets (one client
/// can make hundreds of filters match one topic), the pairs would cost their square: the
/// clients are sorted instead. Out of line: the one-set case is the hot path.
#[inline(never)]
fn route_overlapping(
    message: &Arc<Message>,
    sets: &[&HashMap<RouteKey, Route>],
    access: Option<&Access>,
    tally: &mut Tally,
    durability: &Durability,
) {
    if sets.len() > MERGE_BY_LOOKUP {
        return route_by_sorting(message, sets, access, tally, durability);
    }
    let mut overlapping: HashSet<&RouteKey> = HashSet::new();
    for (i, a) in sets.iter().enumerate() {
        for b in &sets[i + 1..] {
            let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
            overlapping.extend(small.iter().filter_map(|(key, route)| {
                let direct = matches!(route, Route::Direct(_));
                (direct && matches!(large.get(key), Some(Route::Direct(_)))).then_some(key)
            }));
        }
    }
    for (i, set) in sets.iter().enumerate() {
        for (key, route) in set.iter() {
            let sub = match route {
                Route::Shared(group) => {
                    tally.count(group.deliver(message, None, access, durability));
                    continue;
                }
                Route::Direct(sub) => sub,
            };
            let queued = if overlapping.is_empty() || !overlapping.contains(key) {
                if excluded_by_no_local(message, sub) {
                    continue;
                }
                delivery_for(message, sub)
            } else if sets[..i].iter().any(|set| set.contains_key(key)) {
                continue;
            } else {
                let others = sets[i + 1..].iter().filter_map(|set| match set.get(key) {
                    Some(Route::Direct(other)) => Some(other),
                    _ => None,
                });
                match one_delivery(message, std::iter::once(sub).chain(others)) {
                    Some(queued) => queued,
                    None => continue,
                }
            };
            if readable(access, &message.topic, sub) {
                tally.count(sub.session.deliver(queued, durability));
            }
        }
    }
}

/// [`route_overlapping`] for many sets: every direct subscription sorted by client, one
/// copy per client.
fn route_by_sorting(
    message: &Arc<Message>,
    sets: &[&HashMap<RouteKey, Route>],
    access: Option<&Access>,
    tally: &mut Tally,
    durability: &Durability,
) {
    let mut direct = Vec::new();
    for route in sets.iter().flat_map(|set| set.values()) {
        match route {
            Route::Shared(group) => tally.count(group.deliver(message, None, access, durability)),
            Route::Direct(sub) => direct.push(sub),
        }
    }
    direct.sort_unstable_by_key(|sub| Arc::as_ptr(&sub.session));
    for client in direct.chunk_by(|a, b| Arc::ptr_eq(&a.session, &b.session)) {
        let sub = client[0];
        if let Some(queued) = one_delivery(message, client.iter().copied()) {
            if readable(access, &message.topic, sub) {
                tally.count(sub.session.deliver(queued, durability));
            }
        }
    }
}

/// Up to this many matching filter sets, the clients in more than one are found by lookups
/// between each pair (the square of the sets); above, by sorting.
const MERGE_BY_LOOKUP: usize = 4;

/// What routing one message did: deliveries made, and of those, dropped (queue full) and
/// skipped (QoS 0 for an offline session).
#[derive(Default)]
struct Tally {
    matched: usize,
    dropped: u64,
    skipped: u64,
}

impl Tally {
    #[inline]
    fn count(&mut self, delivery: Delivery) {
        self.matched += 1;
        match delivery {
            Delivery::Queued => {}
            Delivery::QueuedDroppingOldest(n) => self.dropped += u64::from(n),
            Delivery::Dropped => self.dropped += 1,
            Delivery::Skipped => self.skipped += 1,
        }
    }
}

/// Whether the subscriber of `sub` may read `topic` now: always, unless the access policy
/// checks reads (every delivery passes the reader's ACL when it is routed).
#[inline(always)]
fn readable(access: Option<&Access>, topic: &str, sub: &Subscription) -> bool {
    access.is_none_or(|access| {
        access.authorize(
            Identity {
                client_id: &sub.session.client_id,
                username: sub.session.username().as_deref(),
            },
            Action::Read,
            topic,
        )
    })
}

/// Whether `sub` is a No Local subscription of the client that published `message`: such a
/// subscription does not match (MQTT-3.8.3-3).
fn excluded_by_no_local(message: &Message, sub: &Subscription) -> bool {
    sub.no_local && message.origin.as_deref() == Some(&*sub.session.client_id)
}

/// The delivery of `message` through one subscription: at the lower of the two QoS, with its
/// Subscription Identifier, and RETAIN only under Retain As Published (live deliveries carry
/// RETAIN 0 otherwise, MQTT-3.3.1-12, -13).
fn delivery_for(message: &Arc<Message>, sub: &Subscription) -> Queued {
    Queued {
        message: message.clone(),
        qos: message.qos.min(sub.qos),
        retain: sub.retain_as_published && message.retain,
        subscription_ids: sub.subscription_id.into(),
        shared: None,
        seq: 0,
    }
}

/// The one delivery of `message` to a client for all its subscriptions that match it
/// (direct ones; shared subscriptions deliver on their own): at the highest QoS granted
/// among them, capped by the message's (MQTT-3.3.4-2, MQTT-3.3.5-1 in 3.1.1), with every
/// one of their Subscription Identifiers (MQTT-3.3.4-3, -4), and RETAIN kept if any of
/// them asked for Retain As Published. A No Local subscription does not match its own
/// client's messages; `None` if nothing is left.
fn one_delivery<'a>(
    message: &Arc<Message>,
    subscriptions: impl Iterator<Item = &'a Subscription>,
) -> Option<Queued> {
    let mut matching = subscriptions.filter(|sub| !excluded_by_no_local(message, sub));
    let mut queued = delivery_for(message, matching.next()?);
    // Collected once, only when a second identifier turns up: a list grown one push at a
    // time would cost the square of the client's overlapping subscriptions.
    let mut ids = Vec::new();
    for sub in matching {
        queued.qos = queued.qos.max(message.qos.min(sub.qos));
        queued.retain |= sub.retain_as_published && message.retain;
        if let Some(id) = sub.subscription_id {
            if ids.is_empty() {
                ids.extend_from_slice(queued.subscription_ids.as_slice());
            }
            ids.push(id);
        }
    }
    if !ids.is_empty() {
        queued.subscription_ids = SubscriptionIds::from(ids);
    }
    Some(queued)
}

/// Counts one admitted client as online while it lives (see [`Broker::admit`]).
pub struct Online(Arc<Broker>);

impl Drop for Online {
    fn drop(&mut self) {
        self.0.online.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn subscription(session: &Arc<Session>, qos: QoS, id: Option<u32>) -> Subscription {
        Subscription {
            qos,
            session: session.clone(),
            no_local: false,
            retain_as_published: false,
            subscription_id: id,
        }
    }

    /// An online session of `client` subscribed to `filters` at QoS 1.
    fn subscriber(broker: &Arc<Broker>, client: &str, filters: &[&str]) -> Arc<Session> {
        let durability = &Durability::unwaited();
        let id: Arc<str> = Arc::from(client);
        let info = Arc::new(ConnectionInfo {
            connection_id: 1,
            client_id: id.clone(),
            username: None,
            peer: "127.0.0.1:1".parse().unwrap(),
            transport: Transport::Tcp,
            version: ProtocolVersion::V3_1_1,
            keep_alive: 0,
            clean_start: true,
            connected_at: SystemTime::now(),
            receive_maximum: u16::MAX,
            max_packet_size: u32::MAX,
            topic_alias_maximum: 0,
        });
        let kick = Arc::new(Kick::default());
        let session = broker
            .open_session(&id, true, 0, Owner { info, kick }, &Durability::unwaited())
            .session;
        for filter in filters {
            broker.subscribe(
                &session,
                &SubscribeFilter::new(*filter, QoS::AtLeastOnce),
                None,
                durability,
            );
        }
        session
    }

    /// Several matching filter sets: a `#` monitor beside other clients (no client in two
    /// sets), and a client in two of them. Everyone gets one copy; the router counts a
    /// delivery per client.
    #[test]
    fn with_several_matching_filters_each_client_gets_one_copy() {
        let broker = Broker::new(BrokerSettings::default());
        let monitor = subscriber(&broker, "monitor", &["#"]);
        let plain = subscriber(&broker, "plain", &["t/x"]);
        let both = subscriber(&broker, "both", &["t/+", "t/x"]);
        let matched = broker.publish(Message::new(
            "t/x",
            Bytes::from_static(b"p"),
            QoS::AtLeastOnce,
            false,
        ));
        assert_eq!(matched, 3);
        for session in [&monitor, &plain, &both] {
            assert_eq!(session.backlog(), (1, 0), "{}", session.client_id);
        }
    }

    /// MQTT-3.3.4-2 … -4, MQTT-3.8.3-3, MQTT-3.3.1-12/13: one delivery for all of a client's
    /// matching subscriptions: the highest granted QoS (capped by the message's), every
    /// subscription identifier, RETAIN if one asked for Retain As Published; No Local ones
    /// do not match the client's own messages, and with nothing left there is no delivery.
    #[test]
    fn one_delivery_merges_a_clients_matching_subscriptions() {
        let broker = Broker::new(BrokerSettings::default());
        let session = Arc::new(Session::new(Arc::from("c"), 0, broker.limits(), None));
        let mut message = Message::new("t/x", Bytes::from_static(b"p"), QoS::AtLeastOnce, true);
        let a = subscription(&session, QoS::AtMostOnce, Some(1));
        let b = subscription(&session, QoS::ExactlyOnce, None);
        let c = Subscription {
            retain_as_published: true,
            ..subscription(&session, QoS::AtMostOnce, Some(3))
        };
        let message_arc = Arc::new(message.clone());
        let one = one_delivery(&message_arc, [&a, &b].into_iter()).unwrap();
        assert_eq!((one.qos, one.retain), (QoS::AtLeastOnce, false));
        assert_eq!(one.subscription_ids.as_slice(), [1]);
        let one = one_delivery(&message_arc, [&a, &b, &c].into_iter()).unwrap();
        assert_eq!((one.qos, one.retain), (QoS::AtLeastOnce, true));
        assert_eq!(one.subscription_ids.as_slice(), [1, 3]);

        message.origin = Some(Arc::from("c"));
        let own = Arc::new(message);
        let no_local = Subscription {
            no_local: true,
            ..subscription(&session, QoS::ExactlyOnce, Some(9))
        };
        let one = one_delivery(&own, [&no_local, &a].into_iter()).unwrap();
        assert_eq!(one.qos, QoS::AtMostOnce, "the No Local one does not count");
        assert_eq!(one.subscription_ids.as_slice(), [1]);
        assert!(one_delivery(&own, [&no_local].into_iter()).is_none());
    }
}
