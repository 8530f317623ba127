//! Counters the proxy keeps for operators (logs today, metrics and the admin console to come).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::sql::PinReason;

#[derive(Debug, Default)]
pub struct Counters {
    pins: [AtomicU64; PinReason::ALL.len()],
}

impl Counters {
    /// A session was pinned to its server for `reason`.
    pub fn pinned(&self, reason: PinReason) {
        self.pins[Self::index(reason)].fetch_add(1, Ordering::Relaxed);
    }

    /// Pins so far, by reason.
    pub fn pins(&self) -> Vec<(PinReason, u64)> {
        PinReason::ALL.iter().map(|&r| (r, self.pins[Self::index(r)].load(Ordering::Relaxed))).collect()
    }

    fn index(reason: PinReason) -> usize {
        PinReason::ALL.iter().position(|&r| r == reason).expect("every reason is in ALL")
    }
}
