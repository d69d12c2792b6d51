//! A log-linear latency histogram: fixed size, no allocation per sample, relative error
//! under 3.2 %. Values below 32 are exact; above, each power of two is split into 32
//! buckets.

const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS;
/// Enough buckets for any `u64`.
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB;

#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("total", &self.total)
            .field("min", &self.min)
            .field("max", &self.max)
            .finish()
    }
}

fn index(value: u64) -> usize {
    if value < SUB as u64 {
        return value as usize;
    }
    let msb = 63 - value.leading_zeros();
    let shift = msb - SUB_BITS;
    let sub = (value >> shift) as usize & (SUB - 1);
    ((shift as usize + 1) << SUB_BITS) + sub
}

/// The smallest value that falls in bucket `idx`.
fn lower_bound(idx: usize) -> u64 {
    if idx < SUB {
        return idx as u64;
    }
    let shift = (idx >> SUB_BITS) - 1;
    ((SUB + (idx & (SUB - 1))) as u64) << shift
}

/// The largest value that falls in bucket `idx`.
fn upper_bound(idx: usize) -> u64 {
    if idx < SUB {
        return idx as u64;
    }
    let shift = (idx >> SUB_BITS) - 1;
    lower_bound(idx) + ((1u64 << shift) - 1)
}

impl Histogram {
    pub fn record(&mut self, value: u64) {
        self.counts[index(value)] += 1;
        self.total += 1;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> Option<u64> {
        (self.total > 0).then_some(self.max)
    }

    /// The value at quantile `q` (0.0 to 1.0): the smallest recorded value such that at
    /// least `q` of the samples are at or below it, to the bucket's precision (the bucket's
    /// midpoint, clamped to the recorded minimum and maximum). `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (idx, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let mid = lower_bound(idx) + (upper_bound(idx) - lower_bound(idx)) / 2;
                return Some(mid.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_has_no_quantiles() {
        let h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        assert_eq!(h.max(), None);
        assert_eq!(h.count(), 0);
    }

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::default();
        for v in 1..=20 {
            h.record(v);
        }
        assert_eq!(h.quantile(0.5), Some(10));
        assert_eq!(h.quantile(0.95), Some(19));
        assert_eq!(h.quantile(1.0), Some(20));
        assert_eq!(h.quantile(0.0), Some(1));
    }

    #[test]
    fn buckets_are_contiguous_and_cover_every_value() {
        for idx in 1..BUCKETS {
            assert_eq!(lower_bound(idx), upper_bound(idx - 1) + 1, "bucket {idx}");
        }
        assert_eq!(upper_bound(BUCKETS - 1), u64::MAX);
        for v in [0, 1, 31, 32, 33, 63, 64, 65, 1000, 123_456_789, u64::MAX] {
            let i = index(v);
            assert!(
                lower_bound(i) <= v && v <= upper_bound(i),
                "{v} in bucket {i}"
            );
        }
    }

    #[test]
    fn relative_error_is_small() {
        let mut h = Histogram::default();
        // 1..=100_000 µs in ns: the true p50 is 50_000 µs, p99 99_000 µs.
        for us in 1..=100_000u64 {
            h.record(us * 1000);
        }
        for (q, want) in [
            (0.5, 50_000_000f64),
            (0.99, 99_000_000.0),
            (0.999, 99_900_000.0),
        ] {
            let got = h.quantile(q).unwrap() as f64;
            assert!((got - want).abs() / want < 0.032, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.max(), Some(100_000_000));
    }

    #[test]
    fn one_outlier_shows_in_the_tail_only() {
        let mut h = Histogram::default();
        for _ in 0..999 {
            h.record(100);
        }
        h.record(1_000_000);
        let p50 = h.quantile(0.5).unwrap();
        assert!((97..=103).contains(&p50), "{p50}");
        assert!(h.quantile(0.99).unwrap() < 110);
        assert_eq!(h.quantile(1.0), Some(1_000_000));
    }

    #[test]
    fn merge_adds_up() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        a.record(5);
        b.record(10);
        b.record(3);
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.quantile(0.0), Some(3));
        assert_eq!(a.quantile(0.5), Some(5));
        assert_eq!(a.max(), Some(10));
    }
}
