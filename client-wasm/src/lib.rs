//! An MQTT client for the browser.
//!
//! * [`machine`]: the protocol as a sans-IO state machine over the shared [`protocol`]
//!   codec — all of the logic, tested natively.
//! * `browser` (wasm32 only): drives the state machine with a `web-sys` WebSocket
//!   (binary frames, subprotocol `mqtt`) and browser timers, and exposes it to
//!   JavaScript through `wasm-bindgen` and to Rust (the Yew app) through callbacks.

#[cfg(target_arch = "wasm32")]
pub mod browser;
#[cfg(target_arch = "wasm32")]
mod js;
pub mod machine;
pub mod options;

#[cfg(target_arch = "wasm32")]
pub use browser::BrowserClient;
#[cfg(target_arch = "wasm32")]
pub use js::MqttClient;
pub use machine::{Client, ClientError, Event, Millis, State};
pub use options::{LastWill, Options};
pub use protocol::{reason, Properties, ProtocolVersion, Publish, QoS, SubscribeFilter};
