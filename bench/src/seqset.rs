//! Which sequence numbers of one publisher were seen: a growable bitmap. Loss is counted as
//! the acknowledged numbers a subscriber never saw.

/// Sequence numbers this large come from a corrupt payload, not from a run.
pub const MAX_SEQ: u64 = 1 << 34;

#[derive(Debug, Clone, Default)]
pub struct SeqSet {
    words: Vec<u64>,
    len: u64,
}

impl SeqSet {
    /// Adds `seq`; false if it was already there (a duplicate). `seq` must be below
    /// [`MAX_SEQ`].
    pub fn insert(&mut self, seq: u64) -> bool {
        debug_assert!(seq < MAX_SEQ);
        let word = (seq / 64) as usize;
        if word >= self.words.len() {
            let grown = (word + 1).max(self.words.len() * 2);
            self.words.resize(grown, 0);
        }
        let bit = 1u64 << (seq % 64);
        let new = self.words[word] & bit == 0;
        self.words[word] |= bit;
        self.len += new as u64;
        new
    }

    #[cfg(test)]
    pub fn contains(&self, seq: u64) -> bool {
        self.words
            .get((seq / 64) as usize)
            .is_some_and(|w| w & (1 << (seq % 64)) != 0)
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// Adds every number of `other`.
    pub fn union_with(&mut self, other: &SeqSet) {
        if other.words.len() > self.words.len() {
            self.words.resize(other.words.len(), 0);
        }
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
        self.len = self.words.iter().map(|w| w.count_ones() as u64).sum();
    }

    /// The smallest number of `self` missing from `other`.
    pub fn first_missing_from(&self, other: &SeqSet) -> Option<u64> {
        self.words.iter().enumerate().find_map(|(i, &w)| {
            let missing = w & !other.words.get(i).copied().unwrap_or(0);
            (missing != 0).then(|| i as u64 * 64 + missing.trailing_zeros() as u64)
        })
    }

    /// How many numbers of `self` are missing from `other`.
    pub fn missing_from(&self, other: &SeqSet) -> u64 {
        self.words
            .iter()
            .enumerate()
            .map(|(i, &w)| (w & !other.words.get(i).copied().unwrap_or(0)).count_ones() as u64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_reports_duplicates() {
        let mut s = SeqSet::default();
        assert!(s.insert(0));
        assert!(s.insert(1000));
        assert!(!s.insert(1000));
        assert!(s.contains(0) && s.contains(1000) && !s.contains(999) && !s.contains(1 << 20));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn missing_counts_acked_but_unseen() {
        let mut acked = SeqSet::default();
        let mut seen = SeqSet::default();
        for seq in 0..200 {
            acked.insert(seq);
            if seq % 10 != 3 {
                seen.insert(seq);
            }
        }
        assert_eq!(acked.missing_from(&seen), 20);
        assert_eq!(acked.first_missing_from(&seen), Some(3));
        assert_eq!(seen.first_missing_from(&acked), None);
        assert_eq!(seen.missing_from(&acked), 0);
        // A shorter `other` counts everything past its end as missing.
        assert_eq!(acked.missing_from(&SeqSet::default()), 200);
    }

    #[test]
    fn union_merges_subscribers() {
        let mut a = SeqSet::default();
        let mut b = SeqSet::default();
        a.insert(1);
        b.insert(2);
        b.insert(500);
        a.union_with(&b);
        assert_eq!(a.len(), 3);
        assert!(a.contains(500));
    }
}
