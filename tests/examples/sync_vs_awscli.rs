//! `sync-frontend` against `aws s3 sync` on the same local S3 server: a first sync of 2,000 small
//! files, and a no-op re-sync of 10,000. Run with `scripts/bench.sh sync`; figures go to BENCHMARKS.md.
//! `S3_ENDPOINT` points both tools at another S3-compatible server instead of moto.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use notesctl_tests::bench::ms;
use notesctl_tests::moto;
use serde_json::Value;
use tokio::process::Command;

fn aws() -> String {
    notesctl_tests::workspace_root()
        .join(".venv/bin/aws")
        .display()
        .to_string()
}

fn make_site(dir: &Path, n: usize) {
    for i in 0..n {
        let sub = dir.join(format!("assets/d{:02}", i % 50));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(
            sub.join(format!("file{i:05}.js")),
            format!("export const value{i} = {i};\n"),
        )
        .unwrap();
    }
    std::fs::write(
        dir.join("index.html"),
        "<!doctype html><title>bench</title>",
    )
    .unwrap();
}

/// The wall time of a command, and its standard output.
async fn timed(cmd: &mut Command) -> (Duration, Vec<u8>) {
    let started = Instant::now();
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (started.elapsed(), out.stdout)
}

#[tokio::main]
async fn main() {
    let run = notesctl_tests::bench::Run::start();
    notesctl_tests::bench::prefer_release_binary();
    // Another S3-compatible server: S3_ENDPOINT, S3_SERVER (its name and version), and its
    // credentials in S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY (default: moto's dummy ones).
    let other = std::env::var("S3_ENDPOINT").ok();
    let (endpoint, server) = match &other {
        Some(e) => (
            e.clone(),
            std::env::var("S3_SERVER").unwrap_or_else(|_| "the S3_ENDPOINT server".to_owned()),
        ),
        None => (
            moto::shared().await.endpoint.clone(),
            "moto 5.2.5".to_owned(),
        ),
    };
    let key = std::env::var("S3_ACCESS_KEY_ID").unwrap_or_else(|_| "testing".to_owned());
    let secret = std::env::var("S3_SECRET_ACCESS_KEY").unwrap_or_else(|_| "testing".to_owned());
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&endpoint)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            &key, &secret, None, None, "bench",
        ))
        .load()
        .await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    let env = |c: &mut Command| {
        c.env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_ACCESS_KEY_ID", &key)
            .env("AWS_SECRET_ACCESS_KEY", &secret)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_PAGER", "")
            .env("NOTESCTL_LOG", "warn");
    };
    let ours = |bucket: String, dir: String| {
        let mut c = Command::new(notesctl_tests::dev::notesctl_binary());
        c.args([
            "--output",
            "json",
            "--region",
            "us-east-1",
            "--endpoint-url",
            &endpoint,
            "sync-frontend",
            &dir,
            "--bucket",
            &bucket,
            "--no-config",
        ]);
        env(&mut c);
        c
    };
    let theirs = |bucket: String, dir: String| {
        let mut c = Command::new(aws());
        c.args([
            "--endpoint-url",
            &endpoint,
            "--region",
            "us-east-1",
            "s3",
            "sync",
            &dir,
            &format!("s3://{bucket}/"),
            "--only-show-errors",
        ]);
        env(&mut c);
        c
    };
    const RUNS: usize = 3;
    let mut rows = Vec::new();
    for (label, n, noop) in [
        ("first sync of 2,000 small files", 2_000, false),
        ("no-op re-sync of 10,000 files", 10_000, true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        make_site(dir.path(), n);
        let d = dir.path().display().to_string();
        let (mut t_ours, mut t_theirs, mut requests) = (Vec::new(), Vec::new(), Value::Null);
        let (mut a, mut b) = (String::new(), String::new());
        for run in 0..RUNS {
            // The first sync needs empty buckets every run; the no-op re-sync fills its pair once.
            if !noop || run == 0 {
                (a, b) = (
                    notesctl_tests::unique("bench-ours"),
                    notesctl_tests::unique("bench-theirs"),
                );
                for bucket in [&a, &b] {
                    s3.create_bucket()
                        .bucket(bucket.as_str())
                        .send()
                        .await
                        .unwrap();
                }
                if noop {
                    timed(&mut ours(a.clone(), d.clone())).await;
                    timed(&mut theirs(b.clone(), d.clone())).await;
                }
            }
            let (t, out) = timed(&mut ours(a.clone(), d.clone())).await;
            t_ours.push(t);
            requests = serde_json::from_slice::<Value>(&out).unwrap()["requests"].clone();
            t_theirs.push(timed(&mut theirs(b.clone(), d.clone())).await.0);
        }
        t_ours.sort();
        t_theirs.sort();
        let (ours_med, theirs_med) = (t_ours[RUNS / 2], t_theirs[RUNS / 2]);
        let kinds: Vec<String> = ["list", "head", "put"]
            .iter()
            .map(|k| format!("{} {k}", requests[k]))
            .collect();
        rows.push(format!(
            "| {label} | {} | {} | {:.1}× | {} |",
            ms(ours_med),
            ms(theirs_med),
            theirs_med.as_secs_f64() / ours_med.as_secs_f64(),
            kinds.join(", ")
        ));
        eprintln!("{}", rows.last().unwrap());
    }
    let slug: String = server
        .split_whitespace()
        .next()
        .unwrap_or("other")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect::<String>()
        .to_ascii_lowercase();
    let body = format!(
        "## `sync-frontend` vs `aws s3 sync` on {server} (issue targets: ≥ 5× on the first sync, ≥ 10× on the no-op re-sync)\n\n\
median of {RUNS} runs, both tools against the same {server} on 127.0.0.1\n\
(`tests/examples/sync_vs_awscli.rs`; `notesctl` release build and `awscli` v1 from PyPI, both with their\n\
defaults). The no-op re-sync row times a run over an unchanged folder already synced; the last column is the\n\
S3 requests notesctl made (from its JSON report). Repeat: `scripts/bench.sh sync`.\n\n\
| what | notesctl | AWS CLI | speed-up | notesctl requests |\n|---|---|---|---|---|\n{rows}\n",
        rows = rows.join("\n"),
    );
    run.write_section(&format!("sync-vs-awscli-{slug}"), &body);
}
