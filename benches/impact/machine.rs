//! The machine the numbers come from: without it they mean little.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    pub logical_cpus: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub postgres: String,
    /// The 1-minute load average when the run started: the machine is shared.
    pub load_average_at_start: f64,
    pub date_utc: String,
}

impl Machine {
    pub fn describe(postgres: &str) -> Machine {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpu_model = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map(|(_, name)| name.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        Machine {
            cpu_model,
            logical_cpus: logical_cpus(),
            memory_gib: (memory_bytes() / 1024.0 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            postgres: postgres.to_string(),
            load_average_at_start: read("/proc/loadavg")
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0),
            date_utc: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        }
    }
}

/// The machine's CPU time so far, from `/proc/stat`'s first line (every CPU together), in
/// clock ticks: where it is readable (Linux), two of them say how busy the CPUs were between.
#[derive(Debug, Clone, Copy)]
pub struct CpuTimes {
    busy: u64,
    total: u64,
}

impl CpuTimes {
    pub fn now() -> Option<CpuTimes> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let fields: Vec<u64> = stat
            .lines()
            .next()?
            .strip_prefix("cpu ")?
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal (guest time is counted in user).
        let total: u64 = fields.iter().take(8).sum();
        let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
        Some(CpuTimes {
            busy: total - idle,
            total,
        })
    }

    /// The share of the CPUs' time that was busy from `self` to `later`, in percent.
    pub fn busy_percent_until(self, later: CpuTimes) -> Option<f64> {
        // iowait can go backwards on Linux, and the sums with it: no share then.
        let total = later.total.checked_sub(self.total)?;
        let busy = later.busy.checked_sub(self.busy)?;
        (total > 0).then(|| busy as f64 / total as f64 * 100.0)
    }
}

/// How busy the CPUs were between two optional readings.
pub fn busy_percent(from: Option<CpuTimes>, to: Option<CpuTimes>) -> Option<f64> {
    from?.busy_percent_until(to?)
}

/// The CPUs this process may run on (0 where that cannot be told).
pub fn logical_cpus() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

/// The machine's memory in bytes, from /proc/meminfo (0 where it cannot be read).
pub fn memory_bytes() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib * 1024.0)
}
