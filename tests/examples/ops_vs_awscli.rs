//! The runbook commands side by side with the AWS CLI on the same moto server: `queue-depth` against
//! the two `aws sqs get-queue-attributes` calls it replaces, a manual redrive of 1,000 messages against
//! the equivalent loop of `aws sqs` batch commands, and how soon `tail --follow` prints a new event
//! against `aws logs tail --follow`. Run with `scripts/bench.sh ops`; figures go to BENCHMARKS.md.

use std::process::Stdio;
use std::time::{Duration, Instant};

use notesctl_tests::bench::{ms, percentile};
use notesctl_tests::moto;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const RUNS: usize = 15;

fn aws() -> String {
    notesctl_tests::workspace_root()
        .join(".venv/bin/aws")
        .display()
        .to_string()
}

fn notesctl() -> std::path::PathBuf {
    notesctl_tests::dev::notesctl_binary()
}

async fn run(cmd: &mut Command) -> Duration {
    let started = Instant::now();
    let out = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await
        .expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

fn env(cmd: &mut Command, m: &moto::Moto) {
    cmd.envs(m.env())
        .env("AWS_PAGER", "")
        .env("NOTESCTL_LOG", "warn");
}

async fn fill(sqs: &aws_sdk_sqs::Client, url: &str, n: usize) {
    moto::fill_queue(sqs, url, n, |i, m| m.message_body(format!("{{\"n\":{i}}}"))).await;
}

#[tokio::main]
async fn main() {
    let bench_run = notesctl_tests::bench::Run::start();
    notesctl_tests::bench::prefer_release_binary();
    let m = moto::shared().await;
    let stage = notesctl_tests::unique("bench");
    let (sqs, queue, dlq) = moto::stage_queues(&stage).await;
    fill(&sqs, &queue, 25).await;
    let mut rows = Vec::new();

    let only = std::env::var("ONLY").unwrap_or_default();
    // queue-depth
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    if only.is_empty() || only == "queue-depth" {
        for _ in 0..RUNS {
            let mut c = m.process_at(&stage, &m.endpoint);
            c.arg("queue-depth");
            ours.push(run(&mut c).await);
            let started = Instant::now();
            for url in [&queue, &dlq] {
                let mut c = Command::new(aws());
                c.args([
                    "sqs",
                    "get-queue-attributes",
                    "--endpoint-url",
                    &m.endpoint,
                    "--region",
                    "us-east-1",
                    "--queue-url",
                    url,
                    "--attribute-names",
                    "ApproximateNumberOfMessages",
                ]);
                env(&mut c, m);
                run(&mut c).await;
            }
            theirs.push(started.elapsed());
        }
        ours.sort();
        theirs.sort();
        let (a, b) = (percentile(&ours, 50.0), percentile(&theirs, 50.0));
        rows.push(format!("| `queue-depth` vs 2 × `aws sqs get-queue-attributes` (median of {RUNS}) | {} | {} | {:.1}× |", ms(a), ms(b), b.as_secs_f64() / a.as_secs_f64()));
        eprintln!("{}", rows.last().unwrap());
    }

    // manual redrive of 1,000, median of three; each run must leave the DLQ empty and the queue
    // holding every message.
    let n = 1000;
    if only.is_empty() || only == "redrive" {
        let visible = async |url: &str| -> usize {
            use aws_sdk_sqs::types::QueueAttributeName as A;
            let attrs = sqs
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(A::ApproximateNumberOfMessages)
                .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
                .send()
                .await
                .unwrap()
                .attributes
                .unwrap_or_default();
            let n = |k: A| attrs.get(&k).map_or(0, |v| v.parse::<usize>().unwrap());
            n(A::ApproximateNumberOfMessages) + n(A::ApproximateNumberOfMessagesNotVisible)
        };
        let moved_all = async |what: &str| {
            let (left, arrived) = (visible(&dlq).await, visible(&queue).await);
            assert_eq!(
                (left, arrived),
                (0, n),
                "{what}: the DLQ must end empty and the queue hold all {n}"
            );
            // Emptied for the next round by receiving and deleting: moto allows one PurgeQueue a
            // minute, as SQS does.
            loop {
                let got = sqs
                    .receive_message()
                    .queue_url(&queue)
                    .max_number_of_messages(10)
                    .send()
                    .await
                    .unwrap()
                    .messages
                    .unwrap_or_default();
                if got.is_empty() {
                    break;
                }
                let mut batch = sqs.delete_message_batch().queue_url(&queue);
                for (i, m) in got.iter().enumerate() {
                    batch = batch.entries(
                        aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(m.receipt_handle().unwrap_or_default())
                            .build()
                            .unwrap(),
                    );
                }
                batch.send().await.unwrap();
            }
        };
        // What the queue-depth rows left in the queue (one purge: the next rounds drain instead).
        sqs.purge_queue().queue_url(&queue).send().await.unwrap();
        // The AWS CLI equivalent, batch by batch: receive 10, send them as a batch, delete them as a
        // batch. `--query` picks the fields, so no other process is started for JSON; the bodies
        // here are `{"n":i}` (no tab or newline), which the text output keeps on one line.
        let script = format!(
            r#"set -e
aws() {{ "{aws}" --endpoint-url "{ep}" --region us-east-1 "$@"; }}
while true; do
  got=$(aws sqs receive-message --queue-url "{dlq}" --max-number-of-messages 10 --wait-time-seconds 1 \
        --query 'Messages[].[ReceiptHandle, Body]' --output text)
  [ -z "$got" ] || [ "$got" = None ] && break
  send="["; del="["; i=0
  while IFS=$'\t' read -r handle body; do
    [ $i -gt 0 ] && send+="," && del+=","
    body=${{body//\\/\\\\}}; body=${{body//\"/\\\"}}
    send+="{{\"Id\":\"$i\",\"MessageBody\":\"$body\"}}"
    del+="{{\"Id\":\"$i\",\"ReceiptHandle\":\"$handle\"}}"
    i=$((i+1))
  done <<< "$got"
  aws sqs send-message-batch --queue-url "{queue}" --entries "$send]" > /dev/null
  aws sqs delete-message-batch --queue-url "{dlq}" --entries "$del]" > /dev/null
done"#,
            aws = aws(),
            ep = m.endpoint,
            dlq = dlq,
            queue = queue
        );
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            fill(&sqs, &dlq, n).await;
            let mut c = m.process_at(&stage, &m.endpoint);
            c.args(["redrive-dlq", "--yes", "--manual"]);
            ours.push(run(&mut c).await);
            moved_all("notesctl redrive-dlq --manual").await;

            fill(&sqs, &dlq, n).await;
            let mut c = Command::new("bash");
            c.arg("-c").arg(&script);
            env(&mut c, m);
            theirs.push(run(&mut c).await);
            moved_all("the aws sqs loop").await;
        }
        ours.sort();
        theirs.sort();
        let (a, b) = (ours[1], theirs[1]);
        let version = std::process::Command::new(aws())
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        rows.push(format!(
            "| manual redrive of {n} messages vs the `aws sqs` batch loop (median of 3; {version}) | {} | {} | {:.1}× |",
            ms(a),
            ms(b),
            b.as_secs_f64() / a.as_secs_f64()
        ));
        eprintln!("{}", rows.last().unwrap());
    }

    // tail --follow: write an event, time until the line is printed.
    let logs = aws_sdk_cloudwatchlogs::Client::new(&m.sdk_config().await);
    let group = format!("/aws/lambda/{stage}-notes-save");
    logs.create_log_group()
        .log_group_name(&group)
        .send()
        .await
        .unwrap();
    logs.create_log_stream()
        .log_group_name(&group)
        .log_stream_name("s")
        .send()
        .await
        .unwrap();
    let follow = |program: Vec<String>| {
        let mut c = Command::new(&program[0]);
        c.args(&program[1..])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        env(&mut c, m);
        c.spawn().unwrap()
    };
    let latency = |label: &'static str, mut child: tokio::process::Child| {
        let logs = logs.clone();
        let group = group.clone();
        async move {
            let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
            tokio::time::sleep(Duration::from_secs(3)).await;
            let mut took = Vec::new();
            for i in 0..5 {
                let marker = format!("{label}-event-{i}-{}", rand::random::<u32>());
                let written = Instant::now();
                logs.put_log_events()
                    .log_group_name(&group)
                    .log_stream_name("s")
                    .log_events(
                        aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                            .timestamp(notes_handlers::domain::clock::now_millis())
                            .message(&marker)
                            .build()
                            .unwrap(),
                    )
                    .send()
                    .await
                    .unwrap();
                loop {
                    let line = tokio::time::timeout(Duration::from_secs(30), out.next_line())
                        .await
                        .expect("printed within 30 s")
                        .unwrap()
                        .unwrap();
                    if line.contains(&marker) {
                        took.push(written.elapsed());
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(700 + 300 * i as u64)).await;
            }
            let _ = child.kill().await;
            took.sort();
            took
        }
    };
    let ours = latency(
        "notesctl",
        follow(vec![
            notesctl().display().to_string(),
            "--stage".into(),
            stage.clone(),
            "--region".into(),
            "us-east-1".into(),
            "--endpoint-url".into(),
            m.endpoint.clone(),
            "tail".into(),
            "save".into(),
            "--follow".into(),
        ]),
    )
    .await;
    // `aws logs tail` exists only in AWS CLI v2, which PyPI does not carry (v1 has no `logs tail`);
    // v2 sleeps a fixed 5 s between polls.
    rows.push(format!(
        "| `tail --follow`: event written → printed (median / max of 5) | {} / {} | n/a: `aws logs tail` is CLI v2 only (not on PyPI); it polls every 5 s (quoted from its documentation, not measured) | — |",
        ms(percentile(&ours, 50.0)),
        ms(*ours.last().unwrap()),
    ));
    eprintln!("{}", rows.last().unwrap());

    let body = format!(
        "## Runbook commands vs the AWS CLI (issue targets: queue-depth ≥ 10× faster; tail prints a new event within 2 s)\n\n\
in one run against the same moto 5.2.5 server on 127.0.0.1\n\
(`tests/examples/ops_vs_awscli.rs`; `notesctl` release build, `awscli` from PyPI in `.venv`). End to end,\n\
process start included. moto's own speed caps both tools. `tail --follow` on moto falls back from live\n\
tail (its host prefix does not resolve there) to sub-second `FilterLogEvents` polling. Repeat:\n\
`scripts/bench.sh ops`.\n\n\
| what | notesctl | AWS CLI | speed-up |\n|---|---|---|---|\n{rows}\n",
        rows = rows.join("\n"),
    );
    if only.is_empty() {
        bench_run.write_section("ops-vs-awscli", &body);
    }
}
