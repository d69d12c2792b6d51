//! The bridge: an MQTT broker whose TCP and WebSocket clients share one router.
//!
//! Layering, from the wire inwards:
//! * [`server`] binds the listeners (TCP, WebSocket, HTTP) and hands each accepted stream to
//!   [`connection::serve`]; [`ws`] turns a WebSocket into a byte stream first.
//! * [`connection`] (over a [`duplex::Duplex`] stream) frames packets with the [`protocol`] codec and drives one client's
//!   protocol state against the shared [`broker::Broker`].
//! * [`broker`] holds what all connections share: sessions, the [`router`], retained messages.
//! * [`config`] merges the TOML file and command-line flags.
//! * [`api`] is the admin HTTP API (and Prometheus `/metrics`) beside the web app;
//!   [`sys`] keeps statistics over time and publishes the `$SYS` topics.

pub mod api;
pub mod auth;
pub mod broker;
pub mod config;
pub mod connection;
pub mod duplex;
pub mod http;
pub mod logsafe;
pub mod router;
pub mod server;
pub mod store;
pub mod sys;
pub mod throttle;
pub mod tls;
pub mod ws;
