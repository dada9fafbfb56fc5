//! A small shared map for rows read on every request (instances by name, channels by name).
//!
//! Writers invalidate entries before they acknowledge a change, so readers never act on a row
//! older than the last acknowledged write made through this process.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, RwLock};

/// Entries beyond this make the cache start over; every entry is a real row, so re-reading one
/// is a single indexed query.
const MAX_ENTRIES: usize = 50_000;

pub struct Cache<K, V> {
    entries: RwLock<HashMap<K, Arc<V>>>,
}

impl<K: Eq + Hash, V> Default for Cache<K, V> {
    fn default() -> Self {
        Cache {
            entries: RwLock::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash, V> Cache<K, V> {
    pub fn get(&self, key: &K) -> Option<Arc<V>> {
        // A poisoned lock only means a panic elsewhere mid-operation; the map is still sound.
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries.get(key).cloned()
    }

    pub fn insert(&self, key: K, value: Arc<V>) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key, value);
    }

    pub fn remove(&self, key: &K) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.remove(key);
    }

    /// Keeps only the entries for which `keep` is true.
    pub fn retain(&self, keep: impl Fn(&K, &V) -> bool) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.retain(|k, v| keep(k, v));
    }
}
