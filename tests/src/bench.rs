//! Helpers for the benchmark runners in `tests/examples/`: percentiles and BENCHMARKS.md sections.

use std::time::Duration;

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Replaces the text between `<!-- {name}:begin -->` and `<!-- {name}:end -->` in BENCHMARKS.md,
/// appending the section if it is not there yet.
pub fn write_section(name: &str, body: &str) {
    let path = crate::workspace_root().join("BENCHMARKS.md");
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        "# Benchmarks\n\nFigures written by the runners in `tests/examples/` (see each section for how to repeat them).\n".to_owned()
    });
    let (begin, end) = (
        format!("<!-- {name}:begin -->"),
        format!("<!-- {name}:end -->"),
    );
    let section = format!("{begin}\n{}\n{end}", body.trim_end());
    match (text.find(&begin), text.find(&end)) {
        (Some(b), Some(e)) if e > b => text.replace_range(b..e + end.len(), &section),
        _ => {
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text.push('\n');
            text.push_str(&section);
            text.push('\n');
        }
    }
    std::fs::write(&path, text).expect("write BENCHMARKS.md");
    eprintln!("wrote the {name} section of {}", path.display());
}

/// Peak resident set size of a running process, from /proc (Linux).
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
}

pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{cores} cores, {cpu}")
}

/// CPU time the hypervisor gave to other guests, as a share of all CPU time (from /proc/stat's
/// `steal` column): read it before and after a run; figures taken under heavy steal are not the
/// code's.
#[derive(Debug, Clone, Copy)]
pub struct CpuTimes {
    steal: u64,
    total: u64,
}

impl CpuTimes {
    pub fn now() -> Option<CpuTimes> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|n| n.parse().ok())
            .collect();
        Some(CpuTimes {
            steal: *cpu.get(7)?,
            total: cpu.iter().take(8).sum(),
        })
    }

    /// The share of CPU time stolen between `self` and `later`, in percent.
    pub fn steal_percent(self, later: CpuTimes) -> f64 {
        let total = later.total.saturating_sub(self.total).max(1) as f64;
        later.steal.saturating_sub(self.steal) as f64 * 100.0 / total
    }
}
