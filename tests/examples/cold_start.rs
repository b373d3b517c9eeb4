//! Cold start of `notes-lambda`: process start → first answered invocation against a local Runtime
//! API, peak RSS, and the stripped binary's size. Run with `scripts/bench.sh cold-start`; it builds
//! the release binary first and writes the figures to BENCHMARKS.md.

use std::time::Instant;

use notesctl_tests::bench::{machine, ms, peak_rss_kib, percentile, write_section};
use notesctl_tests::lambda::{LambdaProcess, RuntimeApi};
use notesctl_tests::moto::{self, Resources};
use serde_json::json;

const RUNS: usize = 30;

fn public_notes_request() -> serde_json::Value {
    json!({
        "version": "2.0", "routeKey": "GET /notes/public", "rawPath": "/notes/public", "rawQueryString": "",
        "headers": {"host": "api.local"},
        "requestContext": {"accountId": "123456789012", "apiId": "local", "domainName": "api.local",
            "http": {"method": "GET", "path": "/notes/public", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "bench"},
            "requestId": "r", "routeKey": "GET /notes/public", "stage": "$default", "time": "", "timeEpoch": 0},
        "isBase64Encoded": false
    })
}

#[tokio::main]
async fn main() {
    let binary = std::env::var("NOTES_LAMBDA_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| notesctl_tests::workspace_root().join("target/release/notes-lambda"));
    assert!(
        binary.exists(),
        "{} missing: run scripts/bench.sh, which builds it",
        binary.display()
    );
    let size = std::fs::metadata(&binary).unwrap().len();

    let moto = moto::shared().await;
    let sdk = moto.sdk_config().await;
    let res = Resources::create(&sdk).await;
    let env = res.handler_env(moto);

    let mut rows = Vec::new();
    for (label, handler, payload, status) in [
        (
            "init + refusal (no AWS call): auth-signup, empty body → 400",
            "auth-signup",
            json!({"version": "2.0", "rawPath": "/auth/signup", "routeKey": "POST /auth/signup", "headers": {}, "requestContext": {"http": {"method": "POST", "path": "/auth/signup"}, "timeEpoch": 0}, "isBase64Encoded": false}),
            400,
        ),
        (
            "init with the Secrets Manager fetch of the JWT secret on moto: notes-publish, no token → 401",
            "notes-publish",
            json!({"version": "2.0", "rawPath": "/notes", "routeKey": "POST /notes", "headers": {"content-type": "application/json"}, "body": "{\"content\":\"x\"}", "requestContext": {"http": {"method": "POST", "path": "/notes"}, "timeEpoch": 0}, "isBase64Encoded": false}),
            401,
        ),
        (
            "init + one DynamoDB Query on moto: notes-get-public → 200",
            "notes-get-public",
            public_notes_request(),
            200,
        ),
    ] {
        let mut times = Vec::new();
        let mut rss = Vec::new();
        for _ in 0..RUNS {
            let api = RuntimeApi::start().await;
            let started = Instant::now();
            let process = LambdaProcess::spawn_binary(&binary, handler, &api, &env);
            let resp = api
                .invoke(payload.clone())
                .await
                .expect("the function answered");
            let took = started.elapsed();
            assert_eq!(
                resp["statusCode"].as_u64(),
                Some(status),
                "{label}: the function answered otherwise: {resp}"
            );
            let pid = process.child.id().unwrap();
            rss.push(peak_rss_kib(pid).unwrap_or(0));
            process.stop().await;
            times.push(took);
        }
        times.sort();
        rss.sort();
        rows.push(format!(
            "| {label} | {} | {} | {} | {:.1} MB |",
            ms(percentile(&times, 50.0)),
            ms(percentile(&times, 90.0)),
            ms(*times.last().unwrap()),
            *rss.last().unwrap() as f64 / 1024.0
        ));
        eprintln!("{}", rows.last().unwrap());
    }
    let body = format!(
        "## Cold start of `notes-lambda` (issue: targets ≤ 15 ms median to first response, ≤ 25 MB RSS, ≤ 12 MB binary)\n\n\
Measured {date} on {machine}. Each run starts a fresh `notes-lambda` process (release build, stripped) against a local\n\
Lambda Runtime API (`tests/src/lambda.rs`) with one invocation already queued, and times from `spawn` to the\n\
response arriving at the Runtime API — init (environment, AWS config, clients) plus the first invocation. Peak RSS\n\
is `VmHWM` from `/proc/<pid>/status` after the response. {RUNS} runs per row; moto 5.2.5 on 127.0.0.1 answers the\n\
Secrets Manager and DynamoDB calls. Repeat: `scripts/bench.sh cold-start`.\n\n\
| scenario | median | p90 | max | peak RSS (max) |\n|---|---|---|---|---|\n{rows}\n\n\
Binary: `target/release/notes-lambda`, {size_mb:.1} MB ({size} bytes) stripped, x86_64 glibc; release profile `opt-level = \"s\"`, thin LTO,\n\
one codegen unit, `panic = \"abort\"`.\n",
        date = notes_handlers::domain::clock::now_iso(),
        machine = machine(),
        rows = rows.join("\n"),
        size_mb = size as f64 / 1_000_000.0,
    );
    write_section("cold-start", &body);
}
