//! Where a connection stands, as the page shows it, driven by the client's events.
//! Pure logic, tested natively.

use client_wasm::{reason, Event};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Status {
    /// Not connected; `note` says why when there is something to say ("Disconnected.").
    #[default]
    Idle,
    Disconnected,
    Connecting,
    Connected {
        session_present: bool,
    },
    /// The connection was lost and the client tries again after `delay_ms`.
    Reconnecting {
        reason: String,
        delay_ms: u64,
    },
    /// The broker refused us, or the connection was lost for good.
    Error {
        message: String,
    },
}

impl Status {
    /// The state after `event` (events that do not change it leave it alone).
    pub fn after(&self, event: &Event) -> Status {
        match event {
            Event::Connected { session_present } => Status::Connected {
                session_present: *session_present,
            },
            Event::Refused { code } => Status::Error {
                message: format!(
                    "The broker refused the connection: {} (CONNACK 0x{code:02X}).",
                    reason::describe(*code)
                ),
            },
            Event::ConnectionLost {
                reason,
                reconnect_in: Some(delay_ms),
            } => Status::Reconnecting {
                reason: reason.clone(),
                delay_ms: *delay_ms,
            },
            Event::ConnectionLost {
                reason,
                reconnect_in: None,
            } => Status::Error {
                message: format!("Connection lost: {reason}."),
            },
            Event::Closed => Status::Disconnected,
            _ => self.clone(),
        }
    }

    /// The CSS class of the status dot and pill.
    pub fn class(&self) -> &'static str {
        match self {
            Status::Idle | Status::Disconnected => "idle",
            Status::Connecting => "connecting",
            Status::Connected { .. } => "connected",
            Status::Reconnecting { .. } => "reconnecting",
            Status::Error { .. } => "error",
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Status::Idle => "Idle",
            Status::Disconnected => "Disconnected",
            Status::Connecting => "Connecting…",
            Status::Connected { .. } => "Connected",
            Status::Reconnecting { .. } => "Reconnecting",
            Status::Error { .. } => "Error",
        }
    }

    /// One sentence more, when there is one.
    pub fn detail(&self) -> Option<String> {
        match self {
            Status::Reconnecting { reason, delay_ms } => Some(format!(
                "Connection lost: {reason}. Retrying in {}.",
                duration(*delay_ms)
            )),
            Status::Error { message } => Some(message.clone()),
            Status::Connected {
                session_present: true,
            } => Some("Resumed the session the broker kept.".to_owned()),
            _ => None,
        }
    }

    /// Whether the client is at work (the button then offers Disconnect).
    pub fn is_active(&self) -> bool {
        matches!(
            self,
            Status::Connecting | Status::Connected { .. } | Status::Reconnecting { .. }
        )
    }

    pub fn is_connected(&self) -> bool {
        matches!(self, Status::Connected { .. })
    }
}

/// `800 ms`, `2 s`, `1.5 s`, `2 min`.
pub fn duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        // Integer tenths: float formatting would add kilobytes of wasm for one digit.
        let tenths = (ms + 50) / 100;
        if tenths.is_multiple_of(10) {
            format!("{} s", tenths / 10)
        } else {
            format!("{}.{} s", tenths / 10, tenths % 10)
        }
    } else {
        format!("{} min", (ms + 30_000) / 60_000)
    }
}

/// What a SUBACK code says about one filter.
pub fn suback_text(code: u8) -> String {
    if code <= 2 {
        format!("granted QoS {code}")
    } else {
        format!(
            "refused by the broker: {} (0x{code:02X})",
            reason::describe(code)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_life_of_a_connection() {
        let s = Status::Connecting;
        assert!(s.is_active());
        let s = s.after(&Event::Connected {
            session_present: false,
        });
        assert!(s.is_connected());
        assert_eq!(s.label(), "Connected");
        assert_eq!(s.detail(), None);
        let s = s.after(&Event::PublishComplete { pkid: 1, reason: 0 });
        assert!(s.is_connected(), "unrelated events change nothing");
        let s = s.after(&Event::ConnectionLost {
            reason: "connection closed (code 1006)".into(),
            reconnect_in: Some(2000),
        });
        assert_eq!(s.class(), "reconnecting");
        assert_eq!(
            s.detail().unwrap(),
            "Connection lost: connection closed (code 1006). Retrying in 2 s."
        );
        let s = s.after(&Event::Closed);
        assert_eq!(s, Status::Disconnected);
        assert!(!s.is_active());
    }

    #[test]
    fn refusals_carry_the_brokers_reason() {
        let s = Status::Connecting.after(&Event::Refused {
            code: reason::BAD_USER_NAME_OR_PASSWORD,
        });
        assert_eq!(s.class(), "error");
        assert_eq!(
            s.detail().unwrap(),
            "The broker refused the connection: bad user name or password (CONNACK 0x86)."
        );
        let lost = Status::Connected {
            session_present: false,
        }
        .after(&Event::ConnectionLost {
            reason: "no PINGRESP from the broker".into(),
            reconnect_in: None,
        });
        assert_eq!(
            lost.detail().unwrap(),
            "Connection lost: no PINGRESP from the broker."
        );
    }

    #[test]
    fn durations() {
        assert_eq!(duration(800), "800 ms");
        assert_eq!(duration(2000), "2 s");
        assert_eq!(duration(1500), "1.5 s");
        assert_eq!(duration(120_000), "2 min");
    }

    #[test]
    fn suback_codes() {
        assert_eq!(suback_text(1), "granted QoS 1");
        assert_eq!(
            suback_text(0x87),
            "refused by the broker: not authorized (0x87)"
        );
    }
}
