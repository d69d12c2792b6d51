//! A thin wrapper over `rumqttc` (MQTT 3.1.1): the event loop is polled in a task and its
//! events are read back here with timeouts. It never reconnects on its own: the first error
//! ends the task, so tests see a dropped connection as it is.

use std::collections::VecDeque;
use std::time::Duration;

use rumqttc::{AsyncClient, ConnAck, ConnectReturnCode, Event, MqttOptions, Packet, Publish, QoS};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{timeout_at, Instant};

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

pub fn qos_num(q: QoS) -> u8 {
    match q {
        QoS::AtMostOnce => 0,
        QoS::AtLeastOnce => 1,
        QoS::ExactlyOnce => 2,
    }
}

/// Options for a TCP client with keepalive 30 s, clean session.
pub fn options(port: u16, client_id: &str) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(1 << 20, 1 << 20);
    o
}

/// A connected rumqttc client plus the events its event loop produced.
pub struct Mq {
    pub client: AsyncClient,
    pub connack: ConnAck,
    events: mpsc::UnboundedReceiver<Result<Event, String>>,
    task: JoinHandle<()>,
    publishes: VecDeque<Publish>,
    others: VecDeque<Packet>,
    error: Option<String>,
    sent_disconnect: bool,
    id: String,
}

impl Mq {
    /// Connects and waits for CONNACK; panics unless it is accepted.
    pub async fn connect(opts: MqttOptions) -> Mq {
        let id = opts.client_id();
        match Mq::try_connect(opts).await {
            Ok(m) => m,
            Err(e) => panic!("rumqttc `{id}`: connect failed: {e}"),
        }
    }

    /// Connects and waits for CONNACK; returns the error text if the connection failed.
    pub async fn try_connect(opts: MqttOptions) -> Result<Mq, String> {
        let id = opts.client_id();
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
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
                    if ack.code != ConnectReturnCode::Success {
                        task.abort();
                        return Err(format!("CONNACK {:?}", ack.code));
                    }
                    return Ok(Mq {
                        client,
                        connack: ack,
                        events: rx,
                        task,
                        publishes: VecDeque::new(),
                        others: VecDeque::new(),
                        error: None,
                        sent_disconnect: false,
                        id,
                    });
                }
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(e))) => return Err(e),
                Ok(None) => return Err("event loop ended".into()),
                Err(_) => {
                    task.abort();
                    return Err(format!("no CONNACK within {WAIT:?}"));
                }
            }
        }
    }

    pub fn session_present(&self) -> bool {
        self.connack.session_present
    }

    /// Reads one event (until `deadline`) into the queues. Returns false on timeout or end.
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
            Ok(Some(Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)))) => {
                self.sent_disconnect = true;
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
                "rumqttc `{}`: no PUBLISH within {WAIT:?} (error: {:?})",
                self.id, self.error
            ),
        }
    }

    /// Asserts no PUBLISH arrives within `dur`.
    pub async fn expect_no_publish(&mut self, dur: Duration) {
        if let Some(p) = self.next_publish(dur).await {
            panic!("rumqttc `{}`: unexpected PUBLISH {p:?}", self.id);
        }
    }

    /// Waits for an incoming non-PUBLISH packet matching `pred`; PUBLISHes are kept for later.
    pub async fn wait_for(&mut self, what: &str, pred: impl Fn(&Packet) -> bool) -> Packet {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(i) = self.others.iter().position(&pred) {
                return self.others.remove(i).unwrap();
            }
            if !self.pump(deadline).await {
                panic!(
                    "rumqttc `{}`: no {what} within {WAIT:?} (error: {:?}, other packets: {:?})",
                    self.id, self.error, self.others
                );
            }
        }
    }

    /// SUBSCRIBE and wait for the SUBACK; returns the granted QoS (None for failure 0x80).
    pub async fn subscribe(&mut self, filter: &str, q: u8) -> Option<u8> {
        self.client
            .subscribe(filter, qos(q))
            .await
            .expect("queue SUBSCRIBE");
        match self
            .wait_for("SUBACK", |p| matches!(p, Packet::SubAck(_)))
            .await
        {
            Packet::SubAck(s) => match s.return_codes.first() {
                Some(rumqttc::SubscribeReasonCode::Success(q)) => Some(qos_num(*q)),
                _ => None,
            },
            _ => unreachable!(),
        }
    }

    /// UNSUBSCRIBE and wait for the UNSUBACK.
    pub async fn unsubscribe(&mut self, filter: &str) {
        self.client
            .unsubscribe(filter)
            .await
            .expect("queue UNSUBSCRIBE");
        self.wait_for("UNSUBACK", |p| matches!(p, Packet::UnsubAck(_)))
            .await;
    }

    /// Publishes and waits until the broker completed the flow (PUBACK / PUBCOMP);
    /// for QoS 0 it only queues the message.
    pub async fn publish(&mut self, topic: &str, q: u8, retain: bool, payload: &[u8]) {
        self.client
            .publish(topic, qos(q), retain, payload.to_vec())
            .await
            .expect("queue PUBLISH");
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

    /// Sends DISCONNECT and waits for the event loop to finish.
    pub async fn disconnect(mut self) {
        let _ = self.client.disconnect().await;
        let deadline = Instant::now() + WAIT;
        while !self.sent_disconnect && self.pump(deadline).await {}
        // Let the DISCONNECT reach the socket before the event loop is dropped.
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.task.abort();
    }

    /// Drops the connection without DISCONNECT (the event loop task is aborted).
    pub async fn drop_abruptly(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    /// Waits until the connection ends (broker closed it); returns the error text.
    /// Panics if it is still up after `timeout`.
    pub async fn expect_closed(&mut self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        while self.error.is_none() {
            if !self.pump(deadline).await && self.error.is_none() {
                panic!(
                    "rumqttc `{}`: connection still open after {timeout:?}",
                    self.id
                );
            }
        }
        self.error.clone().unwrap()
    }

    /// The error that ended the event loop, if any so far.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
}

impl Drop for Mq {
    fn drop(&mut self) {
        self.task.abort();
    }
}
