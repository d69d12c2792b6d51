//! `--scenario idle`: opens many connections that do nothing, holds them, checks they are
//! still alive (PINGREQ/PINGRESP) and, given the broker's PID, reads its resident memory
//! before and after to give the cost of one idle connection. Over TCP (`mqtt://` URL) or
//! WebSocket (`ws://`: upgraded, then the same CONNECT).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::conn::Conn;
use crate::procinfo::proc_status_kib;
use crate::stamp::now_ns;
use crate::target::Target;
use crate::wire::{self, Frame};

pub struct IdleReport {
    pub requested: usize,
    pub opened: usize,
    pub alive: usize,
    pub connect_ms: f64,
    pub rss_before_kib: Option<u64>,
    pub rss_after_kib: Option<u64>,
    pub errors: Vec<String>,
}

pub async fn run(
    target: &Target,
    addr: SocketAddr,
    connections: usize,
    keep_alive: u16,
    hold: Duration,
    broker_pid: Option<u32>,
) -> IdleReport {
    let rss_before_kib = broker_pid.and_then(|pid| proc_status_kib(pid, "VmRSS"));
    let tag = std::process::id();
    let start = now_ns();
    let gate = Arc::new(Semaphore::new(256));
    let mut set = JoinSet::new();
    for i in 0..connections {
        let (gate, target) = (gate.clone(), target.clone());
        set.spawn(async move {
            let _permit = gate.acquire_owned().await;
            Conn::open_idle(&target, addr, &format!("bench-{tag}-idle{i}"), keep_alive).await
        });
    }
    let mut conns = Vec::with_capacity(connections);
    let mut errors = Vec::new();
    let mut failed = 0;
    while let Some(res) = set.join_next().await {
        match res {
            Ok(Ok(conn)) => conns.push(conn),
            Ok(Err(e)) => {
                failed += 1;
                if errors.len() < 5 {
                    errors.push(e);
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    let connect_ms = (now_ns() - start) as f64 / 1e6;
    if failed > 5 {
        errors.push(format!("{failed} connections failed in all"));
    }
    eprintln!(
        "idle: {} of {connections} connections open in {connect_ms:.0} ms; holding {hold:?}",
        conns.len()
    );
    tokio::time::sleep(hold).await;
    let rss_after_kib = broker_pid.and_then(|pid| proc_status_kib(pid, "VmRSS"));
    let opened = conns.len();

    // Still there? One PINGREQ each, a PINGRESP back within 10 s.
    let mut set = JoinSet::new();
    for mut conn in conns {
        set.spawn(async move {
            let ping = async {
                let mut buf = BytesMut::from(&wire::PINGREQ[..]);
                conn.writer.write(&mut buf).await.ok()?;
                loop {
                    if let Ok(Some((frame, _))) = wire::next_frame(&conn.buf) {
                        return Some(frame == Frame::Other { packet_type: 13 });
                    }
                    if conn.reader.read(&mut conn.buf).await.ok()? == 0 {
                        return None;
                    }
                }
            };
            let alive = tokio::time::timeout(Duration::from_secs(10), ping)
                .await
                .ok()
                .flatten()
                .unwrap_or(false);
            conn.writer.close(&wire::DISCONNECT).await;
            alive
        });
    }
    let mut alive = 0;
    while let Some(res) = set.join_next().await {
        alive += matches!(res, Ok(true)) as usize;
    }
    IdleReport {
        requested: connections,
        opened,
        alive,
        connect_ms,
        rss_before_kib,
        rss_after_kib,
        errors,
    }
}
