//! A client's session: everything the spec says survives a reconnect when the client asked
//! for a persistent session (clean session 0), and everything a connection needs to resume.
//!
//! The session, not the connection task, owns the protocol state (queued messages, in-flight
//! QoS 1/2 messages in both directions, packet identifiers, subscriptions). A connection
//! only borrows it while it is the session's owner. So a takeover or a reconnect is simply
//! a new connection becoming the owner: nothing has to be handed over, and nothing
//! acknowledged can be lost in between.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use parking_lot::Mutex;
use protocol::{encode, encode_publish, Ack, Packet, ProtocolVersion, PublishRef, QoS};

use protocol::Properties;
use tokio::sync::Notify;

use super::message::Message;
use super::ConnectionInfo;

/// A message waiting in a session's queue, with the QoS it will be delivered at.
#[derive(Debug, Clone)]
struct Queued {
    message: Arc<Message>,
    qos: QoS,
    /// The RETAIN flag on delivery: set only for retained messages sent on subscribe.
    retain: bool,
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
}

/// The connection currently driving a session.
#[derive(Debug, Clone)]
pub struct Owner {
    /// Who is connected, from where, speaking which version: what it is sent is written
    /// for `info.version`.
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
#[derive(Debug, Default)]
pub struct Kick {
    notify: Notify,
    reason: AtomicU8,
}

impl Kick {
    pub fn kick(&self, reason: u8) {
        self.reason.store(reason, Ordering::Relaxed);
        self.notify.notify_one();
    }

    /// Resolves once kicked; returns the reason.
    pub async fn kicked(&self) -> u8 {
        self.notify.notified().await;
        self.reason.load(Ordering::Relaxed)
    }
}

/// Outcome of routing one message to one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Queued,
    /// QoS 0 to an offline client: not kept, as Mosquitto does by default.
    Skipped,
    /// The queue was full: the message is dropped for this session.
    Dropped,
}

#[derive(Debug, Default)]
struct State {
    owner: Option<Owner>,
    /// Filter → granted QoS; the router holds the same subscriptions for matching.
    subscriptions: HashMap<String, QoS>,
    queue: VecDeque<Queued>,
    /// Outgoing QoS 1/2 messages in the order they were first sent.
    in_flight: VecDeque<InFlight>,
    /// Incoming QoS 2 packet identifiers that got a PUBREC and wait for a PUBREL:
    /// a duplicate PUBLISH with one of these is not routed again (exactly once).
    incoming_qos2: HashSet<u16>,
    next_pkid: u16,
}

/// Session limits, copied from the broker settings.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_inflight: usize,
    pub max_queued: usize,
    pub queue_qos0_offline: bool,
}

/// One client's session. Shared by the registry, the router (one `Arc` per subscription)
/// and the connection that owns it.
#[derive(Debug)]
pub struct Session {
    pub client_id: Arc<str>,
    /// Whether the session ends with its connection (clean session 1).
    pub clean: bool,
    limits: Limits,
    state: Mutex<State>,
    /// Wakes the owning connection when there is something to send.
    wake: Notify,
    dropped: AtomicU64,
}

impl Session {
    pub fn new(client_id: Arc<str>, clean: bool, limits: Limits) -> Session {
        Session {
            client_id,
            clean,
            limits,
            state: Mutex::new(State {
                next_pkid: 1,
                ..State::default()
            }),
            wake: Notify::new(),
            dropped: AtomicU64::new(0),
        }
    }

    /// Makes `owner` the session's connection; returns the one it replaces, to be kicked.
    pub fn take_ownership(&self, owner: Owner) -> Option<Owner> {
        self.state.lock().owner.replace(owner)
    }

    /// Whether `connection_id` still owns the session.
    pub fn is_owned_by(&self, connection_id: u64) -> bool {
        self.state.lock().is_owned_by(connection_id)
    }

    /// Gives up ownership if `connection_id` still has it; returns whether it did.
    pub fn release(&self, connection_id: u64) -> bool {
        let mut state = self.state.lock();
        if state.is_owned_by(connection_id) {
            state.owner = None;
            true
        } else {
            false
        }
    }

    /// Takes the owner away (session discarded); returns it, to be kicked.
    pub fn evict(&self) -> Option<Owner> {
        self.state.lock().owner.take()
    }

    /// Resolves when something was queued for the owner since it last looked.
    pub async fn wait_for_mail(&self) {
        self.wake.notified().await
    }

    /// Queues `message` for delivery at `qos` (already the minimum of the publish and the
    /// subscription QoS). Called by whichever task published it.
    pub fn deliver(&self, message: &Arc<Message>, qos: QoS, retain: bool) -> Delivery {
        let mut state = self.state.lock();
        if state.owner.is_none() && qos == QoS::AtMostOnce && !self.limits.queue_qos0_offline {
            return Delivery::Skipped;
        }
        if state.queue.len() >= self.limits.max_queued {
            drop(state);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return Delivery::Dropped;
        }
        state.queue.push_back(Queued {
            message: message.clone(),
            qos,
            retain,
        });
        let online = state.owner.is_some();
        drop(state);
        if online {
            self.wake.notify_one();
        }
        Delivery::Queued
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

    pub fn add_subscription(&self, filter: &str, qos: QoS) {
        self.state
            .lock()
            .subscriptions
            .insert(filter.to_owned(), qos);
    }

    pub fn remove_subscription(&self, filter: &str) -> bool {
        self.state.lock().subscriptions.remove(filter).is_some()
    }

    pub fn subscriptions(&self) -> Vec<(String, QoS)> {
        let state = self.state.lock();
        state
            .subscriptions
            .iter()
            .map(|(f, q)| (f.clone(), *q))
            .collect()
    }

    /// On resuming a session: re-sends every unacknowledged PUBLISH (with DUP) and PUBREL
    /// with its original packet identifier, in the original order (MQTT-4.4.0-1).
    /// Writes nothing unless `connection_id` owns the session, so a connection being taken
    /// over can never move messages it will not send.
    pub fn write_resend(&self, connection_id: u64, out: &mut BytesMut) -> usize {
        let state = self.state.lock();
        let Some(version) = state.version_for(connection_id) else {
            return 0;
        };
        for entry in &state.in_flight {
            match entry.stage {
                Stage::Published => write_publish(out, &entry.queued, entry.pkid, true, version),
                Stage::Released => {
                    write_packet(out, &Packet::PubRel(Ack::new(entry.pkid)), version)
                }
            }
        }
        state.in_flight.len()
    }

    /// Moves queued messages into `out` while the in-flight window has room. Returns how
    /// many messages it wrote; none unless `connection_id` owns the session.
    pub fn write_queued(&self, connection_id: u64, out: &mut BytesMut, max_bytes: usize) -> usize {
        let mut state = self.state.lock();
        let mut written = 0;
        let Some(version) = state.version_for(connection_id) else {
            return 0;
        };
        while out.len() < max_bytes {
            let Some(front) = state.queue.front() else {
                break;
            };
            if front.qos == QoS::AtMostOnce {
                let queued = state.queue.pop_front().expect("front exists");
                write_publish(out, &queued, 0, false, version);
            } else {
                if state.in_flight.len() >= self.limits.max_inflight {
                    break;
                }
                let queued = state.queue.pop_front().expect("front exists");
                let pkid = state.allocate_pkid();
                write_publish(out, &queued, pkid, false, version);
                state.in_flight.push_back(InFlight {
                    pkid,
                    queued,
                    stage: Stage::Published,
                });
            }
            written += 1;
        }
        written
    }

    /// PUBACK from the client: the QoS 1 message is done.
    pub fn on_puback(&self, pkid: u16) -> bool {
        let mut state = self.state.lock();
        state.remove_in_flight(pkid, Stage::Published, QoS::AtLeastOnce)
    }

    /// PUBREC from the client: answer with PUBREL and wait for PUBCOMP. A PUBREC for an
    /// identifier already released is answered again (the client may have lost our PUBREL).
    pub fn on_pubrec(&self, pkid: u16, out: &mut BytesMut) -> bool {
        let mut state = self.state.lock();
        let version = state
            .owner
            .as_ref()
            .map_or(ProtocolVersion::V3_1_1, |o| o.info.version);
        let Some(entry) = state
            .in_flight
            .iter_mut()
            .find(|e| e.pkid == pkid && e.queued.qos == QoS::ExactlyOnce)
        else {
            return false;
        };
        entry.stage = Stage::Released;
        write_packet(out, &Packet::PubRel(Ack::new(pkid)), version);
        true
    }

    /// PUBCOMP from the client: the QoS 2 message is done.
    pub fn on_pubcomp(&self, pkid: u16) -> bool {
        let mut state = self.state.lock();
        state.remove_in_flight(pkid, Stage::Released, QoS::ExactlyOnce)
    }

    /// Incoming QoS 2 PUBLISH: returns true the first time `pkid` is seen (route it), false
    /// for a duplicate still waiting for its PUBREL (do not route it again).
    pub fn begin_incoming_qos2(&self, pkid: u16) -> bool {
        self.state.lock().incoming_qos2.insert(pkid)
    }

    /// PUBREL from the client: the identifier is free again.
    pub fn complete_incoming_qos2(&self, pkid: u16) {
        self.state.lock().incoming_qos2.remove(&pkid);
    }
}

impl State {
    fn is_owned_by(&self, connection_id: u64) -> bool {
        self.owner.as_ref().map(Owner::connection_id) == Some(connection_id)
    }

    /// The owner's protocol version, if `connection_id` is the owner.
    fn version_for(&self, connection_id: u64) -> Option<ProtocolVersion> {
        self.owner
            .as_ref()
            .filter(|o| o.connection_id() == connection_id)
            .map(|o| o.info.version)
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

    fn remove_in_flight(&mut self, pkid: u16, stage: Stage, qos: QoS) -> bool {
        match self
            .in_flight
            .iter()
            .position(|e| e.pkid == pkid && e.stage == stage && e.queued.qos == qos)
        {
            Some(index) => {
                self.in_flight.remove(index);
                true
            }
            None => false,
        }
    }
}

/// Properties of messages that carry none (3.1.1 publishers).
static NO_PROPERTIES: Properties = Properties::EMPTY;

fn write_publish(
    out: &mut BytesMut,
    queued: &Queued,
    pkid: u16,
    dup: bool,
    version: ProtocolVersion,
) {
    let message = &queued.message;
    let result = encode_publish(
        PublishRef {
            dup,
            qos: queued.qos,
            retain: queued.retain,
            topic: &message.topic,
            pkid,
            payload: &message.payload,
            properties: &NO_PROPERTIES,
        },
        version,
        out,
    );
    // The message was decoded from a packet no larger than this, so it always fits.
    debug_assert!(result.is_ok(), "{result:?}");
}

fn write_packet(out: &mut BytesMut, packet: &Packet, version: ProtocolVersion) {
    let result = encode(packet, version, out);
    debug_assert!(result.is_ok(), "{result:?}");
}
