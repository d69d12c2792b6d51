//! Memory measurements of the broker process for the tests that bound what an attack costs:
//! the resident set read from `/proc/PID/status` and a sampler that keeps the peak.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::Bridge;

/// Generous bound on the broker's resident memory in the memory scenarios. An idle debug
/// build sits around 10-20 MiB; every scenario is designed to need far less than this
/// bound if the broker bounds what it buffers, and far more if it does not.
pub const RSS_BOUND_KIB: u64 = 200 * 1024;

/// The number of threads of process `pid` (`Threads:` of `/proc/PID/status`).
pub fn threads(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Threads in /proc/{pid}/status"))
}

/// The resident set size of process `pid` in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    parse_vm_rss(&status).unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// `VmRSS:    12345 kB` → 12345.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Samples a process's RSS every few milliseconds on a thread, keeping the peak.
pub struct RssPeak {
    pid: u32,
    stop: Arc<AtomicBool>,
    sampler: Option<JoinHandle<u64>>,
}

impl RssPeak {
    pub fn start(b: &Bridge) -> RssPeak {
        let pid = b.pid();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let sampler = thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                // The process may be gone at the very end; the test reports that itself.
                let status = std::fs::read_to_string(format!("/proc/{pid}/status"));
                if let Some(kib) = status.ok().as_deref().and_then(parse_vm_rss) {
                    peak = peak.max(kib);
                }
                thread::sleep(Duration::from_millis(10));
            }
            peak
        });
        RssPeak {
            pid,
            stop,
            sampler: Some(sampler),
        }
    }

    /// Stops sampling; asserts the peak (and the current RSS) stayed below [`RSS_BOUND_KIB`]
    /// and prints both under `label`. Returns the peak in KiB.
    pub fn finish(self, label: &str) -> u64 {
        self.finish_below(label, RSS_BOUND_KIB)
    }

    /// [`RssPeak::finish`] with another bound.
    pub fn finish_below(mut self, label: &str, bound_kib: u64) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let peak = self
            .sampler
            .take()
            .expect("sampler")
            .join()
            .expect("RSS sampler");
        let now = rss_kib(self.pid);
        let peak = peak.max(now);
        eprintln!(
            "[rss] {label}: peak RSS {:.1} MiB, now {:.1} MiB",
            peak as f64 / 1024.0,
            now as f64 / 1024.0
        );
        assert!(
            peak < bound_kib,
            "{label}: broker RSS peaked at {peak} KiB, above the bound of {bound_kib} KiB"
        );
        peak
    }
}

impl Drop for RssPeak {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
