//! Durable state in an embedded database (redb): persistent sessions (subscriptions,
//! queued and in-flight messages, incoming QoS 2 identifiers, pending wills) and retained
//! messages, so that an acknowledged QoS 1/2 message survives a SIGKILL.
//!
//! Writes are operations sent to one writer thread, which applies everything waiting in
//! one transaction and commits it durably (fsync): a group commit, so a thousand QoS 1
//! publishes in flight cost a handful of fsyncs, not a thousand. A connection that
//! produced operations while handling a batch of packets waits for their commit before
//! it sends the acknowledgements: every submit notes its sequence in the [`Durability`]
//! the caller passes down (the connection's, for the work one turn of it does), and the
//! connection then waits for that one sequence. QoS 0 traffic and clean sessions produce
//! no operations and never wait.
//!
//! A write that fails (the disk is full, an I/O error) stops nothing for good: the writer
//! keeps the failed batch and tries it again with a backoff until it commits, and the
//! waiters get their acknowledgements then. Meanwhile [`Store::is_failing`] is true, so
//! the broker refuses new work that would need the store (persistent CONNECTs, QoS 1/2
//! publishes that must be stored) rather than leave it hanging, and [`Store::health`]
//! tells the admin API and Prometheus.
//!
//! Why redb: pure Rust (no C toolchain, builds for any target), ACID with crash-safe
//! commits, one file, no background compaction threads, and a small API — what an
//! embedded broker store needs, and nothing it would have to configure.

mod codec;
mod writer;

use std::cell::Cell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::watch;

pub use codec::{encode_message, MessageRecord, SubRecord, SubscriptionIds};
use writer::Writer;

/// Client id → session record.
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
/// "client\0filter" → subscription options.
const SUBSCRIPTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("subscriptions");
/// "client\0" + sequence (big endian) → queue entry.
const QUEUE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("queue");
/// Message id → stored message (shared by the queue entries that reference it).
const MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("messages");
/// "client\0" + packet id → () : incoming QoS 2 exchanges awaiting PUBREL.
const QOS2_IN: TableDefinition<&[u8], ()> = TableDefinition::new("qos2_in");
/// Topic → retained message.
const RETAINED: TableDefinition<&str, &[u8]> = TableDefinition::new("retained");
/// Client id → pending will (fire time + message).
const WILLS: TableDefinition<&str, &[u8]> = TableDefinition::new("wills");

/// One change to the durable state.
#[derive(Debug)]
pub enum Op {
    SessionPut {
        client: Arc<str>,
        expiry: u32,
        /// Unix milliseconds when the session went offline (for expiry after a restart).
        disconnected_at: Option<u64>,
        username: Option<String>,
    },
    /// Removes the session and everything it owns.
    SessionDelete {
        client: Arc<str>,
    },
    SubPut {
        client: Arc<str>,
        filter: String,
        record: SubRecord,
    },
    SubDelete {
        client: Arc<str>,
        filter: String,
    },
    MessagePut {
        id: u64,
        bytes: Vec<u8>,
    },
    QueuePut {
        client: Arc<str>,
        seq: u64,
        message_id: u64,
        qos: u8,
        retain: bool,
        subscription_ids: SubscriptionIds,
    },
    /// The entry was sent with `pkid` (stage 1) or its PUBREL was sent (stage 2).
    QueueStage {
        client: Arc<str>,
        seq: u64,
        pkid: u16,
        stage: u8,
    },
    QueueDelete {
        client: Arc<str>,
        seq: u64,
    },
    Qos2Put {
        client: Arc<str>,
        pkid: u16,
    },
    Qos2Delete {
        client: Arc<str>,
        pkid: u16,
    },
    RetainPut {
        topic: String,
        bytes: Vec<u8>,
    },
    RetainDelete {
        topic: String,
    },
    WillPut {
        client: Arc<str>,
        fire_at: u64,
        bytes: Vec<u8>,
    },
    WillDelete {
        client: Arc<str>,
    },
}

/// Everything read back at startup.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub sessions: Vec<StoredSession>,
    pub retained: Vec<MessageRecord>,
    /// The highest message id in use; new ids continue above it.
    pub max_message_id: u64,
}

/// One persistent session as stored.
#[derive(Debug, Default)]
pub struct StoredSession {
    pub client: String,
    pub expiry: u32,
    pub disconnected_at: Option<u64>,
    pub username: Option<String>,
    pub subscriptions: Vec<(String, SubRecord)>,
    /// In sequence order.
    pub queue: Vec<StoredEntry>,
    pub incoming_qos2: Vec<u16>,
    /// Fire time (unix ms) and message.
    pub will: Option<(u64, MessageRecord)>,
}

/// One queued or in-flight message of a session.
#[derive(Debug, Clone)]
pub struct StoredEntry {
    pub seq: u64,
    pub message_id: u64,
    pub message: Arc<MessageRecord>,
    pub qos: u8,
    pub retain: bool,
    pub subscription_ids: SubscriptionIds,
    /// 0 if not sent yet.
    pub pkid: u16,
    /// 0 queued, 1 PUBLISH sent, 2 PUBREL sent.
    pub stage: u8,
}

/// Why the store could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data directory {0}: {1}")]
    Dir(PathBuf, std::io::Error),
    #[error("cannot open the database {0}: {1}")]
    Open(PathBuf, String),
    #[error("cannot read the database: {0}")]
    Read(String),
}

fn read_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Read(e.to_string())
}

/// The durable store. Cheap to share through its `Arc`.
pub struct Store {
    /// Sequence assignment and sending happen under one lock, so the writer sees
    /// operations in sequence order and "durable up to N" is exact.
    sender: Mutex<(u64, std::sync::mpsc::Sender<(u64, Op)>)>,
    durable: watch::Receiver<u64>,
    next_message_id: AtomicU64,
    path: PathBuf,
    health: Arc<Health>,
}

/// How the writer is doing. The writer thread updates it; the [`Store`] handle reads it.
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// A write failed and has not succeeded since.
    failing: AtomicBool,
    /// Write attempts that failed, since the start.
    failed_writes: AtomicU64,
    /// Times the store went from failing back to working.
    recoveries: AtomicU64,
    /// New work refused because the store was failing.
    refused: AtomicU64,
    episode: Mutex<Episode>,
}

#[derive(Debug, Default)]
struct Episode {
    /// Unix milliseconds when the current failing episode began; `None` when working.
    since: Option<u64>,
    /// The latest error (of the current episode, or of the last one).
    error: Option<String>,
}

impl Health {
    /// A write attempt failed: logged once per episode, at its start, with the error.
    fn failed(&self, error: &redb::Error) {
        self.failed_writes.fetch_add(1, Ordering::Relaxed);
        let mut episode = self.episode.lock();
        episode.error = Some(error.to_string());
        if episode.since.is_none() {
            episode.since = Some(unix_ms_now());
            self.failing.store(true, Ordering::Release);
            tracing::error!(
                %error,
                "store: a durable write failed; it is retried until it succeeds (free some \
                 disk space). Meanwhile acknowledgements that need the store are held, and \
                 persistent CONNECTs and QoS 1/2 publishes that must be stored are refused"
            );
        } else {
            tracing::debug!(%error, "store: the write still fails");
        }
    }

    /// The failed batch committed at last, after `attempts` failed tries over `down`.
    fn recovered(&self, attempts: u64, down: std::time::Duration, ops: usize) {
        let mut episode = self.episode.lock();
        episode.since = None;
        self.failing.store(false, Ordering::Release);
        self.recoveries.fetch_add(1, Ordering::Relaxed);
        drop(episode);
        tracing::warn!(
            failed_attempts = attempts,
            down_ms = down.as_millis() as u64,
            ops,
            "store: writes succeed again; the held operations are committed"
        );
    }
}

/// The store's state, for the admin API and Prometheus.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreHealth {
    /// A write failed and is being retried: new work that needs the store is refused.
    pub failing: bool,
    /// Unix milliseconds when the current failing episode began.
    pub failing_since: Option<u64>,
    /// The latest write error (of this episode or the last one).
    pub last_error: Option<String>,
    /// Write attempts that failed, since the start.
    pub failed_writes: u64,
    /// Times the store recovered from failing.
    pub recoveries: u64,
    /// Persistent CONNECTs and publishes refused because the store was failing.
    pub refused: u64,
    /// Operations submitted and not yet durable.
    pub pending: u64,
}

fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What some work must wait for before it is acknowledged: the highest sequence of the
/// operations it submitted (0: none). Whoever will acknowledge creates one and passes it
/// down to everything that may write for that work (a connection, for one turn: the
/// publish it handles writes the subscribers' queue entries too); work nobody waits for
/// passes [`Durability::unwaited`]. A cluster's acknowledgement wait can sit beside it.
#[derive(Debug, Default)]
pub struct Durability(Cell<u64>);

impl Durability {
    /// A fresh one: nothing to wait for yet.
    pub fn new() -> Durability {
        Durability::default()
    }

    /// For work that nobody acknowledges (timers, `$SYS`, the admin API, restoring).
    pub fn unwaited() -> Durability {
        Durability::default()
    }

    /// Notes that the work submitted operation `seq`.
    pub fn note(&self, seq: u64) {
        self.0.set(self.0.get().max(seq));
    }

    /// Takes (and resets) what to wait for: the highest sequence noted, 0 for nothing.
    pub fn take(&self) -> u64 {
        self.0.replace(0)
    }
}

/// Memory redb may use to cache the file's pages. Its default, 1 GiB, would let the store
/// alone take that much resident memory once the file is large (retained messages, long
/// queues); the operating system's page cache still holds what is read often.
pub const CACHE_BYTES: usize = 64 * 1024 * 1024;

impl Store {
    /// Opens (or creates) `dir/bridge.redb` and reads back its contents.
    pub fn open(dir: &Path) -> Result<(Arc<Store>, Snapshot), StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Dir(dir.to_owned(), e))?;
        let path = dir.join("bridge.redb");
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| StoreError::Open(path.clone(), e.to_string()))?;
        let snapshot = load(&db)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let (durable_tx, durable_rx) = watch::channel(0);
        let message_ids = snapshot
            .sessions
            .iter()
            .flat_map(|s| s.queue.iter().map(|e| (e.message_id, 1u32)))
            .fold(HashMap::new(), |mut counts: HashMap<u64, u32>, (id, n)| {
                *counts.entry(id).or_default() += n;
                counts
            });
        let health = Arc::new(Health::default());
        let writer = Writer::new(
            db,
            path.clone(),
            rx,
            durable_tx,
            message_ids,
            health.clone(),
        );
        std::thread::Builder::new()
            .name("bridge-store".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::Open(path.clone(), e.to_string()))?;
        let store = Arc::new(Store {
            sender: Mutex::new((0, tx)),
            durable: durable_rx,
            next_message_id: AtomicU64::new(snapshot.max_message_id + 1),
            path,
            health,
        });
        Ok((store, snapshot))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues an operation for the writer, noting its sequence number in `durability`.
    pub fn submit(&self, op: Op, durability: &Durability) -> u64 {
        let seq = {
            let mut sender = self.sender.lock();
            sender.0 += 1;
            let seq = sender.0;
            // The writer only stops with the process; a send error means it died, and
            // `wait_durable` reports that.
            let _ = sender.1.send((seq, op));
            seq
        };
        durability.note(seq);
        seq
    }

    /// A fresh message id.
    pub fn new_message_id(&self) -> u64 {
        self.next_message_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Resolves once every operation up to `seq` is committed durably.
    pub async fn wait_durable(&self, seq: u64) {
        let mut durable = self.durable.clone();
        if durable.wait_for(|&done| done >= seq).await.is_err() {
            // The writer is gone: nothing more will ever be durable. Never acknowledge
            // what is not stored: stop here for good.
            tracing::error!("the store writer stopped; holding acknowledgements");
            std::future::pending::<()>().await;
        }
    }

    /// The highest sequence committed durably.
    pub fn durable(&self) -> u64 {
        *self.durable.borrow()
    }

    /// Whether writes are failing (and being retried) now. New work that would need the
    /// store is refused meanwhile: it would only wait for as long as the failure lasts.
    pub fn is_failing(&self) -> bool {
        self.health.failing.load(Ordering::Acquire)
    }

    /// Counts one piece of work refused because the store was failing.
    pub fn count_refused(&self) {
        self.health.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// The store's state now.
    pub fn health(&self) -> StoreHealth {
        let submitted = self.sender.lock().0;
        let episode = self.health.episode.lock();
        StoreHealth {
            failing: self.is_failing(),
            failing_since: episode.since,
            last_error: episode.error.clone(),
            failed_writes: self.health.failed_writes.load(Ordering::Relaxed),
            recoveries: self.health.recoveries.load(Ordering::Relaxed),
            refused: self.health.refused.load(Ordering::Relaxed),
            pending: submitted.saturating_sub(self.durable()),
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("durable", &self.durable())
            .finish()
    }
}

/// Key "client\0" + suffix.
fn client_key(client: &str, suffix: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(client.len() + 1 + suffix.len());
    key.extend_from_slice(client.as_bytes());
    key.push(0);
    key.extend_from_slice(suffix);
    key
}

/// Splits a "client\0rest" key.
fn split_key(key: &[u8]) -> Option<(&str, &[u8])> {
    let at = key.iter().position(|&b| b == 0)?;
    Some((std::str::from_utf8(&key[..at]).ok()?, &key[at + 1..]))
}

fn load(db: &Database) -> Result<Snapshot, StoreError> {
    // Make sure every table exists, so that reads below never fail on a fresh file.
    {
        let txn = db.begin_write().map_err(read_err)?;
        txn.open_table(SESSIONS).map_err(read_err)?;
        txn.open_table(SUBSCRIPTIONS).map_err(read_err)?;
        txn.open_table(QUEUE).map_err(read_err)?;
        txn.open_table(MESSAGES).map_err(read_err)?;
        txn.open_table(QOS2_IN).map_err(read_err)?;
        txn.open_table(RETAINED).map_err(read_err)?;
        txn.open_table(WILLS).map_err(read_err)?;
        txn.commit().map_err(read_err)?;
    }
    let txn = db.begin_read().map_err(read_err)?;
    let mut snapshot = Snapshot::default();
    let mut sessions: HashMap<String, StoredSession> = HashMap::new();

    for row in txn
        .open_table(SESSIONS)
        .map_err(read_err)?
        .iter()
        .map_err(read_err)?
    {
        let (key, value) = row.map_err(read_err)?;
        let client = key.value().to_owned();
        let record = codec::decode_session(value.value()).map_err(read_err)?;
        sessions.insert(
            client.clone(),
            StoredSession {
                client,
                expiry: record.0,
                disconnected_at: record.1,
                username: record.2,
                ..StoredSession::default()
            },
        );
    }
    for row in txn
        .open_table(SUBSCRIPTIONS)
        .map_err(read_err)?
        .iter()
        .map_err(read_err)?
    {
        let (key, value) = row.map_err(read_err)?;
        let Some((client, filter)) = split_key(key.value().as_bytes()) else {
            continue;
        };
        let Some(session) = sessions.get_mut(client) else {
            continue;
        };
        let filter = String::from_utf8_lossy(filter).into_owned();
        session
            .subscriptions
            .push((filter, codec::decode_sub(value.value()).map_err(read_err)?));
    }
    let messages_table = txn.open_table(MESSAGES).map_err(read_err)?;
    let mut messages: HashMap<u64, Arc<MessageRecord>> = HashMap::new();
    for row in messages_table.iter().map_err(read_err)? {
        let (key, value) = row.map_err(read_err)?;
        snapshot.max_message_id = snapshot.max_message_id.max(key.value());
        messages.insert(
            key.value(),
            Arc::new(codec::decode_message(value.value()).map_err(read_err)?),
        );
    }
    for row in txn
        .open_table(QUEUE)
        .map_err(read_err)?
        .iter()
        .map_err(read_err)?
    {
        let (key, value) = row.map_err(read_err)?;
        let Some((client, seq)) = split_key(key.value()) else {
            continue;
        };
        let Some(session) = sessions.get_mut(client) else {
            continue;
        };
        let seq = u64::from_be_bytes(seq.try_into().map_err(read_err)?);
        let mut entry = codec::decode_entry(seq, value.value()).map_err(read_err)?;
        let Some(message) = messages.get(&entry.message_id) else {
            continue;
        };
        entry.message = message.clone();
        session.queue.push(entry);
    }
    for row in txn
        .open_table(QOS2_IN)
        .map_err(read_err)?
        .iter()
        .map_err(read_err)?
    {
        let (key, _) = row.map_err(read_err)?;
        let Some((client, pkid)) = split_key(key.value()) else {
            continue;
        };
        if let (Some(session), Ok(pkid)) = (sessions.get_mut(client), pkid.try_into()) {
            session.incoming_qos2.push(u16::from_be_bytes(pkid));
        }
    }
    for row in txn
        .open_table(WILLS)
        .map_err(read_err)?
        .iter()
        .map_err(read_err)?
    {
        let (key, value) = row.map_err(read_err)?;
        if let Some(session) = sessions.get_mut(key.value()) {
            session.will = Some(codec::decode_will(value.value()).map_err(read_err)?);
        }
    }
    for row in txn
        .open_table(RETAINED)
        .map_err(read_err)?
        .iter()
        .map_err(read_err)?
    {
        let (_, value) = row.map_err(read_err)?;
        snapshot
            .retained
            .push(codec::decode_message(value.value()).map_err(read_err)?);
    }
    let mut sessions: Vec<StoredSession> = sessions.into_values().collect();
    for session in &mut sessions {
        session.queue.sort_by_key(|e| e.seq);
    }
    sessions.sort_by(|a, b| a.client.cmp(&b.client));
    snapshot.sessions = sessions;
    Ok(snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_submit_is_noted_only_in_the_durability_it_was_given() {
        let dir = std::env::temp_dir().join(format!("bridge-durability-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (store, _) = Store::open(&dir).expect("open a store");
        let (mine, theirs) = (Durability::new(), Durability::new());
        let first = store.submit(Op::RetainDelete { topic: "a".into() }, &mine);
        let second = store.submit(Op::RetainDelete { topic: "b".into() }, &theirs);
        assert!(second > first);
        // Each waits for its own work only: another task's later write is not its business.
        assert_eq!(mine.take(), first);
        assert_eq!(mine.take(), 0, "taken");
        assert_eq!(theirs.take(), second);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn the_noted_sequence_becomes_durable() {
        let dir = std::env::temp_dir().join(format!("bridge-durable-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (store, _) = Store::open(&dir).expect("open a store");
        let work = Durability::new();
        store.submit(Op::RetainDelete { topic: "a".into() }, &work);
        let seq = work.take();
        tokio::time::timeout(std::time::Duration::from_secs(30), store.wait_durable(seq))
            .await
            .expect("committed");
        assert!(store.durable() >= seq);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
