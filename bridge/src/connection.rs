//! One client connection: frames packets off a byte stream and drives the MQTT session.
//! (Being written: the interface below is fixed, the body is not.)

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::broker::Broker;

/// How the client reached us; shown in logs and (later) the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    WebSocket,
}

/// Serves one client until it disconnects or breaks the protocol. Never panics on input.
pub async fn serve<S>(stream: S, peer: SocketAddr, transport: Transport, broker: Arc<Broker>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _ = (stream, peer, transport, broker);
}
