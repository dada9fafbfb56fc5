//! A small shared map for rows read on every request (instances by name, channels by name).
//!
//! Writers invalidate entries before they acknowledge a change, so readers never act on a row
//! older than the last acknowledged write made through this process. A reader that missed
//! holds a [`Miss`] while it reads the store: if an invalidation came in between, what it read
//! may predate the change, so it is not stored (docs/api.md §11.5: entries carry the version they were
//! read at).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Entries beyond this make the cache start over; every entry is a real row, so re-reading one
/// is a single indexed query.
const MAX_ENTRIES: usize = 50_000;

/// A cache miss: the invalidation count when it happened.
#[must_use = "a miss is how a read result gets stored"]
pub struct Miss(u64);

/// Counts invalidations, so readers can tell whether one happened while they read the store.
#[derive(Default)]
pub struct Invalidations(AtomicU64);

impl Invalidations {
    /// Call under the cache's write lock, with every invalidation.
    pub fn bump(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Call under the cache's lock, when a lookup misses.
    pub fn miss(&self) -> Miss {
        Miss(self.0.load(Ordering::Relaxed))
    }

    /// Call under the cache's write lock: may what was read after `miss` be stored?
    pub fn still_current(&self, miss: &Miss) -> bool {
        self.0.load(Ordering::Relaxed) == miss.0
    }
}

pub struct Cache<K, V> {
    entries: RwLock<HashMap<K, Arc<V>>>,
    invalidations: Invalidations,
}

impl<K: Eq + Hash, V> Default for Cache<K, V> {
    fn default() -> Self {
        Cache {
            entries: RwLock::new(HashMap::new()),
            invalidations: Invalidations::default(),
        }
    }
}

impl<K: Eq + Hash, V> Cache<K, V> {
    pub fn get(&self, key: &K) -> Result<Arc<V>, Miss> {
        // A poisoned lock only means a panic elsewhere mid-operation; the map is still sound.
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .cloned()
            .ok_or_else(|| self.invalidations.miss())
    }

    /// Stores what was read after `miss`, unless something was invalidated since.
    pub fn insert(&self, miss: Miss, key: K, value: Arc<V>) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if !self.invalidations.still_current(&miss) {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key, value);
    }

    pub fn remove(&self, key: &K) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        self.invalidations.bump();
        entries.remove(key);
    }

    /// Keeps only the entries for which `keep` is true.
    pub fn retain(&self, keep: impl Fn(&K, &V) -> bool) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        self.invalidations.bump();
        entries.retain(|k, v| keep(k, v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_read_before_an_invalidation_is_not_stored_after_it() {
        let cache: Cache<&str, i32> = Cache::default();
        let miss = cache.get(&"key").unwrap_err();
        // The reader is at the store; meanwhile a writer changes the row and invalidates.
        cache.remove(&"key");
        cache.insert(miss, "key", Arc::new(1));
        assert!(cache.get(&"key").is_err());
        // A read that started after the invalidation is stored.
        let miss = cache.get(&"key").unwrap_err();
        cache.insert(miss, "key", Arc::new(2));
        assert_eq!(*cache.get(&"key").ok().unwrap(), 2);
    }
}
