//! Resource use and machine facts from `/proc` (Linux only, no extra crates):
//! CPU time (utime+stime) and peak resident set (VmHWM) of a process, and the
//! cores, memory and CPU model of the machine.

use serde::Serialize;

/// Kernel clock ticks per second for `/proc/<pid>/stat` times. `USER_HZ` is
/// 100 on every Linux ABI we run on; reading it needs `sysconf`, i.e. libc.
const TICKS_PER_S: f64 = 100.0;

/// CPU time and peak RSS of one process at one moment.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ProcSample {
    /// User + system CPU seconds since the process started (all threads).
    pub cpu_s: f64,
    /// Peak resident set size, MiB (VmHWM).
    pub peak_rss_mb: f64,
}

/// Reads `/proc/<pid>` (`pid` = "self" for this process); `None` when the
/// process is gone.
pub fn sample(pid: &str) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after the last ')'
    // start at field 3 (state), so utime (14) and stime (15) are at 11 and 12.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm_kb = kb_field(&status, "VmHWM:").unwrap_or(0);
    Some(ProcSample { cpu_s: (utime + stime) / TICKS_PER_S, peak_rss_mb: hwm_kb as f64 / 1024.0 })
}

fn kb_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok())
}

/// The machine the numbers were taken on.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub memory_mb: u64,
    pub cpu_model: String,
    pub kernel: String,
}

/// Reads the machine's facts from `/proc`.
pub fn machine() -> Machine {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_string()))
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    Machine {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_mb: kb_field(&meminfo, "MemTotal:").unwrap_or(0) / 1024,
        cpu_model,
        kernel,
    }
}

/// Today's UTC date and time as `YYYY-MM-DDTHH:MM:SSZ`, from the Unix clock
/// (days-to-civil conversion, proleptic Gregorian calendar).
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", sod / 3600, sod % 3600 / 60, sod % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_a_peak_rss() {
        let s = sample("self").expect("/proc/self");
        assert!(s.peak_rss_mb > 0.0);
        assert!(machine().cores >= 1);
        assert!(utc_now().starts_with("20") && utc_now().ends_with('Z'));
    }
}
