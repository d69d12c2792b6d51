//! The writer thread: applies operations in batches, one durable commit per batch.
//!
//! A batch whose commit fails (disk full, I/O error) is kept and tried again, whole and
//! in order, with a backoff ([`Retry`]), until it commits: the sequence numbers after it
//! wait for it, so "durable up to N" stays exact and nothing acknowledged is lost. A failed
//! transaction is aborted, so a retry applies nothing twice. After a failure the database
//! is closed and opened again before the next try (redb answers every call with "previous
//! I/O error" once a write has failed, until it is reopened), and the message reference
//! counts are read back from the file, which is then the truth whether the failed commit
//! reached it or not. [`Health`] tells the rest of the broker meanwhile.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, WriteTransaction};
use tokio::sync::watch;

use super::{
    client_key, codec, Health, Op, MESSAGES, QOS2_IN, QUEUE, RETAINED, SESSIONS, SUBSCRIPTIONS,
    WILLS,
};

/// Operations applied in one transaction at most; more wait for the next one.
const MAX_BATCH: usize = 50_000;

/// How long the writer waits before trying a failed batch again: `first`, doubling up to
/// `max` (and at least four times what the failed try took). The maximum bounds how long
/// the store stays stopped once the disk has room again.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub first: Duration,
    pub max: Duration,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            first: Duration::from_millis(50),
            max: Duration::from_secs(1),
        }
    }
}

pub struct Writer {
    /// `None` after a failure, until it is opened again.
    db: Option<Database>,
    path: PathBuf,
    ops: Receiver<(u64, Op)>,
    durable: watch::Sender<u64>,
    /// How many queue entries reference each stored message: a message is deleted with
    /// its last reference.
    references: HashMap<u64, u32>,
    health: Arc<Health>,
    retry: Retry,
    /// Tests: how many of the next commits fail (after applying their operations, before
    /// committing), as a full disk would make them.
    #[cfg(test)]
    faults: Arc<std::sync::atomic::AtomicU32>,
}

impl Writer {
    pub fn new(
        db: Database,
        path: PathBuf,
        ops: Receiver<(u64, Op)>,
        durable: watch::Sender<u64>,
        references: HashMap<u64, u32>,
        health: Arc<Health>,
    ) -> Writer {
        Writer {
            db: Some(db),
            path,
            ops,
            durable,
            references,
            health,
            retry: Retry::default(),
            #[cfg(test)]
            faults: Arc::default(),
        }
    }

    pub fn run(mut self) {
        while let Ok(first) = self.ops.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match self.ops.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            let last = batch.last().map(|(seq, _)| *seq).unwrap_or(0);
            self.commit(&batch);
            self.durable.send_replace(last);
        }
    }

    /// Commits `batch` durably, trying again with a backoff until it succeeds. A failed
    /// commit is never reported durable: its waiters (and every later one) keep waiting.
    fn commit(&mut self, batch: &[(u64, Op)]) {
        let mut delay = self.retry.first;
        let mut failing_since: Option<Instant> = None;
        let mut attempts = 0u64;
        loop {
            let started = Instant::now();
            match self.try_commit(batch) {
                Ok(()) => {
                    if let Some(since) = failing_since {
                        self.health
                            .recovered(attempts, since.elapsed(), batch.len());
                    }
                    return;
                }
                Err(e) => {
                    attempts += 1;
                    failing_since.get_or_insert_with(Instant::now);
                    self.health.failed(&e);
                    // Start again from the file: see the module's documentation.
                    if let Some(db) = self.db.take() {
                        let _ = db.close();
                    }
                    // A try costs a reopen, which repairs the file (a walk over its tables):
                    // on a large store, wait long enough that retrying takes at most a
                    // fifth of the disk's time.
                    std::thread::sleep(delay.max(started.elapsed() * 4));
                    delay = (delay * 2).min(self.retry.max);
                }
            }
        }
    }

    /// One try: (re)opens the database if needed, applies the batch in one transaction
    /// and commits it. On error the transaction is dropped, so nothing of it is applied.
    fn try_commit(&mut self, batch: &[(u64, Op)]) -> Result<(), redb::Error> {
        let db = match self.db.take() {
            Some(db) => db,
            None => {
                let db = reopen(&self.path)?;
                self.references = count_references(&db)?;
                db
            }
        };
        let txn = db.begin_write();
        self.db = Some(db);
        let mut txn = txn?;
        txn.set_durability(Durability::Immediate)?;
        for (_, op) in batch {
            self.apply_one(&txn, op)?;
        }
        #[cfg(test)]
        if self
            .faults
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| n.checked_sub(1),
            )
            .is_ok()
        {
            return Err(redb::Error::Io(std::io::Error::from_raw_os_error(28)));
        }
        txn.commit()?;
        Ok(())
    }

    fn unref(&mut self, txn: &WriteTransaction, message_id: u64) -> Result<(), redb::Error> {
        let count = self.references.entry(message_id).or_insert(1);
        *count -= 1;
        if *count == 0 {
            self.references.remove(&message_id);
            txn.open_table(MESSAGES)?.remove(message_id)?;
        }
        Ok(())
    }

    fn apply_one(&mut self, txn: &WriteTransaction, op: &Op) -> Result<(), redb::Error> {
        match op {
            Op::SessionPut {
                client,
                expiry,
                disconnected_at,
                username,
            } => {
                txn.open_table(SESSIONS)?.insert(
                    &**client,
                    codec::encode_session(*expiry, *disconnected_at, username.as_deref())
                        .as_slice(),
                )?;
            }
            Op::SessionDelete { client } => {
                txn.open_table(SESSIONS)?.remove(&**client)?;
                txn.open_table(WILLS)?.remove(&**client)?;
                let prefix = client_key(client, b"");
                let prefix_str = String::from_utf8(prefix.clone()).unwrap_or_default();
                let mut subs = txn.open_table(SUBSCRIPTIONS)?;
                let keys: Vec<String> = subs
                    .range(prefix_str.as_str()..)?
                    .map_while(|row| {
                        let (key, _) = row.ok()?;
                        let key = key.value().to_owned();
                        key.starts_with(&prefix_str).then_some(key)
                    })
                    .collect();
                for key in keys {
                    subs.remove(key.as_str())?;
                }
                let mut queue = txn.open_table(QUEUE)?;
                let entries: Vec<(Vec<u8>, Option<u64>)> = queue
                    .range(prefix.as_slice()..)?
                    .map_while(|row| {
                        let (key, value) = row.ok()?;
                        let key = key.value().to_vec();
                        key.starts_with(&prefix)
                            .then(|| (key, codec::entry_message_id(value.value())))
                    })
                    .collect();
                for (key, message_id) in entries {
                    queue.remove(key.as_slice())?;
                    if let Some(id) = message_id {
                        self.unref(txn, id)?;
                    }
                }
                let mut qos2 = txn.open_table(QOS2_IN)?;
                let keys: Vec<Vec<u8>> = qos2
                    .range(prefix.as_slice()..)?
                    .map_while(|row| {
                        let (key, _) = row.ok()?;
                        let key = key.value().to_vec();
                        key.starts_with(&prefix).then_some(key)
                    })
                    .collect();
                for key in keys {
                    qos2.remove(key.as_slice())?;
                }
            }
            Op::SubPut {
                client,
                filter,
                record,
            } => {
                let key = format!("{client}\0{filter}");
                txn.open_table(SUBSCRIPTIONS)?
                    .insert(key.as_str(), codec::encode_sub(record).as_slice())?;
            }
            Op::SubDelete { client, filter } => {
                let key = format!("{client}\0{filter}");
                txn.open_table(SUBSCRIPTIONS)?.remove(key.as_str())?;
            }
            Op::MessagePut { id, bytes } => {
                txn.open_table(MESSAGES)?.insert(*id, bytes.as_slice())?;
            }
            Op::QueuePut {
                client,
                seq,
                message_id,
                qos,
                retain,
                subscription_ids,
            } => {
                *self.references.entry(*message_id).or_default() += 1;
                let key = client_key(client, &seq.to_be_bytes());
                txn.open_table(QUEUE)?.insert(
                    key.as_slice(),
                    codec::encode_entry(*message_id, *qos, *retain, subscription_ids, 0, 0)
                        .as_slice(),
                )?;
            }
            Op::QueueStage {
                client,
                seq,
                pkid,
                stage,
            } => {
                let key = client_key(client, &seq.to_be_bytes());
                let mut queue = txn.open_table(QUEUE)?;
                let current = queue.get(key.as_slice())?.map(|v| v.value().to_vec());
                if let Some(current) = current {
                    queue.insert(
                        key.as_slice(),
                        codec::restage_entry(&current, *pkid, *stage).as_slice(),
                    )?;
                }
            }
            Op::QueueDelete { client, seq } => {
                let key = client_key(client, &seq.to_be_bytes());
                let removed = txn
                    .open_table(QUEUE)?
                    .remove(key.as_slice())?
                    .and_then(|v| codec::entry_message_id(v.value()));
                if let Some(id) = removed {
                    self.unref(txn, id)?;
                }
            }
            Op::Qos2Put { client, pkid } => {
                let key = client_key(client, &pkid.to_be_bytes());
                txn.open_table(QOS2_IN)?.insert(key.as_slice(), ())?;
            }
            Op::Qos2Delete { client, pkid } => {
                let key = client_key(client, &pkid.to_be_bytes());
                txn.open_table(QOS2_IN)?.remove(key.as_slice())?;
            }
            Op::RetainPut { topic, bytes } => {
                txn.open_table(RETAINED)?
                    .insert(topic.as_str(), bytes.as_slice())?;
            }
            Op::RetainDelete { topic } => {
                txn.open_table(RETAINED)?.remove(topic.as_str())?;
            }
            Op::WillPut {
                client,
                fire_at,
                bytes,
            } => {
                txn.open_table(WILLS)?
                    .insert(&**client, codec::encode_will(*fire_at, bytes).as_slice())?;
            }
            Op::WillDelete { client } => {
                txn.open_table(WILLS)?.remove(&**client)?;
            }
        }
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Nothing will be durable any more: say so, and keep refusing what needs it.
            self.health
                .failing
                .store(true, std::sync::atomic::Ordering::Release);
            tracing::error!(
                "store: the writer thread failed; nothing more is stored until a restart"
            );
        }
    }
}

/// Opens the database again after a failure. `open`, not `create`: a file that went away
/// is an error to report, not an empty store to start again from. redb repairs a file
/// that was not closed cleanly (its allocator state is rebuilt from the tables).
fn reopen(path: &std::path::Path) -> Result<Database, redb::Error> {
    let started = Instant::now();
    let repaired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = repaired.clone();
    let db = Database::builder()
        .set_cache_size(super::CACHE_BYTES)
        .set_repair_callback(move |_| flag.store(true, std::sync::atomic::Ordering::Relaxed))
        .open(path)?;
    tracing::debug!(
        repaired = repaired.load(std::sync::atomic::Ordering::Relaxed),
        ms = started.elapsed().as_millis() as u64,
        "store: reopened the database"
    );
    Ok(db)
}

/// How many queue entries reference each stored message, as the file holds them.
fn count_references(db: &Database) -> Result<HashMap<u64, u32>, redb::Error> {
    let txn = db.begin_read()?;
    let mut counts: HashMap<u64, u32> = HashMap::new();
    for row in txn.open_table(QUEUE)?.iter()? {
        let (_, value) = row?;
        if let Some(id) = codec::entry_message_id(value.value()) {
            *counts.entry(id).or_default() += 1;
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::mpsc::{channel, Sender};
    use std::thread::JoinHandle;

    use super::*;
    use crate::store::SubscriptionIds;

    /// A writer on a fresh database in a directory of its own, with a fast retry.
    struct Harness {
        dir: PathBuf,
        ops: Sender<(u64, Op)>,
        next: u64,
        durable: watch::Receiver<u64>,
        faults: Arc<std::sync::atomic::AtomicU32>,
        health: Arc<Health>,
        thread: Option<JoinHandle<()>>,
    }

    impl Harness {
        fn new(name: &str) -> Harness {
            let dir = std::env::temp_dir()
                .join(format!("bridge-store-writer-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("bridge.redb");
            let db = Database::create(&path).unwrap();
            super::super::load(&db).unwrap();
            let (tx, rx) = channel();
            let (durable_tx, durable) = watch::channel(0);
            let health = Arc::new(Health::default());
            let mut writer = Writer::new(db, path, rx, durable_tx, HashMap::new(), health.clone());
            writer.retry = Retry {
                first: Duration::from_millis(1),
                max: Duration::from_millis(20),
            };
            let faults = writer.faults.clone();
            let thread = std::thread::spawn(move || writer.run());
            Harness {
                dir,
                ops: tx,
                next: 0,
                durable,
                faults,
                health,
                thread: Some(thread),
            }
        }

        fn submit(&mut self, op: Op) -> u64 {
            self.next += 1;
            self.ops.send((self.next, op)).unwrap();
            self.next
        }

        fn wait_durable(&self, seq: u64) {
            let deadline = Instant::now() + Duration::from_secs(20);
            while *self.durable.borrow() < seq {
                assert!(
                    Instant::now() < deadline,
                    "sequence {seq} never became durable"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
        }

        /// Stops the writer and reads the file back.
        fn finish(mut self) -> (Database, PathBuf) {
            let (tx, _) = channel();
            drop(std::mem::replace(&mut self.ops, tx));
            self.thread.take().unwrap().join().unwrap();
            let db = Database::create(self.dir.join("bridge.redb")).unwrap();
            (db, self.dir.clone())
        }
    }

    fn queue_put(client: &str, seq: u64, message_id: u64) -> Op {
        Op::QueuePut {
            client: client.into(),
            seq,
            message_id,
            qos: 1,
            retain: false,
            subscription_ids: SubscriptionIds::default(),
        }
    }

    fn retained(db: &Database, topic: &str) -> Option<Vec<u8>> {
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(RETAINED).unwrap();
        let value = table.get(topic).unwrap();
        value.map(|v| v.value().to_vec())
    }

    fn has_message(db: &Database, id: u64) -> bool {
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(MESSAGES).unwrap();
        table.get(id).unwrap().is_some()
    }

    #[test]
    fn a_failing_episode_starts_once_and_ends_with_the_recovery() {
        let health = Health::default();
        let error = redb::Error::Io(std::io::Error::from_raw_os_error(28));
        health.failed(&error);
        let since = health.episode.lock().since;
        assert!(since.is_some() && health.failing.load(Ordering::SeqCst));
        std::thread::sleep(Duration::from_millis(2));
        health.failed(&error);
        assert_eq!(health.episode.lock().since, since, "one episode, not two");
        assert_eq!(health.failed_writes.load(Ordering::SeqCst), 2);
        health.recovered(2, Duration::from_millis(5), 1);
        assert!(!health.failing.load(Ordering::SeqCst));
        assert_eq!(health.episode.lock().since, None);
        assert!(
            health.episode.lock().error.is_some(),
            "the last error is kept"
        );
        assert_eq!(health.recoveries.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_failed_batch_is_retried_until_it_commits_and_applied_once() {
        let mut h = Harness::new("retry");
        h.faults.store(3, Ordering::SeqCst);
        // One message referenced by two queue entries, one of them deleted in the same
        // batch: reference counts counted three times over by the failed tries would keep
        // the message forever; counted once, the second delete removes it.
        h.submit(Op::MessagePut {
            id: 7,
            bytes: b"m".to_vec(),
        });
        h.submit(queue_put("a", 1, 7));
        h.submit(queue_put("b", 1, 7));
        let last = h.submit(Op::QueueDelete {
            client: "a".into(),
            seq: 1,
        });
        h.wait_durable(last);
        assert_eq!(
            h.faults.load(Ordering::SeqCst),
            0,
            "the faults were all hit"
        );
        assert_eq!(h.health.failed_writes.load(Ordering::SeqCst), 3);
        assert_eq!(h.health.recoveries.load(Ordering::SeqCst), 1);
        assert!(!h.health.failing.load(Ordering::SeqCst));
        let last = h.submit(Op::QueueDelete {
            client: "b".into(),
            seq: 1,
        });
        h.wait_durable(last);
        let (db, dir) = h.finish();
        assert!(
            !has_message(&db, 7),
            "the last reference went, so did the message"
        );
        let txn = db.begin_read().unwrap();
        assert_eq!(txn.open_table(QUEUE).unwrap().iter().unwrap().count(), 0);
        drop((txn, db));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn while_failing_nothing_is_durable_and_later_operations_keep_their_order() {
        let mut h = Harness::new("order");
        h.faults.store(u32::MAX, Ordering::SeqCst);
        let first = h.submit(Op::RetainPut {
            topic: "t".into(),
            bytes: b"first".to_vec(),
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while h.health.failed_writes.load(Ordering::SeqCst) < 5 {
            assert!(Instant::now() < deadline, "the writer does not retry");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(h.health.failing.load(Ordering::SeqCst));
        assert!(h.health.episode.lock().error.is_some());
        // Submitted while the first batch fails: must land after it.
        h.submit(Op::RetainPut {
            topic: "t".into(),
            bytes: b"second".to_vec(),
        });
        let last = h.submit(Op::RetainPut {
            topic: "u".into(),
            bytes: b"u".to_vec(),
        });
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            *h.durable.borrow(),
            0,
            "nothing is durable while writes fail"
        );
        // Space comes back.
        h.faults.store(0, Ordering::SeqCst);
        h.wait_durable(first);
        h.wait_durable(last);
        assert!(!h.health.failing.load(Ordering::SeqCst));
        assert!(h.health.episode.lock().since.is_none());
        assert_eq!(h.health.recoveries.load(Ordering::SeqCst), 1);
        let (db, dir) = h.finish();
        assert_eq!(retained(&db, "t").as_deref(), Some(&b"second"[..]));
        assert_eq!(retained(&db, "u").as_deref(), Some(&b"u"[..]));
        drop(db);
        let _ = std::fs::remove_dir_all(dir);
    }
}
