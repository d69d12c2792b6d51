//! A thin wrapper over the `rumqttc` MQTT 5.0 client (`rumqttc::v5`), like [`crate::rumq`]
//! for 3.1.1: the event loop runs in a task, events are read back with timeouts, and it never
//! reconnects on its own.
//!
//! Beware: rumqttc 0.25.1 reports an incoming PUBLISH *before* resolving its topic alias
//! (`MqttState::handle_incoming_packet` queues the event first), so with a Topic Alias Maximum
//! the application sees an empty topic on aliased messages.

use std::collections::VecDeque;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{ConnAck, Filter, Packet, Publish, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{timeout_at, Instant};

pub use rumqttc::v5::mqttbytes::v5::ConnectReturnCode;

/// Generous default wait.
pub const WAIT: Duration = Duration::from_secs(10);

pub fn qos(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        2 => QoS::ExactlyOnce,
        _ => panic!("bad qos {n}"),
    }
}

/// Options for a TCP client: keep-alive 30 s, clean start.
pub fn options(port: u16, client_id: &str) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    o
}

/// A connected rumqttc v5 client plus the events its event loop produced.
pub struct Mq5 {
    pub client: AsyncClient,
    pub connack: ConnAck,
    events: mpsc::UnboundedReceiver<Result<Event, String>>,
    task: JoinHandle<()>,
    publishes: VecDeque<Publish>,
    others: VecDeque<Packet>,
    error: Option<String>,
    id: String,
}

impl Mq5 {
    /// Connects and waits for a successful CONNACK; panics otherwise.
    pub async fn connect(opts: MqttOptions) -> Mq5 {
        let id = opts.client_id();
        let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(opts, 64);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(ev) => {
                        if tx.send(Ok(ev)).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        break;
                    }
                }
            }
        });
        let deadline = Instant::now() + WAIT;
        loop {
            match timeout_at(deadline, rx.recv()).await {
                Ok(Some(Ok(Event::Incoming(Packet::ConnAck(ack))))) => {
                    assert_eq!(
                        ack.code,
                        ConnectReturnCode::Success,
                        "rumqttc v5 `{id}`: CONNACK {ack:?}"
                    );
                    return Mq5 {
                        client,
                        connack: ack,
                        events: rx,
                        task,
                        publishes: VecDeque::new(),
                        others: VecDeque::new(),
                        error: None,
                        id,
                    };
                }
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(e))) => panic!("rumqttc v5 `{id}`: connect failed: {e}"),
                Ok(None) => panic!("rumqttc v5 `{id}`: event loop ended"),
                Err(_) => {
                    task.abort();
                    panic!("rumqttc v5 `{id}`: no CONNACK within {WAIT:?}");
                }
            }
        }
    }

    async fn pump(&mut self, deadline: Instant) -> bool {
        if self.error.is_some() {
            return false;
        }
        match timeout_at(deadline, self.events.recv()).await {
            Ok(Some(Ok(Event::Incoming(Packet::Publish(p))))) => {
                self.publishes.push_back(p);
                true
            }
            Ok(Some(Ok(Event::Incoming(p)))) => {
                self.others.push_back(p);
                true
            }
            Ok(Some(Ok(Event::Outgoing(_)))) => true,
            Ok(Some(Err(e))) => {
                self.error = Some(e);
                false
            }
            Ok(None) => {
                self.error = Some("event loop ended".into());
                false
            }
            Err(_) => false,
        }
    }

    /// The next incoming PUBLISH within `timeout`, or None.
    pub async fn next_publish(&mut self, timeout: Duration) -> Option<Publish> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(p) = self.publishes.pop_front() {
                return Some(p);
            }
            if !self.pump(deadline).await {
                return None;
            }
        }
    }

    /// The next incoming PUBLISH; panics on timeout.
    pub async fn expect_publish(&mut self) -> Publish {
        match self.next_publish(WAIT).await {
            Some(p) => p,
            None => panic!(
                "rumqttc v5 `{}`: no PUBLISH within {WAIT:?} (error: {:?})",
                self.id, self.error
            ),
        }
    }

    /// Waits for an incoming non-PUBLISH packet matching `pred`.
    pub async fn wait_for(&mut self, what: &str, pred: impl Fn(&Packet) -> bool) -> Packet {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(i) = self.others.iter().position(&pred) {
                return self.others.remove(i).unwrap();
            }
            if !self.pump(deadline).await {
                panic!(
                    "rumqttc v5 `{}`: no {what} within {WAIT:?} (error: {:?}, other packets: {:?})",
                    self.id, self.error, self.others
                );
            }
        }
    }

    /// SUBSCRIBE one filter and wait for the SUBACK.
    pub async fn subscribe(&mut self, filter: Filter) {
        self.client
            .subscribe_many(vec![filter])
            .await
            .expect("queue SUBSCRIBE");
        self.wait_for("SUBACK", |p| matches!(p, Packet::SubAck(_)))
            .await;
    }

    /// Publishes and waits until the broker completed the flow (PUBACK / PUBCOMP).
    pub async fn publish(
        &mut self,
        topic: &str,
        q: u8,
        payload: &[u8],
        props: Option<PublishProperties>,
    ) {
        let payload = payload.to_vec();
        match props {
            Some(p) => self
                .client
                .publish_with_properties(topic, qos(q), false, payload, p)
                .await
                .expect("queue PUBLISH"),
            None => self
                .client
                .publish(topic, qos(q), false, payload)
                .await
                .expect("queue PUBLISH"),
        }
        match q {
            1 => {
                self.wait_for("PUBACK", |p| matches!(p, Packet::PubAck(_)))
                    .await;
            }
            2 => {
                self.wait_for("PUBCOMP", |p| matches!(p, Packet::PubComp(_)))
                    .await;
            }
            _ => {}
        }
    }

    /// Sends DISCONNECT, then ends the event loop.
    pub async fn disconnect(mut self) {
        let _ = self.client.disconnect().await;
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.pump(deadline).await {}
        self.task.abort();
    }

    /// The error that ended the event loop, if any so far.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
}

impl Drop for Mq5 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The topic of a PUBLISH as text.
pub fn topic(p: &Publish) -> String {
    String::from_utf8_lossy(&p.topic).into_owned()
}
