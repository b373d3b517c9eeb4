//! How far `notesctl dev` goes, measured with `notesctl load` itself, and what sharding the public
//! feed costs a reader:
//! - the knee: `notesctl load --local --ramp` with 1,000 sockets open (private notes), one per user
//!   and then twenty per user, and the fan-out of public notes to 1,000 subscribers at a steady rate;
//! - `GET /notes/public` page latency with 8 shards against 1, in `dev` and on the DynamoDB adapter
//!   (moto), the feed holding the same notes.
//!
//! Run with `scripts/bench.sh feed-scale`; the figures go to BENCHMARKS.md.

use std::time::{Duration, Instant};

use notes_handlers::adapters::dynamodb::DynamoStore;
use notes_handlers::domain::cursor::encode_cursor;
use notes_handlers::domain::feed::{FeedCursor, FeedRequest, ShardCount};
use notes_handlers::domain::note::{Note, NoteId};
use notes_handlers::ports::NoteStore;
use notesctl::commands::load::LoadReport;
use notesctl_tests::bench::{ms, percentile};
use notesctl_tests::dev::DevServer;
use serde_json::Value;

/// moto's DynamoDB answers a Query in time that grows with the table, so its feed is kept small.
const MOTO_NOTES: usize = 400;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let run = notesctl_tests::bench::Run::start();
    notesctl_tests::bench::prefer_release_binary();
    let sockets = env("SOCKETS", 1000);
    // The builds just before wrote gigabytes: let the disk finish them first, or the ramp's
    // `fdatasync`s (one behind each 202) queue behind that writeback.
    let _ = std::process::Command::new("sync").status();
    let cpu = notesctl_tests::bench::CpuTimes::now();
    // One socket per user (a private note goes to its author's one socket), then twenty (each
    // private note is twenty pushes: the same sockets, held by 50 users).
    let knee = ramp(sockets, sockets).await;
    let crowded = ramp(sockets, 50).await;
    let steal = cpu
        .zip(notesctl_tests::bench::CpuTimes::now())
        .map(|(a, b)| {
            format!(
                "{:.0}% busy, {:.0}% steal",
                a.busy_percent(b),
                a.steal_percent(b)
            )
        })
        .unwrap_or_else(|| "n/a".to_owned());
    let fanout = fan_out(sockets).await;
    let notes = env("FEED_NOTES", 3000) as usize;
    let dev_pages = dev_feed_pages(notes).await;
    let moto_pages = moto_feed_pages(MOTO_NOTES).await;
    let binary = notesctl_tests::dev::notesctl_binary();
    let body = format!(
        "## How far `notesctl dev` goes, and what the feed's shards cost a reader (issue: knee ≥ 2,000 notes/s at p99 ≤ 20 ms with 1,000 sockets; 8 shards' pages within 2× of 1)\n\n\
with `{bin}` (release) and `notesctl load` from the same binary as the load generator, in a\n\
second process on the same two cores. `dev` runs with `--max-connections 4096`: 1,000 sockets and the load's HTTP\n\
connections pass its default of 1,024 (past it, `dev` answers 503). Repeat: `scripts/bench.sh feed-scale`\n\
(`SOCKETS=`, `FEED_NOTES=` override).\n\n\
### The knee (`notesctl load --local --ramp --rate 1024 --ramp-factor 1.25 --users {sockets} --sockets {sockets} --public-ratio 0 --duration 5s --slo 20ms`)\n\n\
Private notes from {sockets} users with one socket each, each step 5 s, the rate ×1.25 a step from 1,024/s (so one step\n\
is 2,000/s) until p99 of POST → `note-saved` (on the author's socket) passes 20 ms or a note fails. Both cores during\n\
the two ramps: {steal} (steal: time the hypervisor gave other guests; on this shared VM it moves between runs, and\n\
the knee with it).\n\n{knee}\n\
### The same sockets held by 50 users (`… --users 50 --sockets {sockets} …`)\n\n\
Twenty sockets per user, as if each had twenty tabs open: every private note is pushed to twenty sockets, so at\n\
2,000 notes/s `dev` writes and `load` reads 40,000 WebSocket frames a second, each a system call on both sides, on the\n\
same two cores. The harder case; earlier sections of this file measured the knee this way.\n\n{crowded}\n\
### Fan-out to {sockets} subscribers (`notesctl load --local --rate 20 --duration 10s --users 50 --sockets {sockets} --public-ratio 1`)\n\n\
Every note public, so each goes to all {sockets} sockets: POST → `note-saved` on the author's socket, and on the last socket.\n\n{fanout}\n\
### `GET /notes/public` with 8 shards against 1\n\n\
The feed holding the same public notes, read by one client: the first page (50 notes) 200 times in `dev` (50 on\n\
moto), and the whole feed page by page by its cursor. `dev` reads every shard from one snapshot; DynamoDB (on moto, {moto_notes} notes) queries the\n\
shards side by side — but moto answers one request at a time, in a time that grows with the table, so there the eight\n\
Queries add up instead of overlapping as they do on DynamoDB. What holds on AWS too: a page reads up to 51 notes from\n\
each shard, so about eight times the read capacity of one partition's page.\n\n\
| store | shards | notes | first page p50 | first page p99 | a page while paging, p50 | p99 | whole feed |\n|---|---|---|---|---|---|---|---|\n{dev_pages}{moto_pages}",
        bin = binary
            .strip_prefix(notesctl_tests::workspace_root())
            .unwrap_or(&binary)
            .display(),
        moto_notes = MOTO_NOTES,
    );
    run.write_section("feed-scale", &body);
}

async fn load(dev: &DevServer, args: &[&str]) -> LoadReport {
    let run = dev
        .cli()
        .args(["load", "--local", &dev.api_url, "--output", "json"])
        .args(args.iter().copied())
        .run()
        .await;
    eprint!("{}", run.stderr);
    run.json()
}

async fn ramp(sockets: u64, users: u64) -> String {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &["--max-connections", "4096"]).await;
    let s = sockets.to_string();
    let u = users.to_string();
    let r = load(
        &dev,
        &[
            "--ramp",
            "--rate",
            "1024",
            "--ramp-factor",
            "1.25",
            "--duration",
            "5s",
            "--users",
            &u,
            "--sockets",
            &s,
            "--public-ratio",
            "0",
            "--slo",
            "20ms",
        ],
    )
    .await;
    dev.terminate().await;
    let mut out = String::from(
        "| offered | sustained | p50 | p90 | p99 | max | failed |\n|---|---|---|---|---|---|---|\n",
    );
    for s in &r.steps {
        out.push_str(&format!(
            "| {:.0}/s | {:.0}/s | {:.1} ms | {:.1} ms | {:.1} ms | {:.0} ms | {} |\n",
            s.offered_rate,
            s.sustained_rate,
            s.saved_latency.p50,
            s.saved_latency.p90,
            s.saved_latency.p99,
            s.saved_latency.max,
            s.error_count()
        ));
    }
    out.push_str(&match &r.knee {
        Some(k) => format!(
            "\n**Knee: {:.0} notes/s** (p99 {:.1} ms); the next step: {}.\n",
            k.rate, k.p99_ms, k.next
        ),
        None => "\n**No knee**: the first step already missed 20 ms.\n".to_owned(),
    });
    out
}

async fn fan_out(sockets: u64) -> String {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &["--max-connections", "4096"]).await;
    let s = sockets.to_string();
    let r = load(
        &dev,
        &[
            "--rate",
            "20",
            "--duration",
            "10s",
            "--users",
            "50",
            "--sockets",
            &s,
            "--public-ratio",
            "1",
        ],
    )
    .await;
    dev.terminate().await;
    let step = &r.steps[0];
    format!(
        "| public notes | to the author: p50 / p99 | to all {sockets} sockets: p50 / p99 / max | failed |\n|---|---|---|---|\n| {} | {:.1} / {:.1} ms | {:.1} / {:.1} / {:.0} ms | {} |\n",
        step.public,
        step.saved_latency.p50,
        step.saved_latency.p99,
        step.fanout_latency.p50,
        step.fanout_latency.p99,
        step.fanout_latency.max,
        step.error_count()
    )
}

/// A table row: the first page's timings, each page's while paging, and the whole feed's.
fn row(
    store: &str,
    shards: u32,
    mut first: Vec<Duration>,
    mut paging: Vec<Duration>,
    whole: Duration,
    notes: usize,
) -> String {
    first.sort();
    paging.sort();
    format!(
        "| {store} | {shards} | {notes} | {} | {} | {} | {} | {} |\n",
        ms(percentile(&first, 50.0)),
        ms(percentile(&first, 99.0)),
        ms(percentile(&paging, 50.0)),
        ms(percentile(&paging, 99.0)),
        ms(whole),
    )
}

async fn dev_feed_pages(notes: usize) -> String {
    let mut out = String::new();
    for shards in [1u32, 8] {
        let dir = tempfile::tempdir().unwrap();
        let n = shards.to_string();
        let dev = DevServer::start(dir.path(), &["--public-feed-shards", &n]).await;
        let total = notes.to_string();
        load(
            &dev,
            &[
                "--rate",
                "1000",
                "--total",
                &total,
                "--users",
                "10",
                "--sockets",
                "10",
                "--public-ratio",
                "1",
                "--keep",
            ],
        )
        .await;
        let http = reqwest::Client::new();
        let get = async |cursor: Option<&str>| -> (Duration, Value) {
            let url = match cursor {
                Some(c) => format!("{}/notes/public?cursor={c}", dev.api_url),
                None => format!("{}/notes/public", dev.api_url),
            };
            let t = Instant::now();
            let v: Value = http.get(url).send().await.unwrap().json().await.unwrap();
            (t.elapsed(), v)
        };
        let mut first = Vec::new();
        for _ in 0..200 {
            first.push(get(None).await.0);
        }
        let (mut paging, mut seen, mut cursor) = (Vec::new(), 0, None::<String>);
        let started = Instant::now();
        loop {
            let (t, v) = get(cursor.as_deref()).await;
            paging.push(t);
            seen += v["notes"].as_array().map_or(0, Vec::len);
            match v["cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        let whole = started.elapsed();
        assert_eq!(seen, notes, "the whole feed, once");
        dev.terminate().await;
        out.push_str(&row("dev", shards, first, paging, whole, seen));
    }
    out
}

async fn moto_feed_pages(notes: usize) -> String {
    let m = notesctl_tests::moto::shared().await;
    let sdk = m.sdk_config().await;
    let mut out = String::new();
    for shards in [1u32, 8] {
        let res = notesctl_tests::moto::Resources::create(&sdk).await;
        let store = DynamoStore::from_sdk_config(&sdk, &res.table, &res.connections_table)
            .with_feed_shards(ShardCount::new(shards).unwrap());
        for i in 0..notes {
            let id = NoteId::parse(&format!("{}-b{i}", 1_760_000_000_000_i64 + i as i64)).unwrap();
            let note = Note {
                created_at: id.created_at(),
                note_id: id,
                username: format!("user{}", i % 10),
                content: format!("public note {i}"),
                is_public: true,
                status: "saved".into(),
                saved_at: String::new(),
                updated_at: None,
            };
            store.save_if_absent(&note, 0).await.unwrap();
        }
        let mut first = Vec::new();
        for _ in 0..50 {
            let t = Instant::now();
            store
                .list_public_notes(&FeedRequest::new(None, 50))
                .await
                .unwrap();
            first.push(t.elapsed());
        }
        let (mut paging, mut seen, mut next) = (Vec::new(), 0, None::<String>);
        let started = Instant::now();
        loop {
            let after = next
                .as_deref()
                .map(|n| FeedCursor::decode(&encode_cursor(n)).unwrap());
            let t = Instant::now();
            let page = store
                .list_public_notes(&FeedRequest::new(after, 50))
                .await
                .unwrap();
            paging.push(t.elapsed());
            seen += page.items.len();
            match page.next {
                Some(n) => next = Some(n),
                None => break,
            }
        }
        let whole = started.elapsed();
        assert_eq!(seen, notes, "the whole feed, once");
        out.push_str(&row("DynamoDB (moto)", shards, first, paging, whole, seen));
    }
    out
}
