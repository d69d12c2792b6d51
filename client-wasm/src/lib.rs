//! An MQTT client for the browser.
//!
//! * [`machine`]: the protocol as a sans-IO state machine over the shared [`protocol`]
//!   codec — all of the logic, tested natively.
//! * `browser` (wasm32 only): drives the state machine with a `web-sys` WebSocket
//!   (binary frames, subprotocol `mqtt`) and browser timers, and exposes it to
//!   JavaScript through `wasm-bindgen` and to Rust (the Yew app) through callbacks.

pub mod machine;
pub mod options;

pub use machine::{Client, ClientError, Event, Millis, State};
pub use options::{LastWill, Options};
pub use protocol::{ConnectReturnCode, ProtocolVersion, Publish, QoS, SubscribeReturnCode};
