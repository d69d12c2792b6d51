//! Who may connect, and what each client may publish, subscribe to and receive.
//!
//! The broker asks [`Access`] at three points: CONNECT ([`Access::authenticate`], or
//! [`Access::authenticate_certified`] for a client a TLS certificate identifies),
//! PUBLISH and SUBSCRIBE ([`Access::authorize`] with [`Action::Publish`] /
//! [`Action::Subscribe`]), and, when read rules exist, each delivery ([`Action::Read`]:
//! a subscription to `#` must not leak topics the client may not read).
//! `Access::allow_all()` is the policy until one is configured.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use protocol::reason;
use tokio::sync::Semaphore;

use crate::throttle::{Rules, Throttle};

/// What a client wants to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Publish,
    Subscribe,
    /// Receive a message on a topic (checked per delivery).
    Read,
}

/// Who is asking.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
}

/// What a policy says about a CONNECT's credentials.
pub enum Verdict {
    /// Decided at once. `Err` carries the MQTT 5.0 reason code to refuse with (0x86 bad
    /// user name or password, 0x87 not authorized).
    Decided(Result<(), u8>),
    /// Only a slow password hash can tell: the check, true when the password matches. The
    /// caller runs it through [`CredentialChecks`], never on an async worker.
    Slow(Box<dyn FnOnce() -> bool + Send>),
}

impl fmt::Debug for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Decided(result) => f.debug_tuple("Decided").field(result).finish(),
            Verdict::Slow(_) => f.write_str("Slow"),
        }
    }
}

/// A pluggable access policy (password file + ACL rules, or anything else).
pub trait Policy: Send + Sync + fmt::Debug {
    /// A CONNECT's own credentials.
    fn authenticate(&self, username: Option<&str>, password: Option<&[u8]>) -> Verdict;
    /// A client whose TLS certificate the listener verified and took `username` from
    /// (`use_identity_as_username`): the certificate stands in for a password.
    fn authenticate_certified(&self, username: &str) -> Verdict;
    fn authorize(&self, who: Identity<'_>, action: Action, topic: &str) -> bool;
    /// Whether any rule can refuse a [`Action::Read`]: if not, deliveries skip the check.
    fn checks_reads(&self) -> bool;
}

/// Whether `topic` is under `$SYS`, the topics only the broker publishes.
pub fn is_broker_topic(topic: &str) -> bool {
    topic
        .strip_prefix("$SYS")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The broker's access policy.
#[derive(Debug)]
pub struct Access {
    policy: Option<Box<dyn Policy>>,
}

impl Access {
    /// Everyone may connect and do anything (the default on a first start).
    pub fn allow_all() -> Access {
        Access { policy: None }
    }

    pub fn with_policy(policy: Box<dyn Policy>) -> Access {
        Access {
            policy: Some(policy),
        }
    }

    /// What the policy says about a CONNECT's user name and password.
    pub fn authenticate(&self, username: Option<&str>, password: Option<&[u8]>) -> Verdict {
        match &self.policy {
            Some(policy) => policy.authenticate(username, password),
            None => Verdict::Decided(Ok(())),
        }
    }

    /// What the policy says about a client authenticated by its TLS certificate, whose
    /// identity is `username` (`use_identity_as_username`; the CONNECT's own credentials
    /// do not count). Only a TLS listener's verified identity may be passed here.
    pub fn authenticate_certified(&self, username: &str) -> Verdict {
        match &self.policy {
            Some(policy) => policy.authenticate_certified(username),
            None => Verdict::Decided(Ok(())),
        }
    }

    /// Whether `who` may do `action` on `topic`. Client publishes to `$SYS` topics are
    /// refused whatever the policy says: they are the broker's own, and a retained fake
    /// `$SYS/broker/version` would mislead every reader.
    pub fn authorize(&self, who: Identity<'_>, action: Action, topic: &str) -> bool {
        if action == Action::Publish && is_broker_topic(topic) {
            return false;
        }
        match &self.policy {
            Some(policy) => policy.authorize(who, action, topic),
            None => true,
        }
    }

    /// Whether a policy is configured at all.
    pub fn is_active(&self) -> bool {
        self.policy.is_some()
    }

    pub fn checks_reads(&self) -> bool {
        self.policy.as_ref().is_some_and(|p| p.checks_reads())
    }
}

/// Slow password checks running at once: half the cores, at least one. Each argon2 check
/// takes 19 MiB and a core for tens of milliseconds.
pub fn default_concurrent_checks() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get().div_ceil(2))
        .max(1)
}

/// CONNECTs that may wait for a slow password check; beyond them a CONNECT is refused at
/// once with "server busy" (5.0: 0x89; 3.1.1: 3, server unavailable).
pub const MAX_WAITING_CHECKS: usize = 64;

/// CONNECTs from one source address that may wait for a slow password check.
pub const MAX_WAITING_PER_ADDRESS: usize = 4;

/// How failed password checks slow down one source address, and one user name.
pub const FAILURE_RULES: Rules = Rules {
    free_failures: 5,
    first_wait: Duration::from_secs(1),
    max_wait: Duration::from_secs(60),
    max_keys: 10_000,
};

/// Runs the slow password checks of CONNECTs ([`Verdict::Slow`]) so that a storm of them
/// (wrong passwords, unknown users) costs a fixed amount of memory and threads and does not
/// hold up other clients:
/// * at most `concurrent` checks run at once, each on a blocking thread of the runtime,
///   never on an async worker; up to [`MAX_WAITING_CHECKS`] more wait (asynchronously,
///   holding no thread), at most [`MAX_WAITING_PER_ADDRESS`] of them from one source
///   address; beyond that a CONNECT is refused with "server busy";
/// * after [`FAILURE_RULES`]`.free_failures` failures, a source address or a user name
///   (by a keyed hash, so a long name costs 8 bytes) waits before its next check,
///   doubling: CONNECTs meanwhile are refused at once with "connection rate exceeded"
///   (5.0: 0x9F; 3.1.1: 3). A password already verified since the last reload never takes
///   this path: legitimate reconnects are not slowed by an attack on their address.
pub struct CredentialChecks {
    permits: Arc<Semaphore>,
    waiting: Mutex<WaitingLine>,
    by_address: Throttle<IpAddr>,
    by_user: Throttle<u64>,
    user_hasher: std::collections::hash_map::RandomState,
    /// CONNECTs refused because their address or user name was throttled.
    pub throttled: AtomicU64,
    /// CONNECTs refused because too many checks were waiting.
    pub busy: AtomicU64,
}

impl CredentialChecks {
    pub fn new(concurrent: usize) -> CredentialChecks {
        CredentialChecks {
            permits: Arc::new(Semaphore::new(concurrent.max(1))),
            waiting: Mutex::default(),
            by_address: Throttle::new(FAILURE_RULES),
            by_user: Throttle::new(FAILURE_RULES),
            user_hasher: Default::default(),
            throttled: AtomicU64::new(0),
            busy: AtomicU64::new(0),
        }
    }

    /// Runs `check` for `username` connecting from `ip`: `Ok` when the password matched,
    /// else the reason code to refuse the CONNECT with.
    pub async fn run(
        &self,
        ip: IpAddr,
        username: &str,
        check: Box<dyn FnOnce() -> bool + Send>,
    ) -> Result<(), u8> {
        let user = self.user_hasher.hash_one(username);
        if self.by_address.wait(&ip).is_err() || self.by_user.wait(&user).is_err() {
            self.throttled.fetch_add(1, Ordering::Relaxed);
            return Err(reason::CONNECTION_RATE_EXCEEDED);
        }
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                // Counted while waiting, also if the connection gives up meanwhile.
                let Some(_waiting) = Waiting::enter(&self.waiting, ip) else {
                    self.busy.fetch_add(1, Ordering::Relaxed);
                    return Err(reason::SERVER_BUSY);
                };
                let acquired = self.permits.clone().acquire_owned().await;
                let permit = acquired.expect("the semaphore is never closed");
                // Failures while this one waited may have throttled its address or name.
                if self.by_address.wait(&ip).is_err() || self.by_user.wait(&user).is_err() {
                    self.throttled.fetch_add(1, Ordering::Relaxed);
                    return Err(reason::CONNECTION_RATE_EXCEEDED);
                }
                permit
            }
        };
        // The permit goes with the check: it is released when the hash is done, even if
        // this CONNECT's connection is gone by then.
        let matched = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            check()
        })
        .await
        .unwrap_or(false);
        if matched {
            self.by_user.succeeded(&user);
            Ok(())
        } else {
            self.by_address.failed(ip);
            self.by_user.failed(user);
            Err(reason::BAD_USER_NAME_OR_PASSWORD)
        }
    }
}

/// CONNECTs waiting for a check, in all and per source address.
#[derive(Debug, Default)]
struct WaitingLine {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// One CONNECT in the line for a check, counted until dropped.
struct Waiting<'a> {
    line: &'a Mutex<WaitingLine>,
    ip: IpAddr,
}

impl<'a> Waiting<'a> {
    /// A place in the line, unless it is full ([`MAX_WAITING_CHECKS`]) or `ip` already has
    /// [`MAX_WAITING_PER_ADDRESS`] in it: one address cannot fill the line for others.
    fn enter(line: &'a Mutex<WaitingLine>, ip: IpAddr) -> Option<Waiting<'a>> {
        let mut waiting = line.lock();
        let mine = waiting.by_address.get(&ip).copied().unwrap_or(0);
        if waiting.total >= MAX_WAITING_CHECKS || mine >= MAX_WAITING_PER_ADDRESS {
            return None;
        }
        waiting.total += 1;
        waiting.by_address.insert(ip, mine + 1);
        Some(Waiting { line, ip })
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut waiting = self.line.lock();
        waiting.total -= 1;
        if let Entry::Occupied(mut mine) = waiting.by_address.entry(self.ip) {
            *mine.get_mut() -= 1;
            if *mine.get() == 0 {
                mine.remove();
            }
        }
    }
}

impl fmt::Debug for CredentialChecks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialChecks")
            .field("available", &self.permits.available_permits())
            .field("waiting", &self.waiting.lock().total)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_may_not_publish_under_sys_whatever_the_policy() {
        let who = Identity {
            client_id: "c",
            username: None,
        };
        let open = Access::allow_all();
        for topic in ["$SYS", "$SYS/broker/version", "$SYS/"] {
            assert!(!open.authorize(who, Action::Publish, topic), "{topic}");
            assert!(open.authorize(who, Action::Subscribe, topic), "{topic}");
        }
        for topic in ["$SYSTEM/x", "SYS/x", "a/$SYS", "$share"] {
            assert!(open.authorize(who, Action::Publish, topic), "{topic}");
        }
    }

    /// Refuses every password; accepts certificate identities starting with `device-`.
    #[derive(Debug)]
    struct DevicesOnly;

    impl Policy for DevicesOnly {
        fn authenticate(&self, _: Option<&str>, _: Option<&[u8]>) -> Verdict {
            Verdict::Decided(Err(reason::BAD_USER_NAME_OR_PASSWORD))
        }
        fn authenticate_certified(&self, username: &str) -> Verdict {
            Verdict::Decided(if username.starts_with("device-") {
                Ok(())
            } else {
                Err(reason::NOT_AUTHORIZED)
            })
        }
        fn authorize(&self, _: Identity<'_>, _: Action, _: &str) -> bool {
            true
        }
        fn checks_reads(&self) -> bool {
            false
        }
    }

    fn decided(verdict: Verdict) -> Result<(), u8> {
        match verdict {
            Verdict::Decided(result) => result,
            Verdict::Slow(_) => panic!("a slow check"),
        }
    }

    #[test]
    fn certificate_identities_go_to_the_policy_apart_from_passwords() {
        let open = Access::allow_all();
        assert_eq!(decided(open.authenticate_certified("anyone")), Ok(()));
        let policy = Access::with_policy(Box::new(DevicesOnly));
        assert_eq!(decided(policy.authenticate_certified("device-7")), Ok(()));
        assert_eq!(
            decided(policy.authenticate_certified("admin")),
            Err(reason::NOT_AUTHORIZED)
        );
        // The same name with a password is the policy's password question.
        assert_eq!(
            decided(policy.authenticate(Some("device-7"), None)),
            Err(reason::BAD_USER_NAME_OR_PASSWORD)
        );
    }

    /// A check that holds its thread until `release` is notified, counting how many run.
    fn held(
        running: &Arc<std::sync::atomic::AtomicUsize>,
        most: &Arc<std::sync::atomic::AtomicUsize>,
        release: &Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    ) -> Box<dyn FnOnce() -> bool + Send> {
        let (running, most, release) = (running.clone(), most.clone(), release.clone());
        Box::new(move || {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            let (lock, freed) = &*release;
            let mut go = lock.lock().unwrap();
            while !*go {
                go = freed.wait(go).unwrap();
            }
            running.fetch_sub(1, Ordering::SeqCst);
            false
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_checks_run_a_few_at_a_time_and_the_line_is_bounded() {
        let checks = Arc::new(CredentialChecks::new(2));
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let release = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let mut tasks = Vec::new();
        // 2 running and MAX_WAITING_PER_ADDRESS waiting from each of 20 addresses.
        for n in 0..(2 + 20 * MAX_WAITING_PER_ADDRESS) {
            let ip = IpAddr::from([10, 0, 0, (n % 20) as u8]);
            let (checks, check) = (checks.clone(), held(&running, &most, &release));
            tasks.push(tokio::spawn(async move {
                checks.run(ip, &format!("user{n}"), check).await
            }));
            tokio::task::yield_now().await;
        }
        while checks.waiting.lock().total < MAX_WAITING_CHECKS {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The line is full: the next CONNECT is refused at once, from any address.
        let refused = checks
            .run(IpAddr::from([10, 0, 1, 1]), "late", Box::new(|| true))
            .await;
        assert_eq!(refused, Err(reason::SERVER_BUSY));
        assert_eq!(checks.busy.load(Ordering::Relaxed), 1 + 2 + 20 * 4 - 2 - 64);
        *release.0.lock().unwrap() = true;
        release.1.notify_all();
        for task in tasks {
            let _ = task.await.unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2, "two checks at a time");
        assert_eq!(checks.waiting.lock().total, 0);
        assert!(checks.waiting.lock().by_address.is_empty());
    }

    #[tokio::test]
    async fn one_address_cannot_fill_the_line() {
        let checks = Arc::new(CredentialChecks::new(1));
        let release = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let ip = IpAddr::from([10, 0, 0, 1]);
        let mut tasks = Vec::new();
        for n in 0..=MAX_WAITING_PER_ADDRESS {
            let (checks, check) = (checks.clone(), held(&running, &most, &release));
            tasks.push(tokio::spawn(async move {
                checks.run(ip, &format!("u{n}"), check).await
            }));
        }
        while checks.waiting.lock().total < MAX_WAITING_PER_ADDRESS {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let refused = checks.run(ip, "more", Box::new(|| true)).await;
        assert_eq!(refused, Err(reason::SERVER_BUSY));
        *release.0.lock().unwrap() = true;
        release.1.notify_all();
        let other = checks.run(IpAddr::from([10, 0, 0, 2]), "other", Box::new(|| true));
        assert_eq!(other.await, Ok(()));
        for task in tasks {
            assert_eq!(task.await.unwrap(), Err(reason::BAD_USER_NAME_OR_PASSWORD));
        }
    }

    #[tokio::test]
    async fn failures_throttle_the_address_and_the_user_name() {
        let checks = CredentialChecks::new(1);
        let ip = IpAddr::from([10, 0, 0, 1]);
        for n in 0..FAILURE_RULES.free_failures {
            let result = checks.run(ip, &format!("u{n}"), Box::new(|| false)).await;
            assert_eq!(result, Err(reason::BAD_USER_NAME_OR_PASSWORD));
        }
        let throttled = checks.run(ip, "anyone", Box::new(|| true)).await;
        assert_eq!(throttled, Err(reason::CONNECTION_RATE_EXCEEDED));
        for n in 0..FAILURE_RULES.free_failures {
            let ip = IpAddr::from([10, 0, 1, n as u8]);
            let result = checks.run(ip, "bob", Box::new(|| false)).await;
            assert_eq!(result, Err(reason::BAD_USER_NAME_OR_PASSWORD));
        }
        let other = IpAddr::from([10, 0, 2, 1]);
        let throttled = checks.run(other, "bob", Box::new(|| true)).await;
        assert_eq!(throttled, Err(reason::CONNECTION_RATE_EXCEEDED));
        assert_eq!(checks.run(other, "carol", Box::new(|| true)).await, Ok(()));
        assert_eq!(checks.throttled.load(Ordering::Relaxed), 2);
    }
}
