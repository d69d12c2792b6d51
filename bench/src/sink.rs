//! A trivial broker stand-in for `--scenario sink-ceiling`: it answers CONNECT with
//! CONNACK, SUBSCRIBE with SUBACK and PINGREQ with PINGRESP, counts PUBLISH packets and
//! throws everything away. Loading it shows how fast the generator itself can go.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Buf, BufMut, BytesMut};
use protocol::frame::parse_fixed_header;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct Sink {
    pub addr: SocketAddr,
    /// PUBLISH packets received over all connections.
    pub publishes: Arc<AtomicU64>,
}

/// Binds 127.0.0.1 on a free port and serves until the process exits.
pub async fn start() -> std::io::Result<Sink> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let publishes = Arc::new(AtomicU64::new(0));
    let counter = publishes.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, counter.clone()));
        }
    });
    Ok(Sink { addr, publishes })
}

async fn serve(mut stream: TcpStream, publishes: Arc<AtomicU64>) {
    let _ = stream.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(256 << 10);
    let mut reply = BytesMut::new();
    // Bytes of a packet to skip that have not arrived yet.
    let mut skip = 0usize;
    loop {
        if buf.capacity() - buf.len() < 64 << 10 {
            buf.reserve(256 << 10);
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut count = 0;
        let mut done = false;
        loop {
            if skip > 0 {
                let n = skip.min(buf.len());
                buf.advance(n);
                skip -= n;
                if skip > 0 {
                    break;
                }
            }
            let header = match parse_fixed_header(&buf, usize::MAX, None) {
                Ok(Some(header)) => header,
                Ok(None) => break,
                Err(_) => {
                    done = true;
                    break;
                }
            };
            let len = header.frame_len();
            match header.packet_type() {
                3 => {
                    count += 1;
                    skip = len;
                }
                // CONNECT, SUBSCRIBE, PINGREQ: need the whole packet to answer.
                1 | 8 | 12 if buf.len() < len => break,
                1 => {
                    reply.extend_from_slice(&[0x20, 2, 0, 0]);
                    buf.advance(len);
                }
                8 => {
                    let body = &buf[header.header_len..len];
                    let pkid = u16::from_be_bytes([body[0], body[1]]);
                    let mut codes = Vec::new();
                    let mut pos = 2;
                    while pos + 2 <= body.len() {
                        pos += 2 + u16::from_be_bytes([body[pos], body[pos + 1]]) as usize;
                        codes.push(body.get(pos).copied().unwrap_or(0) & 3);
                        pos += 1;
                    }
                    reply.put_u8(0x90);
                    reply.put_u8(2 + codes.len() as u8);
                    reply.put_u16(pkid);
                    reply.extend_from_slice(&codes);
                    buf.advance(len);
                }
                12 => {
                    reply.extend_from_slice(&[0xD0, 0]);
                    buf.advance(len);
                }
                14 => {
                    done = true;
                    break;
                }
                _ => skip = len,
            }
        }
        if count > 0 {
            publishes.fetch_add(count, Ordering::Relaxed);
        }
        if done {
            return;
        }
        if !reply.is_empty() {
            if stream.write_all(&reply).await.is_err() {
                return;
            }
            reply.clear();
        }
    }
}
