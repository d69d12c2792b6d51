//! One MQTT connection: client-wasm's `BrowserClient`. It exists only in the browser; the
//! native build of the app (for clippy and the unit tests) gets a stand-in that never
//! connects and answers every request with "not connected".

use client_wasm::{ClientError, Event, Options};

use super::profile::{qos, Outgoing, Subscription};

#[cfg(target_arch = "wasm32")]
pub struct Connection(client_wasm::BrowserClient);

#[cfg(target_arch = "wasm32")]
impl Connection {
    /// Starts connecting to `url`; every event goes to `on_event`.
    pub fn open(url: &str, options: Options, on_event: impl Fn(Event) + 'static) -> Connection {
        let client = client_wasm::BrowserClient::new(url, options, on_event);
        client.connect();
        Connection(client)
    }

    pub fn disconnect(&self) {
        self.0.disconnect();
    }

    /// Returns the packet identifier of a QoS 1 or 2 publish.
    pub fn publish(&self, out: &Outgoing) -> Result<Option<u16>, ClientError> {
        self.0.publish_with(
            &out.topic,
            out.payload.clone(),
            qos(out.qos),
            out.retain,
            out.properties.clone(),
        )
    }

    /// One SUBSCRIBE for all of `subs`, with their 5.0 options.
    pub fn subscribe(&self, subs: &[Subscription]) -> Result<u16, ClientError> {
        self.0
            .subscribe_with(subs.iter().map(Subscription::to_filter).collect(), None)
    }

    pub fn unsubscribe(&self, filters: &[&str]) -> Result<u16, ClientError> {
        self.0.unsubscribe(filters)
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub struct Connection;

#[cfg(not(target_arch = "wasm32"))]
impl Connection {
    pub fn open(_url: &str, _options: Options, _on_event: impl Fn(Event) + 'static) -> Connection {
        Connection
    }

    pub fn disconnect(&self) {}

    pub fn publish(&self, _: &Outgoing) -> Result<Option<u16>, ClientError> {
        let _ = qos;
        Err(ClientError::NotConnected)
    }

    pub fn subscribe(&self, _: &[Subscription]) -> Result<u16, ClientError> {
        Err(ClientError::NotConnected)
    }

    pub fn unsubscribe(&self, _: &[&str]) -> Result<u16, ClientError> {
        Err(ClientError::NotConnected)
    }
}
