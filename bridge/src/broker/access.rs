//! Who may connect, and what each client may publish, subscribe to and receive.
//!
//! The broker asks [`Access`] at three points: CONNECT ([`Access::authenticate`]),
//! PUBLISH and SUBSCRIBE ([`Access::authorize`] with [`Action::Publish`] /
//! [`Action::Subscribe`]), and, when read rules exist, each delivery ([`Action::Read`]:
//! a subscription to `#` must not leak topics the client may not read).
//! `Access::allow_all()` is the policy until one is configured.

use std::fmt;

/// What a client wants to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Publish,
    Subscribe,
    /// Receive a message on a topic (checked per delivery).
    Read,
}

/// Who is asking.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
}

/// A pluggable access policy (password file + ACL rules, or anything else).
pub trait Policy: Send + Sync + fmt::Debug {
    /// `Err` carries the MQTT 5.0 reason code to refuse with (0x86 bad user name or
    /// password, 0x87 not authorized).
    fn authenticate(&self, username: Option<&str>, password: Option<&[u8]>) -> Result<(), u8>;
    fn authorize(&self, who: Identity<'_>, action: Action, topic: &str) -> bool;
    /// Whether any rule can refuse a [`Action::Read`]: if not, deliveries skip the check.
    fn checks_reads(&self) -> bool;
}

/// Whether `topic` is under `$SYS`, the topics only the broker publishes.
pub fn is_broker_topic(topic: &str) -> bool {
    topic
        .strip_prefix("$SYS")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The broker's access policy.
#[derive(Debug)]
pub struct Access {
    policy: Option<Box<dyn Policy>>,
}

impl Access {
    /// Everyone may connect and do anything (the default on a first start).
    pub fn allow_all() -> Access {
        Access { policy: None }
    }

    pub fn with_policy(policy: Box<dyn Policy>) -> Access {
        Access {
            policy: Some(policy),
        }
    }

    pub fn authenticate(&self, username: Option<&str>, password: Option<&[u8]>) -> Result<(), u8> {
        match &self.policy {
            Some(policy) => policy.authenticate(username, password),
            None => Ok(()),
        }
    }

    /// Whether `who` may do `action` on `topic`. Client publishes to `$SYS` topics are
    /// refused whatever the policy says: they are the broker's own, and a retained fake
    /// `$SYS/broker/version` would mislead every reader.
    pub fn authorize(&self, who: Identity<'_>, action: Action, topic: &str) -> bool {
        if action == Action::Publish && is_broker_topic(topic) {
            return false;
        }
        match &self.policy {
            Some(policy) => policy.authorize(who, action, topic),
            None => true,
        }
    }

    /// Whether a policy is configured at all.
    pub fn is_active(&self) -> bool {
        self.policy.is_some()
    }

    pub fn checks_reads(&self) -> bool {
        self.policy.as_ref().is_some_and(|p| p.checks_reads())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_may_not_publish_under_sys_whatever_the_policy() {
        let who = Identity {
            client_id: "c",
            username: None,
        };
        let open = Access::allow_all();
        for topic in ["$SYS", "$SYS/broker/version", "$SYS/"] {
            assert!(!open.authorize(who, Action::Publish, topic), "{topic}");
            assert!(open.authorize(who, Action::Subscribe, topic), "{topic}");
        }
        for topic in ["$SYSTEM/x", "SYS/x", "a/$SYS", "$share"] {
            assert!(open.authorize(who, Action::Publish, topic), "{topic}");
        }
    }
}
