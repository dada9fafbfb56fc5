//! Requests-per-second budgets with one-second windows (docs/api.md §2.8).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::IntCounter;

/// The requests of the current second, per key. Every window is the same second, so a new
/// second forgets them all at once: no request ever scans the map, however many keys an attack
/// brings.
struct Window<K> {
    second: u64,
    counts: HashMap<K, u32>,
}

pub struct RateLimiter<K> {
    per_second: u32,
    window: Mutex<Window<K>>,
    /// Counts refusals (`herald_rate_limited_total{limit}`).
    refused: IntCounter,
}

impl<K: Eq + Hash> RateLimiter<K> {
    /// `per_second == 0` disables the limiter. `refused` counts the requests it turns away.
    pub fn new(per_second: u32, refused: IntCounter) -> Self {
        RateLimiter {
            per_second,
            refused,
            window: Mutex::new(Window {
                second: 0,
                counts: HashMap::new(),
            }),
        }
    }

    /// Charges one request to `key`. `Err(seconds)` tells how long until the budget refills.
    pub fn check(&self, key: K) -> Result<(), u64> {
        if self.per_second == 0 {
            return Ok(());
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if window.second != now {
            window.second = now;
            window.counts.clear();
        }
        let count = window.counts.entry(key).or_insert(0);
        if *count >= self.per_second {
            drop(window);
            self.refused.inc();
            return Err(1);
        }
        *count += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disabled_limiter_never_refuses() {
        let limiter = RateLimiter::new(0, IntCounter::new("refused", "test").unwrap());
        for _ in 0..1000 {
            assert_eq!(limiter.check("ip"), Ok(()));
        }
    }

    #[test]
    fn budgets_are_per_key() {
        let limiter = RateLimiter::new(3, IntCounter::new("refused", "test").unwrap());
        // All checks below run within at most two windows; at most 6 can pass per key.
        let passed = (0..20).filter(|_| limiter.check("a").is_ok()).count();
        assert!((3..=6).contains(&passed), "{passed}");
        assert_eq!(limiter.refused.get(), 20 - passed as u64);
        assert!(limiter.check("b").is_ok());
    }
}
