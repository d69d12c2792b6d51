//! Runs `py/v5_client.py` (python paho-mqtt 2.x speaking MQTT 5.0 over TCP or WebSocket)
//! and reads back its JSON events.

use std::process::ExitStatus;
use std::time::Duration;

use serde_json::Value;

use crate::{py_script, require_paho, Proc};

pub use serde_json::json;

/// Generous time for a whole paho run (python start-up included) on a noisy machine.
pub const RUN: Duration = Duration::from_secs(60);

/// The command line of one paho client: connection options, then the steps it runs.
#[derive(Debug, Clone)]
pub struct Paho {
    args: Vec<String>,
    steps: Vec<String>,
}

impl Paho {
    /// A client over TCP to `127.0.0.1:port`.
    pub fn tcp(port: u16) -> Paho {
        Paho {
            args: vec!["--port".into(), port.to_string()],
            steps: Vec::new(),
        }
    }

    /// A client over WebSocket to `ws://127.0.0.1:port/mqtt`.
    pub fn ws(port: u16) -> Paho {
        let mut p = Paho::tcp(port);
        p.args.push("--ws".into());
        p
    }

    pub fn id(mut self, id: &str) -> Self {
        self.args.extend(["--id".into(), id.into()]);
        self
    }

    /// Clean Start 0 (resume a session).
    pub fn resume(mut self) -> Self {
        self.args.push("--no-clean-start".into());
        self
    }

    pub fn keepalive(mut self, secs: u16) -> Self {
        self.args.extend(["--keepalive".into(), secs.to_string()]);
        self
    }

    /// CONNECT properties, by paho name: `json!({"SessionExpiryInterval": 60})`.
    pub fn connect_props(mut self, props: Value) -> Self {
        self.args
            .extend(["--connect-props".into(), props.to_string()]);
        self
    }

    /// The will: `json!({"topic": .., "payload": .., "qos": .., "retain": .., "props": {..}})`.
    pub fn will(mut self, will: Value) -> Self {
        self.args.extend(["--will".into(), will.to_string()]);
        self
    }

    /// Appends one step (see `py/v5_client.py`).
    pub fn step(mut self, step: Value) -> Self {
        self.steps.push(step.to_string());
        self
    }

    /// Starts the client.
    pub fn spawn(&self) -> Client {
        let py = require_paho();
        let mut all: Vec<String> = vec![
            "-u".into(),
            py_script("v5_client.py").to_string_lossy().into_owned(),
        ];
        all.extend(self.args.iter().cloned());
        all.extend(self.steps.iter().cloned());
        Client {
            proc: Proc::spawn(&py, &all),
        }
    }

    /// Runs the client to completion and returns its events; panics unless it exits 0.
    pub fn run(&self) -> Vec<Value> {
        self.spawn().finish_ok()
    }
}

/// A running paho client.
pub struct Client {
    proc: Proc,
}

fn parse(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("paho printed non-JSON {line:?}: {e}"))
}

impl Client {
    /// The next event within `timeout`, or None (timeout or end of output).
    pub fn next_event(&mut self, timeout: Duration) -> Option<Value> {
        self.proc.next_line(timeout).map(|l| parse(&l))
    }

    /// Waits for the event `ev` (e.g. "suback", "connack", "msg") and returns it.
    pub fn wait_ev(&mut self, ev: &str, timeout: Duration) -> Value {
        let line = self.proc.wait_line(timeout, |l| {
            serde_json::from_str::<Value>(l).is_ok_and(|v| v["ev"] == ev)
        });
        parse(&line)
    }

    /// Waits for the mark step `name`.
    pub fn wait_mark(&mut self, name: &str, timeout: Duration) {
        self.proc.wait_line(timeout, |l| {
            serde_json::from_str::<Value>(l).is_ok_and(|v| v["ev"] == "mark" && v["name"] == name)
        });
    }

    /// Waits for the process to exit; returns its status and every event it printed.
    pub fn finish(&mut self) -> (ExitStatus, Vec<Value>) {
        let (status, lines) = self.proc.wait(RUN);
        (status, lines.iter().map(|l| parse(l)).collect())
    }

    /// Like [`Client::finish`], panicking unless the exit status is success.
    pub fn finish_ok(&mut self) -> Vec<Value> {
        let (status, events) = self.finish();
        assert!(
            status.success(),
            "`{}` failed: {status}\nevents: {events:#?}\nstderr: {}",
            self.proc.name(),
            self.proc.stderr()
        );
        events
    }

    /// Every event printed so far.
    pub fn seen(&self) -> Vec<Value> {
        self.proc.seen().iter().map(|l| parse(l)).collect()
    }

    pub fn stderr(&self) -> String {
        self.proc.stderr()
    }

    /// SIGKILL: the client dies without DISCONNECT.
    pub fn kill(&mut self) {
        self.proc.kill()
    }
}

/// The events of kind `ev`.
pub fn events<'a>(events: &'a [Value], ev: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["ev"] == ev).collect()
}

/// The one event of kind `ev`; panics if there is not exactly one.
pub fn event<'a>(all: &'a [Value], ev: &str) -> &'a Value {
    let found = events(all, ev);
    assert_eq!(found.len(), 1, "expected one `{ev}` event in {all:#?}");
    found[0]
}

/// The messages received, in order.
pub fn messages(all: &[Value]) -> Vec<&Value> {
    events(all, "msg")
}

/// The payloads of the messages received, in order.
pub fn payloads(all: &[Value]) -> Vec<String> {
    messages(all)
        .iter()
        .map(|m| m["payload"].as_str().unwrap_or_default().to_owned())
        .collect()
}
