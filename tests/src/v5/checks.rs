//! Checks the 5.0 end-to-end suites share: that the broker still serves, and how it ended
//! a connection after a violation.

use std::time::Instant;

use super::wire::{prop, Client, Packet, RecvError, WAIT};
use crate::{unique, Bridge};

/// A fresh 5.0 client gets its own QoS 1 message back: the broker still serves.
pub fn assert_serving(port: u16) {
    let topic = unique("alive");
    let mut c = Client::connect_clean(port, &unique("probe"));
    assert_eq!(c.subscribe(1, &[(&topic, 1)]), [1]);
    c.publish(&topic, b"ping", 1, false, 2);
    let p = c.receive(WAIT);
    assert_eq!(p.payload(), Some(&b"ping"[..]), "probe got {p:?}");
    c.disconnect();
}

/// What the broker did with a connection after a violation: "DISCONNECT 0x.." then close,
/// "closed without DISCONNECT", "still open", or what else it sent.
pub fn outcome(c: &mut Client) -> String {
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    loop {
        match c.recv(deadline.saturating_duration_since(Instant::now())) {
            Ok(p) => got.push(p),
            Err(RecvError::Closed(_)) => break,
            Err(RecvError::Timeout) => return format!("still open after {WAIT:?} ({got:?})"),
            Err(RecvError::Malformed(m)) => return format!("malformed bytes: {m}"),
        }
    }
    match got.as_slice() {
        [] => "closed without DISCONNECT".into(),
        [Packet::Disconnect { reason, props }] => match props.get_str(prop::REASON_STRING) {
            Some(why) => format!("DISCONNECT {reason:#04x} ({why})"),
            None => format!("DISCONNECT {reason:#04x}"),
        },
        other => format!("sent {other:?}"),
    }
}

/// Sends each case's bytes on a fresh connection and asserts every one ends with a DISCONNECT
/// carrying `want`; lists all the cases that did not.
pub fn assert_all_disconnect(b: &mut Bridge, cases: &[(&str, Vec<u8>)], want: u8) {
    let mut wrong = Vec::new();
    for (what, bytes) in cases {
        let mut c = Client::connect_clean(b.tcp_port(), &unique("violator"));
        c.send(bytes);
        let got = outcome(&mut c);
        if !got.starts_with(&format!("DISCONNECT {want:#04x}")) {
            wrong.push(format!("{what}: {got}"));
        }
    }
    b.assert_running();
    assert_serving(b.tcp_port());
    assert!(
        wrong.is_empty(),
        "expected DISCONNECT {want:#04x} then close; {} of {} cases differ:\n  {}",
        wrong.len(),
        cases.len(),
        wrong.join("\n  ")
    );
}
