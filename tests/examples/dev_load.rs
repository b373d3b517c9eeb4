//! Load on `notesctl dev` from a second process — `notesctl load`, the command users run: many
//! WebSocket clients and a steady stream of concurrent POSTs; each note's latency is POST sent →
//! `note-saved` received on the author's socket. This runner starts both, reads load's JSON, and
//! measures the machine (CPU, stalls, the disk's fdatasync) while the notes are sent.
//! Run with `scripts/bench.sh dev-load`; the figures go to BENCHMARKS.md.

use std::process::Stdio;
use std::time::Duration;

use notesctl::commands::load::LoadReport;
use notesctl_tests::bench::{ms, percentile};
use notesctl_tests::dev::DevServer;
use tokio::io::AsyncBufReadExt;

const USERS: usize = 50;
const EXTRA_SOCKETS: usize = 200;

#[tokio::main]
async fn main() {
    let run = notesctl_tests::bench::Run::start();
    let env = |name: &str, default: u64| -> u64 {
        std::env::var(name)
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(default)
    };
    let (rate, total, runs) = (
        env("RATE", 500),
        env("TOTAL", 10_000) as usize,
        env("RUNS", 3),
    );
    notesctl_tests::bench::prefer_release_binary();
    let binary = notesctl_tests::dev::notesctl_binary();
    let mut rows = String::new();
    let mut sockets = 0;
    for _ in 0..runs {
        let (row, s) = one_run(rate, total).await;
        rows.push_str(&row);
        sockets = s;
    }
    let body = format!(
        "## `notesctl dev` under load (issue: targets p99 ≤ 20 ms at 500 notes/s; 10,000 requests with zero errors)\n\n\
`{bin}` (`notesctl dev`, default settings, fresh data dir) and a load generator in a second\n\
process (`notesctl load` from the same binary, started by `tests/examples/dev_load.rs`): {USERS} users, {sockets} WebSocket clients\n\
({USERS} authors' sockets + {EXTRA_SOCKETS} more), {total} private notes POSTed open-loop at {rate} notes/s, round-robin over the users:\n\
`notesctl load --local URL --rate {rate} --total {total} --users {USERS} --sockets {sockets} --public-ratio 0 --keep`. Latency is POST sent → `note-saved`\n\
received on the author's WebSocket (HTTP 202, publish, durable enqueue, queue poll, save, notify, push). {runs} runs,\n\
each against a fresh server, one row each. Repeat: `scripts/bench.sh dev-load` (`RATE=`, `TOTAL=` and `RUNS=`\n\
override). CPU busy is the share of both cores' time spent running anything (server and generator) while that run's\n\
notes were sent, and steal the share the hypervisor gave to other guests (/proc/stat): on a shared VM steal moves\n\
between runs, and p99 with it, for the same binary. The machine is measured from load's line \"offering …\" (sending\n\
starts) to its report (the last note saved). Machine stalls are\n\
measured beside the load by a real-time thread that sleeps 1 ms at a time and records how late it wakes\n\
(`StallMeter` in tests/src/bench.rs): the longest such stall, and how many passed 5 ms and their sum. No process\n\
can hold that thread off, so a stall is time its CPU ran nothing of this guest's; a note sent into one waits it out.\n\
fdatasync is a probe beside the server: 4 KiB written and made durable every 10 ms in the server's data dir, as each\n\
commit of the store and the queue does (`FsyncMeter`): what the disk made every durable commit wait during the run.\n\n\
| notes | offered rate | sustained | p50 | p99 | max | errors | CPU busy / steal | machine stalls: longest; over 5 ms | fdatasync p50 / p99 / max |\n|---|---|---|---|---|---|---|---|---|---|\n\
{rows}",
        bin = binary
            .strip_prefix(notesctl_tests::workspace_root())
            .unwrap_or(&binary)
            .display(),
    );
    run.write_section("dev-load", &body);
}

/// One run against a fresh server: its table row, and how many sockets it held.
async fn one_run(rate: u64, total: usize) -> (String, usize) {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &[]).await;
    let sockets = USERS + EXTRA_SOCKETS;
    let mut child = tokio::process::Command::new(notesctl_tests::dev::notesctl_binary())
        .args([
            "load",
            "--local",
            &dev.api_url,
            "--output",
            "json",
            "--keep",
        ])
        .args(["--rate", &rate.to_string(), "--total", &total.to_string()])
        .args(["--users", &USERS.to_string()])
        .args(["--sockets", &sockets.to_string(), "--public-ratio", "0"])
        // The load users are named from dev's runbook token, read from its data directory.
        .env("NOTESCTL_DEV_DATA_DIR", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("notesctl load");
    let mut stdout = child.stdout.take().unwrap();
    let report = tokio::spawn(async move {
        let mut out = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut stdout, &mut out)
            .await
            .unwrap();
        out
    });
    // Signing in and opening sockets come first; the machine is measured once sending starts.
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut meters = None;
    while let Some(line) = lines.next_line().await.unwrap() {
        eprintln!("{line}");
        if meters.is_none() && line.starts_with("offering ") {
            meters = Some((
                notesctl_tests::bench::CpuTimes::now(),
                notesctl_tests::bench::StallMeter::start(),
                notesctl_tests::bench::FsyncMeter::start(dir.path()),
            ));
        }
    }
    let status = tokio::time::timeout(Duration::from_secs(120), child.wait())
        .await
        .expect("notesctl load ends")
        .unwrap();
    let (cpu_before, meter, fsync) = meters.expect("notesctl load said when it started sending");
    let steal = cpu_before
        .zip(notesctl_tests::bench::CpuTimes::now())
        .map(|(a, b)| format!("{:.0}% / {:.0}%", a.busy_percent(b), a.steal_percent(b)))
        .unwrap_or_else(|| "n/a".to_owned());
    let stalls = meter.stop();
    let syncs = fsync.stop();
    let report: LoadReport = serde_json::from_slice(&report.await.unwrap()).unwrap_or_else(|e| {
        panic!("notesctl load ({status}) gave no report: {e}");
    });
    let step = &report.steps[0];
    let syncs = format!(
        "{} / {} / {}",
        ms(percentile(&syncs, 50.0)),
        ms(percentile(&syncs, 99.0)),
        ms(syncs.last().copied().unwrap_or_default())
    );
    let stalls = format!(
        "{}{}; {} over 5 ms, {} in all",
        ms(stalls.longest),
        if stalls.realtime {
            ""
        } else {
            " (not real-time)"
        },
        stalls.over_5ms,
        ms(stalls.lost),
    );
    // Refused POSTs and notes never seen saved, by kind, are load's errors.
    let errors = step.error_count();
    let lat = &step.saved_latency;
    eprintln!(
        "sent {} at {rate}/s; saved {}; p50 {:.1} ms p99 {:.1} ms max {:.1} ms; {:.0} notes/s; errors {errors}; CPU busy / steal {steal}; machine stalls: longest {stalls}; fdatasync p50 / p99 / max {syncs}",
        step.sent, step.saved, lat.p50, lat.p99, lat.max, step.sustained_rate
    );
    let _ = dev.terminate().await;
    let row = format!(
        "| {total} | {rate}/s | {:.0}/s | {:.1} ms | {:.1} ms | {:.1} ms | {errors} | {steal} | {stalls} | {syncs} |\n",
        step.sustained_rate, lat.p50, lat.p99, lat.max,
    );
    (row, sockets)
}
