//! A load run: subscribers and publishers on their own connections, each publisher a
//! writer task and an acknowledgement-reader task, each subscriber one task.
//!
//! Flow control is closed-loop by default: a publisher pauses while more than `window` of
//! its messages are undelivered, counted with atomics the subscribers add to once per read
//! batch. If deliveries stop altogether for `stall` while a publisher waits (the broker
//! dropped messages), the outstanding messages are written off and the stall is counted,
//! so a lossy broker slows the run down instead of hanging it. `window = 0` is a fire-hose.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use parking_lot::Mutex;
use protocol::{encode_publish, Properties, PublishRef, QoS};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;

use crate::conn::{Conn, Reader, Writer, VERSION};
use crate::hist::Histogram;
use crate::seqset::{SeqSet, MAX_SEQ};
use crate::stamp::{now_ns, Stamp};
use crate::target::Target;
use crate::wire::{self, Frame};

/// Messages one publisher encodes before it writes.
const BATCH_MSGS: u64 = 1024;
/// Bytes one publisher buffers before it writes.
const BATCH_BYTES: usize = 64 << 10;
/// Connections opened at once during setup.
const SETUP_CONCURRENCY: usize = 200;

#[derive(Debug, Clone)]
pub enum Topics {
    /// Every message to this topic.
    Fixed(String),
    /// Each message to a topic drawn at random; each must match exactly one subscription.
    Random(Arc<Vec<String>>),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub qos: QoS,
    pub payload: usize,
    /// Undelivered messages a publisher may have; 0 for none (fire-hose).
    pub window: u64,
    /// Total messages per second over all publishers; `None` for as fast as possible.
    pub rate: Option<f64>,
    /// QoS 1/2 messages a publisher may have unacknowledged; 0 for the packet-identifier
    /// limit (65,535).
    pub inflight: u32,
    pub keep_alive: u16,
    /// One entry per publisher: where it publishes.
    pub publishers: Vec<Topics>,
    /// One entry per subscriber: its filters.
    pub subscribers: Vec<Vec<String>>,
    /// Subscribers keep a session (clean session 0), opened and subscribed before anyone
    /// publishes, and removed after the run.
    pub persistent: bool,
    pub warmup: Duration,
    pub duration: Duration,
    /// Longest wait for acknowledgements and deliveries after the publishers stop.
    pub drain: Duration,
    pub stall: Duration,
    /// The broker's PID, to report its CPU use during the measurement.
    pub broker_pid: Option<u32>,
}

/// What a run measured.
#[derive(Debug, Default)]
pub struct Report {
    pub measured_secs: f64,
    pub delivered_in_window: u64,
    pub sent_in_window: u64,
    /// The caller's extra counter (the sink's), read at the same instants.
    pub extra_in_window: u64,
    /// CPU used during the measurement, in cores (1.0 = one core busy all the time).
    pub bench_cpu: Option<f64>,
    pub broker_cpu: Option<f64>,
    /// How busy each CPU was during the measurement, whoever used it.
    pub cpu_busy: Vec<f64>,
    pub sent: u64,
    /// Deliveries the subscriptions call for: each message times its matching subscribers.
    pub expected: u64,
    pub received: u64,
    pub acked: u64,
    /// QoS 1/2: acknowledged messages a subscriber never got; QoS 0: expected - received.
    pub lost: u64,
    /// Which publisher's messages went missing where (QoS 1/2, first ten).
    pub loss_detail: Vec<String>,
    pub duplicates: u64,
    /// Messages without a valid stamp.
    pub foreign: u64,
    pub latency: Histogram,
    pub stalls: u64,
    pub written_off: u64,
    pub errors: u64,
    pub error_samples: Vec<String>,
    pub setup_ms: f64,
    pub drain_ms: f64,
    pub drain_end: DrainEnd,
    /// Messages missing below the highest sequence number a subscriber got from a
    /// publisher: certainly dropped, whatever was still on its way when the run ended.
    pub gaps: u64,
}

/// How the drain after the measurement ended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum DrainEnd {
    /// Every message acknowledged and delivered.
    #[default]
    Settled,
    /// Nothing moved for the stall time: what is missing now will not come.
    Quiet,
    /// The drain time ran out while messages were still arriving: some of the
    /// undelivered ones were on their way, not lost.
    Cut,
}

impl DrainEnd {
    pub fn name(self) -> &'static str {
        match self {
            DrainEnd::Settled => "settled",
            DrainEnd::Quiet => "quiet",
            DrainEnd::Cut => "cut",
        }
    }
}

#[derive(Default)]
pub struct Errors {
    count: AtomicU64,
    samples: Mutex<Vec<String>>,
}

impl Errors {
    pub fn add(&self, msg: String) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut samples = self.samples.lock();
        if samples.len() < 5 && !samples.contains(&msg) {
            samples.push(msg);
        }
    }
}

struct Shared {
    pubs: Vec<Arc<PubState>>,
    stop_sending: AtomicBool,
    measure_start: u64,
    measure_end: u64,
    errors: Errors,
}

struct PubState {
    /// Subscribers each of its messages goes to.
    fanout: u64,
    /// Messages written to the socket so far (sequence numbers 0..sent).
    sent: AtomicU64,
    /// Deliveries counted by the subscribers.
    delivered: AtomicU64,
    /// Wakes the writer: deliveries, acknowledgements, the end of the run.
    notify: Notify,
    /// Set by the writer before its DISCONNECT: the broker closing is expected from then.
    closing: AtomicBool,
    acks: Mutex<AckTable>,
}

/// QoS 1/2 bookkeeping of one publisher: packet identifier -> sequence number.
struct AckTable {
    /// By packet identifier: 0 free, else sequence number + 1.
    slots: Vec<u64>,
    unacked: u32,
    acked: SeqSet,
    pubrel: Vec<u16>,
    unexpected: u64,
}

impl AckTable {
    fn new() -> AckTable {
        AckTable {
            slots: vec![0; 65536],
            unacked: 0,
            acked: SeqSet::default(),
            pubrel: Vec::new(),
            unexpected: 0,
        }
    }

    fn on_ack(&mut self, packet_type: u8, pkid: u16) {
        let slot = self.slots[pkid as usize];
        match packet_type {
            // PUBACK, PUBCOMP: the exchange is complete.
            4 | 7 if slot != 0 => {
                self.slots[pkid as usize] = 0;
                self.unacked -= 1;
                self.acked.insert(slot - 1);
            }
            5 if slot != 0 => self.pubrel.push(pkid),
            _ => self.unexpected += 1,
        }
    }
}

#[derive(Default)]
struct SubOutcome {
    received: u64,
    duplicates: u64,
    foreign: u64,
    /// By publisher; QoS 1/2 only.
    seen: Vec<SeqSet>,
    /// By publisher: messages received, and the highest sequence number + 1.
    totals: Vec<u64>,
    high: Vec<u64>,
    latency: Histogram,
}

struct PubOutcome {
    stalls: u64,
    written_off: u64,
}

/// Opens `n` connections, `SETUP_CONCURRENCY` at a time; `setup` runs on each.
async fn open_all<F, Fut>(n: usize, setup: F) -> Result<Vec<Conn>, String>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<Conn, String>> + Send + 'static,
{
    let gate = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let mut set = JoinSet::new();
    for i in 0..n {
        let gate = gate.clone();
        let fut = setup(i);
        set.spawn(async move {
            let _permit = gate.acquire_owned().await;
            fut.await.map(|c| (i, c))
        });
    }
    let mut conns: Vec<Option<Conn>> = (0..n).map(|_| None).collect();
    while let Some(res) = set.join_next().await {
        let (i, conn) = res.map_err(|e| e.to_string())??;
        conns[i] = Some(conn);
    }
    Ok(conns.into_iter().map(Option::unwrap).collect())
}

fn qos_track(qos: QoS) -> bool {
    qos != QoS::AtMostOnce
}

/// Runs `plan` against the broker at `addr`. `extra` is read at the start and end of the
/// measurement (the sink's message counter).
pub async fn run(
    plan: Plan,
    target: &Target,
    addr: SocketAddr,
    extra: Option<Arc<AtomicU64>>,
) -> Result<Report, String> {
    let tag = std::process::id();
    let setup_start = now_ns();

    let qos = plan.qos;
    let keep_alive = plan.keep_alive;
    let persistent = plan.persistent;
    // Subscriber i keeps this client id for the whole run (its session's, when persistent).
    let sub_id = move |i: usize| format!("bench-{tag}-s{i}");
    let subs = {
        let filters = Arc::new(plan.subscribers.clone());
        open_all(plan.subscribers.len(), |i| {
            let (target, filters) = (target.clone(), filters.clone());
            async move {
                let mut conn = if persistent {
                    Conn::open_persistent(&target, addr, &sub_id(i), keep_alive).await?
                } else {
                    Conn::open(&target, addr, &sub_id(i), keep_alive).await?
                };
                conn.subscribe(&filters[i], qos).await?;
                Ok(conn)
            }
        })
        .await?
    };
    let pubs = open_all(plan.publishers.len(), |i| {
        let target = target.clone();
        async move { Conn::open(&target, addr, &format!("bench-{tag}-p{i}"), keep_alive).await }
    })
    .await?;
    let setup_ms = (now_ns() - setup_start) as f64 / 1e6;

    // Who gets what: a fixed topic goes to every subscriber with a matching filter; a
    // random topic (the `topics` scenario) to exactly one.
    let expected: Vec<Option<Vec<usize>>> = plan
        .publishers
        .iter()
        .map(|topics| match topics {
            Topics::Fixed(topic) => Some(
                plan.subscribers
                    .iter()
                    .enumerate()
                    .filter(|(_, filters)| {
                        filters.iter().any(|f| protocol::topic::matches(f, topic))
                    })
                    .map(|(i, _)| i)
                    .collect(),
            ),
            Topics::Random(_) => None,
        })
        .collect();

    let t0 = now_ns();
    let measure_start = t0 + plan.warmup.as_nanos() as u64;
    let measure_end = measure_start + plan.duration.as_nanos() as u64;
    let shared = Arc::new(Shared {
        pubs: expected
            .iter()
            .map(|e| {
                Arc::new(PubState {
                    fanout: e.as_ref().map_or(1, |subs| subs.len() as u64),
                    sent: AtomicU64::new(0),
                    delivered: AtomicU64::new(0),
                    notify: Notify::new(),
                    closing: AtomicBool::new(false),
                    acks: Mutex::new(AckTable::new()),
                })
            })
            .collect(),
        stop_sending: AtomicBool::new(false),
        measure_start,
        measure_end,
        errors: Errors::default(),
    });
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    let mut sub_tasks = Vec::new();
    for conn in subs {
        sub_tasks.push(tokio::spawn(subscriber(
            shared.clone(),
            conn,
            shutdown_rx.clone(),
        )));
    }
    let cfg = Arc::new(PubCfg {
        qos,
        payload: plan.payload,
        window: plan.window,
        rate: plan.rate.map(|r| r / plan.publishers.len().max(1) as f64),
        inflight: if plan.inflight == 0 {
            u32::MAX
        } else {
            plan.inflight
        },
        stall_ns: plan.stall.as_nanos() as u64,
    });
    let mut pub_tasks = Vec::new();
    let mut ack_tasks = Vec::new();
    for (i, (conn, topics)) in pubs.into_iter().zip(plan.publishers.iter()).enumerate() {
        let Conn {
            reader,
            writer,
            buf,
            ..
        } = conn;
        ack_tasks.push(tokio::spawn(acks(
            shared.clone(),
            i,
            reader,
            buf,
            shutdown_rx.clone(),
        )));
        pub_tasks.push(tokio::spawn(publisher(
            shared.clone(),
            i,
            cfg.clone(),
            topics.clone(),
            writer,
            shutdown_rx.clone(),
        )));
    }

    let delivered = || -> u64 {
        shared
            .pubs
            .iter()
            .map(|p| p.delivered.load(Ordering::Acquire))
            .sum()
    };
    let sent = || -> u64 {
        shared
            .pubs
            .iter()
            .map(|p| p.sent.load(Ordering::Acquire))
            .sum()
    };
    let extra_now = || extra.as_ref().map_or(0, |c| c.load(Ordering::Acquire));
    let cpu_now = || {
        (
            crate::procinfo::cpu_secs(std::process::id()),
            plan.broker_pid.and_then(crate::procinfo::cpu_secs),
        )
    };

    sleep_until_ns(measure_start).await;
    let (start_t, start_d, start_s, start_x) = (now_ns(), delivered(), sent(), extra_now());
    let start_cpu = cpu_now();
    let start_jiffies = crate::procinfo::cpu_jiffies();
    sleep_until_ns(measure_end).await;
    let (end_t, end_d, end_s, end_x) = (now_ns(), delivered(), sent(), extra_now());
    let end_cpu = cpu_now();
    let end_jiffies = crate::procinfo::cpu_jiffies();
    let secs = (end_t - start_t) as f64 / 1e9;
    let share = |a: Option<f64>, b: Option<f64>| Some(((b? - a?) / secs * 100.0).round() / 100.0);
    shared.stop_sending.store(true, Ordering::Release);
    for p in &shared.pubs {
        p.notify.notify_one();
    }

    // Drain: wait for every acknowledgement and delivery, or until nothing moves.
    let drain_start = now_ns();
    let settled = || {
        shared.pubs.iter().all(|p| {
            let sent = p.sent.load(Ordering::Acquire);
            let t = p.acks.lock();
            // `closing`: the writer has written everything and stopped.
            p.closing.load(Ordering::Acquire)
                && p.delivered.load(Ordering::Acquire) >= sent * p.fanout
                && t.unacked == 0
                && t.pubrel.is_empty()
        })
    };
    let progress = || {
        sent()
            + delivered()
            + shared
                .pubs
                .iter()
                .map(|p| p.acks.lock().acked.len())
                .sum::<u64>()
    };
    // As long as a publisher waits before it writes messages off.
    let quiet_ns = (plan.stall.as_nanos() as u64).min(plan.drain.as_nanos() as u64);
    let (mut last, mut last_change) = (progress(), now_ns());
    let mut drain_end = DrainEnd::Settled;
    while !settled() {
        let now = now_ns();
        if now - drain_start > plan.drain.as_nanos() as u64 {
            drain_end = DrainEnd::Cut;
            break;
        }
        if now - last_change > quiet_ns {
            drain_end = DrainEnd::Quiet;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        let p = progress();
        if p != last {
            (last, last_change) = (p, now_ns());
        }
    }
    let drain_ms = (now_ns() - drain_start) as f64 / 1e6;
    let _ = shutdown_tx.send(true);

    let mut report = Report {
        measured_secs: (end_t - start_t) as f64 / 1e9,
        delivered_in_window: end_d - start_d,
        sent_in_window: end_s - start_s,
        extra_in_window: end_x - start_x,
        bench_cpu: share(start_cpu.0, end_cpu.0),
        broker_cpu: share(start_cpu.1, end_cpu.1),
        cpu_busy: crate::procinfo::cpu_busy(&start_jiffies, &end_jiffies),
        setup_ms,
        drain_ms,
        drain_end,
        ..Report::default()
    };
    let mut outcomes = Vec::new();
    for task in sub_tasks {
        match tokio::time::timeout(Duration::from_secs(5), task).await {
            Ok(Ok(outcome)) => outcomes.push(outcome),
            _ => {
                shared.errors.add("a subscriber task did not finish".into());
                // Keeps the indexes: subscriber s is outcomes[s].
                let n = shared.pubs.len();
                outcomes.push(SubOutcome {
                    totals: vec![0; n],
                    high: vec![0; n],
                    ..SubOutcome::default()
                });
            }
        }
    }
    for task in pub_tasks {
        match tokio::time::timeout(Duration::from_secs(5), task).await {
            Ok(Ok(outcome)) => {
                report.stalls += outcome.stalls;
                report.written_off += outcome.written_off;
            }
            _ => shared.errors.add("a publisher task did not finish".into()),
        }
    }
    for task in ack_tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    if persistent {
        // The subscribers have disconnected; a clean-session CONNECT with each id discards
        // its session, so that a broker that outlives the run does not go on queueing the
        // next run's messages for them.
        let forgotten = open_all(plan.subscribers.len(), |i| {
            let target = target.clone();
            async move { Conn::open(&target, addr, &sub_id(i), keep_alive).await }
        })
        .await;
        match forgotten {
            Ok(conns) => {
                for conn in conns {
                    conn.writer.close(&wire::DISCONNECT).await;
                }
            }
            Err(e) => shared
                .errors
                .add(format!("removing the subscribers' sessions: {e}")),
        }
    }

    for o in &outcomes {
        report.received += o.received;
        report.duplicates += o.duplicates;
        report.foreign += o.foreign;
        report.latency.merge(&o.latency);
    }
    for (i, p) in shared.pubs.iter().enumerate() {
        let sent = p.sent.load(Ordering::Acquire);
        report.sent += sent;
        report.expected += sent * p.fanout;
        let table = p.acks.lock();
        if table.unexpected > 0 {
            shared.errors.add(format!(
                "publisher {i}: {} acknowledgements for unknown packet identifiers",
                table.unexpected
            ));
        }
        report.gaps += match &expected[i] {
            Some(subs) => subs
                .iter()
                .filter_map(|&s| outcomes.get(s))
                .map(|o| o.high[i].saturating_sub(o.totals[i]))
                .sum(),
            // Spread over subscribers, order between them is not kept: an estimate.
            None => {
                let high = outcomes.iter().map(|o| o.high[i]).max().unwrap_or(0);
                let total: u64 = outcomes.iter().map(|o| o.totals[i]).sum();
                high.saturating_sub(total)
            }
        };
        if !qos_track(qos) {
            continue;
        }
        report.acked += table.acked.len();
        let empty = SeqSet::default();
        let seen = |s: usize| {
            outcomes
                .get(s)
                .and_then(|o| o.seen.get(i))
                .unwrap_or(&empty)
        };
        match &expected[i] {
            Some(subs) => {
                for &s in subs {
                    let lost = table.acked.missing_from(seen(s));
                    report.lost += lost;
                    if lost > 0 && report.loss_detail.len() < 10 {
                        report.loss_detail.push(format!(
                            "publisher {i} -> subscriber {s}: {lost} of {} acknowledged \
                             messages missing, first seq {:?}",
                            table.acked.len(),
                            table.acked.first_missing_from(seen(s))
                        ));
                    }
                }
            }
            None => {
                let mut union = SeqSet::default();
                for s in 0..outcomes.len() {
                    union.union_with(seen(s));
                }
                let lost = table.acked.missing_from(&union);
                report.lost += lost;
                if lost > 0 && report.loss_detail.len() < 10 {
                    report.loss_detail.push(format!(
                        "publisher {i}: {lost} of {} acknowledged messages missing, first seq {:?}",
                        table.acked.len(),
                        table.acked.first_missing_from(&union)
                    ));
                }
            }
        }
    }
    if !qos_track(qos) {
        // QoS 0: what never arrived, unless the drain was cut short while messages were
        // still arriving; then only the gaps are certain.
        report.lost = match report.drain_end {
            DrainEnd::Cut => report.gaps,
            _ => report
                .expected
                .saturating_sub(report.received - report.duplicates),
        };
    }
    report.errors = shared.errors.count.load(Ordering::Relaxed);
    report.error_samples = shared.errors.samples.lock().clone();
    Ok(report)
}

async fn sleep_until_ns(t: u64) {
    let now = now_ns();
    if t > now {
        tokio::time::sleep(Duration::from_nanos(t - now)).await;
    }
}

struct PubCfg {
    qos: QoS,
    payload: usize,
    window: u64,
    /// Messages per second for this publisher.
    rate: Option<f64>,
    inflight: u32,
    stall_ns: u64,
}

/// A small fast generator for topic choice; no need for quality.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

async fn publisher(
    shared: Arc<Shared>,
    id: usize,
    cfg: Arc<PubCfg>,
    topics: Topics,
    mut writer: Writer,
    mut shutdown: watch::Receiver<bool>,
) -> PubOutcome {
    let st = shared.pubs[id].clone();
    let fanout = st.fanout;
    let qos = cfg.qos;
    let properties = Properties::default();
    let mut payload = vec![0xA5u8; cfg.payload];
    let mut wbuf = BytesMut::with_capacity(BATCH_BYTES * 2);
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ (id as u64 + 1));
    let mut seq = 0u64;
    let mut out = PubOutcome {
        stalls: 0,
        written_off: 0,
    };
    // Deliveries written off after stalls: they no longer hold the window.
    let mut written_off = 0u64;
    let mut blocked_since: Option<(u64, u64)> = None; // (when, deliveries then)
    let start = now_ns();
    loop {
        let sending = !shared.stop_sending.load(Ordering::Acquire);
        if qos == QoS::ExactlyOnce {
            for pkid in st.acks.lock().pubrel.drain(..) {
                wire::put_ack(&mut wbuf, wire::PUBREL, pkid);
            }
        }
        let now = now_ns();
        let mut budget = if sending { BATCH_MSGS } else { 0 };
        let mut wait_ns = 50_000_000u64;
        if sending && cfg.window > 0 && fanout > 0 {
            let delivered = st.delivered.load(Ordering::Acquire);
            let outstanding = (seq * fanout).saturating_sub(delivered + written_off);
            let room = (cfg.window * fanout).saturating_sub(outstanding) / fanout;
            if room == 0 {
                match blocked_since {
                    Some((since, then)) if then == delivered => {
                        let waited = now - since;
                        if waited >= cfg.stall_ns {
                            out.stalls += 1;
                            out.written_off += outstanding;
                            written_off += outstanding;
                            blocked_since = None;
                            continue;
                        }
                        wait_ns = cfg.stall_ns - waited;
                    }
                    _ => blocked_since = Some((now, delivered)),
                }
            } else {
                blocked_since = None;
            }
            budget = budget.min(room);
        }
        if let Some(rate) = cfg.rate {
            let due = ((now - start) as f64 * rate / 1e9) as u64 + 1;
            budget = budget.min(due.saturating_sub(seq));
            if due <= seq {
                let next = start + ((seq as f64) * 1e9 / rate) as u64;
                wait_ns = wait_ns.min(next.saturating_sub(now).max(1));
            }
        }
        if budget > 0 {
            let mut table = qos_track(qos).then(|| st.acks.lock());
            for _ in 0..budget {
                let pkid = match table.as_mut() {
                    Some(t) => {
                        let pkid = (seq % 65535) as u16 + 1;
                        if t.slots[pkid as usize] != 0 || t.unacked >= cfg.inflight {
                            break; // wait for acknowledgements
                        }
                        t.slots[pkid as usize] = seq + 1;
                        t.unacked += 1;
                        pkid
                    }
                    None => 0,
                };
                Stamp {
                    publisher: id as u64,
                    seq,
                    sent_ns: now_ns(),
                }
                .write(&mut payload);
                let topic = match &topics {
                    Topics::Fixed(topic) => topic.as_str(),
                    Topics::Random(all) => all[rng.below(all.len())].as_str(),
                };
                let publish = PublishRef {
                    dup: false,
                    qos,
                    retain: false,
                    topic,
                    pkid,
                    payload: &payload,
                    properties: &properties,
                };
                if let Err(e) = encode_publish(publish, VERSION, &mut wbuf) {
                    shared.errors.add(format!("publisher {id}: encode: {e}"));
                    return out;
                }
                seq += 1;
                if wbuf.len() >= BATCH_BYTES {
                    break;
                }
            }
            drop(table);
        }
        if !wbuf.is_empty() {
            tokio::select! {
                res = writer.write(&mut wbuf) => if let Err(e) = res {
                    shared.errors.add(format!("publisher {id}: write: {e}"));
                    return out;
                },
                _ = shutdown.changed() => break,
            }
            // Counted once written: a batch cut off at the end of the run was never sent.
            st.sent.store(seq, Ordering::Release);
            continue;
        }
        if !sending {
            let t = st.acks.lock();
            if t.unacked == 0 && t.pubrel.is_empty() {
                break;
            }
        }
        tokio::select! {
            _ = st.notify.notified() => {}
            _ = tokio::time::sleep(Duration::from_nanos(wait_ns)) => {}
            _ = shutdown.changed() => break,
        }
    }
    st.closing.store(true, Ordering::Release);
    writer.close(&wire::DISCONNECT).await;
    out
}

/// Reads a publisher's acknowledgements: frees packet identifiers, records acknowledged
/// sequence numbers and queues PUBRELs for the writer.
async fn acks(
    shared: Arc<Shared>,
    id: usize,
    mut reader: Reader,
    mut buf: BytesMut,
    mut shutdown: watch::Receiver<bool>,
) {
    let st = shared.pubs[id].clone();
    loop {
        let mut consumed = 0;
        let mut any = false;
        {
            let mut table = st.acks.lock();
            loop {
                match wire::next_frame(&buf[consumed..]) {
                    Ok(Some((frame, len))) => {
                        consumed += len;
                        match frame {
                            Frame::Ack { packet_type, pkid } => {
                                table.on_ack(packet_type, pkid);
                                any = true;
                            }
                            Frame::Other { packet_type: 13 } => {} // PINGRESP
                            other => shared
                                .errors
                                .add(format!("publisher {id}: unexpected {other:?}")),
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        shared.errors.add(format!("publisher {id}: {e}"));
                        return;
                    }
                }
            }
        }
        buf.advance(consumed);
        if any {
            st.notify.notify_one();
        }
        tokio::select! {
            res = reader.read(&mut buf) => match res {
                Ok(0) => {
                    if !*shutdown.borrow() && !st.closing.load(Ordering::Acquire) {
                        shared.errors.add(format!("publisher {id}: the broker closed the connection"));
                    }
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    shared.errors.add(format!("publisher {id}: read: {e}"));
                    return;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

async fn subscriber(
    shared: Arc<Shared>,
    conn: Conn,
    mut shutdown: watch::Receiver<bool>,
) -> SubOutcome {
    let Conn {
        mut reader,
        mut writer,
        mut buf,
        ..
    } = conn;
    let npubs = shared.pubs.len();
    let mut out = SubOutcome {
        totals: vec![0; npubs],
        high: vec![0; npubs],
        ..SubOutcome::default()
    };
    let mut counts = vec![0u64; npubs];
    let mut wbuf = BytesMut::with_capacity(64 << 10);
    let (window_start, window_end) = (shared.measure_start, shared.measure_end);
    let mut now = now_ns();
    'run: loop {
        let mut consumed = 0;
        loop {
            match wire::next_frame(&buf[consumed..]) {
                Ok(Some((frame, len))) => {
                    consumed += len;
                    match frame {
                        Frame::Publish {
                            qos, pkid, payload, ..
                        } => {
                            match Stamp::read(payload) {
                                Some(s) if (s.publisher as usize) < npubs && s.seq < MAX_SEQ => {
                                    let p = s.publisher as usize;
                                    counts[p] += 1;
                                    out.received += 1;
                                    out.totals[p] += 1;
                                    out.high[p] = out.high[p].max(s.seq + 1);
                                    if qos > 0 {
                                        if out.seen.is_empty() {
                                            out.seen = vec![SeqSet::default(); npubs];
                                        }
                                        if !out.seen[p].insert(s.seq) {
                                            out.duplicates += 1;
                                        }
                                    }
                                    if (window_start..window_end).contains(&s.sent_ns) {
                                        out.latency.record(now.saturating_sub(s.sent_ns));
                                    }
                                }
                                _ => out.foreign += 1,
                            }
                            match qos {
                                1 => wire::put_ack(&mut wbuf, wire::PUBACK, pkid),
                                2 => wire::put_ack(&mut wbuf, wire::PUBREC, pkid),
                                _ => {}
                            }
                        }
                        Frame::Ack {
                            packet_type: 6,
                            pkid,
                        } => wire::put_ack(&mut wbuf, wire::PUBCOMP, pkid),
                        Frame::Other { packet_type: 13 } => {}
                        other => shared
                            .errors
                            .add(format!("subscriber: unexpected {other:?}")),
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    shared.errors.add(format!("subscriber: {e}"));
                    break 'run;
                }
            }
        }
        buf.advance(consumed);
        for (p, count) in counts.iter_mut().enumerate() {
            if *count > 0 {
                let st = &shared.pubs[p];
                st.delivered.fetch_add(*count, Ordering::AcqRel);
                st.notify.notify_one();
                *count = 0;
            }
        }
        if !wbuf.is_empty() {
            tokio::select! {
                res = writer.write(&mut wbuf) => if let Err(e) = res {
                    shared.errors.add(format!("subscriber: write: {e}"));
                    break 'run;
                },
                _ = shutdown.changed() => break 'run,
            }
        }
        tokio::select! {
            res = reader.read(&mut buf) => match res {
                Ok(0) => {
                    if !*shutdown.borrow() {
                        shared.errors.add("subscriber: the broker closed the connection".into());
                    }
                    break 'run;
                }
                Ok(_) => now = now_ns(),
                Err(e) => {
                    shared.errors.add(format!("subscriber: read: {e}"));
                    break 'run;
                }
            },
            _ = shutdown.changed() => break 'run,
        }
    }
    writer.close(&wire::DISCONNECT).await;
    // Until the broker has closed its end (at most a second): a persistent subscriber's
    // session is removed next with a CONNECT under the same client id, which should find
    // this connection gone, not take it over.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Ok(n) = reader.read(&mut buf).await {
            if n == 0 {
                break;
            }
            buf.clear();
        }
    })
    .await;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::Transport;

    #[tokio::test]
    async fn publishes_against_the_sink_and_accounts_for_them() {
        let sink = crate::sink::start().await.unwrap();
        let target = Target {
            transport: Transport::Tcp,
            host: "127.0.0.1".into(),
            port: sink.addr.port(),
            path: String::new(),
        };
        let plan = Plan {
            qos: QoS::AtMostOnce,
            payload: 64,
            window: 0,
            rate: None,
            inflight: 0,
            keep_alive: 0,
            publishers: vec![Topics::Fixed("a".into()), Topics::Fixed("b".into())],
            subscribers: Vec::new(),
            persistent: false,
            warmup: Duration::from_millis(50),
            duration: Duration::from_millis(200),
            drain: Duration::from_millis(200),
            stall: Duration::from_millis(100),
            broker_pid: None,
        };
        let report = run(plan, &target, sink.addr, Some(sink.publishes.clone()))
            .await
            .unwrap();
        assert_eq!(report.errors, 0, "{:?}", report.error_samples);
        assert!(report.sent_in_window > 0);
        assert!(report.extra_in_window > 0);
        assert!(report.bench_cpu.is_some() && report.broker_cpu.is_none());
        // Nobody subscribes: nothing is expected, nothing lost.
        assert_eq!((report.expected, report.received, report.lost), (0, 0, 0));
        // The sink sees every message written (it may still be reading its socket).
        for _ in 0..200 {
            if sink.publishes.load(Ordering::Relaxed) == report.sent {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(sink.publishes.load(Ordering::Relaxed), report.sent);
    }

    #[test]
    fn ack_table_tracks_qos2_exchanges() {
        let mut t = AckTable::new();
        t.slots[5] = 41 + 1;
        t.unacked = 1;
        t.on_ack(5, 5); // PUBREC: queue a PUBREL, still unacknowledged
        assert_eq!((t.pubrel.as_slice(), t.unacked), (&[5u16][..], 1));
        t.on_ack(7, 5); // PUBCOMP: done
        assert_eq!((t.unacked, t.acked.len(), t.slots[5]), (0, 1, 0));
        t.on_ack(4, 5); // a PUBACK for a free identifier
        assert_eq!(t.unexpected, 1);
    }
}
