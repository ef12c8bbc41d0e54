//! The per-key state map: a fixed number of shards, each a `HashMap` behind its own
//! `RwLock`, so that callers of keys in different shards never wait for each other and
//! the maintenance pass holds one shard at a time.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, PoisonError, RwLock};

/// Shards per map. More than the usual 4 × CPUs: the maintenance pass holds one shard
/// at a time, so a shard's share of the keys is what a caller of a key in it may wait
/// for.
const SHARDS: usize = 64;

/// One shard: its keys and their values.
type Shard<V> = RwLock<HashMap<Arc<str>, Arc<V>>>;

pub(crate) struct ShardedMap<V> {
    hasher: RandomState,
    shards: Box<[Shard<V>]>,
}

impl<V> ShardedMap<V> {
    pub(crate) fn new() -> Self {
        Self {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, key: &str) -> &Shard<V> {
        // The high bits: the shard's `HashMap` uses the low ones of its own hash.
        let hash = self.hasher.hash_one(key);
        let at = usize::try_from(hash >> 58).unwrap_or(0) % self.shards.len();
        &self.shards[at]
    }

    /// The value of `key`, cloned under the shard's lock.
    pub(crate) fn get(&self, key: &str) -> Option<Arc<V>> {
        let shard = self
            .shard(key)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        shard.get(key).map(Arc::clone)
    }

    /// The value of `key`, made by `make` (under the shard's lock) if it has none.
    pub(crate) fn get_or_insert_with(&self, key: Arc<str>, make: impl FnOnce() -> V) -> Arc<V> {
        let mut shard = self
            .shard(&key)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(shard.entry(key).or_insert_with(|| Arc::new(make())))
    }

    /// Keeps the entries for which `keep` is true, one shard at a time, and gives the
    /// memory of dropped entries back.
    pub(crate) fn retain(&self, mut keep: impl FnMut(&Arc<V>) -> bool) {
        for shard in self.shards.iter() {
            let mut shard = shard.write().unwrap_or_else(PoisonError::into_inner);
            shard.retain(|_, v| keep(v));
            shard.shrink_to_fit();
        }
    }

    /// Entries now (not a snapshot: shards are counted one after the other).
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::ShardedMap;
    use std::sync::Arc;

    #[test]
    fn keys_map_to_one_value_each_and_retain_drops_the_rest() {
        let map = ShardedMap::new();
        for i in 0..1000 {
            let v = map.get_or_insert_with(Arc::from(format!("k{i}")), || i);
            assert_eq!(*v, i);
        }
        // A second insert keeps the first value.
        assert_eq!(*map.get_or_insert_with(Arc::from("k7"), || 99), 7);
        assert_eq!(map.get("k7").as_deref(), Some(&7));
        assert_eq!(map.get("nope"), None);
        assert_eq!(map.len(), 1000);
        map.retain(|v| **v % 2 == 0);
        assert_eq!(map.len(), 500);
        assert_eq!(map.get("k7"), None);
        assert_eq!(map.get("k8").as_deref(), Some(&8));
    }
}
