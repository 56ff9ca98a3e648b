//! Latency over a sliding window: one histogram per second, log-spaced buckets 2% wide,
//! so a p99 is exact to 2% whatever the range (1 µs to hours) and the memory is bounded
//! by the window, not by the traffic.

use std::collections::{BTreeMap, VecDeque};

/// Each bucket's upper edge is this times the previous one's.
const GROWTH: f64 = 1.02;
/// The first bucket's upper edge, in ms.
const FLOOR_MS: f64 = 0.001;

fn bucket(ms: f64) -> u16 {
    // NaN and anything at or below the floor land in the first bucket.
    if ms.is_nan() || ms <= FLOOR_MS {
        return 0;
    }
    let b = ((ms / FLOOR_MS).ln() / GROWTH.ln()).ceil();
    b.min(f64::from(u16::MAX)) as u16
}

fn upper_ms(b: u16) -> f64 {
    FLOOR_MS * GROWTH.powi(i32::from(b))
}

/// Latencies of the last `span` seconds.
#[derive(Debug, Clone, Default)]
pub struct Window {
    span: i64,
    /// (second since the epoch, bucket → count), oldest first.
    seconds: VecDeque<(i64, BTreeMap<u16, u32>)>,
}

impl Window {
    pub fn new(span_s: f64) -> Self {
        Self {
            span: span_s.ceil().max(1.0) as i64,
            seconds: VecDeque::new(),
        }
    }

    /// Adds a latency observed at `sec` (seconds since the epoch).
    pub fn add(&mut self, sec: i64, ms: f64) {
        let b = bucket(ms);
        let newest = self.seconds.back().map_or(i64::MIN, |(s, _)| *s);
        if sec > newest {
            self.seconds.push_back((sec, BTreeMap::new()));
            let oldest_kept = sec - self.span;
            while self.seconds.front().is_some_and(|(s, _)| *s <= oldest_kept) {
                self.seconds.pop_front();
            }
        }
        // Arrivals come nearly in order: look from the newest second back.
        if let Some((_, h)) = self.seconds.iter_mut().rev().find(|(s, _)| *s == sec) {
            *h.entry(b).or_insert(0) += 1;
        } else if sec > newest - self.span {
            let at = self.seconds.partition_point(|(s, _)| *s < sec);
            self.seconds.insert(at, (sec, BTreeMap::from([(b, 1)])));
        }
    }

    /// The count and the `q` quantile (e.g. 0.99) of the latencies in the window that
    /// ends at `now_sec` (the seconds `now_sec - span + 1 ..= now_sec`).
    pub fn quantile(&self, now_sec: i64, q: f64) -> (u64, Option<f64>) {
        let mut merged: BTreeMap<u16, u64> = BTreeMap::new();
        for (_, h) in self
            .seconds
            .iter()
            .filter(|(s, _)| *s > now_sec - self.span && *s <= now_sec)
        {
            for (b, n) in h {
                *merged.entry(*b).or_insert(0) += u64::from(*n);
            }
        }
        let n: u64 = merged.values().sum();
        if n == 0 {
            return (0, None);
        }
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for (b, c) in merged {
            seen += c;
            if seen >= rank {
                return (n, Some(upper_ms(b)));
            }
        }
        (n, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_p99_is_within_two_percent_and_old_seconds_leave_the_window() {
        let mut w = Window::new(10.0);
        // 1..=1000 ms, one each, spread over seconds 100..=109.
        for i in 1..=1000u32 {
            w.add(100 + i64::from(i % 10), f64::from(i));
        }
        let (n, p99) = w.quantile(109, 0.99);
        assert_eq!(n, 1000);
        let p99 = p99.unwrap();
        assert!((990.0..=990.0 * 1.02).contains(&p99), "{p99}");
        // At second 114, seconds 100..=104 have left the window.
        let (n, _) = w.quantile(114, 0.99);
        assert_eq!(n, 500);
        // A new second far ahead drops them all from memory.
        w.add(500, 3.0);
        assert_eq!(w.quantile(500, 0.5), (1, Some(upper_ms(bucket(3.0)))));
        assert!(upper_ms(bucket(3.0)) >= 3.0 && upper_ms(bucket(3.0)) < 3.0 * 1.02);
    }

    #[test]
    fn late_arrivals_land_in_their_own_second() {
        let mut w = Window::new(5.0);
        w.add(10, 1.0);
        w.add(12, 1.0);
        w.add(11, 100.0);
        assert_eq!(w.quantile(11, 1.0).0, 2);
        assert_eq!(w.quantile(12, 1.0).0, 3);
        // Older than the window: not kept.
        w.add(2, 1.0);
        assert_eq!(w.quantile(12, 1.0).0, 3);
    }
}
