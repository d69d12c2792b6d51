//! A thin wrapper over the `rumqttc` MQTT 5.0 client (`rumqttc::v5`), like [`crate::rumq`]
//! for 3.1.1: the event loop runs in a task, events are read back with timeouts, and it never
//! reconnects on its own.
//!
//! Beware: rumqttc 0.25.1 reports an incoming PUBLISH *before* resolving its topic alias
//! (`MqttState::handle_incoming_packet` queues the event first), so with a Topic Alias Maximum
//! the application sees an empty topic on aliased messages.

use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{ConnAck, Filter, Packet, Publish, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::time::Instant;

use crate::rumq::{impl_poll, Events, NoConnack};

pub use rumqttc::v5::mqttbytes::v5::ConnectReturnCode;

pub use crate::rumq::WAIT;

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

impl_poll!(rumqttc::v5::EventLoop);

/// A connected rumqttc v5 client plus the events its event loop produced.
pub struct Mq5 {
    pub client: AsyncClient,
    pub connack: ConnAck,
    ev: Events<rumqttc::v5::EventLoop>,
}

impl Mq5 {
    /// Connects and waits for a successful CONNACK; panics otherwise.
    pub async fn connect(opts: MqttOptions) -> Mq5 {
        let id = opts.client_id();
        let (client, eventloop) = rumqttc::v5::AsyncClient::new(opts, 64);
        let mut ev = Events::spawn(eventloop, format!("rumqttc v5 `{id}`"));
        let ack = match ev.connack().await {
            Ok(ack) => ack,
            Err(NoConnack::Failed(e)) => panic!("rumqttc v5 `{id}`: connect failed: {e}"),
            Err(NoConnack::Ended) => panic!("rumqttc v5 `{id}`: event loop ended"),
            Err(NoConnack::Timeout) => panic!("rumqttc v5 `{id}`: no CONNACK within {WAIT:?}"),
        };
        assert_eq!(
            ack.code,
            ConnectReturnCode::Success,
            "rumqttc v5 `{id}`: CONNACK {ack:?}"
        );
        Mq5 {
            client,
            connack: ack,
            ev,
        }
    }

    /// The next incoming PUBLISH within `timeout`, or None.
    pub async fn next_publish(&mut self, timeout: Duration) -> Option<Publish> {
        self.ev.next_publish(timeout).await
    }

    /// The next incoming PUBLISH; panics on timeout.
    pub async fn expect_publish(&mut self) -> Publish {
        self.ev.expect_publish().await
    }

    /// Waits for an incoming non-PUBLISH packet matching `pred`.
    pub async fn wait_for(&mut self, what: &str, pred: impl Fn(&Packet) -> bool) -> Packet {
        self.ev.wait_for(what, pred).await
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
        self.ev.await_flow(q).await;
    }

    /// Sends DISCONNECT, then ends the event loop.
    pub async fn disconnect(mut self) {
        let _ = self.client.disconnect().await;
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.ev.pump(deadline).await {}
        self.ev.task.abort();
    }

    /// The error that ended the event loop, if any so far.
    pub fn error(&self) -> Option<&str> {
        self.ev.error.as_deref()
    }
}

/// The topic of a PUBLISH as text.
pub fn topic(p: &Publish) -> String {
    String::from_utf8_lossy(&p.topic).into_owned()
}
