//! A client's session: everything the spec says survives a reconnect, and everything a
//! connection needs to resume.
//!
//! The session, not the connection task, owns the protocol state (queued messages, in-flight
//! QoS 1/2 messages in both directions, packet identifiers, subscriptions, a pending will).
//! A connection only borrows it while it is the session's owner. So a takeover or a
//! reconnect is simply a new connection becoming the owner: nothing has to be handed over,
//! and nothing acknowledged can be lost in between.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use parking_lot::Mutex;
use protocol::{
    encode, encode_publish, publish_size, Ack, Packet, Properties, ProtocolVersion, PublishRef, QoS,
};
use tokio::sync::futures::Notified;
use tokio::sync::Notify;

use super::message::{unix_ms_now, Message};
use super::shared::SharedGroup;
use super::ConnectionInfo;
use crate::store::{Durability, Op, Store, SubRecord, SubscriptionIds};

/// Session expiry interval meaning "never expires" (MQTT 5.0 §3.1.2.11.2).
pub const NEVER_EXPIRES: u32 = u32::MAX;

/// A message waiting in a session's queue or in flight, with how it is delivered.
#[derive(Debug, Clone)]
pub struct Queued {
    pub message: Arc<Message>,
    pub qos: QoS,
    /// The RETAIN flag on delivery: set for retained messages sent on subscribe, and for
    /// live ones under "retain as published".
    pub retain: bool,
    /// The identifiers of the subscriptions it matched (5.0): one delivery per client
    /// carries them all (MQTT-3.3.4-4).
    pub subscription_ids: SubscriptionIds,
    /// The shared subscription group it came through, if any: such messages go to another
    /// member of the group when this client goes away before receiving them.
    pub shared: Option<Arc<SharedGroup>>,
    /// Position in the session's queue, assigned on delivery; the store's key for it.
    pub seq: u64,
}

/// Where an outgoing QoS 1/2 message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// PUBLISH sent (QoS 1 or 2), waiting for PUBACK or PUBREC.
    Published,
    /// PUBREL sent (QoS 2), waiting for PUBCOMP.
    Released,
}

#[derive(Debug, Clone)]
struct InFlight {
    pkid: u16,
    queued: Queued,
    stage: Stage,
    /// Still to be re-sent on the current connection (set when a session is resumed): the
    /// re-sends go out as the new connection's receive maximum allows, like new messages.
    resend: bool,
}

/// The connection currently driving a session.
#[derive(Debug, Clone)]
pub struct Owner {
    /// Who is connected, from where, speaking which version, with which limits.
    pub info: Arc<ConnectionInfo>,
    /// Tells the connection to end.
    pub kick: Arc<Kick>,
}

impl Owner {
    fn connection_id(&self) -> u64 {
        self.info.connection_id
    }
}

/// The signal that ends a connection from outside, with the reason it is given (an MQTT
/// 5.0 reason code, sent in a DISCONNECT to 5.0 clients).
///
/// It also carries the connection's keep-alive deadline, which the broker's one
/// keep-alive sweep checks ([`super::Broker::sweep_keep_alive`]): a timer per connection
/// would cost every idle connection its size, and every read a timer reset.
#[derive(Debug)]
pub struct Kick {
    notify: Notify,
    reason: AtomicU8,
    /// On the broker's clock ([`super::Broker::clock_ms`]): past this, the client has been
    /// silent too long. `u64::MAX`: no keep-alive.
    deadline_ms: AtomicU64,
}

impl Default for Kick {
    fn default() -> Kick {
        Kick {
            notify: Notify::new(),
            reason: AtomicU8::new(0),
            deadline_ms: AtomicU64::new(u64::MAX),
        }
    }
}

impl Kick {
    pub fn kick(&self, reason: u8) {
        self.reason.store(reason, Ordering::Relaxed);
        self.notify.notify_one();
    }

    /// Resolves once kicked; [`Self::reason`] then says why. A plain `Notified` rather than
    /// an `async fn`: it sits in every connection's task, so its size counts.
    pub fn kicked(&self) -> Notified<'_> {
        self.notify.notified()
    }

    /// The reason of the last kick.
    pub fn reason(&self) -> u8 {
        self.reason.load(Ordering::Relaxed)
    }

    /// Moves the keep-alive deadline (the client was heard from).
    pub fn set_deadline(&self, deadline_ms: u64) {
        self.deadline_ms.store(deadline_ms, Ordering::Relaxed);
    }

    /// Kicks with "keep alive timeout" if the deadline has passed (once).
    pub fn kick_if_silent(&self, now_ms: u64) {
        if now_ms > self.deadline_ms.load(Ordering::Relaxed) {
            self.deadline_ms.store(u64::MAX, Ordering::Relaxed);
            self.kick(protocol::reason::KEEP_ALIVE_TIMEOUT);
        }
    }
}

/// Outcome of routing one message to one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Queued,
    /// Queued after dropping this many older messages to make room (`drop_oldest`).
    QueuedDroppingOldest(u32),
    /// QoS 0 to an offline client: not kept, as Mosquitto does by default.
    Skipped,
    /// The queue was full: the message is dropped for this session.
    Dropped,
}

/// What one call of [`Session::write_queued`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// PUBLISH packets written.
    pub sent: usize,
    /// Messages dropped because the reader may no longer read their topic (the ACL changed
    /// since they were queued or first sent).
    pub not_authorized: usize,
    /// Messages dropped because they expired while queued.
    pub expired: usize,
    /// Messages dropped because they exceed the client's maximum packet size (or, near
    /// 256 MiB, what the encoding can carry once a delivery's additions are counted).
    pub too_large: usize,
}

/// Outgoing topic aliases of one connection (MQTT 5.0 §3.3.2.3.4): the first topics sent
/// get an alias each, up to the client's maximum; later sends of the same topic carry
/// only the alias.
#[derive(Debug, Default)]
pub struct TopicAliases {
    max: u16,
    /// Boxed, and only once an alias is given: most connections never have one, and this
    /// sits in every connection.
    assigned: Option<Box<AliasTable>>,
}

#[derive(Debug, Default)]
struct AliasTable {
    by_topic: HashMap<String, u16>,
    /// Bytes of the topics in `by_topic`.
    bytes: usize,
}

/// Topics shorter than this never get an outbound alias: the alias property (3 bytes, a
/// fourth if the property length grows) would save nothing, and could make a packet that
/// fits the client's maximum too large.
const MIN_ALIASED_TOPIC: usize = 4;

/// Topic bytes one connection may keep for outbound aliases.
const ALIASED_BYTES: usize = 64 * 1024;

impl TopicAliases {
    pub fn new(max: u16) -> TopicAliases {
        TopicAliases {
            max,
            assigned: None,
        }
    }

    /// The alias already given to `topic`, if any.
    fn lookup(&self, topic: &str) -> Option<u16> {
        self.assigned.as_ref()?.by_topic.get(topic).copied()
    }

    /// Takes back the alias just given to `topic` (the PUBLISH defining it was not sent):
    /// the last one given, so the next `assign` gives its number again.
    fn unassign(&mut self, topic: &str) {
        if let Some(table) = self.assigned.as_mut() {
            if table.by_topic.remove(topic).is_some() {
                table.bytes -= topic.len();
            }
        }
    }

    /// Gives `topic` the next free alias, if any is left and the topics kept stay within
    /// [`ALIASED_BYTES`].
    fn assign(&mut self, topic: &str) -> Option<u16> {
        if self.max == 0 {
            return None;
        }
        let table = self.assigned.get_or_insert_default();
        debug_assert!(
            !table.by_topic.contains_key(topic),
            "{topic:?} has an alias"
        );
        let next = table.by_topic.len() + 1;
        if next > usize::from(self.max) || table.bytes + topic.len() > ALIASED_BYTES {
            return None;
        }
        table.bytes += topic.len();
        let alias = next as u16;
        table.by_topic.insert(topic.to_owned(), alias);
        Some(alias)
    }
}

#[derive(Debug, Default)]
struct State {
    owner: Option<Owner>,
    /// Bumped each time a connection takes the session: timers armed for one absence
    /// (will delay, session expiry) check it is still the same absence.
    generation: u64,
    /// Session expiry interval in seconds: 0 ends the session with its connection.
    expiry: u32,
    /// Filter (as subscribed, `$share/...` included) → options (granted QoS first).
    subscriptions: HashMap<String, SubRecord>,
    /// The next queue position.
    next_seq: u64,
    queue: VecDeque<Queued>,
    /// Topic and payload bytes held in `queue`.
    queued_bytes: usize,
    /// Outgoing QoS 1/2 messages in the order they were first sent.
    in_flight: VecDeque<InFlight>,
    /// Incoming QoS 2 packet identifiers that got a PUBREC and wait for a PUBREL:
    /// a duplicate PUBLISH with one of these is not routed again (exactly once).
    incoming_qos2: HashSet<u16>,
    next_pkid: u16,
    /// A will waiting out its delay interval (5.0); cancelled by a reconnect.
    /// Boxed: rare, and a message with its properties is large.
    pending_will: Option<Box<Message>>,
    /// The user name of the last connection, kept for access checks while offline.
    username: Option<String>,
    /// The last connection that drove the session, kept for listings while offline.
    last_connection: Option<Arc<ConnectionInfo>>,
}

/// Session limits, from the broker settings, and the queue budget all sessions share.
#[derive(Debug)]
pub struct Limits {
    pub max_inflight: usize,
    pub max_queued: usize,
    pub max_queued_bytes: usize,
    pub policy: super::QueuePolicy,
    pub queue_qos0_offline: bool,
    pub budget: QueueBudget,
}

/// The bytes (topic + payload) queued in all sessions together, and their broker-wide
/// limit (`max_queued_bytes_total`): per-session limits alone let N slow or offline
/// sessions hold N times theirs, and the queues live in memory.
///
/// Every session adds what it queues and gives back what leaves its queue (sent, dropped,
/// expired, taken by another member, or the session ended or dropped), so `used` is
/// always the sum of the sessions' `queued_bytes`.
#[derive(Debug)]
pub struct QueueBudget {
    /// 0: no limit (the bytes are still counted).
    cap: usize,
    used: AtomicUsize,
}

impl QueueBudget {
    pub fn new(cap: usize) -> QueueBudget {
        QueueBudget {
            cap,
            used: AtomicUsize::new(0),
        }
    }

    /// Takes `n` bytes if they fit under the limit. One atomic add on the way that
    /// succeeds: this is on every delivery's path.
    fn try_take(&self, n: usize) -> bool {
        let before = self.used.fetch_add(n, Ordering::Relaxed);
        if self.cap != 0 && before + n > self.cap {
            self.used.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Takes `n` bytes even past the limit: messages restored from the store were
    /// accepted before the restart and are kept.
    fn take(&self, n: usize) {
        self.used.fetch_add(n, Ordering::Relaxed);
    }

    fn give_back(&self, n: usize) {
        if n > 0 {
            self.used.fetch_sub(n, Ordering::Relaxed);
        }
    }

    /// Bytes queued in all sessions now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// One client's session. Shared by the registry, the router (one `Arc` per subscription)
/// and the connection that owns it.
#[derive(Debug)]
pub struct Session {
    pub client_id: Arc<str>,
    /// Shared with every session (the broker's settings).
    limits: Arc<Limits>,
    /// Where the session is kept while its expiry is above 0 (none: not persisted).
    store: Option<Arc<Store>>,
    state: Mutex<State>,
    /// Wakes the owning connection when there is something to send.
    wake: Notify,
    dropped: AtomicU64,
}

impl Session {
    pub fn new(
        client_id: Arc<str>,
        expiry: u32,
        limits: Arc<Limits>,
        store: Option<Arc<Store>>,
    ) -> Session {
        Session {
            client_id,
            limits,
            store,
            state: Mutex::new(State {
                next_pkid: 1,
                expiry,
                ..State::default()
            }),
            wake: Notify::new(),
            dropped: AtomicU64::new(0),
        }
    }

    /// Session expiry interval in seconds (0: ends with the connection).
    pub fn expiry(&self) -> u32 {
        self.state.lock().expiry
    }

    /// Sets the expiry interval. A session that becomes persistent is written to the
    /// store whole; one that stops being persistent is removed from it.
    pub fn set_expiry(&self, expiry: u32, durability: &Durability) {
        let mut state = self.state.lock();
        let was = state.expiry;
        state.expiry = expiry;
        let Some(store) = &self.store else {
            return;
        };
        match (was > 0, expiry > 0) {
            (_, true) => {
                self.put_session(store, &state, None, durability);
                if was == 0 {
                    for (filter, record) in &state.subscriptions {
                        store.submit(
                            Op::SubPut {
                                client: self.client_id.clone(),
                                filter: filter.clone(),
                                record: *record,
                            },
                            durability,
                        );
                    }
                    for queued in state.queue.iter() {
                        self.put_entry(store, queued, durability);
                    }
                    for entry in &state.in_flight {
                        self.put_entry(store, &entry.queued, durability);
                        self.stage_entry(store, entry, durability);
                    }
                    for pkid in &state.incoming_qos2 {
                        store.submit(
                            Op::Qos2Put {
                                client: self.client_id.clone(),
                                pkid: *pkid,
                            },
                            durability,
                        );
                    }
                }
            }
            (true, false) => {
                store.submit(
                    Op::SessionDelete {
                        client: self.client_id.clone(),
                    },
                    durability,
                );
            }
            (false, false) => {}
        }
    }

    /// The store, if this session is persisted now.
    fn persisted<'a>(&'a self, state: &State) -> Option<&'a Arc<Store>> {
        self.store.as_ref().filter(|_| state.expiry > 0)
    }

    fn put_session(
        &self,
        store: &Store,
        state: &State,
        disconnected_at: Option<u64>,
        durability: &Durability,
    ) {
        store.submit(
            Op::SessionPut {
                client: self.client_id.clone(),
                expiry: state.expiry,
                disconnected_at,
                username: state.username.clone(),
            },
            durability,
        );
    }

    fn put_entry(&self, store: &Store, queued: &Queued, durability: &Durability) {
        let message_id = queued.message.store_in(store, durability);
        store.submit(
            Op::QueuePut {
                client: self.client_id.clone(),
                seq: queued.seq,
                message_id,
                qos: queued.qos as u8,
                retain: queued.retain,
                subscription_ids: queued.subscription_ids.clone(),
            },
            durability,
        );
    }

    fn stage_entry(&self, store: &Store, entry: &InFlight, durability: &Durability) {
        store.submit(
            Op::QueueStage {
                client: self.client_id.clone(),
                seq: entry.queued.seq,
                pkid: entry.pkid,
                stage: match entry.stage {
                    Stage::Published => 1,
                    Stage::Released => 2,
                },
            },
            durability,
        );
    }

    fn delete_entry(&self, store: &Store, seq: u64, durability: &Durability) {
        store.submit(
            Op::QueueDelete {
                client: self.client_id.clone(),
                seq,
            },
            durability,
        );
    }

    /// Makes `owner` the session's connection; returns the one it replaces, to be kicked,
    /// and cancels a pending will (the client is back in time, MQTT-3.1.3-9).
    pub fn take_ownership(&self, owner: Owner, durability: &Durability) -> Option<Owner> {
        let mut state = self.state.lock();
        state.generation += 1;
        let had_will = state.pending_will.take().is_some();
        state.username = owner.info.username.clone();
        state.last_connection = Some(owner.info.clone());
        if let Some(store) = self.persisted(&state) {
            if had_will {
                store.submit(
                    Op::WillDelete {
                        client: self.client_id.clone(),
                    },
                    durability,
                );
            }
            self.put_session(store, &state, None, durability);
        }
        state.owner.replace(owner)
    }

    /// Whether `connection_id` still owns the session.
    pub fn is_owned_by(&self, connection_id: u64) -> bool {
        self.state.lock().is_owned_by(connection_id)
    }

    /// Gives up ownership if `connection_id` still has it, leaving `will` pending if given.
    /// Returns the generation of the absence that begins, or `None` if it was not the owner.
    pub fn release(
        &self,
        connection_id: u64,
        will: Option<(Message, u32)>,
        durability: &Durability,
    ) -> Option<u64> {
        let mut state = self.state.lock();
        if !state.is_owned_by(connection_id) {
            return None;
        }
        state.owner = None;
        if let Some(store) = self.persisted(&state) {
            self.put_session(store, &state, Some(unix_ms_now()), durability);
            if let Some((will, delay)) = &will {
                store.submit(
                    Op::WillPut {
                        client: self.client_id.clone(),
                        fire_at: unix_ms_now() + u64::from(*delay) * 1000,
                        bytes: crate::store::encode_message(&will.to_record()),
                    },
                    durability,
                );
            }
        }
        state.pending_will = will.map(|(will, _)| Box::new(will));
        Some(state.generation)
    }

    /// The pending will, if the session has stayed offline since `generation` began.
    pub fn take_pending_will(&self, generation: u64, durability: &Durability) -> Option<Message> {
        let mut state = self.state.lock();
        if state.generation == generation && state.owner.is_none() {
            let will = state.pending_will.take().map(|will| *will);
            if let (Some(store), true) = (self.persisted(&state), will.is_some()) {
                store.submit(
                    Op::WillDelete {
                        client: self.client_id.clone(),
                    },
                    durability,
                );
            }
            will
        } else {
            None
        }
    }

    /// Whether the session is still offline since `generation` began.
    pub fn offline_since(&self, generation: u64) -> bool {
        let state = self.state.lock();
        state.generation == generation && state.owner.is_none()
    }

    /// The owner's kick signal, leaving it the owner (it releases the session itself).
    pub fn owner_kick(&self) -> Option<Arc<Kick>> {
        self.state.lock().owner.as_ref().map(|o| o.kick.clone())
    }

    /// Takes the owner away (session discarded); returns it, to be kicked.
    pub fn evict(&self) -> Option<Owner> {
        self.state.lock().owner.take()
    }

    /// Ends the session's life: returns its pending will, to be published now.
    pub fn end(&self, durability: &Durability) -> Option<Message> {
        let mut state = self.state.lock();
        state.queue.clear();
        self.limits
            .budget
            .give_back(std::mem::take(&mut state.queued_bytes));
        state.in_flight.clear();
        if let Some(store) = self.persisted(&state) {
            store.submit(
                Op::SessionDelete {
                    client: self.client_id.clone(),
                },
                durability,
            );
        }
        state.pending_will.take().map(|will| *will)
    }

    /// Resolves when something was queued for the owner since it last looked. A plain
    /// `Notified`, as [`Kick::kicked`].
    pub fn wait_for_mail(&self) -> Notified<'_> {
        self.wake.notified()
    }

    /// Kicks the owner if its keep-alive ran out.
    pub fn check_keep_alive(&self, now_ms: u64) {
        if let Some(owner) = &self.state.lock().owner {
            owner.kick.kick_if_silent(now_ms);
        }
    }

    /// Whether a connection is driving the session now.
    pub fn is_online(&self) -> bool {
        self.state.lock().owner.is_some()
    }

    /// Queues a message for delivery (its QoS is already the lower of the publish and the
    /// subscription QoS). Called by whichever task published it.
    pub fn deliver(&self, mut queued: Queued, durability: &Durability) -> Delivery {
        let mut state = self.state.lock();
        if state.owner.is_none() && queued.qos == QoS::AtMostOnce && !self.limits.queue_qos0_offline
        {
            return Delivery::Skipped;
        }
        let size = queued_size(&queued);
        let mut evicted = 0u32;
        // Room in this session's queue, then in the broker-wide budget; when either is
        // full, the policy decides for this session (dropping its oldest makes room in both).
        while state.queue.len() >= self.limits.max_queued
            || state.queued_bytes + size > self.limits.max_queued_bytes
            || !self.limits.budget.try_take(size)
        {
            let oldest = match self.limits.policy {
                super::QueuePolicy::DropOldest => state.queue.pop_front(),
                super::QueuePolicy::Disconnect => {
                    if let Some(owner) = &state.owner {
                        owner.kick.kick(protocol::reason::QUOTA_EXCEEDED);
                    }
                    None
                }
                super::QueuePolicy::DropNewest => None,
            };
            let Some(oldest) = oldest else {
                drop(state);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return Delivery::Dropped;
            };
            let oldest_size = queued_size(&oldest);
            evicted += 1;
            state.queued_bytes -= oldest_size;
            self.limits.budget.give_back(oldest_size);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            if let (Some(store), true) = (self.persisted(&state), oldest.qos != QoS::AtMostOnce) {
                self.delete_entry(store, oldest.seq, durability);
            }
        }
        state.queued_bytes += size;
        queued.seq = state.next_seq;
        state.next_seq += 1;
        if let (Some(store), true) = (self.persisted(&state), queued.qos != QoS::AtMostOnce) {
            self.put_entry(store, &queued, durability);
        }
        state.queue.push_back(queued);
        let online = state.owner.is_some();
        drop(state);
        if online {
            self.wake.notify_one();
        }
        match evicted {
            0 => Delivery::Queued,
            n => Delivery::QueuedDroppingOldest(n),
        }
    }

    /// Puts back a session read from the store (without writing it again): subscriptions,
    /// queued entries (with their packet id and stage if they were in flight) and incoming
    /// QoS 2 identifiers.
    pub fn restore(
        &self,
        username: Option<String>,
        subscriptions: Vec<(String, SubRecord)>,
        entries: Vec<(Queued, u16, u8)>,
        incoming_qos2: Vec<u16>,
    ) {
        let mut state = self.state.lock();
        state.username = username;
        state.subscriptions = subscriptions.into_iter().collect();
        for (queued, pkid, stage) in entries {
            state.next_seq = state.next_seq.max(queued.seq + 1);
            match stage {
                0 => {
                    let size = queued_size(&queued);
                    state.queued_bytes += size;
                    self.limits.budget.take(size);
                    state.queue.push_back(queued);
                }
                _ => {
                    state.next_pkid = pkid.wrapping_add(1).max(1);
                    state.in_flight.push_back(InFlight {
                        pkid,
                        queued,
                        stage: if stage == 2 {
                            Stage::Released
                        } else {
                            Stage::Published
                        },
                        resend: true,
                    });
                }
            }
        }
        state.incoming_qos2 = incoming_qos2.into_iter().collect();
    }

    /// Restores a pending will read from the store.
    pub fn restore_will(&self, will: Message) -> u64 {
        let mut state = self.state.lock();
        state.pending_will = Some(Box::new(will));
        state.generation
    }

    /// The user name the session's client last connected with.
    pub fn username(&self) -> Option<String> {
        self.state.lock().username.clone()
    }

    /// The last connection that drove the session (the current one while online).
    pub fn last_connection(&self) -> Option<Arc<ConnectionInfo>> {
        self.state.lock().last_connection.clone()
    }

    /// The connection driving the session, if it is online.
    pub fn connection(&self) -> Option<Arc<ConnectionInfo>> {
        self.state.lock().owner.as_ref().map(|o| o.info.clone())
    }

    /// Messages dropped because the queue was full, since the session began.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Queued messages and in-flight ones, for listings.
    pub fn backlog(&self) -> (usize, usize) {
        let state = self.state.lock();
        (state.queue.len(), state.in_flight.len())
    }

    pub fn add_subscription(&self, filter: &str, record: SubRecord, durability: &Durability) {
        let mut state = self.state.lock();
        if let Some(store) = self.persisted(&state) {
            store.submit(
                Op::SubPut {
                    client: self.client_id.clone(),
                    filter: filter.to_owned(),
                    record,
                },
                durability,
            );
        }
        state.subscriptions.insert(filter.to_owned(), record);
    }

    pub fn remove_subscription(&self, filter: &str, durability: &Durability) -> bool {
        let mut state = self.state.lock();
        let removed = state.subscriptions.remove(filter).is_some();
        if let (Some(store), true) = (self.persisted(&state), removed) {
            store.submit(
                Op::SubDelete {
                    client: self.client_id.clone(),
                    filter: filter.to_owned(),
                },
                durability,
            );
        }
        removed
    }

    /// Every subscription: its filter and options (granted QoS, the 5.0 options and
    /// subscription identifier).
    pub fn subscriptions(&self) -> Vec<(String, SubRecord)> {
        let state = self.state.lock();
        state
            .subscriptions
            .iter()
            .map(|(filter, record)| (filter.clone(), *record))
            .collect()
    }

    /// How many subscriptions the session has.
    pub fn subscription_count(&self) -> usize {
        self.state.lock().subscriptions.len()
    }

    /// Whether the session has a subscription to exactly `filter`.
    pub fn has_subscription(&self, filter: &str) -> bool {
        self.state.lock().subscriptions.contains_key(filter)
    }

    /// Takes the messages that came through shared subscriptions and that this client has
    /// not received: everything still queued, and QoS 1 messages in flight. QoS 2 messages
    /// in flight stay: their delivery must be completed to this client (MQTT-4.8.2-4).
    pub fn take_shared_backlog(&self, durability: &Durability) -> Vec<Queued> {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let mut taken = Vec::new();
        let mut taken_bytes = 0;
        state.queue.retain(|q| {
            if q.shared.is_some() {
                taken_bytes += queued_size(q);
                taken.push(q.clone());
                false
            } else {
                true
            }
        });
        state.queued_bytes -= taken_bytes;
        self.limits.budget.give_back(taken_bytes);
        state.in_flight.retain(|f| {
            if f.queued.shared.is_some() && f.queued.qos == QoS::AtLeastOnce {
                taken.push(f.queued.clone());
                false
            } else {
                true
            }
        });
        if let Some(store) = self.store.as_ref().filter(|_| state.expiry > 0) {
            for queued in &taken {
                if queued.qos != QoS::AtMostOnce {
                    self.delete_entry(store, queued.seq, durability);
                }
            }
        }
        taken
    }

    /// On resuming a session: every unacknowledged PUBLISH (with DUP) and PUBREL is to be
    /// re-sent with its original packet identifier, in the original order (MQTT-4.4.0-1).
    /// [`Session::write_queued`] sends them first, within the new connection's limits.
    pub fn mark_for_resend(&self, connection_id: u64) {
        let mut state = self.state.lock();
        if state.is_owned_by(connection_id) {
            for entry in state.in_flight.iter_mut() {
                entry.resend = true;
            }
        }
    }

    /// Re-sends what [`Session::mark_for_resend`] marked, then moves queued messages into
    /// `out`, while the in-flight window (the lower of our limit and the client's receive
    /// maximum, counting only what this connection was sent) has room and `out` is below
    /// `max_bytes`. Drops messages that expired or that exceed the client's maximum packet
    /// size (a re-send too: "as if it had been sent", MQTT-3.1.2-25) or what the encoding
    /// can carry. Every PUBLISH, re-sent ones too, passes `may_read` (the reader's ACL at
    /// this moment, `None` when no rule can refuse a read) or is dropped. Does nothing unless
    /// `connection_id` owns the session.
    pub fn write_queued(
        &self,
        connection_id: u64,
        out: &mut BytesMut,
        max_bytes: usize,
        aliases: &mut TopicAliases,
        may_read: Option<&dyn Fn(&str) -> bool>,
        durability: &Durability,
    ) -> Written {
        let unreadable = |queued: &Queued| may_read.is_some_and(|may| !may(&queued.message.topic));
        let mut state = self.state.lock();
        let mut written = Written::default();
        let Some(info) = state.info_for(connection_id) else {
            return written;
        };
        let window = self
            .limits
            .max_inflight
            .min(usize::from(info.receive_maximum));
        let now = Instant::now();
        let mut in_window = state.in_flight.iter().filter(|e| !e.resend).count();
        let mut index = 0;
        while index < state.in_flight.len() && in_window < window && out.len() < max_bytes {
            let entry = &state.in_flight[index];
            if !entry.resend {
                index += 1;
                continue;
            }
            let properties = match entry.stage {
                Stage::Published => delivery_properties(&entry.queued, &info, now),
                Stage::Released => None,
            };
            if entry.stage == Stage::Published && unreadable(&entry.queued) {
                let dropped = state.in_flight.remove(index).expect("index in range");
                written.not_authorized += 1;
                self.forget(&state, Some(dropped.queued.seq));
                continue;
            }
            if entry.stage == Stage::Published && !fits(&entry.queued, &info, properties.as_ref()) {
                let dropped = state.in_flight.remove(index).expect("index in range");
                written.too_large += 1;
                self.forget(&state, Some(dropped.queued.seq));
                continue;
            }
            let entry = &mut state.in_flight[index];
            entry.resend = false;
            match entry.stage {
                Stage::Published => {
                    let entry = &state.in_flight[index];
                    let pkid = entry.pkid;
                    if !write_publish(out, &entry.queued, pkid, true, &info, aliases, properties) {
                        let dropped = state.in_flight.remove(index).expect("index in range");
                        written.too_large += 1;
                        self.forget(&state, Some(dropped.queued.seq));
                        continue;
                    }
                    written.sent += 1;
                }
                Stage::Released => write_packet(out, &Packet::PubRel(Ack::new(entry.pkid)), &info),
            }
            in_window += 1;
            index += 1;
        }
        if state.in_flight.iter().any(|e| e.resend) {
            // Re-sends come before anything new.
            return written;
        }
        // What leaves the queue goes back to the budget in one step, not one per message.
        let queued_before = state.queued_bytes;
        while out.len() < max_bytes {
            let Some(front) = state.queue.front() else {
                break;
            };
            let properties = delivery_properties(front, &info, now);
            let not_authorized = unreadable(front);
            if not_authorized
                || front.message.is_expired(now)
                || !fits(front, &info, properties.as_ref())
            {
                let dropped = state.queue.pop_front().expect("front exists");
                state.queued_bytes -= queued_size(&dropped);
                if not_authorized {
                    written.not_authorized += 1;
                } else if dropped.message.is_expired(now) {
                    written.expired += 1;
                } else {
                    written.too_large += 1;
                }
                if let (Some(store), true) =
                    (self.persisted(&state), dropped.qos != QoS::AtMostOnce)
                {
                    self.delete_entry(store, dropped.seq, durability);
                }
                continue;
            }
            if front.qos == QoS::AtMostOnce {
                let queued = state.queue.pop_front().expect("front exists");
                state.queued_bytes -= queued_size(&queued);
                if !write_publish(out, &queued, 0, false, &info, aliases, properties) {
                    written.too_large += 1;
                    continue;
                }
            } else {
                if in_window >= window {
                    break;
                }
                let queued = state.queue.pop_front().expect("front exists");
                state.queued_bytes -= queued_size(&queued);
                let pkid = state.allocate_pkid();
                if !write_publish(out, &queued, pkid, false, &info, aliases, properties) {
                    written.too_large += 1;
                    if let Some(store) = self.persisted(&state) {
                        self.delete_entry(store, queued.seq, durability);
                    }
                    continue;
                }
                let entry = InFlight {
                    pkid,
                    queued,
                    stage: Stage::Published,
                    resend: false,
                };
                in_window += 1;
                if let Some(store) = self.persisted(&state) {
                    // QoS 2: durable before the PUBLISH leaves (the connection waits for
                    // it): a restart must re-send it with this identifier and DUP, never
                    // as new, or the client could take it twice. QoS 1 may arrive twice
                    // (MQTT 4.3.2), and the message itself is durable already (its queue
                    // entry was, before the publisher's PUBACK): if the staging is lost, a
                    // restart sends it again as new, which QoS 1 allows. So a persistent
                    // QoS 1 delivery waits for one commit, not two. (This relies on the
                    // writer committing operations whole and in sequence order: a later
                    // wait covers every earlier write. A message queued by work nobody
                    // waited for, such as a will fired by a timer, may then go out before
                    // its queue entry is durable: after a crash, a QoS 1 duplicate at most.)
                    let unwaited = Durability::unwaited();
                    let wait = if entry.queued.qos == QoS::ExactlyOnce {
                        durability
                    } else {
                        &unwaited
                    };
                    self.stage_entry(store, &entry, wait);
                }
                state.in_flight.push_back(entry);
            }
            written.sent += 1;
        }
        self.limits
            .budget
            .give_back(queued_before - state.queued_bytes);
        written
    }

    /// PUBACK from the client: the QoS 1 message is done. `Ok(false)` for an identifier
    /// with nothing in flight (an unsolicited ack, ignored); `Err` when the identifier is a
    /// QoS 2 delivery, which PUBACK does not answer (MQTT-4.3.3).
    pub fn on_puback(&self, pkid: u16) -> Result<bool, WrongAck> {
        let mut state = self.state.lock();
        let Some(index) = state.in_flight_index(pkid) else {
            return Ok(false);
        };
        let entry = &state.in_flight[index];
        if entry.queued.qos != QoS::AtLeastOnce {
            return Err(WrongAck::of(entry));
        }
        let seq = state.in_flight.remove(index).map(|e| e.queued.seq);
        Ok(self.forget(&state, seq))
    }

    /// Removes a completed entry from the store.
    /// Removes a finished (or dropped) entry from the store. Nobody waits for that: if the
    /// delete is lost, a restart delivers the message again, which is a re-send its QoS
    /// allows (QoS 1), or one the client answers without a second delivery (a QoS 2 PUBREL
    /// or PUBLISH with DUP for an identifier it completed).
    fn forget(&self, state: &State, removed: Option<u64>) -> bool {
        if let (Some(store), Some(seq)) = (self.persisted(state), removed) {
            self.delete_entry(store, seq, &Durability::unwaited());
        }
        removed.is_some()
    }

    /// PUBREC from the client: answer with PUBREL and wait for PUBCOMP. A PUBREC for an
    /// identifier already released is answered again (the client may have lost our PUBREL);
    /// an unknown one gets PUBREL "packet identifier not found" (5.0). `Err` when the
    /// identifier is a QoS 1 delivery, which PUBREC does not answer (MQTT-4.3.2).
    pub fn on_pubrec(
        &self,
        pkid: u16,
        failed: bool,
        out: &mut BytesMut,
        durability: &Durability,
    ) -> Result<(), WrongAck> {
        let mut state = self.state.lock();
        let Some(owner) = state.owner.clone() else {
            return Ok(());
        };
        match state.in_flight_index(pkid) {
            Some(index) if state.in_flight[index].queued.qos != QoS::ExactlyOnce => {
                return Err(WrongAck::of(&state.in_flight[index]));
            }
            // A PUBREC with an error reason ends the exchange (MQTT 5.0 §4.3.3).
            Some(index) if failed => {
                let seq = state.in_flight.remove(index).map(|e| e.queued.seq);
                self.forget(&state, seq);
            }
            Some(index) => {
                state.in_flight[index].stage = Stage::Released;
                if let Some(store) = self.persisted(&state) {
                    self.stage_entry(store, &state.in_flight[index], durability);
                }
                write_packet(out, &Packet::PubRel(Ack::new(pkid)), &owner.info);
            }
            None => write_packet(
                out,
                &Packet::PubRel(Ack::with_reason(
                    pkid,
                    protocol::reason::PACKET_IDENTIFIER_NOT_FOUND,
                )),
                &owner.info,
            ),
        }
        Ok(())
    }

    /// PUBCOMP from the client: the QoS 2 message is done. `Ok(false)` for an identifier
    /// with nothing in flight; `Err` when it is a QoS 1 delivery, or a QoS 2 one whose
    /// PUBREC has not come yet (MQTT-4.3.3: PUBCOMP answers PUBREL).
    pub fn on_pubcomp(&self, pkid: u16) -> Result<bool, WrongAck> {
        let mut state = self.state.lock();
        let Some(index) = state.in_flight_index(pkid) else {
            return Ok(false);
        };
        let entry = &state.in_flight[index];
        if entry.queued.qos != QoS::ExactlyOnce || entry.stage != Stage::Released {
            return Err(WrongAck::of(entry));
        }
        let seq = state.in_flight.remove(index).map(|e| e.queued.seq);
        Ok(self.forget(&state, seq))
    }

    /// Incoming QoS 2 PUBLISH: returns true the first time `pkid` is seen (route it), false
    /// for a duplicate still waiting for its PUBREL (do not route it again).
    pub fn begin_incoming_qos2(&self, pkid: u16, durability: &Durability) -> bool {
        let mut state = self.state.lock();
        let new = state.incoming_qos2.insert(pkid);
        if let (Some(store), true) = (self.persisted(&state), new) {
            store.submit(
                Op::Qos2Put {
                    client: self.client_id.clone(),
                    pkid,
                },
                durability,
            );
        }
        new
    }

    /// Incoming QoS 2 exchanges waiting for their PUBREL.
    pub fn incoming_qos2_pending(&self) -> usize {
        self.state.lock().incoming_qos2.len()
    }

    /// PUBREL from the client: the identifier is free again. False if it was unknown.
    pub fn complete_incoming_qos2(&self, pkid: u16, durability: &Durability) -> bool {
        let mut state = self.state.lock();
        let known = state.incoming_qos2.remove(&pkid);
        if let (Some(store), true) = (self.persisted(&state), known) {
            store.submit(
                Op::Qos2Delete {
                    client: self.client_id.clone(),
                    pkid,
                },
                durability,
            );
        }
        known
    }
}

impl State {
    fn is_owned_by(&self, connection_id: u64) -> bool {
        self.owner.as_ref().map(Owner::connection_id) == Some(connection_id)
    }

    /// The owner's connection info, if `connection_id` is the owner.
    fn info_for(&self, connection_id: u64) -> Option<Arc<ConnectionInfo>> {
        self.owner
            .as_ref()
            .filter(|o| o.connection_id() == connection_id)
            .map(|o| o.info.clone())
    }

    /// The next packet identifier not in flight. The window is far smaller than 65535, so
    /// this always finds one quickly.
    fn allocate_pkid(&mut self) -> u16 {
        loop {
            let pkid = self.next_pkid;
            self.next_pkid = if pkid == u16::MAX { 1 } else { pkid + 1 };
            if !self.in_flight.iter().any(|e| e.pkid == pkid) {
                return pkid;
            }
        }
    }

    /// Where the outgoing message with packet identifier `pkid` is in the in-flight list.
    fn in_flight_index(&self, pkid: u16) -> Option<usize> {
        self.in_flight.iter().position(|e| e.pkid == pkid)
    }
}

/// An acknowledgement that does not fit the exchange in flight with its packet identifier
/// (a PUBREC for a QoS 1 delivery, a PUBACK after PUBREC ...): a protocol error that ends
/// the connection (MQTT-4.3.2, MQTT-4.3.3). Says what the identifier was waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("packet identifier {pkid} is a QoS {qos} delivery waiting for {expected}")]
pub struct WrongAck {
    pub pkid: u16,
    pub qos: u8,
    pub expected: &'static str,
}

impl WrongAck {
    fn of(entry: &InFlight) -> WrongAck {
        WrongAck {
            pkid: entry.pkid,
            qos: entry.queued.qos as u8,
            expected: match (entry.queued.qos, entry.stage) {
                (QoS::ExactlyOnce, Stage::Published) => "PUBREC",
                (QoS::ExactlyOnce, Stage::Released) => "PUBCOMP",
                _ => "PUBACK",
            },
        }
    }
}

impl Drop for Session {
    /// A session discarded with messages still queued (ended by expiry, replaced by a
    /// clean start) gives their bytes back to the broker-wide budget.
    fn drop(&mut self) {
        self.limits
            .budget
            .give_back(self.state.get_mut().queued_bytes);
    }
}

/// What a queued message counts against `max_queued_bytes` (and the broker-wide budget):
/// its topic and payload, and the subscription identifiers it carries beyond the one held
/// inline. Those are the client's to multiply (one per overlapping subscription), so they
/// must not escape the limits.
fn queued_size(queued: &Queued) -> usize {
    queued.message.topic.len() + queued.message.payload.len() + queued.subscription_ids.heap_bytes()
}

/// Properties of messages that carry none, to 3.1.1 clients or without 5.0 extras.
static NO_PROPERTIES: Properties = Properties::EMPTY;

/// The properties a 5.0 subscriber gets with this delivery: the message's own, the
/// subscription identifier, and the expiry interval reduced by the time spent waiting.
/// None for a 3.1.1 subscriber, and for a message with nothing to add. Built once per
/// delivery: the size check and the encoding share it.
fn delivery_properties(queued: &Queued, info: &ConnectionInfo, now: Instant) -> Option<Properties> {
    if info.version != ProtocolVersion::V5 {
        return None;
    }
    let message = &queued.message;
    if message.properties.is_empty()
        && queued.subscription_ids.is_empty()
        && message.expires_at.is_none()
    {
        return None;
    }
    let mut properties = message.properties.clone();
    properties.subscription_identifiers = queued.subscription_ids.as_slice().to_vec();
    properties.message_expiry_interval = message.remaining_expiry(now);
    Some(properties)
}

/// Whether the delivery, with its `properties` ([`delivery_properties`]), fits the
/// client's maximum packet size (5.0; MQTT-3.1.2-25).
fn fits(queued: &Queued, info: &ConnectionInfo, properties: Option<&Properties>) -> bool {
    if info.version != ProtocolVersion::V5 || info.max_packet_size == u32::MAX {
        return true;
    }
    let size = publish_size(
        &PublishRef {
            dup: false,
            qos: queued.qos,
            retain: queued.retain,
            topic: &queued.message.topic,
            pkid: 1,
            payload: &queued.message.payload,
            properties: properties.unwrap_or(&NO_PROPERTIES),
        },
        info.version,
    );
    size <= info.max_packet_size as usize
}

/// Writes the PUBLISH of a delivery, with a topic alias where the client takes them. False
/// if it cannot be written: larger than the encoding allows, which a message that came in
/// near that size (a `max_packet_size` near 256 MiB) can be with the subscription
/// identifiers or the resolved topic alias a delivery adds. Nothing is left in `out` then.
#[must_use]
fn write_publish(
    out: &mut BytesMut,
    queued: &Queued,
    pkid: u16,
    dup: bool,
    info: &ConnectionInfo,
    aliases: &mut TopicAliases,
    mut properties: Option<Properties>,
) -> bool {
    let message = &queued.message;
    let mut topic: &str = &message.topic;
    let mut defined_alias = false;
    if info.version == ProtocolVersion::V5 && topic.len() >= MIN_ALIASED_TOPIC {
        if let Some(alias) = aliases.lookup(topic) {
            // The alias alone stands for the topic. Its property takes 3 bytes (4 if the
            // property length grows a byte), no more than the topic it replaces: the
            // packet does not grow, and so still fits (MQTT-3.1.2-24).
            properties
                .get_or_insert_with(Properties::default)
                .topic_alias = Some(alias);
            topic = "";
        } else if aliases.max > 0 {
            // Defining an alias adds its property: 3 bytes, a fourth if the property length
            // grows, a fifth if the remaining length does. Only if the packet still fits
            // the client's maximum (MQTT-3.1.2-24).
            let size = publish_size(
                &PublishRef {
                    dup,
                    qos: queued.qos,
                    retain: queued.retain,
                    topic,
                    pkid: 1,
                    payload: &message.payload,
                    properties: properties.as_ref().unwrap_or(&NO_PROPERTIES),
                },
                info.version,
            );
            if size + 5 <= info.max_packet_size as usize {
                if let Some(alias) = aliases.assign(&message.topic) {
                    properties
                        .get_or_insert_with(Properties::default)
                        .topic_alias = Some(alias);
                    defined_alias = true;
                }
            }
        }
    }
    let start = out.len();
    let result = encode_publish(
        PublishRef {
            dup,
            qos: queued.qos,
            retain: queued.retain,
            topic,
            pkid,
            payload: &message.payload,
            properties: properties.as_ref().unwrap_or(&NO_PROPERTIES),
        },
        info.version,
        out,
    );
    match result {
        Ok(()) => true,
        Err(_) => {
            out.truncate(start);
            if defined_alias {
                // The client never learnt it: the alias must not stand for the topic later.
                aliases.unassign(&message.topic);
            }
            false
        }
    }
}

fn write_packet(out: &mut BytesMut, packet: &Packet, info: &ConnectionInfo) {
    let result = encode(packet, info.version, out);
    debug_assert!(result.is_ok(), "{result:?}");
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::broker::{QueuePolicy, SharedGroup};

    const SIZE: usize = 10; // topic "t" + 9 payload bytes

    fn limits(total: usize) -> Arc<Limits> {
        Arc::new(Limits {
            max_inflight: 32,
            max_queued: 1000,
            max_queued_bytes: 1 << 20,
            policy: QueuePolicy::DropNewest,
            queue_qos0_offline: false,
            budget: QueueBudget::new(total),
        })
    }

    /// A QoS 1 message of [`SIZE`] bytes, through a shared group or not.
    fn queued(shared: Option<&Arc<SharedGroup>>) -> Queued {
        let message = Message::new(
            "t",
            Bytes::from_static(b"123456789"),
            QoS::AtLeastOnce,
            false,
        );
        Queued {
            message: Arc::new(message),
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: SubscriptionIds::new(),
            shared: shared.cloned(),
            seq: 0,
        }
    }

    /// An offline session (no store): QoS 1 messages wait in its queue.
    fn session(id: &str, limits: &Arc<Limits>) -> Session {
        Session::new(Arc::from(id), u32::MAX, limits.clone(), None)
    }

    /// The budget is the sum of what the sessions hold, whichever way messages leave:
    /// taken by another shared-group member, the session ended, or the session dropped.
    #[test]
    fn the_budget_follows_every_way_out_of_a_queue() {
        let limits = limits(0);
        let group = Arc::new(SharedGroup::new("g", "t"));
        let a = session("a", &limits);
        for shared in [None, Some(&group), None] {
            assert!(matches!(
                a.deliver(queued(shared), &Durability::unwaited()),
                Delivery::Queued
            ));
        }
        let b = session("b", &limits);
        for _ in 0..2 {
            assert!(matches!(
                b.deliver(queued(None), &Durability::unwaited()),
                Delivery::Queued
            ));
        }
        assert_eq!(limits.budget.used(), 5 * SIZE);
        assert_eq!(a.take_shared_backlog(&Durability::unwaited()).len(), 1);
        assert_eq!(limits.budget.used(), 4 * SIZE);
        assert!(a.end(&Durability::unwaited()).is_none());
        assert_eq!(limits.budget.used(), 2 * SIZE);
        drop(b);
        assert_eq!(limits.budget.used(), 0);
        // Ended, then dropped: nothing is given back twice.
        drop(a);
        assert_eq!(limits.budget.used(), 0);
    }

    /// `s` owned by connection 1, a 5.0 client that takes packets up to `max_packet_size`.
    fn owned_by_a_v5_client(s: &Session, max_packet_size: u32) {
        let info = Arc::new(ConnectionInfo {
            connection_id: 1,
            client_id: s.client_id.clone(),
            username: None,
            peer: "127.0.0.1:1".parse().unwrap(),
            transport: crate::connection::Transport::Tcp,
            version: ProtocolVersion::V5,
            keep_alive: 0,
            clean_start: true,
            connected_at: std::time::SystemTime::now(),
            receive_maximum: u16::MAX,
            max_packet_size,
            topic_alias_maximum: 10,
        });
        let kick = Arc::new(Kick::default());
        assert!(s
            .take_ownership(Owner { info, kick }, &Durability::unwaited())
            .is_none());
    }

    /// A session owned by connection 1, a 5.0 client, with a QoS 1 and a QoS 2 message
    /// sent to it (packet ids 1 and 2).
    fn with_two_in_flight(limits: &Arc<Limits>) -> Session {
        let s = session("flows", limits);
        owned_by_a_v5_client(&s, u32::MAX);
        let mut qos2 = queued(None);
        qos2.qos = QoS::ExactlyOnce;
        assert!(matches!(
            s.deliver(queued(None), &Durability::unwaited()),
            Delivery::Queued
        ));
        assert!(matches!(
            s.deliver(qos2, &Durability::unwaited()),
            Delivery::Queued
        ));
        let mut out = BytesMut::new();
        let written = s.write_queued(
            1,
            &mut out,
            usize::MAX,
            &mut TopicAliases::new(0),
            None,
            &Durability::unwaited(),
        );
        assert_eq!(written.sent, 2);
        s
    }

    /// MQTT-4.3.2, MQTT-4.3.3: each in-flight identifier takes only the acknowledgement its
    /// exchange is waiting for; any other is refused (a protocol error for the connection)
    /// and changes nothing; an identifier with nothing in flight is not an error.
    #[test]
    fn acknowledgements_must_match_the_exchange_in_flight() {
        let limits = limits(0);
        let s = with_two_in_flight(&limits);
        let mut out = BytesMut::new();
        fn waiting<T>(pkid: u16, qos: u8, expected: &'static str) -> Result<T, WrongAck> {
            Err(WrongAck {
                pkid,
                qos,
                expected,
            })
        }
        assert_eq!(s.on_pubcomp(1), waiting(1, 1, "PUBACK"));
        assert_eq!(
            s.on_pubrec(1, false, &mut out, &Durability::unwaited()),
            waiting(1, 1, "PUBACK")
        );
        assert!(out.is_empty(), "no PUBREL for a QoS 1 delivery");
        assert_eq!(s.on_puback(2), waiting(2, 2, "PUBREC"));
        assert_eq!(s.on_pubcomp(2), waiting(2, 2, "PUBREC"));
        assert_eq!(s.backlog(), (0, 2), "nothing was completed");

        assert_eq!(s.on_puback(1), Ok(true));
        assert_eq!(s.on_puback(1), Ok(false), "unknown now: ignored");
        assert_eq!(
            s.on_pubrec(2, false, &mut out, &Durability::unwaited()),
            Ok(())
        );
        assert_eq!(&out[..], &[0x62, 0x02, 0x00, 0x02], "PUBREL 2");
        assert_eq!(s.on_puback(2), waiting(2, 2, "PUBCOMP"));
        out.clear();
        assert_eq!(
            s.on_pubrec(2, false, &mut out, &Durability::unwaited()),
            Ok(()),
            "PUBREL again: ours was lost"
        );
        assert_eq!(&out[..], &[0x62, 0x02, 0x00, 0x02]);
        assert_eq!(s.on_pubcomp(2), Ok(true));
        assert_eq!(s.on_pubcomp(2), Ok(false));
        assert_eq!(s.backlog(), (0, 0));
    }

    /// MQTT-3.1.2-24 with outbound topic aliases: a topic shorter than 4 bytes never gets
    /// one (it would save nothing and could make a packet too large); a longer one, once
    /// defined, replaces the topic and the packet only shrinks, so a delivery of exactly
    /// the client's maximum still fits.
    #[test]
    fn topic_aliases_never_make_a_delivery_too_large() {
        let limits = limits(0);
        let s = session("alias", &limits);
        owned_by_a_v5_client(&s, 40);
        let message = |topic: &str, payload: Vec<u8>| Queued {
            message: Arc::new(Message::new(
                topic,
                Bytes::from(payload),
                QoS::AtMostOnce,
                false,
            )),
            qos: QoS::AtMostOnce,
            retain: false,
            subscription_ids: SubscriptionIds::new(),
            shared: None,
            seq: 0,
        };
        let mut aliases = TopicAliases::new(10);
        let mut send = |topic: &str, payload: Vec<u8>| {
            assert!(matches!(
                s.deliver(message(topic, payload), &Durability::unwaited()),
                Delivery::Queued
            ));
            let mut out = BytesMut::new();
            assert_eq!(
                s.write_queued(
                    1,
                    &mut out,
                    usize::MAX,
                    &mut aliases,
                    None,
                    &Durability::unwaited()
                )
                .sent,
                1
            );
            out
        };
        // "ab", twice: 9 bytes bare each time (header 2, topic 4, properties 1, payload 2).
        for _ in 0..2 {
            let out = send("ab", b"xy".to_vec());
            assert_eq!(&out[..], b"\x30\x07\x00\x02ab\x00xy");
        }
        // "abcd": defined with the first (alias property 23 00 01), used alone after.
        let out = send("abcd", b"x".to_vec());
        assert_eq!(&out[..], b"\x30\x0b\x00\x04abcd\x03\x23\x00\x01x");
        // 40 bytes bare, the client's maximum: with the alias for the topic, 39.
        let out = send("abcd", vec![b'y'; 31]);
        assert_eq!(out.len(), 39, "{out:02x?}");
        assert_eq!(&out[2..8], b"\x00\x00\x03\x23\x00\x01");
        assert_eq!(aliases.lookup("ab"), None);
        assert_eq!(aliases.lookup("abcd"), Some(1));
    }

    /// An alias taken back (its PUBLISH could not be written) is given again to the next
    /// topic, so the numbers the client learns stay 1, 2, 3 ... with no gap or double.
    #[test]
    fn an_alias_taken_back_is_given_again() {
        let mut aliases = TopicAliases::new(3);
        assert_eq!(aliases.assign("first"), Some(1));
        assert_eq!(aliases.assign("second"), Some(2));
        aliases.unassign("second");
        assert_eq!(aliases.lookup("second"), None);
        assert_eq!(aliases.assign("third"), Some(2));
        assert_eq!(aliases.assign("fourth"), Some(3));
        assert_eq!(aliases.assign("fifth"), None, "the client's maximum is 3");
        assert_eq!(aliases.lookup("first"), Some(1));
    }

    /// A client's overlapping subscriptions multiply the identifiers each delivery carries:
    /// they count against the queue limits, or a few thousand filters would make every
    /// queued message kilobytes that no limit sees.
    #[test]
    fn subscription_identifiers_count_against_the_queue_limits() {
        let limits = Arc::new(Limits {
            max_queued_bytes: 10_000,
            budget: QueueBudget::new(0),
            ..*limits(0)
        });
        let s = session("many-ids", &limits);
        let with_ids = || Queued {
            subscription_ids: SubscriptionIds::from((1..=1000).collect::<Vec<u32>>()),
            ..queued(None)
        };
        assert!(matches!(
            s.deliver(with_ids(), &Durability::unwaited()),
            Delivery::Queued
        ));
        assert!(matches!(
            s.deliver(with_ids(), &Durability::unwaited()),
            Delivery::Queued
        ));
        assert_eq!(limits.budget.used(), 2 * (SIZE + 4000));
        assert!(matches!(
            s.deliver(with_ids(), &Durability::unwaited()),
            Delivery::Dropped
        ));
        assert!(matches!(
            s.deliver(queued(None), &Durability::unwaited()),
            Delivery::Queued
        ));
        assert_eq!(s.backlog().0, 3);
    }

    /// Past the broker-wide limit a session's policy applies: drop_newest refuses the new
    /// message; drop_oldest makes room from the session's own queue, and a session with
    /// nothing queued has nothing to drop.
    #[test]
    fn past_the_budget_the_session_policy_decides() {
        let limits = limits(3 * SIZE);
        let a = session("a", &limits);
        for _ in 0..3 {
            assert!(matches!(
                a.deliver(queued(None), &Durability::unwaited()),
                Delivery::Queued
            ));
        }
        assert!(matches!(
            a.deliver(queued(None), &Durability::unwaited()),
            Delivery::Dropped
        ));
        assert_eq!(limits.budget.used(), 3 * SIZE);

        let oldest_first = Arc::new(Limits {
            policy: QueuePolicy::DropOldest,
            budget: QueueBudget::new(3 * SIZE),
            ..*limits
        });
        let b = session("b", &oldest_first);
        let c = session("c", &oldest_first);
        for _ in 0..3 {
            assert!(matches!(
                b.deliver(queued(None), &Durability::unwaited()),
                Delivery::Queued
            ));
        }
        assert!(matches!(
            c.deliver(queued(None), &Durability::unwaited()),
            Delivery::Dropped
        ));
        assert!(matches!(
            b.deliver(queued(None), &Durability::unwaited()),
            Delivery::QueuedDroppingOldest(1)
        ));
        assert_eq!(b.backlog().0, 3);
        assert_eq!(b.dropped(), 1);
        assert_eq!(oldest_first.budget.used(), 3 * SIZE);
    }
}
