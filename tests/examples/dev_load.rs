//! Load on `notesctl dev` from a second process: many WebSocket clients and a steady stream of
//! concurrent POSTs; each note's latency is POST sent → `note-saved` received on the author's socket.
//! Run with `scripts/bench.sh dev-load`; the figures go to BENCHMARKS.md.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use notesctl_tests::bench::{machine, ms, percentile, write_section};
use notesctl_tests::dev::DevServer;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const USERS: usize = 50;
const EXTRA_SOCKETS: usize = 200;

#[tokio::main]
async fn main() {
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
Measured {date} on {machine}. `{bin}` (`notesctl dev`, default settings, fresh data dir) and a load generator in a second\n\
process (`tests/examples/dev_load.rs`, release build): {USERS} users, {sockets} WebSocket clients ({USERS} authors' sockets + {EXTRA_SOCKETS} more),\n\
{total} private notes POSTed open-loop at {rate} notes/s, round-robin over the users. Latency is POST sent → `note-saved`\n\
received on the author's WebSocket (HTTP 202, publish, durable enqueue, queue poll, save, notify, push). {runs} runs,\n\
each against a fresh server, one row each. Repeat: `scripts/bench.sh dev-load` (`RATE=`, `TOTAL=` and `RUNS=`\n\
override). CPU busy is the share of both cores' time spent running anything (server and generator) while that run's\n\
notes were sent, and steal the share the hypervisor gave to other guests (/proc/stat): on a shared VM steal moves\n\
between runs, and p99 with it, for the same binary. Machine stalls are\n\
measured beside the load by a real-time thread that sleeps 1 ms at a time and records how late it wakes\n\
(`StallMeter` in tests/src/bench.rs): the longest such stall, and how many passed 5 ms and their sum. No process\n\
can hold that thread off, so a stall is time its CPU ran nothing of this guest's; a note sent into one waits it out.\n\
fdatasync is a probe beside the server: 4 KiB written and made durable every 10 ms in the server's data dir, as each\n\
commit of the store and the queue does (`FsyncMeter`): what the disk made every durable commit wait during the run.\n\n\
| notes | offered rate | sustained | p50 | p99 | max | errors | CPU busy / steal | machine stalls: longest; over 5 ms | fdatasync p50 / p99 / max |\n|---|---|---|---|---|---|---|---|---|---|\n\
{rows}",
        date = notes_handlers::domain::clock::now_iso(),
        machine = machine(),
        bin = binary
            .strip_prefix(notesctl_tests::workspace_root())
            .unwrap_or(&binary)
            .display(),
    );
    write_section("dev-load", &body);
}

/// One run against a fresh server: its table row, and how many sockets it held.
async fn one_run(rate: u64, total: usize) -> (String, usize) {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &[]).await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();

    let mut tokens = Vec::new();
    for u in 0..USERS {
        tokens.push(dev.sign_up(&format!("user{u}"), "load-test-password").await);
    }
    let saved: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut sockets = 0;
    for i in 0..USERS + EXTRA_SOCKETS {
        let token = &tokens[i % USERS];
        let (ws, _) = tokio_tungstenite::connect_async(format!("{}?token={token}", dev.ws_url))
            .await
            .expect("connect");
        sockets += 1;
        let saved = saved.clone();
        let is_author_socket = i < USERS;
        tokio::spawn(async move {
            let (_tx, mut rx) = ws.split();
            while let Some(Ok(msg)) = rx.next().await {
                if let (true, Message::Text(t)) = (is_author_socket, msg) {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["eventType"] == "note-saved" {
                        saved
                            .lock()
                            .unwrap()
                            .insert(v["noteId"].as_str().unwrap().to_owned(), Instant::now());
                    }
                }
            }
        });
    }

    let sent: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut ticker = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let cpu_before = notesctl_tests::bench::CpuTimes::now();
    let meter = notesctl_tests::bench::StallMeter::start();
    let fsync = notesctl_tests::bench::FsyncMeter::start(dir.path());
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        ticker.tick().await;
        let (http, url, token) = (
            http.clone(),
            format!("{}/notes", dev.api_url),
            tokens[i % USERS].clone(),
        );
        let (sent, errors) = (sent.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            match http
                .post(url)
                .bearer_auth(token)
                .json(&json!({"content": format!("load note {i}")}))
                .send()
                .await
            {
                Ok(r) if r.status().as_u16() == 202 => {
                    let b: Value = r.json().await.unwrap();
                    sent.lock()
                        .unwrap()
                        .push((b["noteId"].as_str().unwrap().to_owned(), t0));
                }
                Ok(r) => errors.lock().unwrap().push(format!("HTTP {}", r.status())),
                Err(e) => errors.lock().unwrap().push(e.to_string()),
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let send_window = started.elapsed();
    let steal = cpu_before
        .zip(notesctl_tests::bench::CpuTimes::now())
        .map(|(a, b)| format!("{:.0}% / {:.0}%", a.busy_percent(b), a.steal_percent(b)))
        .unwrap_or_else(|| "n/a".to_owned());
    let stalls = meter.stop();
    let syncs = fsync.stop();
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
    let deadline = Instant::now() + Duration::from_secs(30);
    while saved.lock().unwrap().len() < sent.lock().unwrap().len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let saved = saved.lock().unwrap().clone();
    let sent = sent.lock().unwrap().clone();
    let mut latencies = Vec::new();
    let mut last = started;
    let mut lost = 0;
    for (id, t0) in &sent {
        match saved.get(id) {
            Some(t1) => {
                latencies.push(t1.duration_since(*t0));
                last = last.max(*t1);
            }
            None => lost += 1,
        }
    }
    latencies.sort();
    let errors = errors.lock().unwrap().len() + lost;
    let sustained = latencies.len() as f64 / last.duration_since(started).as_secs_f64();
    let (p50, p99, max) = (
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or_default(),
    );
    eprintln!(
        "sent {} at {rate}/s in {send_window:?}; saved {}; p50 {} p99 {} max {}; {sustained:.0} notes/s; errors {errors}; CPU busy / steal {steal}; machine stalls: longest {stalls}; fdatasync p50 / p99 / max {syncs}",
        sent.len(),
        latencies.len(),
        ms(p50),
        ms(p99),
        ms(max)
    );
    let _ = dev.terminate().await;
    let row = format!(
        "| {total} | {rate}/s | {sustained:.0}/s | {} | {} | {} | {errors} | {steal} | {stalls} | {syncs} |\n",
        ms(p50),
        ms(p99),
        ms(max),
    );
    (row, sockets)
}
