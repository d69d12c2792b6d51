//! The stamp every benchmark message carries in the first [`STAMP_LEN`] bytes of its
//! payload: who sent it, its sequence number and when it was sent. Subscribers count
//! deliveries per publisher, find lost and duplicated messages by sequence number and
//! measure latency from the timestamp, with no state shared with the publisher but the
//! clock origin.

use std::sync::OnceLock;
use std::time::Instant;

/// Bytes the stamp takes at the start of a payload: three big-endian `u64`s.
pub const STAMP_LEN: usize = 24;

/// Publisher index, sequence number (from 0, per publisher) and send time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub publisher: u64,
    pub seq: u64,
    /// Nanoseconds since the process's clock origin ([`now_ns`]).
    pub sent_ns: u64,
}

impl Stamp {
    /// Writes the stamp over the first [`STAMP_LEN`] bytes of `payload`.
    ///
    /// Panics if `payload` is shorter than that; payload sizes are checked up front.
    pub fn write(&self, payload: &mut [u8]) {
        payload[0..8].copy_from_slice(&self.publisher.to_be_bytes());
        payload[8..16].copy_from_slice(&self.seq.to_be_bytes());
        payload[16..24].copy_from_slice(&self.sent_ns.to_be_bytes());
    }

    /// Reads the stamp at the start of `payload`; `None` if the payload is too short.
    pub fn read(payload: &[u8]) -> Option<Stamp> {
        let word = |i: usize| u64::from_be_bytes(payload[i..i + 8].try_into().unwrap());
        (payload.len() >= STAMP_LEN).then(|| Stamp {
            publisher: word(0),
            seq: word(8),
            sent_ns: word(16),
        })
    }
}

static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// Monotonic nanoseconds since the first call in this process: the one clock publishers
/// and subscribers share, so a latency is a plain subtraction.
pub fn now_ns() -> u64 {
    ORIGIN.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let stamp = Stamp {
            publisher: 7,
            seq: 0x0102_0304_0506_0708,
            sent_ns: u64::MAX - 1,
        };
        let mut payload = vec![0xEEu8; 64];
        stamp.write(&mut payload);
        assert_eq!(Stamp::read(&payload), Some(stamp));
        // The rest of the payload is left alone.
        assert!(payload[STAMP_LEN..].iter().all(|&b| b == 0xEE));
    }

    #[test]
    fn layout_is_big_endian_publisher_seq_time() {
        let mut payload = [0u8; STAMP_LEN];
        Stamp {
            publisher: 1,
            seq: 2,
            sent_ns: 3,
        }
        .write(&mut payload);
        assert_eq!(payload[7], 1);
        assert_eq!(payload[15], 2);
        assert_eq!(payload[23], 3);
        assert!(payload.iter().filter(|&&b| b != 0).count() == 3);
    }

    #[test]
    fn exact_length_reads_and_short_payload_does_not() {
        let payload = [0u8; STAMP_LEN];
        assert!(Stamp::read(&payload).is_some());
        assert_eq!(Stamp::read(&payload[..STAMP_LEN - 1]), None);
        assert_eq!(Stamp::read(&[]), None);
    }

    #[test]
    fn clock_is_monotonic() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a);
    }
}
