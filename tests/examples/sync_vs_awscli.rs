//! `sync-frontend` against `aws s3 sync` on the same local S3 server: a first sync of 2,000 small
//! files, and a no-op re-sync of 10,000. Run with `scripts/bench.sh sync`; figures go to BENCHMARKS.md.
//! `S3_ENDPOINT` points both tools at another S3-compatible server instead of moto.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use notesctl_tests::bench::{machine, ms, write_section};
use notesctl_tests::moto;
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

async fn timed(cmd: &mut Command) -> Duration {
    let started = Instant::now();
    let out = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let release = notesctl_tests::workspace_root().join("target/release/notesctl");
    if std::env::var("NOTESCTL_BIN").is_err() && release.exists() {
        // SAFETY: set before any other thread reads the environment.
        unsafe { std::env::set_var("NOTESCTL_BIN", &release) };
    }
    let m = moto::shared().await;
    let endpoint = std::env::var("S3_ENDPOINT").unwrap_or_else(|_| m.endpoint.clone());
    let server_name =
        std::env::var("S3_SERVER").unwrap_or_else(|_| "the S3_ENDPOINT server".to_owned());
    let server = if std::env::var("S3_ENDPOINT").is_ok() {
        server_name.as_str()
    } else {
        "moto 5.2.5"
    };
    let sdk = m.sdk_config().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .endpoint_url(&endpoint)
            .force_path_style(true)
            .build(),
    );
    let env = |c: &mut Command| {
        c.envs(m.env())
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_PAGER", "")
            .env("NOTESCTL_LOG", "warn");
    };
    let ours = |bucket: String, dir: String| {
        let mut c = Command::new(notesctl_tests::dev::notesctl_binary());
        c.args([
            "--region",
            "us-east-1",
            "--endpoint-url",
            &endpoint,
            "sync-frontend",
            &dir,
            "--bucket",
            &bucket,
            "--no-config",
            "--concurrency",
            "32",
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
    let mut rows = Vec::new();
    for (label, n, noop) in [
        ("first sync of 2,000 small files", 2_000, false),
        ("no-op re-sync of 10,000 files", 10_000, true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        make_site(dir.path(), n);
        let d = dir.path().display().to_string();
        let (a, b) = (
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
        let t_ours = timed(&mut ours(a.clone(), d.clone())).await;
        let t_theirs = timed(&mut theirs(b.clone(), d.clone())).await;
        rows.push(format!(
            "| {label} | {} | {} | {:.1}× |",
            ms(t_ours),
            ms(t_theirs),
            t_theirs.as_secs_f64() / t_ours.as_secs_f64()
        ));
        eprintln!("{}", rows.last().unwrap());
    }
    let body = format!(
        "## `sync-frontend` vs `aws s3 sync` (issue targets: ≥ 5× on the first sync, ≥ 10× on the no-op re-sync)\n\n\
Measured {date} on {machine}, one run, both tools against the same {server} on 127.0.0.1\n\
(`tests/examples/sync_vs_awscli.rs`; `notesctl` release build with `--concurrency 32`, `awscli` v1 from PyPI with\n\
its defaults). The no-op re-sync row times the second run over an unchanged folder (List calls only for notesctl).\n\
moto's own speed caps both tools. Repeat: `scripts/bench.sh sync`.\n\n\
| what | notesctl | AWS CLI | speed-up |\n|---|---|---|---|\n{rows}\n",
        date = notes_handlers::domain::clock::now_iso(),
        machine = machine(),
        rows = rows.join("\n"),
    );
    write_section(
        if server == "moto 5.2.5" {
            "sync-vs-awscli"
        } else {
            "sync-vs-awscli-other"
        },
        &body,
    );
}
