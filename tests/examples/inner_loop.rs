//! The inner loop on moto: a code change shipped by `deploy --hotswap` against the same change by a full
//! `deploy` (change sets), on a code stack of the auth stack's shape (three functions), and `diff` of
//! all six stacks of `templates/` (event and data deployed, the four others not: moto cannot run
//! their imports). Run with `scripts/bench.sh inner-loop`; figures go to BENCHMARKS.md.

use std::process::Stdio;
use std::time::{Duration, Instant};

use notesctl_tests::bench::{ms, percentile};
use notesctl_tests::moto;

const RUNS: usize = 5;

/// Runs `notesctl` with `args` and times it; it must exit with `expect`.
async fn timed(m: &moto::Moto, stage: &str, args: &[&str], expect: i32) -> Duration {
    let started = Instant::now();
    let out = m
        .process_at(stage, &m.endpoint)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await
        .expect("run notesctl");
    let took = started.elapsed();
    assert_eq!(
        out.status.code(),
        Some(expect),
        "notesctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

#[tokio::main]
async fn main() {
    let run = notesctl_tests::bench::Run::start();
    notesctl_tests::bench::prefer_release_binary();
    let m = moto::shared().await;
    let stage = notesctl_tests::unique("loop");
    let templates = tempfile::tempdir().unwrap();
    // auth.yaml's three functions and their role (without the API moto cannot run).
    let stack = format!(
        "{}{}{}",
        moto::CODE_STACK,
        moto::code_stack_function("Login", "auth-login"),
        moto::code_stack_function("GetUser", "auth-get-user")
    );
    std::fs::write(templates.path().join("auth.yaml"), stack).unwrap();
    let artifacts = tempfile::tempdir().unwrap();
    let bucket = moto::code_bucket(&stage).await;
    let ship = |n: usize| {
        let zip =
            notesctl::commands::package::lambda_zip(format!("#!/bin/sh\n# build {n}\n").as_bytes());
        std::fs::write(artifacts.path().join("notes-lambda-x86_64.zip"), zip).unwrap();
    };
    let flags = [
        "deploy",
        "--yes",
        "--no-validate",
        "--stack",
        "auth",
        "--arch",
        "x86_64",
        "--templates",
        templates.path().to_str().unwrap(),
        "--artifacts",
        artifacts.path().to_str().unwrap(),
        "--artifacts-bucket",
        &bucket,
    ];
    let mut build = 0;
    ship(build);
    timed(m, &stage, &flags, 0).await;

    // Alternating, each a new zip: a full deploy, then a hotswap.
    let (mut full, mut hot) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        build += 1;
        ship(build);
        full.push(timed(m, &stage, &flags, 0).await);
        build += 1;
        ship(build);
        let mut swap = flags.to_vec();
        swap.push("--hotswap");
        hot.push(timed(m, &stage, &swap, 0).await);
    }
    full.sort();
    hot.sort();
    let (f, h) = (percentile(&full, 50.0), percentile(&hot, 50.0));

    // diff of the six real stacks: event and data deployed, the rest never (all "added").
    let real = notesctl_tests::workspace_root().join("templates");
    let real = real.to_str().unwrap();
    let dist = tempfile::tempdir().unwrap();
    std::fs::write(
        dist.path().join("notes-lambda-arm64.zip"),
        notesctl::commands::package::lambda_zip(b"#!/bin/sh\n"),
    )
    .unwrap();
    let base = [
        "--templates",
        real,
        "--artifacts",
        dist.path().to_str().unwrap(),
        "--artifacts-bucket",
        &bucket,
    ];
    let mut deploy = vec!["deploy", "--yes", "--stack", "event", "--stack", "data"];
    deploy.extend(base);
    timed(m, &stage, &deploy, 0).await;
    let mut diff = vec!["diff"];
    diff.extend(base);
    let mut diffs = Vec::new();
    for _ in 0..RUNS {
        // Exit 1: the four stacks never deployed differ.
        diffs.push(timed(m, &stage, &diff, 1).await);
    }
    diffs.sort();
    let d = percentile(&diffs, 50.0);

    let body = format!(
        "## The inner loop on moto: `deploy --hotswap` and `diff` (targets: hotswap ≥ 10× faster than a full deploy of the same change; `diff` of six stacks ≤ 1 s)\n\n\
moto 5.2.5 on loopback, `notesctl` release build; median of {RUNS}, alternating.\n\
The code stack has auth.yaml's three functions and role; each run ships a new zip. A full deploy uploads it and\n\
goes through a change set (create, describe, execute, wait for the stack, check every function's `CodeSha256`);\n\
the hotswap compares the stack with the templates, uploads, calls `UpdateFunctionCode` on the three functions in\n\
parallel and waits until each reports `Successful` with the new zip. moto applies a stack update at once, so the\n\
full deploy's time here is notesctl's own work and moto's, with none of the wait a real stack update has on AWS
(not measured here): the ≥ 10× target cannot be shown on moto, and is not met on it.\n\
`diff` reads all six templates of `templates/` and the stage's event and data stacks (deployed; the four others\n\
are not, so they show as added). Repeat: `scripts/bench.sh inner-loop`.\n\n\
| what | median | all runs |\n|---|---|---|\n\
| full `deploy` of a code change (change set) | {f} | {full_all} |\n\
| `deploy --hotswap` of a code change | {h} | {hot_all} |\n\
| hotswap speed-up | {ratio:.1}× | |\n\
| `diff` of the six stacks | {d} | {diff_all} |\n",
        f = ms(f),
        h = ms(h),
        d = ms(d),
        ratio = f.as_secs_f64() / h.as_secs_f64(),
        full_all = full.iter().map(|t| ms(*t)).collect::<Vec<_>>().join(", "),
        hot_all = hot.iter().map(|t| ms(*t)).collect::<Vec<_>>().join(", "),
        diff_all = diffs.iter().map(|t| ms(*t)).collect::<Vec<_>>().join(", "),
    );
    eprintln!("{body}");
    run.write_section("inner-loop", &body);
}
