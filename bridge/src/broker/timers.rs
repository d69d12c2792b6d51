//! The broker's timers: every delayed will and session expiry in one [`DelayQueue`], driven
//! by one task, instead of a task per timer.
//!
//! A timer is armed when a client goes away ([`Broker::close_session`]), or for a session
//! read back from the store, for the absence (the session's *generation*) that began. When
//! it fires it acts only if the session has stayed offline since then: a client that came
//! back in time has made it a no-op ([`Broker::timer_fired`]).
//!
//! Timers are keyed by client id and kind, so a client has at most one delayed will and one
//! expiry armed whatever it does: arming again replaces the timer of an earlier absence,
//! which could only be a no-op by then. Arming for a session that is no longer the one
//! registered under its client id (discarded or removed meanwhile: it has ended already)
//! arms nothing.
//!
//! The task starts with the first timer armed inside a Tokio runtime, and ends with the
//! broker. A broker used without a runtime (unit tests) arms nothing: nothing could fire.

use std::collections::HashMap;
use std::future::poll_fn;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::Poll;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::time::{delay_queue, DelayQueue};

use super::session::Session;
use super::Broker;

/// What a timer does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// Publishes the session's delayed will.
    Will,
    /// Ends the session.
    Expiry,
}

/// An armed timer: the session, and the absence it was armed for.
#[derive(Debug)]
pub(crate) struct Timer {
    pub(crate) session: Arc<Session>,
    pub(crate) generation: u64,
}

impl Timer {
    /// Whether this timer replaces `old`, armed for the same client id and kind: a later
    /// absence of the same session does (an earlier one's timer is a no-op now), an earlier
    /// one does not (two disconnects racing: the later absence's timer arrived first); a
    /// timer of another session does (the one registered under the client id replaced the
    /// other, which has ended).
    fn replaces(&self, old: &Timer) -> bool {
        !Arc::ptr_eq(&self.session, &old.session) || self.generation >= old.generation
    }
}

/// A timer on its way to the task.
struct Arm {
    kind: Kind,
    timer: Timer,
    deadline: Instant,
}

/// The broker's handle on its timers.
pub(crate) struct Timers {
    arms: mpsc::UnboundedSender<Arm>,
    /// The task's end of `arms`, until the task starts.
    idle: Mutex<Option<mpsc::UnboundedReceiver<Arm>>>,
    /// Timers armed now, as the task last counted them.
    armed: Arc<AtomicUsize>,
}

impl Timers {
    pub(crate) fn new() -> Timers {
        let (arms, idle) = mpsc::unbounded_channel();
        Timers {
            arms,
            idle: Mutex::new(Some(idle)),
            armed: Arc::default(),
        }
    }

    /// Arms a timer of `kind` for `session`'s absence `generation`, to fire `after` from now.
    pub(crate) fn arm(
        &self,
        broker: &Arc<Broker>,
        kind: Kind,
        session: &Arc<Session>,
        generation: u64,
        after: Duration,
    ) {
        if !self.start(broker) {
            return;
        }
        let now = Instant::now();
        let arm = Arm {
            kind,
            timer: Timer {
                session: Arc::clone(session),
                generation,
            },
            deadline: now.checked_add(after).unwrap_or(now + FAR_FUTURE),
        };
        // Fails only once the runtime that ran the task has gone: nothing can fire then.
        let _ = self.arms.send(arm);
    }

    /// Starts the task if it has not started; whether it runs (or ran: see [`Self::arm`]).
    fn start(&self, broker: &Arc<Broker>) -> bool {
        let mut idle = self.idle.lock();
        let Some(arms) = idle.take() else {
            return true;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(drive(arms, Arc::downgrade(broker), self.armed.clone()));
                true
            }
            Err(_) => {
                *idle = Some(arms);
                false
            }
        }
    }

    /// How many timers are armed (as of the last one armed or fired).
    #[cfg(test)]
    pub(crate) fn armed(&self) -> usize {
        self.armed.load(Ordering::Relaxed)
    }
}

/// The task: arms what `arms` brings, fires what runs out, until the broker is gone.
async fn drive(
    mut arms: mpsc::UnboundedReceiver<Arm>,
    broker: Weak<Broker>,
    armed: Arc<AtomicUsize>,
) {
    let mut timers: TimerQueue<(Arc<str>, Kind), Timer> = TimerQueue::new();
    loop {
        tokio::select! {
            biased;
            arm = arms.recv() => {
                // None: the broker (which holds the sender) is gone.
                let (Some(arm), Some(broker)) = (arm, broker.upgrade()) else {
                    break;
                };
                if broker.is_registered(&arm.timer.session) {
                    let key = (arm.timer.session.client_id.clone(), arm.kind);
                    timers.arm(key, arm.deadline, arm.timer, Timer::replaces);
                }
            }
            ((_, kind), timer) = timers.expired() => {
                let Some(broker) = broker.upgrade() else {
                    break;
                };
                broker.timer_fired(kind, &timer.session, timer.generation);
            }
        }
        armed.store(timers.len(), Ordering::Relaxed);
    }
}

impl Broker {
    /// Whether `session` is the one registered under its client id.
    pub(super) fn is_registered(&self, session: &Arc<Session>) -> bool {
        self.sessions
            .lock()
            .get(&session.client_id)
            .is_some_and(|registered| Arc::ptr_eq(registered, session))
    }
}

/// The farthest a deadline is put in the [`DelayQueue`], whose wheel holds about two years
/// (it panics beyond): a later one (a session expiry can be 136 years) is put there, and put
/// back for the rest when that comes.
const MAX_SPAN: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Stands for a deadline past what [`Instant`] can hold.
const FAR_FUTURE: Duration = Duration::from_secs(200 * 365 * 24 * 60 * 60);

/// Deadlines, at most one per key, each with a value: a [`DelayQueue`] of keys, and the
/// values beside it.
pub(crate) struct TimerQueue<K, V> {
    queue: DelayQueue<K>,
    armed: HashMap<K, Armed<V>>,
    max_span: Duration,
}

struct Armed<V> {
    slot: delay_queue::Key,
    deadline: Instant,
    value: V,
}

impl<K: Clone + Eq + Hash, V> TimerQueue<K, V> {
    /// Empty. Inside a Tokio runtime, as arming and waiting need its clock.
    pub(crate) fn new() -> Self {
        Self::with_max_span(MAX_SPAN)
    }

    fn with_max_span(max_span: Duration) -> Self {
        TimerQueue {
            queue: DelayQueue::new(),
            armed: HashMap::new(),
            max_span,
        }
    }

    /// Arms `key` to fire at `deadline` with `value`. If `key` is armed already, `replaces`
    /// (given the new value and the armed one) says whether this replaces it or is dropped.
    /// Returns whether it was armed.
    pub(crate) fn arm(
        &mut self,
        key: K,
        deadline: Instant,
        value: V,
        replaces: impl FnOnce(&V, &V) -> bool,
    ) -> bool {
        let at = self.slot_time(deadline);
        if let Some(armed) = self.armed.get_mut(&key) {
            if !replaces(&value, &armed.value) {
                return false;
            }
            self.queue.reset_at(&armed.slot, at);
            armed.deadline = deadline;
            armed.value = value;
        } else {
            let slot = self.queue.insert_at(key.clone(), at);
            self.armed.insert(
                key,
                Armed {
                    slot,
                    deadline,
                    value,
                },
            );
        }
        true
    }

    fn slot_time(&self, deadline: Instant) -> Instant {
        deadline.min(Instant::now() + self.max_span)
    }

    /// How many keys are armed.
    pub(crate) fn len(&self) -> usize {
        self.armed.len()
    }

    /// Waits for the next timer to run out and disarms it; never resolves while none is
    /// armed. Cancel-safe: a timer is taken only when this resolves.
    pub(crate) async fn expired(&mut self) -> (K, V) {
        loop {
            let expired = poll_fn(|cx| match self.queue.poll_expired(cx) {
                Poll::Ready(Some(expired)) => Poll::Ready(expired),
                // Empty: arming wakes the task (or, in a `select!`, runs beside it).
                Poll::Ready(None) | Poll::Pending => Poll::Pending,
            })
            .await;
            let reached = expired.deadline();
            let key = expired.into_inner();
            let Some(armed) = self.armed.remove(&key) else {
                continue;
            };
            if armed.deadline > reached {
                // Beyond `max_span` when armed: put back for the rest.
                let slot = self
                    .queue
                    .insert_at(key.clone(), self.slot_time(armed.deadline));
                self.armed.insert(key, Armed { slot, ..armed });
                continue;
            }
            return (key, armed.value);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::SystemTime;

    use bytes::Bytes;
    use protocol::{ProtocolVersion, QoS, SubscribeFilter};

    use super::*;
    use crate::broker::session::{Kick, Owner};
    use crate::broker::{BrokerSettings, ConnectionInfo, Message};
    use crate::connection::Transport;
    use crate::store::{Durability, Store};

    const SECOND: Duration = Duration::from_secs(1);

    fn always<V>(_: &V, _: &V) -> bool {
        true
    }

    /// Arms `key` `after` from now, replacing what it had.
    fn arm(queue: &mut TimerQueue<&'static str, u32>, key: &'static str, after: Duration) {
        queue.arm(key, Instant::now() + after, 0, always);
    }

    /// The next timer to fire and when, from `start`; `None` if none fires within `within`.
    async fn next(
        queue: &mut TimerQueue<&'static str, u32>,
        start: Instant,
        within: Duration,
    ) -> Option<(&'static str, u32, Duration)> {
        let (key, value) = tokio::time::timeout(within, queue.expired()).await.ok()?;
        Some((key, value, start.elapsed()))
    }

    #[tokio::test(start_paused = true)]
    async fn timers_fire_in_deadline_order_at_their_deadline() {
        let start = Instant::now();
        let mut queue = TimerQueue::new();
        arm(&mut queue, "c", 3 * SECOND);
        arm(&mut queue, "a", SECOND);
        arm(&mut queue, "b", 2 * SECOND);
        assert_eq!(queue.len(), 3);
        let mut fired = Vec::new();
        while let Some((key, _, at)) = next(&mut queue, start, 10 * SECOND).await {
            fired.push((key, at));
        }
        assert_eq!(fired, [("a", SECOND), ("b", 2 * SECOND), ("c", 3 * SECOND)]);
        assert_eq!(queue.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn arming_again_replaces_the_deadline_and_the_value() {
        let start = Instant::now();
        let mut queue = TimerQueue::new();
        // Later.
        queue.arm("a", start + SECOND, 1, always);
        queue.arm("a", start + 5 * SECOND, 2, always);
        assert_eq!(queue.len(), 1);
        assert_eq!(
            next(&mut queue, start, 60 * SECOND).await,
            Some(("a", 2, 5 * SECOND))
        );
        assert_eq!(next(&mut queue, start, 60 * SECOND).await, None);
        // Sooner.
        let start = Instant::now();
        queue.arm("a", start + 5 * SECOND, 3, always);
        queue.arm("a", start + SECOND, 4, always);
        assert_eq!(
            next(&mut queue, start, 60 * SECOND).await,
            Some(("a", 4, SECOND))
        );
        assert_eq!(next(&mut queue, start, 60 * SECOND).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_replacement_refused_leaves_the_armed_timer() {
        let start = Instant::now();
        let mut queue = TimerQueue::new();
        let newer = |new: &u32, old: &u32| new >= old;
        assert!(queue.arm("a", start + 5 * SECOND, 2, newer));
        assert!(!queue.arm("a", start + SECOND, 1, newer));
        assert_eq!(
            next(&mut queue, start, 60 * SECOND).await,
            Some(("a", 2, 5 * SECOND))
        );
    }

    /// The bound: however often a key is armed, it takes one entry.
    #[tokio::test(start_paused = true)]
    async fn a_key_takes_one_entry_however_often_it_is_armed() {
        let mut queue = TimerQueue::new();
        for i in 0..10_000u64 {
            arm(&mut queue, "a", Duration::from_millis(i % 97 + 1));
            arm(&mut queue, "b", Duration::from_millis(i % 89 + 1));
        }
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.queue.len(), 2);
    }

    /// Arming while the queue is awaited (what the task does) brings a sooner deadline
    /// forward.
    #[tokio::test(start_paused = true)]
    async fn a_sooner_timer_armed_while_waiting_fires_first() {
        let start = Instant::now();
        let mut queue = TimerQueue::new();
        arm(&mut queue, "late", 10 * SECOND);
        let mut fired = Vec::new();
        let mut arm_soon = Box::pin(tokio::time::sleep(SECOND));
        let mut armed_soon = false;
        while fired.len() < 2 {
            tokio::select! {
                () = &mut arm_soon, if !armed_soon => {
                    armed_soon = true;
                    arm(&mut queue, "soon", SECOND);
                }
                (key, _) = queue.expired() => fired.push((key, start.elapsed())),
            }
        }
        assert_eq!(fired, [("soon", 2 * SECOND), ("late", 10 * SECOND)]);
    }

    /// Deadlines beyond the wheel's reach (about two years) do not panic and fire on time.
    #[tokio::test(start_paused = true)]
    async fn far_deadlines_fire_on_time() {
        let start = Instant::now();
        let mut queue = TimerQueue::with_max_span(3 * SECOND);
        arm(&mut queue, "a", 10 * SECOND);
        assert_eq!(
            next(&mut queue, start, 60 * SECOND).await,
            Some(("a", 0, 10 * SECOND))
        );

        let start = Instant::now();
        let mut queue = TimerQueue::new();
        let years = Duration::from_secs(u64::from(u32::MAX - 1));
        arm(&mut queue, "a", years);
        let fired = next(&mut queue, start, years + SECOND).await;
        assert_eq!(fired, Some(("a", 0, years)));
    }

    // The broker's timers, through the task.

    fn owner(client: &Arc<str>, connection_id: u64) -> Owner {
        let info = Arc::new(ConnectionInfo {
            connection_id,
            client_id: client.clone(),
            username: None,
            peer: SocketAddr::from(([127, 0, 0, 1], 1)),
            transport: Transport::Tcp,
            version: ProtocolVersion::V5,
            keep_alive: 0,
            clean_start: false,
            connected_at: SystemTime::now(),
            receive_maximum: u16::MAX,
            max_packet_size: u32::MAX,
            topic_alias_maximum: 0,
        });
        Owner {
            info,
            kick: Arc::new(Kick::default()),
        }
    }

    /// Connects `client` (resuming its session unless `clean`) as connection `connection_id`.
    fn connect(
        broker: &Arc<Broker>,
        client: &str,
        clean: bool,
        expiry: u32,
        connection_id: u64,
    ) -> Arc<Session> {
        let id: Arc<str> = Arc::from(client);
        broker
            .open_session(
                &id,
                clean,
                expiry,
                owner(&id, connection_id),
                &Durability::unwaited(),
            )
            .session
    }

    fn disconnect(
        broker: &Arc<Broker>,
        session: &Arc<Session>,
        connection_id: u64,
        will_delay: Option<u32>,
    ) {
        let will = will_delay.map(|delay| {
            let will = Message::new("will", Bytes::from_static(b"gone"), QoS::AtLeastOnce, false);
            (will, delay)
        });
        broker.close_session(session, connection_id, will, &Durability::unwaited());
    }

    /// An online session subscribed to the wills.
    fn watcher(broker: &Arc<Broker>) -> Arc<Session> {
        let watcher = connect(broker, "watcher", true, 0, 1000);
        broker.subscribe(
            &watcher,
            &SubscribeFilter::new("will", QoS::AtLeastOnce),
            None,
            &Durability::unwaited(),
        );
        watcher
    }

    /// Wills the watcher has received (queued or in flight).
    fn wills(watcher: &Session) -> usize {
        let (queued, in_flight) = watcher.backlog();
        queued + in_flight
    }

    async fn sleep(seconds: u64) {
        tokio::time::sleep(Duration::from_secs(seconds)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_expires_unless_resumed_in_time() {
        let broker = Broker::new(BrokerSettings::default());
        let session = connect(&broker, "c", false, 10, 1);
        disconnect(&broker, &session, 1, None);
        sleep(9).await;
        assert!(broker.session("c").is_some());
        // Resumed: the timer of the first absence does nothing.
        let resumed = connect(&broker, "c", false, 10, 2);
        assert!(Arc::ptr_eq(&resumed, &session));
        sleep(5).await;
        assert!(broker.session("c").is_some());
        // The second absence runs out.
        disconnect(&broker, &resumed, 2, None);
        sleep(9).await;
        assert!(broker.session("c").is_some());
        sleep(2).await;
        assert!(broker.session("c").is_none());
        assert_eq!(broker.timers.armed(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_delayed_will_goes_out_unless_the_client_is_back_in_time() {
        let broker = Broker::new(BrokerSettings::default());
        let watcher = watcher(&broker);
        let session = connect(&broker, "c", false, 100, 1);
        disconnect(&broker, &session, 1, Some(5));
        sleep(4).await;
        assert_eq!(wills(&watcher), 0);
        sleep(2).await;
        assert_eq!(wills(&watcher), 1);

        // Back in time: the will is cancelled (MQTT-3.1.3-9).
        let session = connect(&broker, "c", false, 100, 2);
        disconnect(&broker, &session, 2, Some(5));
        sleep(3).await;
        connect(&broker, "c", false, 100, 3);
        sleep(10).await;
        assert_eq!(wills(&watcher), 1);
    }

    /// A will delay longer than the session expiry: the will goes out when the session
    /// ends, once.
    #[tokio::test(start_paused = true)]
    async fn a_will_goes_out_once_when_the_session_ends_first() {
        let broker = Broker::new(BrokerSettings::default());
        let watcher = watcher(&broker);
        let session = connect(&broker, "c", false, 3, 1);
        disconnect(&broker, &session, 1, Some(60));
        sleep(2).await;
        assert_eq!(wills(&watcher), 0);
        sleep(2).await;
        assert_eq!(wills(&watcher), 1);
        assert!(broker.session("c").is_none());
        sleep(100).await;
        assert_eq!(wills(&watcher), 1);
    }

    /// The bound: a client reconnecting and leaving over and over, resuming or starting
    /// clean, has at most one expiry and one will armed.
    #[tokio::test(start_paused = true)]
    async fn a_client_has_at_most_one_timer_of_each_kind() {
        let broker = Broker::new(BrokerSettings::default());
        for connection_id in 1..=50 {
            let clean = connection_id % 2 == 0;
            let session = connect(&broker, "c", clean, 1000, connection_id);
            disconnect(&broker, &session, connection_id, Some(500));
            sleep(1).await;
        }
        assert_eq!(broker.timers.armed(), 2);
        sleep(2000).await;
        assert!(broker.session("c").is_none());
        assert_eq!(broker.timers.armed(), 0);
    }

    /// Two disconnects racing: the later absence's timer arrives first, and the earlier
    /// one's, arriving after, does not replace it.
    #[tokio::test(start_paused = true)]
    async fn an_earlier_absence_does_not_replace_a_later_ones_timer() {
        let broker = Broker::new(BrokerSettings::default());
        let session = connect(&broker, "c", false, 10, 1);
        disconnect(&broker, &session, 1, None);
        let session = connect(&broker, "c", false, 10, 2);
        disconnect(&broker, &session, 2, None);
        // An earlier absence's (generation 0 is before the first connection), arriving
        // late, for 1 s.
        broker
            .timers
            .arm(&broker, Kind::Expiry, &session, 0, SECOND);
        sleep(5).await;
        assert!(broker.session("c").is_some());
        sleep(6).await;
        assert!(broker.session("c").is_none());
    }

    /// A session read back from the store gets its timers again, for what is left of them.
    #[test]
    fn timers_are_armed_again_for_sessions_read_back_from_the_store() {
        let dir = std::env::temp_dir().join(format!("bridge-timers-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // Without a runtime: the first broker arms nothing, only stores.
        {
            let (store, snapshot) = Store::open(&dir).expect("open a store");
            let broker = Broker::with_store(BrokerSettings::default(), store.clone(), snapshot);
            let session = connect(&broker, "c", false, 10, 1);
            let work = Durability::new();
            let will = Message::new("will", Bytes::from_static(b"gone"), QoS::AtLeastOnce, false);
            broker.close_session(&session, 1, Some((will, 5)), &work);
            let seq = work.take();
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while store.durable() < seq && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            assert!(store.durable() >= seq && seq > 0, "stored");
        }
        // The writer closes the file once the last handle is gone.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let (store, snapshot) = loop {
            match Store::open(&dir) {
                Ok(opened) => break opened,
                Err(e) if std::time::Instant::now() > deadline => panic!("reopen: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let broker = Broker::with_store(BrokerSettings::default(), store, snapshot);
            let watcher = watcher(&broker);
            sleep(4).await;
            assert_eq!(wills(&watcher), 0);
            sleep(2).await;
            assert_eq!(wills(&watcher), 1);
            sleep(3).await;
            assert!(broker.session("c").is_some());
            sleep(2).await;
            assert!(broker.session("c").is_none());
            assert_eq!(wills(&watcher), 1);
        });
        drop(runtime);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Without a runtime, a broker still opens and closes sessions; it arms nothing.
    #[test]
    fn without_a_runtime_nothing_is_armed() {
        let broker = Broker::new(BrokerSettings::default());
        let session = connect(&broker, "c", false, 10, 1);
        disconnect(&broker, &session, 1, Some(5));
        assert_eq!(broker.timers.armed(), 0);
        assert!(broker.session("c").is_some());
    }
}
