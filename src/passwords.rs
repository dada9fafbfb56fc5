//! Password checks that resist guessing (docs/api.md §3.3, "Password guessing").
//!
//! - Argon2 runs on at most `hash_concurrency` threads at once; at most [`MAX_WAITING`] more
//!   requests wait for a slot, and the rest are told the server is busy. Password work never
//!   takes every blocking thread, so other requests keep being served.
//! - Failed checks are counted per identity (an account's e-mail, or an instance's username).
//!   After `login_max_failures` within `login_window`, the identity is locked until the window
//!   passes: every attempt answers 429, even with the right password. A success clears it.
//! - Each client IP may make `rate_login` checks a minute, across identities.
//! - An unknown identity costs what a wrong password costs: a dummy hash is verified.
//!
//! Only verifications count toward lock-outs and the per-IP budget; hashing a new password is
//! only bounded by the pool.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use prometheus::IntCounter;
use tokio::sync::{OnceCell, Semaphore};
use tokio::time::Instant;

use crate::keys;
use crate::metrics::{LoginScope, Metrics};

/// Requests that may wait for an Argon2 slot; beyond them the server is busy.
pub const MAX_WAITING: usize = 256;
/// Identities and addresses remembered at most; expired entries are dropped first.
const MAX_TRACKED: usize = 100_000;
/// The window of the per-IP budget.
const IP_WINDOW: Duration = Duration::from_secs(60);

/// Whose password is checked.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    Account { email: String },
    User { instance_id: i64, username: String },
}

/// Why a check did not run.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The identity is locked out for this many more seconds.
    Locked { retry_after_secs: u64 },
    /// The client IP spent its budget; the window ends in this many seconds.
    Throttled { retry_after_secs: u64 },
    /// Every Argon2 slot is taken and the waiting line is full.
    Busy,
}

#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Failures that lock an identity; 0 = never.
    pub max_failures: u32,
    pub window: Duration,
    /// Checks per minute per client IP; 0 = unlimited.
    pub per_ip_per_minute: u32,
    /// Argon2 computations at once.
    pub concurrency: usize,
}

/// Counts within a fixed window that started at `since`.
#[derive(Clone, Copy)]
struct Count {
    since: Instant,
    n: u32,
}

impl Count {
    /// `key`'s count in `counts`, started afresh when its `window` has passed.
    fn current<K: Eq + std::hash::Hash>(
        counts: &mut HashMap<K, Count>,
        key: K,
        window: Duration,
    ) -> &mut Count {
        let fresh = || Count {
            since: Instant::now(),
            n: 0,
        };
        let count = counts.entry(key).or_insert_with(fresh);
        if count.since.elapsed() >= window {
            *count = fresh();
        }
        count
    }
}

pub struct Passwords {
    settings: Settings,
    slots: Semaphore,
    waiting: AtomicUsize,
    /// The most computations seen running at once (for tests and metrics).
    running: AtomicUsize,
    peak: AtomicUsize,
    failures: Mutex<HashMap<Identity, Count>>,
    per_ip: Mutex<HashMap<IpAddr, Count>>,
    dummy: OnceCell<String>,
    /// Argon2 working memory, one per slot at most, reused (see [`keys::HashMemory`]).
    memory: Mutex<Vec<keys::HashMemory>>,
    /// `herald_login_throttled_total` by scope: identity, ip, busy.
    throttled: [IntCounter; 3],
}

impl Passwords {
    pub fn new(settings: Settings, metrics: &Metrics) -> Passwords {
        Passwords {
            throttled: [LoginScope::Identity, LoginScope::Ip, LoginScope::Busy]
                .map(|scope| metrics.login_throttled(scope).clone()),
            slots: Semaphore::new(settings.concurrency.max(1)),
            settings,
            waiting: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            failures: Mutex::default(),
            per_ip: Mutex::default(),
            dummy: OnceCell::new(),
            memory: Mutex::default(),
        }
    }

    /// The most Argon2 computations that ever ran at once.
    pub fn peak_concurrency(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Runs Argon2 work on a pool slot, off the async threads.
    async fn compute<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut keys::HashMemory) -> T + Send + 'static,
    ) -> Result<T, Refused> {
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= MAX_WAITING {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(Refused::Busy);
        }
        let permit = self.slots.acquire().await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        let _permit = permit.map_err(|_| Refused::Busy)?;
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        // Holding a slot, so there are never more buffers than slots.
        let mut memory = lock(&self.memory).pop().unwrap_or_default();
        let done = tokio::task::spawn_blocking(move || {
            let out = work(&mut memory);
            (out, memory)
        })
        .await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        let (out, memory) = done.map_err(|_| Refused::Busy)?;
        lock(&self.memory).push(memory);
        Ok(out)
    }

    /// Hashes a new password (bounded by the pool only).
    pub async fn hash(&self, password: String) -> Result<String, Refused> {
        self.compute(move |memory| keys::hash_password_in(&password, memory))
            .await
    }

    /// Checks `password` of `identity` against `stored` (`None`: the identity does not exist, or
    /// has no password; a dummy hash is verified so that this takes as long). Counts toward the
    /// identity's lock-out and the IP's budget.
    pub async fn verify(
        &self,
        ip: IpAddr,
        identity: Identity,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, Refused> {
        let checked = self.check(ip, identity, password, stored).await;
        if let Err(refused) = &checked {
            let scope = match refused {
                Refused::Locked { .. } => 0,
                Refused::Throttled { .. } => 1,
                Refused::Busy => 2,
            };
            self.throttled[scope].inc();
        }
        checked
    }

    async fn check(
        &self,
        ip: IpAddr,
        identity: Identity,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, Refused> {
        self.check_lockout(&identity)?;
        self.charge_ip(ip)?;
        let exists = stored.is_some();
        let hash = match stored {
            Some(hash) => hash,
            None => self.dummy_hash().await?,
        };
        let matched = self
            .compute(move |memory| keys::verify_password_in(&password, &hash, memory))
            .await?
            && exists;
        self.record(identity, matched);
        Ok(matched)
    }

    async fn dummy_hash(&self) -> Result<String, Refused> {
        self.dummy
            .get_or_try_init(|| {
                self.compute(|memory| keys::hash_password_in("herald dummy password", memory))
            })
            .await
            .cloned()
    }

    fn check_lockout(&self, identity: &Identity) -> Result<(), Refused> {
        let max = self.settings.max_failures;
        if max == 0 {
            return Ok(());
        }
        let failures = lock(&self.failures);
        match failures.get(identity) {
            Some(count) if count.n >= max && count.since.elapsed() < self.settings.window => {
                let left = self.settings.window - count.since.elapsed();
                Err(Refused::Locked {
                    retry_after_secs: whole_seconds(left),
                })
            }
            _ => Ok(()),
        }
    }

    fn record(&self, identity: Identity, success: bool) {
        if self.settings.max_failures == 0 {
            return;
        }
        let mut failures = lock(&self.failures);
        if success {
            failures.remove(&identity);
            return;
        }
        let window = self.settings.window;
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, count| count.since.elapsed() < window);
        }
        if failures.len() >= MAX_TRACKED {
            // Full of live entries: forget the oldest half rather than grow without bound.
            let mut ages: Vec<Instant> = failures.values().map(|c| c.since).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            failures.retain(|_, count| count.since > cut);
        }
        let count = Count::current(&mut failures, identity, window);
        count.n = count.n.saturating_add(1);
    }

    fn charge_ip(&self, ip: IpAddr) -> Result<(), Refused> {
        let budget = self.settings.per_ip_per_minute;
        if budget == 0 {
            return Ok(());
        }
        let mut per_ip = lock(&self.per_ip);
        if per_ip.len() >= MAX_TRACKED {
            per_ip.retain(|_, count| count.since.elapsed() < IP_WINDOW);
            if per_ip.len() >= MAX_TRACKED {
                per_ip.clear();
            }
        }
        let count = Count::current(&mut per_ip, ip, IP_WINDOW);
        if count.n >= budget {
            let left = IP_WINDOW.saturating_sub(count.since.elapsed());
            return Err(Refused::Throttled {
                retry_after_secs: whole_seconds(left),
            });
        }
        count.n += 1;
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Seconds to wait, rounded up, at least 1.
fn whole_seconds(left: Duration) -> u64 {
    (left.as_secs() + u64::from(left.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn settings() -> Settings {
        Settings {
            max_failures: 3,
            window: Duration::from_secs(900),
            per_ip_per_minute: 0,
            concurrency: 2,
        }
    }

    fn geralt() -> Identity {
        Identity::User {
            instance_id: 1,
            username: "geralt".into(),
        }
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[tokio::test]
    async fn failures_lock_an_identity_even_against_the_right_password() {
        let passwords = Passwords::new(settings(), &Metrics::new());
        let hash = keys::hash_password("roach");
        for _ in 0..3 {
            let ok = passwords
                .verify(IP, geralt(), "wrong".into(), Some(hash.clone()))
                .await;
            assert_eq!(ok, Ok(false));
        }
        let locked = passwords
            .verify(IP, geralt(), "roach".into(), Some(hash.clone()))
            .await;
        assert!(
            matches!(locked, Err(Refused::Locked { retry_after_secs }) if retry_after_secs > 890)
        );
        // Others are not affected.
        let yen = Identity::Account {
            email: "yen@example.com".into(),
        };
        assert_eq!(
            passwords.verify(IP, yen, "roach".into(), Some(hash)).await,
            Ok(true)
        );
        // Unknown identities cost a hash and never match.
        let nobody = Identity::Account {
            email: "nobody@example.com".into(),
        };
        assert_eq!(
            passwords.verify(IP, nobody, "x".into(), None).await,
            Ok(false)
        );
    }

    #[tokio::test]
    async fn a_success_clears_the_count() {
        let passwords = Passwords::new(settings(), &Metrics::new());
        let hash = keys::hash_password("roach");
        for _ in 0..2 {
            let _ = passwords
                .verify(IP, geralt(), "wrong".into(), Some(hash.clone()))
                .await;
        }
        let ok = passwords.verify(IP, geralt(), "roach".into(), Some(hash.clone()));
        assert_eq!(ok.await, Ok(true));
        for _ in 0..2 {
            let _ = passwords
                .verify(IP, geralt(), "wrong".into(), Some(hash.clone()))
                .await;
        }
        let ok = passwords.verify(IP, geralt(), "roach".into(), Some(hash));
        assert_eq!(ok.await, Ok(true));
    }

    #[tokio::test]
    async fn each_ip_has_a_budget_per_minute() {
        let metrics = Metrics::new();
        let passwords = Passwords::new(
            Settings {
                per_ip_per_minute: 2,
                max_failures: 0,
                ..settings()
            },
            &metrics,
        );
        for _ in 0..2 {
            assert_eq!(
                passwords.verify(IP, geralt(), "x".into(), None).await,
                Ok(false)
            );
        }
        let over = passwords.verify(IP, geralt(), "x".into(), None).await;
        assert!(
            matches!(over, Err(Refused::Throttled { retry_after_secs }) if (1..=60).contains(&retry_after_secs))
        );
        assert_eq!(metrics.login_throttled(LoginScope::Ip).get(), 1);
        assert_eq!(metrics.login_throttled(LoginScope::Identity).get(), 0);
        let other = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(
            passwords.verify(other, geralt(), "x".into(), None).await,
            Ok(false)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_burst_never_runs_more_hashes_than_the_pool_has_slots() {
        let passwords = Arc::new(Passwords::new(
            Settings {
                max_failures: 0,
                ..settings()
            },
            &Metrics::new(),
        ));
        let tasks: Vec<_> = (0..300)
            .map(|n| {
                let passwords = passwords.clone();
                tokio::spawn(async move {
                    let ip = IpAddr::V4(std::net::Ipv4Addr::from(n as u32));
                    passwords.verify(ip, geralt(), "x".into(), None).await
                })
            })
            .collect();
        let mut busy = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(false) => {}
                Err(Refused::Busy) => busy += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(
            passwords.peak_concurrency() <= 2,
            "{}",
            passwords.peak_concurrency()
        );
        assert!(passwords.peak_concurrency() >= 1);
        // 300 at once, 2 slots and 256 places in line: some were told the server is busy.
        assert!(busy > 0 && busy <= 300 - 256, "{busy} busy");
    }
}
