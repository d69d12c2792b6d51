//! The writer thread: applies operations in batches, one durable commit per batch.

use std::collections::HashMap;
use std::sync::mpsc::Receiver;

use redb::{Database, Durability, ReadableTable, WriteTransaction};
use tokio::sync::watch;

use super::{
    client_key, codec, Op, MESSAGES, QOS2_IN, QUEUE, RETAINED, SESSIONS, SUBSCRIPTIONS, WILLS,
};

/// Operations applied in one transaction at most; more wait for the next one.
const MAX_BATCH: usize = 50_000;

pub struct Writer {
    db: Database,
    ops: Receiver<(u64, Op)>,
    durable: watch::Sender<u64>,
    /// How many queue entries reference each stored message: a message is deleted with
    /// its last reference.
    references: HashMap<u64, u32>,
}

impl Writer {
    pub fn new(
        db: Database,
        ops: Receiver<(u64, Op)>,
        durable: watch::Sender<u64>,
        references: HashMap<u64, u32>,
    ) -> Writer {
        Writer {
            db,
            ops,
            durable,
            references,
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
            match self.apply(batch) {
                Ok(()) => {
                    self.durable.send_replace(last);
                }
                Err(e) => {
                    // A failed commit (disk full, I/O error) must not be acknowledged as
                    // durable; the broker keeps running without confirming writes.
                    tracing::error!("store commit failed: {e}; no further writes are confirmed");
                    return;
                }
            }
        }
    }

    fn apply(&mut self, batch: Vec<(u64, Op)>) -> Result<(), redb::Error> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        for (_, op) in batch {
            self.apply_one(&txn, op)?;
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

    fn apply_one(&mut self, txn: &WriteTransaction, op: Op) -> Result<(), redb::Error> {
        match op {
            Op::SessionPut {
                client,
                expiry,
                disconnected_at,
                username,
            } => {
                txn.open_table(SESSIONS)?.insert(
                    &*client,
                    codec::encode_session(expiry, disconnected_at, username.as_deref()).as_slice(),
                )?;
            }
            Op::SessionDelete { client } => {
                txn.open_table(SESSIONS)?.remove(&*client)?;
                txn.open_table(WILLS)?.remove(&*client)?;
                let prefix = client_key(&client, b"");
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
                    .insert(key.as_str(), codec::encode_sub(&record).as_slice())?;
            }
            Op::SubDelete { client, filter } => {
                let key = format!("{client}\0{filter}");
                txn.open_table(SUBSCRIPTIONS)?.remove(key.as_str())?;
            }
            Op::MessagePut { id, bytes } => {
                txn.open_table(MESSAGES)?.insert(id, bytes.as_slice())?;
            }
            Op::QueuePut {
                client,
                seq,
                message_id,
                qos,
                retain,
                subscription_ids,
            } => {
                *self.references.entry(message_id).or_default() += 1;
                let key = client_key(&client, &seq.to_be_bytes());
                txn.open_table(QUEUE)?.insert(
                    key.as_slice(),
                    codec::encode_entry(message_id, qos, retain, &subscription_ids, 0, 0)
                        .as_slice(),
                )?;
            }
            Op::QueueStage {
                client,
                seq,
                pkid,
                stage,
            } => {
                let key = client_key(&client, &seq.to_be_bytes());
                let mut queue = txn.open_table(QUEUE)?;
                let current = queue.get(key.as_slice())?.map(|v| v.value().to_vec());
                if let Some(current) = current {
                    queue.insert(
                        key.as_slice(),
                        codec::restage_entry(&current, pkid, stage).as_slice(),
                    )?;
                }
            }
            Op::QueueDelete { client, seq } => {
                let key = client_key(&client, &seq.to_be_bytes());
                let removed = txn
                    .open_table(QUEUE)?
                    .remove(key.as_slice())?
                    .and_then(|v| codec::entry_message_id(v.value()));
                if let Some(id) = removed {
                    self.unref(txn, id)?;
                }
            }
            Op::Qos2Put { client, pkid } => {
                let key = client_key(&client, &pkid.to_be_bytes());
                txn.open_table(QOS2_IN)?.insert(key.as_slice(), ())?;
            }
            Op::Qos2Delete { client, pkid } => {
                let key = client_key(&client, &pkid.to_be_bytes());
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
                    .insert(&*client, codec::encode_will(fire_at, &bytes).as_slice())?;
            }
            Op::WillDelete { client } => {
                txn.open_table(WILLS)?.remove(&*client)?;
            }
        }
        Ok(())
    }
}
