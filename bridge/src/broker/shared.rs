//! Shared subscriptions (`$share/{group}/{filter}`, MQTT 5.0 §4.8.2): each message that
//! matches goes to one member of the group, round robin among the members online.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use protocol::QoS;

use super::access::{Access, Action, Identity};
use super::message::Message;
use super::session::{Delivery, Queued, Session};
use crate::store::Durability;

/// One member: a session and the options it subscribed with.
#[derive(Debug, Clone)]
struct Member {
    session: Arc<Session>,
    qos: QoS,
    retain_as_published: bool,
    subscription_id: Option<u32>,
}

/// The members of one share name on one filter.
#[derive(Debug)]
pub struct SharedGroup {
    pub group: String,
    pub filter: String,
    members: Mutex<Vec<Member>>,
    next: AtomicUsize,
}

impl SharedGroup {
    pub fn new(group: &str, filter: &str) -> SharedGroup {
        SharedGroup {
            group: group.to_owned(),
            filter: filter.to_owned(),
            members: Mutex::new(Vec::new()),
            next: AtomicUsize::new(0),
        }
    }

    /// Adds or updates a member; returns whether it is new.
    pub fn join(
        &self,
        session: &Arc<Session>,
        qos: QoS,
        retain_as_published: bool,
        subscription_id: Option<u32>,
    ) -> bool {
        let mut members = self.members.lock();
        let member = Member {
            session: session.clone(),
            qos,
            retain_as_published,
            subscription_id,
        };
        match members
            .iter_mut()
            .find(|m| Arc::ptr_eq(&m.session, session))
        {
            Some(existing) => {
                *existing = member;
                false
            }
            None => {
                members.push(member);
                true
            }
        }
    }

    /// Removes a member; returns whether the group is now empty.
    pub fn leave(&self, session: &Arc<Session>) -> bool {
        let mut members = self.members.lock();
        members.retain(|m| !Arc::ptr_eq(&m.session, session));
        members.is_empty()
    }

    pub fn len(&self) -> usize {
        self.members.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.lock().is_empty()
    }

    /// Gives the message to one member: the next online one in turn, or, with nobody
    /// online, the next one whose session keeps messages. `exclude` is a member that just
    /// went away with this message undelivered.
    pub fn deliver(
        self: &Arc<Self>,
        message: &Arc<Message>,
        exclude: Option<&Arc<Session>>,
        access: Option<&Access>,
        durability: &Durability,
    ) -> Delivery {
        let members = self.members.lock();
        let n = members.len();
        if n == 0 {
            return Delivery::Skipped;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        // Only members that may read the topic take their turn: one that may not would
        // drop the message when it is sent, and it would be lost for the whole group.
        let may_read = |m: &Member| {
            access.is_none_or(|access| {
                let username = m.session.username();
                let who = Identity {
                    client_id: &m.session.client_id,
                    username: username.as_deref(),
                };
                access.authorize(who, Action::Read, &message.topic)
            })
        };
        let order: Vec<&Member> = (0..n)
            .map(|i| &members[(start + i) % n])
            .filter(|m| exclude.is_none_or(|e| !Arc::ptr_eq(&m.session, e)))
            .filter(|m| may_read(m))
            .collect();
        let chosen = order
            .iter()
            .find(|m| m.session.is_online())
            .or_else(|| order.iter().find(|m| m.session.expiry() > 0));
        let Some(member) = chosen else {
            return Delivery::Skipped;
        };
        member.session.deliver(
            Queued {
                message: message.clone(),
                qos: message.qos.min(member.qos),
                retain: member.retain_as_published && message.retain,
                subscription_ids: member.subscription_id.into(),
                shared: Some(self.clone()),
                seq: 0,
            },
            durability,
        )
    }

    /// Whether the group has a member other than `session`.
    pub fn has_other_member(&self, session: &Arc<Session>) -> bool {
        self.members
            .lock()
            .iter()
            .any(|m| !Arc::ptr_eq(&m.session, session))
    }
}
