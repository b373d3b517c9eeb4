//! The runbook commands against moto, from outside: exact queue depths, a manual redrive of many
//! messages with attributes (moto has no move task), and tail with --since, --filter and --follow.

use std::time::{Duration, Instant};

use notesctl::aws::queues::QueueDepth;
use notesctl::commands::redrive::{Method, RedriveReport};
use notesctl::commands::tail::Line;
use notesctl_tests::moto::{self, cli};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn queue_depth_reports_exact_numbers_and_gates() {
    let stage = notesctl_tests::unique("qd");
    let (sqs, queue, dlq) = moto::stage_queues(&stage).await;
    for i in 0..7 {
        sqs.send_message()
            .queue_url(&queue)
            .message_body(format!("m{i}"))
            .send()
            .await
            .unwrap();
    }
    sqs.send_message()
        .queue_url(&queue)
        .message_body("later")
        .delay_seconds(600)
        .send()
        .await
        .unwrap();
    let got = sqs
        .receive_message()
        .queue_url(&queue)
        .max_number_of_messages(2)
        .visibility_timeout(600)
        .send()
        .await
        .unwrap();
    assert_eq!(got.messages().len(), 2);
    sqs.send_message()
        .queue_url(&dlq)
        .message_body("dead")
        .send()
        .await
        .unwrap();

    let (code, v) = cli(&stage)
        .await
        .args(["queue-depth"])
        .json::<QueueDepth>()
        .await;
    assert_eq!(code, 0, "{v:?}");
    assert_eq!(v.queue.name, format!("{stage}-note-processing-queue"));
    assert_eq!(
        (v.queue.visible, v.queue.in_flight, v.queue.delayed),
        (5, 2, 1)
    );
    assert_eq!(v.dlq.visible, 1);
    let (code, v) = cli(&stage)
        .await
        .args(["queue-depth", "--fail-above", "4"])
        .json::<QueueDepth>()
        .await;
    assert_eq!(code, 1, "{v:?}");
    assert!(
        v.problem
            .is_some_and(|p| p.contains("above --fail-above 4"))
    );
    let run = cli(&stage)
        .await
        .args(["queue-depth", "--fail-above", "5"])
        .run()
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("VISIBLE")
            && run.stdout.contains(&format!("{stage}-note-processing-dlq"))
    );

    let missing = cli("no-such-stage").await.args(["queue-depth"]).run().await;
    assert_eq!(missing.code, 2);
    assert!(
        missing.stderr.contains("does not exist"),
        "{}",
        missing.stderr
    );
}

#[tokio::test]
async fn manual_redrive_moves_every_message_with_its_attributes() {
    use aws_sdk_sqs::types::MessageAttributeValue;
    let stage = notesctl_tests::unique("rd");
    let (sqs, queue, dlq) = moto::stage_queues(&stage).await;
    let total = 95;
    moto::fill_queue(&sqs, &dlq, total as usize, |i, m| {
        m.message_body(format!("{{\"n\":{i}}}")).message_attributes(
            "n",
            MessageAttributeValue::builder()
                .data_type("Number")
                .string_value(i.to_string())
                .build()
                .unwrap(),
        )
    })
    .await;
    let (code, v) = cli(&stage)
        .await
        .args(["redrive-dlq", "--dry-run"])
        .json::<RedriveReport>()
        .await;
    assert_eq!((code, v.found), (0, total), "{v:?}");

    let (code, v) = cli(&stage)
        .await
        .args(["redrive-dlq", "--yes"])
        .json::<RedriveReport>()
        .await;
    assert_eq!(code, 0, "{v:?}");
    assert_eq!(
        v.method,
        Method::Manual,
        "moto has no StartMessageMoveTask: fell back"
    );
    assert_eq!((v.moved, v.failed), (total, 0));

    let mut seen = std::collections::BTreeSet::new();
    loop {
        let got = sqs
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        if got.messages().is_empty() {
            break;
        }
        for m in got.messages() {
            let body: serde_json::Value = serde_json::from_str(m.body().unwrap()).unwrap();
            let n = body["n"].as_u64().unwrap();
            let attr = m.message_attributes().unwrap()["n"].string_value().unwrap();
            assert_eq!(attr, n.to_string(), "attributes travel with the body");
            assert!(seen.insert(n), "duplicate {n}");
            sqs.delete_message()
                .queue_url(&queue)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    assert_eq!(seen.len() as u64, total, "none lost");
    let (_, v) = cli(&stage)
        .await
        .args(["queue-depth"])
        .json::<QueueDepth>()
        .await;
    assert_eq!(v.dlq.visible, 0);

    let (code, v) = cli(&stage)
        .await
        .args(["redrive-dlq", "--yes", "--max", "5"])
        .json::<RedriveReport>()
        .await;
    assert_eq!((code, v.moved), (0, 0), "empty DLQ: {v:?}");

    // --max with messages: of 20, five move and fifteen stay.
    moto::fill_queue(&sqs, &dlq, 20, |i, m| m.message_body(format!("{i}"))).await;
    let (code, v) = cli(&stage)
        .await
        .args(["redrive-dlq", "--yes", "--max", "5"])
        .json::<RedriveReport>()
        .await;
    assert_eq!((code, v.moved, v.found), (0, 5, 20), "{v:?}");
    let (_, v) = cli(&stage)
        .await
        .args(["queue-depth"])
        .json::<QueueDepth>()
        .await;
    assert_eq!(
        (v.queue.visible, v.dlq.visible, v.dlq.in_flight),
        (5, 15, 0),
        "{v:?}"
    );
}

async fn put_logs(group: &str, stream: &str, messages: &[(i64, &str)]) {
    let sdk = moto::shared().await.sdk_config().await;
    let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk);
    let _ = logs.create_log_group().log_group_name(group).send().await;
    let _ = logs
        .create_log_stream()
        .log_group_name(group)
        .log_stream_name(stream)
        .send()
        .await;
    let events = messages
        .iter()
        .map(|(ts, m)| {
            aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                .timestamp(*ts)
                .message(*m)
                .build()
                .unwrap()
        })
        .collect();
    logs.put_log_events()
        .log_group_name(group)
        .log_stream_name(stream)
        .set_log_events(Some(events))
        .send()
        .await
        .unwrap();
}

fn now_ms() -> i64 {
    notes_handlers::domain::clock::now_millis()
}

#[tokio::test]
async fn tail_interleaves_filters_and_follows() {
    let stage = notesctl_tests::unique("tl");
    let now = now_ms();
    put_logs(
        &format!("/aws/lambda/{stage}-notes-save"),
        "s1",
        &[
            (now - 3 * 3_600_000, "ancient save"),
            (now - 60_000, "saved note 1"),
            (now - 20_000, "ERROR saving note 2"),
        ],
    )
    .await;
    put_logs(
        &format!("/aws/lambda/{stage}-notes-publish"),
        "p1",
        &[(now - 30_000, "published note 2")],
    )
    .await;

    let run = cli(&stage)
        .await
        .args([
            "tail", "save", "publish", "--since", "10m", "--output", "json",
        ])
        .run()
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<Line> = run.json_lines();
    let messages: Vec<&str> = lines.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(
        messages,
        ["saved note 1", "published note 2", "ERROR saving note 2"],
        "interleaved by time, --since honoured"
    );
    assert_eq!(lines[1].function, format!("{stage}-notes-publish"));
    assert_eq!(lines[0].stream, "s1");

    let run = cli(&stage)
        .await
        .args(["tail", "notes-save", "--since", "4h", "--filter", "ERROR"])
        .run()
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
    assert!(run.stdout.contains("ERROR saving note 2") && run.stdout.contains("notes-save"));

    let missing = cli(&stage).await.args(["tail", "notify"]).run().await;
    assert_eq!(missing.code, 2);
    assert!(
        missing.stderr.contains("does not exist"),
        "{}",
        missing.stderr
    );

    // --follow: a new event, in a stream that did not exist when tail started, is printed once.
    // (How fast is for the benchmark: scripts/bench.sh ops.)
    let m = moto::shared().await;
    let mut follow = m.process_at(&stage, &m.endpoint);
    follow
        .args([
            "tail", "save", "--follow", "--since", "2m", "--output", "json",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = follow.spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(10), out.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.contains("saved note 1"), "{first}");
    let _second = tokio::time::timeout(Duration::from_secs(10), out.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    put_logs(
        &format!("/aws/lambda/{stage}-notes-save"),
        "s2-new-stream",
        &[(now_ms(), "a brand new event")],
    )
    .await;
    let line = tokio::time::timeout(Duration::from_secs(15), out.next_line())
        .await
        .expect("printed")
        .unwrap()
        .unwrap();
    let v: Line = serde_json::from_str(&line).unwrap();
    assert_eq!(v.message, "a brand new event");
    assert_eq!(v.stream, "s2-new-stream");
    let none = tokio::time::timeout(Duration::from_millis(1500), out.next_line()).await;
    assert!(none.is_err(), "no duplicates while following: {none:?}");
    let _ = child.kill().await;
}

/// Fault test: the endpoint drops every connection in the middle of a manual redrive, for longer
/// than the run's --timeout. The run stops at its deadline saying how far it got; nothing is lost,
/// at most one batch is duplicated, and a second run started at once finishes the job, waiting for
/// the messages still hidden by the interrupted run rather than stopping short.
#[tokio::test]
async fn an_interrupted_manual_redrive_loses_nothing() {
    let stage = notesctl_tests::unique("ir");
    let (sqs, queue, dlq) = moto::stage_queues(&stage).await;
    let total = 120;
    moto::fill_queue(&sqs, &dlq, total as usize, |i, m| {
        m.message_body(format!("{i}"))
    })
    .await;
    let m = moto::shared().await;
    let proxy = notesctl_tests::proxy::FlakyProxy::start(&m.endpoint).await;
    // A visibility timeout long enough that what the first run holds is still hidden when the
    // second starts.
    let run = |endpoint: String, timeout: &'static str| {
        m.cli_at(&stage, &endpoint)
            .args([
                "redrive-dlq",
                "--yes",
                "--manual",
                "--visibility-timeout",
                "20",
                "--timeout",
                timeout,
                "--output",
                "json",
            ])
            .run()
    };
    let count = |url: String| {
        let sqs = sqs.clone();
        async move {
            let attrs = sqs
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
                .send()
                .await
                .unwrap()
                .attributes
                .unwrap();
            let n = |a: aws_sdk_sqs::types::QueueAttributeName| attrs[&a].parse::<u64>().unwrap();
            (
                n(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages),
                n(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            )
        }
    };
    let started = Instant::now();
    let first = tokio::spawn(run(proxy.endpoint.clone(), "15s"));
    // Let it move some, then cut the line for longer than the run's --timeout. How long the run
    // takes to get going depends on the machine (the suite runs tests in parallel on one moto), so
    // this waits on progress, not on a clock.
    let deadline = Instant::now() + Duration::from_secs(120);
    while count(queue.clone()).await.0 < 20 {
        assert!(
            !first.is_finished(),
            "the first run ended before it moved 20: {:?}",
            first.await.unwrap()
        );
        assert!(Instant::now() < deadline, "the redrive never got going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cut = started.elapsed();
    proxy.break_for(Duration::from_secs(600));
    let out = first.await.unwrap();
    let took = started.elapsed();
    proxy.heal();
    let v: RedriveReport = out.json();
    assert_eq!(out.code, 1, "the first run stops at its deadline: {v:?}");
    assert!(
        took < Duration::from_secs(21),
        "--timeout 15s held: cut at {cut:?}, ended at {took:?}"
    );
    let moved_first = v.moved;
    // At least 20 had reached the queue when the line was cut; the answer to the last send may
    // have been lost with it.
    assert!(moved_first >= 10 && moved_first < total, "{v:?}");
    assert!(
        v.problem
            .as_deref()
            .is_some_and(|p| p.contains("--timeout 15s") && p.contains("run the command again")),
        "{v:?}"
    );

    // At once: whatever the first run had received and not yet deleted is still hidden for up to
    // 20 s. Another run interrupted the same way may hold some too; hide three more (for the same
    // --visibility-timeout) so the rerun always meets messages in flight, whatever moment the cut
    // fell on, and moves the visible rest well before they come back.
    let held = sqs
        .receive_message()
        .queue_url(&dlq)
        .max_number_of_messages(3)
        .visibility_timeout(20)
        .send()
        .await
        .unwrap();
    assert_eq!(held.messages().len(), 3);
    let (_, in_flight) = count(dlq.clone()).await;
    assert!(in_flight >= 3, "{in_flight}");
    let out = run(proxy.endpoint.clone(), "2m").await;
    let v: RedriveReport = out.json();
    assert_eq!(
        out.code, 0,
        "the second run finishes: {v:?}\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!(
            "messages are in flight in {stage}-note-processing-dlq"
        )) && out.stderr.contains("waiting for them"),
        "the rerun waits for the hidden messages: {}",
        out.stderr
    );
    let mut counts = std::collections::BTreeMap::<u64, u32>::new();
    loop {
        let got = sqs
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        if got.messages().is_empty() {
            break;
        }
        for msg in got.messages() {
            *counts
                .entry(msg.body().unwrap().parse().unwrap())
                .or_default() += 1;
            sqs.delete_message()
                .queue_url(&queue)
                .receipt_handle(msg.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    let missing: Vec<u64> = (0..total).filter(|i| !counts.contains_key(i)).collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
    let duplicated = counts.values().filter(|c| **c > 1).count();
    assert!(
        duplicated <= 10,
        "{duplicated} duplicates: more than one batch"
    );
    let (_, v) = cli(&stage)
        .await
        .args(["queue-depth"])
        .json::<QueueDepth>()
        .await;
    assert_eq!((v.dlq.visible, v.dlq.in_flight), (0, 0), "{v:?}");
}

/// `alarms` refuses to create alarms for queues that do not exist (they would watch nothing). The
/// alarms themselves are tested on recorded CloudWatch responses in cli/src/commands/alarms.rs: moto
/// 5.2 does not speak the CBOR protocol the CloudWatch SDK uses.
#[tokio::test]
async fn alarms_refuse_queues_that_do_not_exist() {
    let missing = cli("no-queues-here")
        .await
        .args(["alarms", "--email", "oncall@example.com"])
        .run()
        .await;
    assert_eq!(missing.code, 2, "{}", missing.stderr);
    assert!(
        missing.stderr.contains("does not exist"),
        "{}",
        missing.stderr
    );
}

/// `queue-depth --watch --output json` is a stream: one JSON document a line, until interrupted.
#[tokio::test]
async fn queue_depth_watch_streams_json_lines() {
    let stage = notesctl_tests::unique("wt");
    let (sqs, queue, _) = moto::stage_queues(&stage).await;
    let m = moto::shared().await;
    let mut child = tokio::process::Command::new(notesctl_tests::dev::notesctl_binary())
        .args([
            "--stage",
            &stage,
            "--region",
            "us-east-1",
            "--endpoint-url",
            &m.endpoint,
            "queue-depth",
            "--watch",
            "--interval",
            "0.3",
            "--output",
            "json",
        ])
        .envs(m.env())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let first: QueueDepth = serde_json::from_str(&out.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(first.queue.visible, 0);
    sqs.send_message()
        .queue_url(&queue)
        .message_body("x")
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let line = tokio::time::timeout(Duration::from_secs(15), out.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let v: QueueDepth = serde_json::from_str(&line).unwrap();
        if v.queue.visible == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the new message never showed");
    }
    let _ = child.kill().await;
}

/// `migrate public-feed` on a table the original system filled: every note under `PUBLIC#NOTES`
/// moves into the notes stack's shard count, notes without an owner's copy get one, a second run
/// has nothing to do, and without the stack the command says to pass --shards.
#[tokio::test]
async fn migrate_public_feed_moves_the_unsharded_feed_into_its_shards() {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    use notesctl::commands::migrate::MigrateReport;
    let stage = notesctl_tests::unique("mig");
    let sdk = moto::shared().await.sdk_config().await;
    let table = format!("{stage}-data-table");
    moto::create_table(&sdk, &table).await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let total = 130;
    for i in 0..total {
        let id = format!("{}-n{i}", 1_700_000_000_000_i64 + i * 1000);
        let created = notes_handlers::domain::note::NoteId::parse(&id)
            .unwrap()
            .created_at();
        let sk = format!("NOTE#{created}#{id}");
        let item = |pk: String| {
            [
                ("pk", A::S(pk)),
                ("sk", A::S(sk.clone())),
                ("noteId", A::S(id.clone())),
                ("username", A::S(format!("user{}", i % 4))),
                ("content", A::S(format!("note {i}"))),
                ("isPublic", A::Bool(true)),
                ("createdAt", A::S(created.clone())),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect::<std::collections::HashMap<_, _>>()
        };
        let mut pks = vec!["PUBLIC#NOTES".to_owned()];
        // As the original system stored them: every other note only in the feed.
        if i % 2 == 0 {
            pks.push(format!("USER#user{}", i % 4));
        }
        for pk in pks {
            ddb.put_item()
                .table_name(&table)
                .set_item(Some(item(pk)))
                .send()
                .await
                .unwrap();
        }
    }
    let count = |pk: String| {
        let (ddb, table) = (ddb.clone(), table.clone());
        async move {
            let mut n = 0;
            let mut start = None;
            loop {
                let out = ddb
                    .query()
                    .table_name(&table)
                    .key_condition_expression("pk = :pk")
                    .expression_attribute_values(":pk", A::S(pk.clone()))
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .unwrap();
                n += out.items().len();
                match out.last_evaluated_key {
                    Some(k) => start = Some(k),
                    None => return n,
                }
            }
        }
    };

    let no_stack = cli(&stage)
        .await
        .args(["migrate", "public-feed"])
        .run()
        .await;
    assert_eq!(no_stack.code, 2, "an error: {no_stack:?}");
    assert!(
        no_stack.stderr.contains("--shards"),
        "says what to pass: {}",
        no_stack.stderr
    );
    assert_eq!(
        count("PUBLIC#NOTES".into()).await,
        total as usize,
        "nothing moved"
    );

    moto::fake_stack_with(&stage, "notes", &[], &[("PublicFeedShards", "4")]).await;
    // A count other than the stack's is refused, naming both, before anything moves.
    let mismatch = cli(&stage)
        .await
        .args(["migrate", "public-feed", "--shards", "8"])
        .run()
        .await;
    assert_eq!(mismatch.code, 2, "{mismatch:?}");
    assert!(
        mismatch.stderr.contains("--shards 8")
            && mismatch.stderr.contains("PublicFeedShards 4")
            && mismatch.stderr.contains("--ignore-stack-shards"),
        "{}",
        mismatch.stderr
    );
    assert_eq!(
        mismatch.stderr.trim().lines().count(),
        1,
        "one line: {}",
        mismatch.stderr
    );
    assert_eq!(count("PUBLIC#NOTES".into()).await, total as usize);
    let run = cli(&stage)
        .await
        .args([
            "migrate",
            "public-feed",
            "--batch",
            "40",
            "--output",
            "json",
        ])
        .run()
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    let report: MigrateReport = run.json();
    assert_eq!(
        (report.shards, report.moved, report.owner_copies_made),
        (4, total as usize, total as usize / 2)
    );
    assert!(report.steps >= 4, "{report:?}");
    assert!(run.stderr.contains("moved 40 so far"), "{}", run.stderr);
    assert_eq!(count("PUBLIC#NOTES".into()).await, 0);
    let mut in_shards = 0;
    for n in 0..4 {
        let here = count(format!("PUBLIC#NOTES#{n}")).await;
        assert!(here > 0, "shard {n} is used");
        in_shards += here;
    }
    assert_eq!(in_shards, total as usize);
    for u in 0..4 {
        let notes_of_u = (0..total).filter(|i| i % 4 == u).count();
        assert_eq!(
            count(format!("USER#user{u}")).await,
            notes_of_u,
            "user{u}'s own list"
        );
    }

    let again = cli(&stage)
        .await
        .args(["migrate", "public-feed"])
        .run()
        .await;
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("nothing to move"), "{}", again.stdout);
    // The override: 8 shards hold what 4 do, so nothing moves, but the count is taken as given.
    let overridden = cli(&stage)
        .await
        .args([
            "migrate",
            "public-feed",
            "--shards",
            "8",
            "--ignore-stack-shards",
            "--output",
            "json",
        ])
        .run()
        .await;
    assert_eq!(overridden.code, 0, "{overridden:?}");
    assert_eq!(overridden.json::<MigrateReport>().shards, 8);
}

/// `doctor` on a deployed stage (moto): the queues and the save function's logs are read as on AWS;
/// what moto cannot give (CloudWatch metrics, a running app) is "could not tell" or a failed check
/// with its next step, never a crash.
#[tokio::test]
async fn doctor_on_a_stage_names_dead_letters_and_save_errors() {
    use notesctl::commands::doctor::{DoctorReport, Verdict};
    let stage = notesctl_tests::unique("dr");
    let (sqs, _queue, dlq) = moto::stage_queues(&stage).await;
    moto::fill_queue(&sqs, &dlq, 2, |i, e| {
        e.message_body(
            serde_json::json!({"detail": {"eventType": "note-created", "noteId": format!("1767225600000-dead{i}")}})
                .to_string(),
        )
    })
    .await;
    let notify_dlq = sqs
        .create_queue()
        .queue_name(format!("{stage}-websocket-notify-dlq"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    sqs.send_message()
        .queue_url(&notify_dlq)
        .message_body(r#"{"detail-type":"note-saved"}"#)
        .send()
        .await
        .unwrap();
    put_logs(
        &format!("/aws/lambda/{stage}-notes-save"),
        "s1",
        &[
            (
                now_ms() - 60_000,
                r#"{"level":"INFO","fields":{"message":"record processed"}}"#,
            ),
            (
                now_ms() - 30_000,
                r#"{"level":"ERROR","fields":{"message":"note failed on its last delivery"}}"#,
            ),
        ],
    )
    .await;
    let (code, report) = moto::cli(&stage)
        .await
        .args(["doctor"])
        .json::<DoctorReport>()
        .await;
    assert_eq!(code, 1, "{report:#?}");
    let check = |name: &str| {
        report
            .runbooks
            .iter()
            .flat_map(|r| &r.checks)
            .find(|c| c.name.contains(name))
            .unwrap_or_else(|| panic!("{name}: {report:#?}"))
            .clone()
    };
    let dead = check("no dead letters");
    assert_eq!(dead.verdict, Verdict::Fail, "{dead:#?}");
    assert!(
        dead.evidence.contains("holds 2") && dead.evidence.contains("1767225600000-dead"),
        "{dead:#?}"
    );
    let save = check("notes-save's logs");
    assert_eq!(save.verdict, Verdict::Fail, "{save:#?}");
    assert!(
        save.evidence.contains("note failed on its last delivery"),
        "{save:#?}"
    );
    let undelivered = check("no undelivered result events");
    assert_eq!(undelivered.verdict, Verdict::Fail, "{undelivered:#?}");
    assert!(
        undelivered
            .evidence
            .contains("websocket-notify-dlq holds 1"),
        "{undelivered:#?}"
    );
    assert_eq!(
        check("the WebSocket URL").verdict,
        Verdict::Fail,
        "no websocket stack"
    );
    assert_eq!(
        check("the connection is in the registry").verdict,
        Verdict::Unknown
    );
    assert_eq!(
        check("a note reaches its author's socket").verdict,
        Verdict::Unknown
    );
}

/// One message the processing queue cannot take (over its `MaximumMessageSize`) makes SQS refuse
/// the whole batch it is in (moto does so for an oversize message; SQS for `BatchRequestTooLong`):
/// the redrive halves the batch until that message stands alone, moves the other nine, and names
/// it by id; it stays in the DLQ.
#[tokio::test]
async fn a_batch_refused_as_a_whole_moves_all_but_the_message_at_fault() {
    use aws_sdk_sqs::types::QueueAttributeName;
    let stage = notesctl_tests::unique("rz");
    let (sqs, queue, dlq) = moto::stage_queues(&stage).await;
    sqs.set_queue_attributes()
        .queue_url(&queue)
        .attributes(QueueAttributeName::MaximumMessageSize, "1024")
        .send()
        .await
        .unwrap();
    moto::fill_queue(&sqs, &dlq, 10, |i, m| {
        let pad = if i == 6 {
            "x".repeat(2000)
        } else {
            String::new()
        };
        m.message_body(format!("{{\"n\":{i},\"pad\":\"{pad}\"}}"))
    })
    .await;
    // The oversize message's id, read without hiding anything (visibility 0).
    let mut poison = None;
    for _ in 0..20 {
        let got = sqs
            .receive_message()
            .queue_url(&dlq)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .send()
            .await
            .unwrap();
        poison = got
            .messages()
            .iter()
            .find(|m| m.body().is_some_and(|b| b.len() > 1024))
            .and_then(|m| m.message_id().map(str::to_owned));
        if poison.is_some() {
            break;
        }
    }
    let poison = poison.expect("the oversize message is in the DLQ");
    let (code, v) = cli(&stage)
        .await
        .args(["redrive-dlq", "--yes"])
        .json::<RedriveReport>()
        .await;
    assert_eq!(code, 1, "a refused message is a problem: {v:?}");
    assert_eq!((v.moved, v.failed), (9, 1), "{v:?}");
    assert_eq!(v.refused.len(), 1, "{v:?}");
    assert_eq!(v.refused[0].code, "InvalidParameterValue", "{v:?}");
    assert_eq!(v.refused[0].message_id, poison, "named by id");
    let (_, depth) = cli(&stage)
        .await
        .args(["queue-depth"])
        .json::<QueueDepth>()
        .await;
    assert_eq!(depth.queue.visible, 9, "{depth:?}");
    assert_eq!(
        depth.dlq.visible + depth.dlq.in_flight,
        1,
        "the poison stays: {depth:?}"
    );
}
