//! A bound on the bytes a restore holds in memory at once, whatever the
//! number of workers: each fetch takes its share of the budget first and
//! gives it back once its files are written.

use std::sync::{Condvar, Mutex};

/// Bytes that may be held at once.
#[derive(Debug)]
pub(super) struct ByteBudget {
    total: u64,
    left: Mutex<u64>,
    freed: Condvar,
}

/// A share of the budget, given back on drop.
#[derive(Debug)]
pub(super) struct Share<'a> {
    budget: &'a ByteBudget,
    bytes: u64,
}

impl ByteBudget {
    pub(super) fn new(total: u64) -> ByteBudget {
        ByteBudget {
            total,
            left: Mutex::new(total),
            freed: Condvar::new(),
        }
    }

    /// Waits until `bytes` are free and takes them. A request larger than
    /// the whole budget takes all of it (so it waits for every other
    /// share, and still runs). Never call while holding another share.
    pub(super) fn take(&self, bytes: u64) -> Share<'_> {
        let bytes = bytes.min(self.total);
        let mut left = self.left.lock().unwrap_or_else(|p| p.into_inner());
        while *left < bytes {
            left = self.freed.wait(left).unwrap_or_else(|p| p.into_inner());
        }
        *left -= bytes;
        Share {
            budget: self,
            bytes,
        }
    }
}

impl Drop for Share<'_> {
    fn drop(&mut self) {
        let mut left = self.budget.left.lock().unwrap_or_else(|p| p.into_inner());
        *left += self.bytes;
        self.budget.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn never_more_than_the_budget_is_held_and_a_huge_share_still_runs() {
        let budget = ByteBudget::new(100);
        let held = AtomicU64::new(0);
        let peak = AtomicU64::new(0);
        std::thread::scope(|s| {
            for i in 0..8u64 {
                let (budget, held, peak) = (&budget, &held, &peak);
                s.spawn(move || {
                    for _ in 0..50 {
                        let want = 10 + (i * 7) % 50;
                        let _share = budget.take(want);
                        let now = held.fetch_add(want, Ordering::SeqCst) + want;
                        peak.fetch_max(now, Ordering::SeqCst);
                        std::thread::yield_now();
                        held.fetch_sub(want, Ordering::SeqCst);
                    }
                });
            }
        });
        assert!(peak.load(Ordering::SeqCst) <= 100);
        let _all = budget.take(1_000);
        assert_eq!(*budget.left.lock().expect("lock"), 0);
    }
}
