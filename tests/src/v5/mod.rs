//! MQTT 5.0 clients for the end-to-end tests (GitHub issue 5):
//!
//! * [`wire`]: 5.0 packets built and parsed by hand, and a blocking raw TCP client
//!   ([`wire::Client`]) for exact bytes: properties, reason codes, topic aliases, flow control
//!   and the DISCONNECT a server sends before closing.
//! * [`paho`]: python paho-mqtt 2.x (`py/v5_client.py`) over TCP or WebSocket, driven by JSON
//!   steps and printing JSON events.
//! * [`rumq`]: the `rumqttc` 5.0 client.
//! * [`checks`]: assertions the 5.0 suites share (still serving; how a violation ended).

pub mod checks;
pub mod paho;
pub mod rumq;
pub mod wire;
