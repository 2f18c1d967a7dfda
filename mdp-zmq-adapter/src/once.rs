//! Logging each refused peer once, in bounded memory: the broker's policy
//! refusals and the ZAP handler's unknown keys.

use std::collections::HashSet;
use std::hash::Hash;

/// Most keys remembered. When full it starts again empty, so a flood of
/// new peers costs at worst one log line per peer per this many peers.
const REMEMBERED: usize = 10_000;

/// The keys seen so far, up to [`REMEMBERED`] of them.
#[derive(Debug)]
pub(crate) struct Once<K> {
    seen: HashSet<K>,
}

impl<K> Default for Once<K> {
    fn default() -> Self {
        Once { seen: HashSet::new() }
    }
}

impl<K: Hash + Eq> Once<K> {
    /// Whether `key` is new: log it if so.
    pub(crate) fn first(&mut self, key: K) -> bool {
        if self.seen.len() >= REMEMBERED {
            self.seen.clear();
        }
        self.seen.insert(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_is_first_once_and_memory_stays_bounded() {
        let mut once = Once::default();
        assert!(once.first(1) && !once.first(1) && once.first(2));
        for k in 0..3 * REMEMBERED {
            once.first(k);
        }
        assert!(once.seen.len() <= REMEMBERED);
    }
}
