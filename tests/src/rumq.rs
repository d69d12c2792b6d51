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
    ev: Events<rumqttc::EventLoop>,
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
        let (client, eventloop) = AsyncClient::new(opts, 64);
        let mut ev = Events::spawn(eventloop, format!("rumqttc `{id}`"));
        let ack = match ev.connack().await {
            Ok(ack) => ack,
            Err(NoConnack::Failed(e)) => return Err(e),
            Err(NoConnack::Ended) => return Err("event loop ended".into()),
            Err(NoConnack::Timeout) => return Err(format!("no CONNACK within {WAIT:?}")),
        };
        if ack.code != ConnectReturnCode::Success {
            ev.task.abort();
            return Err(format!("CONNACK {:?}", ack.code));
        }
        Ok(Mq {
            client,
            connack: ack,
            ev,
            id,
        })
    }

    pub fn session_present(&self) -> bool {
        self.connack.session_present
    }

    /// The next incoming PUBLISH within `timeout`, or None.
    pub async fn next_publish(&mut self, timeout: Duration) -> Option<Publish> {
        self.ev.next_publish(timeout).await
    }

    /// The next incoming PUBLISH; panics on timeout.
    pub async fn expect_publish(&mut self) -> Publish {
        self.ev.expect_publish().await
    }

    /// Asserts no PUBLISH arrives within `dur`.
    pub async fn expect_no_publish(&mut self, dur: Duration) {
        if let Some(p) = self.next_publish(dur).await {
            panic!("rumqttc `{}`: unexpected PUBLISH {p:?}", self.id);
        }
    }

    /// Waits for an incoming non-PUBLISH packet matching `pred`; PUBLISHes are kept for later.
    pub async fn wait_for(&mut self, what: &str, pred: impl Fn(&Packet) -> bool) -> Packet {
        self.ev.wait_for(what, pred).await
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
        self.ev.await_flow(q).await;
    }

    /// Sends DISCONNECT and waits for the event loop to finish.
    pub async fn disconnect(mut self) {
        let _ = self.client.disconnect().await;
        let deadline = Instant::now() + WAIT;
        while !self.ev.sent_disconnect && self.ev.pump(deadline).await {}
        // Let the DISCONNECT reach the socket before the event loop is dropped.
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.ev.task.abort();
    }

    /// Drops the connection without DISCONNECT (the event loop task is aborted).
    pub async fn drop_abruptly(mut self) {
        self.ev.task.abort();
        let _ = (&mut self.ev.task).await;
    }

    /// Waits until the connection ends (broker closed it); returns the error text.
    /// Panics if it is still up after `timeout`.
    pub async fn expect_closed(&mut self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        while self.ev.error.is_none() {
            if !self.ev.pump(deadline).await && self.ev.error.is_none() {
                panic!(
                    "rumqttc `{}`: connection still open after {timeout:?}",
                    self.id
                );
            }
        }
        self.ev.error.clone().unwrap()
    }

    /// The error that ended the event loop, if any so far.
    pub fn error(&self) -> Option<&str> {
        self.ev.error.as_deref()
    }
}

/// An incoming or outgoing event of a rumqttc event loop (3.1.1 or 5.0), sorted the way the
/// wrappers queue them.
pub(crate) enum Ev<P, Pub> {
    /// An incoming PUBLISH.
    Publish(Pub),
    /// Any other incoming packet.
    Other(P),
    /// Our DISCONNECT went out.
    SentDisconnect,
    /// Any other outgoing packet.
    Outgoing,
}

/// The [`Ev`] of event loop `L`.
type EvOf<L> = Ev<<L as Poll>::Packet, <L as Poll>::Publish>;

/// A rumqttc event loop (3.1.1 or 5.0) that [`Events`] can drive in a task.
pub(crate) trait Poll: Send + 'static {
    /// Incoming packets other than PUBLISH.
    type Packet: std::fmt::Debug + Send + 'static;
    /// Incoming PUBLISHes.
    type Publish: Send + 'static;
    /// The CONNACK.
    type ConnAck;
    /// The next event, with the error as text.
    fn next(&mut self) -> impl std::future::Future<Output = Result<EvOf<Self>, String>> + Send;
    /// `p` if it is a CONNACK.
    fn connack(p: Self::Packet) -> Option<Self::ConnAck>;
    /// Whether `p` is a PUBACK (a PUBCOMP if `comp`).
    fn is_ack(p: &Self::Packet, comp: bool) -> bool;
}

/// Implements [`Poll`] for a rumqttc event loop type, with the `Event`, `Packet`, `Publish`
/// and `ConnAck` types of its protocol version in scope where it is used.
macro_rules! impl_poll {
    ($loop:ty) => {
        impl $crate::rumq::Poll for $loop {
            type Packet = Packet;
            type Publish = Publish;
            type ConnAck = ConnAck;
            async fn next(&mut self) -> Result<$crate::rumq::Ev<Packet, Publish>, String> {
                use $crate::rumq::Ev;
                Ok(match self.poll().await.map_err(|e| e.to_string())? {
                    Event::Incoming(Packet::Publish(p)) => Ev::Publish(p),
                    Event::Incoming(p) => Ev::Other(p),
                    Event::Outgoing(rumqttc::Outgoing::Disconnect) => Ev::SentDisconnect,
                    Event::Outgoing(_) => Ev::Outgoing,
                })
            }
            fn connack(p: Packet) -> Option<ConnAck> {
                match p {
                    Packet::ConnAck(ack) => Some(ack),
                    _ => None,
                }
            }
            fn is_ack(p: &Packet, comp: bool) -> bool {
                if comp {
                    matches!(p, Packet::PubComp(_))
                } else {
                    matches!(p, Packet::PubAck(_))
                }
            }
        }
    };
}
pub(crate) use impl_poll;

impl_poll!(rumqttc::EventLoop);

/// Why [`Events::connack`] got no CONNACK.
pub(crate) enum NoConnack {
    /// The event loop failed with this error.
    Failed(String),
    /// The event loop ended.
    Ended,
    /// No CONNACK within [`WAIT`] (the task is aborted).
    Timeout,
}

/// The event loop of a rumqttc client (3.1.1 or 5.0) polled in a task, and the events it
/// produced, queued: PUBLISHes and other incoming packets apart. The first error ends it.
pub(crate) struct Events<L: Poll> {
    events: mpsc::UnboundedReceiver<Result<EvOf<L>, String>>,
    pub(crate) task: JoinHandle<()>,
    publishes: VecDeque<L::Publish>,
    others: VecDeque<L::Packet>,
    pub(crate) error: Option<String>,
    pub(crate) sent_disconnect: bool,
    /// Starts panic messages: "rumqttc `id`".
    pub(crate) name: String,
}

impl<L: Poll> Events<L> {
    /// Polls `eventloop` in a task; `name` starts panic messages.
    pub(crate) fn spawn(mut eventloop: L, name: String) -> Events<L> {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.next().await {
                    Ok(ev) => {
                        if tx.send(Ok(ev)).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        break;
                    }
                }
            }
        });
        Events {
            events: rx,
            task,
            publishes: VecDeque::new(),
            others: VecDeque::new(),
            error: None,
            sent_disconnect: false,
            name,
        }
    }

    /// Waits up to [`WAIT`] for the CONNACK; other events before it are dropped.
    pub(crate) async fn connack(&mut self) -> Result<L::ConnAck, NoConnack> {
        let deadline = Instant::now() + WAIT;
        loop {
            match timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Ok(Ev::Other(p)))) => {
                    if let Some(a) = L::connack(p) {
                        return Ok(a);
                    }
                }
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(e))) => return Err(NoConnack::Failed(e)),
                Ok(None) => return Err(NoConnack::Ended),
                Err(_) => {
                    self.task.abort();
                    return Err(NoConnack::Timeout);
                }
            }
        }
    }

    /// Reads one event (until `deadline`) into the queues. Returns false on timeout or end.
    pub(crate) async fn pump(&mut self, deadline: Instant) -> bool {
        if self.error.is_some() {
            return false;
        }
        match timeout_at(deadline, self.events.recv()).await {
            Ok(Some(Ok(Ev::Publish(p)))) => {
                self.publishes.push_back(p);
                true
            }
            Ok(Some(Ok(Ev::Other(p)))) => {
                self.others.push_back(p);
                true
            }
            Ok(Some(Ok(Ev::SentDisconnect))) => {
                self.sent_disconnect = true;
                true
            }
            Ok(Some(Ok(Ev::Outgoing))) => true,
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
    pub(crate) async fn next_publish(&mut self, timeout: Duration) -> Option<L::Publish> {
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
    pub(crate) async fn expect_publish(&mut self) -> L::Publish {
        match self.next_publish(WAIT).await {
            Some(p) => p,
            None => panic!(
                "{}: no PUBLISH within {WAIT:?} (error: {:?})",
                self.name, self.error
            ),
        }
    }

    /// Waits for an incoming non-PUBLISH packet matching `pred`; PUBLISHes are kept for later.
    pub(crate) async fn wait_for(
        &mut self,
        what: &str,
        pred: impl Fn(&L::Packet) -> bool,
    ) -> L::Packet {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(i) = self.others.iter().position(&pred) {
                return self.others.remove(i).unwrap();
            }
            if !self.pump(deadline).await {
                panic!(
                    "{}: no {what} within {WAIT:?} (error: {:?}, other packets: {:?})",
                    self.name, self.error, self.others
                );
            }
        }
    }

    /// Waits until the broker completed the flow of a QoS `q` PUBLISH (PUBACK / PUBCOMP);
    /// nothing to wait for with QoS 0.
    pub(crate) async fn await_flow(&mut self, q: u8) {
        match q {
            1 => {
                self.wait_for("PUBACK", |p| L::is_ack(p, false)).await;
            }
            2 => {
                self.wait_for("PUBCOMP", |p| L::is_ack(p, true)).await;
            }
            _ => {}
        }
    }
}

impl<L: Poll> Drop for Events<L> {
    fn drop(&mut self) {
        self.task.abort();
    }
}
