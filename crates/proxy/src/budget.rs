//! A budget of so many takes per wall-clock second, shared by threads without a lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// At most `limit` takes per second (since the epoch).
#[derive(Debug)]
pub struct PerSecond {
    limit: u32,
    /// The current second in the high 32 bits, takes in it in the low 32.
    state: AtomicU64,
}

impl PerSecond {
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            state: AtomicU64::new(0),
        }
    }

    /// Takes one of `now`'s second, if any is left.
    pub fn take(&self, now: SystemTime) -> bool {
        if self.limit == 0 {
            return false;
        }
        let second = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() & 0xFFFF_FFFF);
        let mut cur = self.state.load(Ordering::Relaxed);
        loop {
            let (s, n) = (cur >> 32, cur & 0xFFFF_FFFF);
            let next = if s == second {
                if n >= u64::from(self.limit) {
                    return false;
                }
                cur + 1
            } else {
                (second << 32) | 1
            };
            match self
                .state
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(seen) => cur = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_caps_each_second_and_renews_with_the_next() {
        let b = PerSecond::new(3);
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
        assert_eq!((0..10).filter(|_| b.take(t)).count(), 3);
        assert!(b.take(t + std::time::Duration::from_secs(1)));
        assert!(!PerSecond::new(0).take(t));
    }
}
