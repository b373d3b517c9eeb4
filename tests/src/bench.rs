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

/// One runner's run: what its figures were measured on. Started before the measuring, it writes
/// the section with a line naming the commit (and whether the tree differed from it), the date, the
/// CPU and the host's steal during the run — which `scripts/bench.sh stale` reads to list sections
/// whose measured files changed since.
pub struct Run {
    commit: String,
    dirty: bool,
    started: String,
    cpu: Option<CpuTimes>,
}

fn git(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(crate::workspace_root())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

impl Run {
    pub fn start() -> Run {
        Run {
            commit: git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into()),
            // The measured code differs from the commit (documents aside: no figure depends on them).
            dirty: git(&[
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                ":!*.md",
            ])
            .is_none_or(|s| !s.is_empty()),
            started: notes_handlers::domain::clock::now_iso(),
            cpu: CpuTimes::now(),
        }
    }

    /// The provenance line: "Measured at commit `…` (clean tree), 2026-…Z, on 2 cores, …; steal …".
    pub fn provenance(&self) -> String {
        let steal = match (self.cpu, CpuTimes::now()) {
            (Some(a), Some(b)) => format!("{:.2} %", a.steal_percent(b)),
            _ => "unknown".to_owned(),
        };
        format!(
            "Measured at commit `{}` ({}), started {}, on {}; CPU time stolen by the host during the run: {steal}.",
            self.commit,
            if self.dirty {
                "tree dirty: the figures may not be this commit's"
            } else {
                "clean tree"
            },
            self.started,
            machine(),
        )
    }

    /// Writes `body` (its first line the section's heading) as section `name`, the provenance line
    /// under the heading.
    pub fn write_section(&self, name: &str, body: &str) {
        let (heading, rest) = body.split_once('\n').unwrap_or((body, ""));
        write_section(name, &format!("{heading}\n\n{}\n{rest}", self.provenance()));
    }
}

/// Replaces the text between `<!-- {name}:begin -->` and `<!-- {name}:end -->` in BENCHMARKS.md,
/// appending the section if it is not there yet.
fn write_section(name: &str, body: &str) {
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
    /// Everything but idle, I/O wait and steal.
    busy: u64,
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
        // user nice system idle iowait irq softirq steal
        Some(CpuTimes {
            steal: *cpu.get(7)?,
            busy: cpu[0] + cpu[1] + cpu[2] + cpu[5] + cpu[6],
            total: cpu.iter().take(8).sum(),
        })
    }

    /// The share of the machine's CPU time (all cores) spent running something, in percent.
    pub fn busy_percent(self, later: CpuTimes) -> f64 {
        let total = later.total.saturating_sub(self.total).max(1) as f64;
        later.busy.saturating_sub(self.busy) as f64 * 100.0 / total
    }

    /// The share of CPU time stolen between `self` and `later`, in percent.
    pub fn steal_percent(self, later: CpuTimes) -> f64 {
        let total = later.total.saturating_sub(self.total).max(1) as f64;
        later.steal.saturating_sub(self.steal) as f64 * 100.0 / total
    }
}

/// How long the machine itself stopped, measured from inside: a thread at real-time priority
/// (SCHED_FIFO when allowed, as root) asks to sleep 1 ms over and over and records how late each
/// wake-up is. No process on the machine can hold it off, so a late wake-up is time its CPU did not
/// run at all — the hypervisor gave it to another guest, or the kernel held it. A latency figure can
/// not be better than the longest of these stalls for the requests that meet one.
pub struct StallMeter {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Stalls>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Stalls {
    /// Whether the meter ran at real-time priority (else other threads could delay it too).
    pub realtime: bool,
    /// The latest wake-up past its 1 ms.
    pub longest: Duration,
    /// How many wake-ups were later than 5 ms, and their lateness added up.
    pub over_5ms: usize,
    pub lost: Duration,
}

impl StallMeter {
    pub fn start() -> StallMeter {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let param = libc::sched_param { sched_priority: 1 };
            // SAFETY: sets the calling thread's policy; `param` outlives the call.
            let realtime = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } == 0;
            let mut stalls = Stalls {
                realtime,
                ..Stalls::default()
            };
            let tick = Duration::from_millis(1);
            while !flag.load(Ordering::Relaxed) {
                let asked = std::time::Instant::now();
                std::thread::sleep(tick);
                let late = asked.elapsed().saturating_sub(tick);
                stalls.longest = stalls.longest.max(late);
                if late > Duration::from_millis(5) {
                    stalls.over_5ms += 1;
                    stalls.lost += late;
                }
            }
            stalls
        });
        StallMeter { stop, thread }
    }

    pub fn stop(self) -> Stalls {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().expect("the stall meter thread")
    }
}

/// How long the disk under `dir` takes to make a small write durable while a run goes on: a thread
/// writes 4 KiB and calls `fdatasync` every 10 ms, as the store and the queue do for each commit.
pub struct FsyncMeter {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Duration>>,
}

impl FsyncMeter {
    pub fn start(dir: &std::path::Path) -> FsyncMeter {
        use std::io::Write;
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let path = dir.join("fsync-probe");
        let thread = std::thread::spawn(move || {
            let mut file = std::fs::File::create(&path).expect("the fsync probe's file");
            let block = [7u8; 4096];
            let mut took = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let t = std::time::Instant::now();
                file.write_all(&block).expect("write");
                file.sync_data().expect("fdatasync");
                took.push(t.elapsed());
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = std::fs::remove_file(&path);
            took.sort();
            took
        });
        FsyncMeter { stop, thread }
    }

    /// Each `fdatasync`'s time, sorted.
    pub fn stop(self) -> Vec<Duration> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().expect("the fsync meter thread")
    }
}

/// Points `notesctl_binary()` at the release build when there is one and `NOTESCTL_BIN` is unset:
/// figures are taken with notesctl as users run it. Call first thing in `main`.
pub fn prefer_release_binary() {
    let release = crate::workspace_root().join("target/release/notesctl");
    if std::env::var("NOTESCTL_BIN").is_err() && release.exists() {
        // SAFETY: called before any other thread reads the environment.
        unsafe { std::env::set_var("NOTESCTL_BIN", &release) };
    }
}
