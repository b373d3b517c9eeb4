//! Cold start of what ships: the `bootstrap` inside the zip `notesctl package` builds, from process
//! start to the first answered invocation against a local Runtime API, with peak RSS and where init
//! spent its time (the `init` line each container logs). The x86_64 zip runs natively; the arm64 one
//! under qemu, as a separate, labelled row (an emulator's figure, not a Graviton's). Run with
//! `scripts/bench.sh cold-start`, which packages both zips and unpacks their bootstraps.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use notes_handlers::adapters::dynamodb::DynamoStore;
use notesctl_tests::bench::{ms, peak_rss_kib, percentile};
use notesctl_tests::lambda::{LambdaProcess, RuntimeApi};
use notesctl_tests::moto::{self, Resources};
use serde_json::{Value, json};

const RUNS: usize = 30;

/// Init's steps as the container logged them, and the rest of the run, in the order of [`PHASES`].
type Phases = [Duration; 5];

const PHASES: [&str; 5] = [
    "process start → `main` (exec, loader, tokio runtime)",
    "JSON log subscriber",
    "variables read and checked, adapters wired (no AWS client made)",
    "JWT secret fetch, with aws-config and the Secrets Manager client it needs first (handlers that check tokens)",
    "runtime's first poll + the invocation (with aws-config and clients, if it calls AWS) + its response",
];

fn phases(log: &str, spawned_at_us: u128, total: Duration) -> Option<Phases> {
    let line: Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["fields"]["message"] == "init")?;
    let f = &line["fields"];
    let us = |name: &str| Duration::from_micros(f[name].as_u64().unwrap_or(0));
    let main_at = f["main_at_us"].as_u64()? as u128;
    let mut p = [
        Duration::from_micros(main_at.saturating_sub(spawned_at_us) as u64),
        us("logs_us"),
        us("env_us"),
        us("secret_us"),
        Duration::ZERO,
    ];
    p[4] = total.saturating_sub(p.iter().sum());
    Some(p)
}

struct Scenario {
    label: &'static str,
    handler: &'static str,
    payload: Value,
    status: u64,
}

fn scenarios() -> Vec<Scenario> {
    let http = |method: &str, path: &str, body: Option<&str>| {
        let mut ev = json!({
            "version": "2.0", "routeKey": format!("{method} {path}"), "rawPath": path, "rawQueryString": "",
            "headers": {"host": "api.local", "content-type": "application/json"},
            "requestContext": {"accountId": "123456789012", "apiId": "local", "domainName": "api.local",
                "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "bench"},
                "requestId": "r", "routeKey": format!("{method} {path}"), "stage": "$default", "time": "", "timeEpoch": 0},
            "isBase64Encoded": false
        });
        if let Some(b) = body {
            ev["body"] = json!(b);
        }
        ev
    };
    vec![
        Scenario {
            label: "init + a refusal (no AWS call): auth-signup, empty body → 400",
            handler: "auth-signup",
            payload: http("POST", "/auth/signup", None),
            status: 400,
        },
        Scenario {
            label: "init with the JWT secret's fetch from Secrets Manager on moto: notes-publish, no token → 401",
            handler: "notes-publish",
            payload: http("POST", "/notes", Some("{\"content\":\"x\"}")),
            status: 401,
        },
        Scenario {
            label: "init + a first feed page on moto: notes-get-public (the mark's GetItem, then 8 shard Queries side by side) → 200",
            handler: "notes-get-public",
            payload: http("GET", "/notes/public", None),
            status: 200,
        },
    ]
}

/// One binary (natively, or under `qemu`), each scenario RUNS times: the table's rows, and each
/// scenario's median phases.
async fn measure(
    label: &str,
    binary: &std::path::Path,
    qemu: Option<(&str, &str)>,
    env: &[(String, String)],
) -> (Vec<String>, Vec<(&'static str, Phases)>) {
    let mut rows = Vec::new();
    let mut medians = Vec::new();
    for s in scenarios() {
        let mut times = Vec::new();
        let mut rss = Vec::new();
        let mut all: Vec<Phases> = Vec::new();
        for _ in 0..RUNS {
            let api = RuntimeApi::start().await;
            let cmd = match qemu {
                Some((emulator, sysroot)) => {
                    let mut c = tokio::process::Command::new(emulator);
                    c.arg("-L").arg(sysroot).arg(binary);
                    c
                }
                None => tokio::process::Command::new(binary),
            };
            let spawned_at_us = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_micros();
            let started = Instant::now();
            let process = LambdaProcess::spawn_command(cmd, s.handler, &api, env);
            let resp = api
                .invoke(s.payload.clone())
                .await
                .expect("the function answered");
            let took = started.elapsed();
            assert_eq!(
                resp["statusCode"].as_u64(),
                Some(s.status),
                "{}: the function answered otherwise: {resp}",
                s.label
            );
            let pid = process.child.id().unwrap();
            rss.push(peak_rss_kib(pid).unwrap_or(0));
            let log = process.stop().await;
            all.push(
                phases(&log, spawned_at_us, took)
                    .unwrap_or_else(|| panic!("{}: no init line in its log:\n{log}", s.label)),
            );
            times.push(took);
        }
        times.sort();
        rss.sort();
        let mut median: Phases = Default::default();
        for (i, m) in median.iter_mut().enumerate() {
            let mut v: Vec<Duration> = all.iter().map(|p| p[i]).collect();
            v.sort();
            *m = percentile(&v, 50.0);
        }
        medians.push((s.label, median));
        rows.push(format!(
            "| {label} | {} | {} | {} | {} | {:.1} MB |",
            s.label,
            ms(percentile(&times, 50.0)),
            ms(percentile(&times, 90.0)),
            ms(*times.last().unwrap()),
            *rss.last().unwrap() as f64 / 1024.0
        ));
        eprintln!("{}", rows.last().unwrap());
    }
    (rows, medians)
}

#[tokio::main]
async fn main() {
    let run = notesctl_tests::bench::Run::start();
    let x86 = std::path::PathBuf::from(std::env::var("NOTES_LAMBDA_BIN").expect(
        "NOTES_LAMBDA_BIN: the x86_64 zip's bootstrap (scripts/bench.sh cold-start unpacks it)",
    ));
    let arm = std::env::var("NOTES_LAMBDA_ARM64_BIN")
        .ok()
        .map(std::path::PathBuf::from);
    let qemu = std::env::var("QEMU").unwrap_or_else(|_| "qemu-aarch64-static".into());
    let sysroot = std::env::var("QEMU_SYSROOT").unwrap_or_else(|_| "/usr/aarch64-linux-gnu".into());
    let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);

    let moto = moto::shared().await;
    let sdk = moto.sdk_config().await;
    let res = Resources::create(&sdk).await;
    // As the deploy that creates a stage's table leaves it.
    DynamoStore::from_sdk_config(&sdk, &res.table, &res.connections_table)
        .mark_new_table()
        .await
        .expect("marking the table new");
    let env = res.handler_env(moto);

    let (mut rows, medians) = measure("x86_64 (musl, native)", &x86, None, &env).await;
    if let Some(arm) = &arm {
        let (arm_rows, _) = measure(
            "arm64 (glibc) **under qemu-aarch64: emulated, not a Graviton figure**",
            arm,
            Some((&qemu, &sysroot)),
            &env,
        )
        .await;
        rows.extend(arm_rows);
    }

    let mut breakdown = String::from("| step of init (median) |");
    for (label, _) in &medians {
        breakdown.push_str(&format!(" {} |", label.split(':').next().unwrap_or(label)));
    }
    breakdown.push_str("\n|---|");
    breakdown.push_str(&"---|".repeat(medians.len()));
    for (i, name) in PHASES.iter().enumerate() {
        breakdown.push_str(&format!("\n| {name} |"));
        for (_, p) in &medians {
            breakdown.push_str(&format!(" {} |", ms_fine(p[i])));
        }
    }
    let arm_size = arm
        .as_deref()
        .map(|a| format!(", arm64 {:.1} MB", size(a) as f64 / 1_000_000.0))
        .unwrap_or_default();
    let body = format!(
        "## Cold start of the zip that ships (issue: targets ≤ 10 ms median to the first response for init + a refusal, ≤ 16 MB peak RSS)\n\n\
Each run starts a fresh `bootstrap` from the zip `notesctl package --arch …` builds — x86_64 the static musl binary, arm64\n\
the glibc one under qemu — against a local Lambda Runtime API (`tests/src/lambda.rs`) with one invocation already\n\
queued, and times from `spawn` to the response arriving at the Runtime API: init plus the first invocation. Peak RSS is\n\
`VmHWM` from `/proc/<pid>/status` after the response (for qemu, the emulator's). {RUNS} runs per row; moto 5.2.5 on\n\
127.0.0.1 answers Secrets Manager and DynamoDB; the table is marked as a new stage's deploy marks it. Repeat:\n\
`scripts/bench.sh cold-start`.\n\n\
| binary | scenario | median | p90 | max | peak RSS (max) |\n|---|---|---|---|---|---|\n{rows}\n\n\
### Where init goes (x86_64, from the `init` line each container logs)\n\n\
Every container logs one `init` line with the microseconds of each step (`main_at_us`, `logs_us`, `env_us`,\n\
`secret_us`), so a slow cold start on AWS says where its time went too. The first row is the time before `main`\n\
(from `spawn`, by the wall clock); the last, everything after init. aws-config (its provider chains and the HTTPS\n\
client with its TLS roots, ~5 ms here) and each AWS client (~0.5 ms) are made on first use, not at init\n\
(`handlers/src/adapters/lazy.rs`): a request answered without AWS does not wait for them, and a handler never\n\
builds a client it does not call.\n\n\
{breakdown}\n\n\
Binaries: x86_64 {x86_size:.1} MB{arm_size} (stripped); release profile `opt-level = \"s\"`, thin LTO, one codegen\n\
unit, `panic = \"abort\"`.\n",
        rows = rows.join("\n"),
        x86_size = size(&x86) as f64 / 1_000_000.0,
    );
    run.write_section("cold-start", &body);
}

fn ms_fine(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}
