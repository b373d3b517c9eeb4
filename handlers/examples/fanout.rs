//! How many connections one `websocket-notify` invocation reaches, and how fast: the handler's own
//! `notify` on the real API Gateway Management adapter (SDK, SigV4, HTTP/1.1 connection pool),
//! posting a public note to `CONNECTIONS` connections through a loopback endpoint that answers each
//! PostToConnection after `latency` — the one figure that only AWS can give (it is a parameter
//! here, swept over the range AWS's in-region calls take). For each latency and concurrency it
//! prints the time to reach every connection, the posts per second, and the CPU the invocation
//! spent per post (its thread's own time, from /proc), from which the reach of a Lambda with a
//! fraction of a vCPU follows. A Markdown table on stdout, for docs/CAPACITY.md.
//!
//! Run: `cargo run --release -p notes-handlers --example fanout` (`CONNECTIONS=`, `LATENCIES_MS=`,
//! `CONCURRENCIES=` override).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use notes_handlers::Deps;
use notes_handlers::adapters::apigw_management::ApiGatewayNotifier;
use notes_handlers::deps::Settings;
use notes_handlers::domain::events::NoteEvent;
use notes_handlers::domain::note::NoteId;
use notes_handlers::embedded::{EmbeddedStore, StaticSecret};
use notes_handlers::ports::{Connection, ConnectionRegistry, EventBus, PublishReport, StoreError};
use notes_handlers::websocket::notify::notify;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The registry's answer, held in memory: the read is DynamoDB's part and is measured elsewhere.
struct Registry(Vec<Connection>);

#[async_trait]
impl ConnectionRegistry for Registry {
    async fn register(&self, _: &Connection) -> Result<(), StoreError> {
        Ok(())
    }
    async fn unregister(&self, _: &str) -> Result<Option<Connection>, StoreError> {
        Ok(None)
    }
    async fn remove(&self, _: &Connection) -> Result<(), StoreError> {
        Ok(())
    }
    async fn connections_of(&self, username: &str) -> Result<Vec<Connection>, StoreError> {
        Ok(self
            .0
            .iter()
            .filter(|c| c.username == username)
            .cloned()
            .collect())
    }
    async fn all_connections(&self) -> Result<Vec<Connection>, StoreError> {
        Ok(self.0.clone())
    }
}

struct NoBus;

#[async_trait]
impl EventBus for NoBus {
    async fn publish(&self, _: &[NoteEvent]) -> Result<PublishReport, StoreError> {
        Ok(PublishReport::default())
    }
}

/// A loopback endpoint that answers every request 200 after `latency`, on keep-alive connections.
async fn endpoint(latency: Duration, posts: Arc<AtomicU64>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                continue;
            };
            let posts = posts.clone();
            tokio::spawn(async move {
                let mut buf = Vec::with_capacity(4096);
                let mut chunk = [0u8; 4096];
                loop {
                    // Headers, then Content-Length bytes of body.
                    let (head_end, length) = loop {
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (end + 4, length);
                        }
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    while buf.len() < head_end + length {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..head_end + length);
                    tokio::time::sleep(latency).await;
                    posts.fetch_add(1, Ordering::Relaxed);
                    if socket
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

/// This thread's CPU time (user + system), from /proc.
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line: 12 and 13 after the name.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn list(name: &str, default: &[u64]) -> Vec<u64> {
    std::env::var(name)
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| default.to_vec())
}

fn main() {
    let connections = list("CONNECTIONS", &[10_000])[0] as usize;
    let latencies = list("LATENCIES_MS", &[10, 30, 60, 100]);
    let concurrencies = list("CONCURRENCIES", &[32, 256, 512]);
    // The endpoint gets its own threads, so the invocation's thread counts only its own CPU.
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // The invocation: one thread, as a Lambda with one vCPU or less runs it.
    let lambda = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).unwrap());
    let registry = Arc::new(Registry(
        (0..connections)
            .map(|i| Connection {
                connection_id: format!("conn-{i:06}-AbCdEfGhIjK="),
                username: format!("user-{}", i % 1000),
                connected_at: "2026-12-02T00:00:00.000Z".into(),
                ttl: 0,
            })
            .collect(),
    ));
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "an unknown CPU".into());
    println!(
        "## One notify invocation's reach (issue: ≥ 10,000 connections per public note within 5 s, or fan out through a queue)\n\n\
Measured {} on {cpu} ({} cores), release build. `notify` on the API Gateway Management adapter (SDK, SigV4, its\n\
HTTP/1.1 pool) posts one public note to {connections} connections through a loopback endpoint that answers each\n\
PostToConnection after the given latency; the invocation runs on one thread and its CPU per post is that thread's own\n\
time. A Lambda's CPU grows with its memory (one vCPU at 1,769 MB): its reach in 5 s is the lower of\n\
concurrency ÷ latency and vCPU ÷ CPU per post. Repeat: `scripts/bench.sh fanout`.\n",
        notes_handlers::domain::clock::now_iso(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    println!(
        "| post latency | concurrency | {connections} connections reached in | posts/s | CPU per post | reach in 5 s at 256 MB (0.14 vCPU) | at 1,024 MB (0.58 vCPU) | at 1,769 MB (1 vCPU) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &latency in &latencies {
        let posts = Arc::new(AtomicU64::new(0));
        let url = server.block_on(endpoint(Duration::from_millis(latency), posts.clone()));
        for &concurrency in &concurrencies {
            let (elapsed, cpu) = lambda.block_on(async {
                let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .region(aws_config::Region::new("us-east-1"))
                    .credentials_provider(aws_sdk_apigatewaymanagement::config::Credentials::new(
                        "AKIDEXAMPLE",
                        "secret",
                        None,
                        None,
                        "fanout",
                    ))
                    .endpoint_url(&url)
                    .load()
                    .await;
                let notifier = Arc::new(ApiGatewayNotifier::new(
                    aws_sdk_apigatewaymanagement::Client::new(&sdk),
                ));
                let deps = Deps::new(
                    store.clone(),
                    store.clone(),
                    Arc::new(NoBus),
                    registry.clone(),
                    notifier,
                    Arc::new(StaticSecret::new(vec![7u8; 32])),
                    Settings {
                        notify_concurrency: concurrency as usize,
                        ..Settings::default()
                    },
                );
                let event = NoteEvent::Saved {
                    note_id: NoteId::generate(1_796_000_000_000),
                    username: "user-1".into(),
                    content: "a public note of a usual size, to every connection".into(),
                    is_public: true,
                    saved_at: "2026-12-02T00:00:00.000Z".into(),
                    timestamp: "2026-12-02T00:00:00.000Z".into(),
                };
                let (cpu, started) = (thread_cpu(), Instant::now());
                let report = notify(&deps, &event)
                    .await
                    .expect("notify reaches everyone");
                assert_eq!(report.delivered, connections, "{report:?}");
                (started.elapsed(), thread_cpu() - cpu)
            });
            let per_post = cpu.as_secs_f64() / connections as f64;
            let rate = connections as f64 / elapsed.as_secs_f64();
            // A Lambda gets CPU in proportion to its memory (1 vCPU at 1,769 MB): the reach in 5 s
            // is the lower of what the concurrency allows and what its CPU allows.
            let reach = |vcpu: f64| (rate.min(vcpu / per_post) * 5.0) as u64;
            println!(
                "| {latency} ms | {concurrency} | {:.2} s | {:.0} | {:.0} µs | {} | {} | {} |",
                elapsed.as_secs_f64(),
                rate,
                per_post * 1e6,
                reach(256.0 / 1769.0),
                reach(1024.0 / 1769.0),
                reach(1.0),
            );
        }
        assert!(posts.load(Ordering::Relaxed) >= connections as u64);
    }
}
