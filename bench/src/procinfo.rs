//! What /proc tells about a process: resident memory and CPU time.

/// A field of /proc/PID/status in KiB (`VmRSS`, `VmHWM`, …).
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_kib(&status, field)
}

fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// CPU time (user + system) a process has used, in seconds, from /proc/PID/stat.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_cpu_secs(&stat)
}

fn parse_stat_cpu_secs(stat: &str) -> Option<f64> {
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux architecture this runs on.
    Some((utime + stime) as f64 / 100.0)
}

/// Busy and total jiffies of each CPU since boot, from /proc/stat (`cpu0`, `cpu1`, …).
pub fn cpu_jiffies() -> Vec<(u64, u64)> {
    std::fs::read_to_string("/proc/stat")
        .map(|stat| parse_cpu_jiffies(&stat))
        .unwrap_or_default()
}

fn parse_cpu_jiffies(stat: &str) -> Vec<(u64, u64)> {
    stat.lines()
        .filter(|line| line.starts_with("cpu") && !line.starts_with("cpu "))
        .map(|line| {
            let v: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|f| f.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal …: idle and iowait are idle.
            let total: u64 = v.iter().take(8).sum();
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            (total - idle, total)
        })
        .collect()
}

/// Fraction of the time each CPU was busy (any process) between two [`cpu_jiffies`].
pub fn cpu_busy(before: &[(u64, u64)], after: &[(u64, u64)]) -> Vec<f64> {
    before
        .iter()
        .zip(after)
        .map(|(&(b0, t0), &(b1, t1))| {
            let total = t1.saturating_sub(t0);
            if total == 0 {
                0.0
            } else {
                (b1.saturating_sub(b0) as f64 / total as f64 * 100.0).round() / 100.0
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_cpu_busy_from_proc_stat() {
        let before = "cpu  1 1 1 1 1 1 1 1 0 0\ncpu0 100 0 50 800 50 0 0 0 0 0\n\
                      cpu1 0 0 0 1000 0 0 0 0 0 0\nintr 5\n";
        let after = "cpu  1 1 1 1 1 1 1 1 0 0\ncpu0 150 0 100 850 50 0 0 0 0 0\n\
                     cpu1 0 0 0 1100 0 0 0 0 0 0\nintr 5\n";
        let (b, a) = (parse_cpu_jiffies(before), parse_cpu_jiffies(after));
        assert_eq!(b, vec![(150, 1000), (0, 1000)]);
        assert_eq!(cpu_busy(&b, &a), vec![0.67, 0.0]);
        assert!(!cpu_jiffies().is_empty());
    }

    #[test]
    fn reads_cpu_time_from_stat() {
        let stat = "1234 (a (b) c) S 1 1234 1234 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 3 0 1";
        assert_eq!(parse_stat_cpu_secs(stat), Some(3.0));
        assert_eq!(parse_stat_cpu_secs("garbage"), None);
        assert!(cpu_secs(std::process::id()).is_some());
    }

    #[test]
    fn reads_proc_status_fields() {
        let status = "Name:\tbridge\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nThreads:\t2\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(10240));
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(20480));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
        assert_eq!(parse_status_kib(status, "Vm"), None);
    }

    #[test]
    fn reads_our_own_status() {
        assert!(proc_status_kib(std::process::id(), "VmRSS").unwrap() > 0);
    }
}
