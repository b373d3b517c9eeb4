//! The production runbook, practised on `notesctl dev`: a message that fails three times lands in the
//! local DLQ, `queue-depth --local` shows it, `redrive-dlq --local` moves it back — with the same SDK
//! code that runs against AWS.

use std::time::{Duration, Instant};

use notesctl::aws::queues::QueueDepth;
use notesctl::commands::redrive::{Method, RedriveReport};
use notesctl::commands::tail::Line;
use notesctl_tests::dev::DevServer;
use serde_json::{Value, json};

async fn sqs(dev: &DevServer) -> aws_sdk_sqs::Client {
    dev.sqs(&dev.runbook_token()).await
}

async fn queue_url(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.get_queue_url()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap()
}

async fn depth(dev: &DevServer) -> (i32, QueueDepth) {
    dev.cli()
        .args(["queue-depth", "--local", &dev.api_url])
        .json()
        .await
}

async fn wait_for_dlq(dev: &DevServer, n: u64) -> QueueDepth {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, v) = depth(dev).await;
        assert_eq!(code, 0, "{v:?}");
        // `queue-depth` reads the queue and then its DLQ (two calls, as on AWS): a message moving
        // between the two reads is counted in both, so wait until the queue has let it go too.
        if v.dlq.visible == n && v.queue.visible + v.queue.in_flight == 0 {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "the DLQ never held {n} with the queue empty: {v:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn note_created(note_id: &str, username: &str) -> String {
    json!({"version": "0", "id": "x", "detail-type": "note-created", "source": "notes.service",
           "account": "000000000000", "time": "2026-01-01T00:00:00Z", "region": "local", "resources": [],
           "detail": {"eventType": "note-created", "noteId": note_id, "username": username,
                      "content": "rescued from the DLQ", "isPublic": false, "timestamp": "2026-01-01T00:00:00.000Z"}})
    .to_string()
}

/// A `note-created` that save fails on every time (its note id is not one).
async fn send_poison(sqs: &aws_sdk_sqs::Client, queue: &str) {
    sqs.send_message()
        .queue_url(queue)
        .message_body(note_created("not-a-note-id", "ada"))
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_failing_message_lands_in_the_dlq_and_is_redriven() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &["--visibility-timeout", "1"]).await;
    let sqs = sqs(&dev).await;
    let queue = queue_url(&sqs, "dev-note-processing-queue").await;
    let dlq = queue_url(&sqs, "dev-note-processing-dlq").await;

    // A poison message: save fails on it every time; after three receives it is dead-lettered.
    send_poison(&sqs, &queue).await;
    wait_for_dlq(&dev, 1).await;
    // Given up on once, on its last delivery: the metric a dashboard alarms on.
    let counters = dev.counters().await;
    assert_eq!(
        counters.get("metric.NotesFailed.unreadable").calls,
        1,
        "{counters:?}"
    );
    assert_eq!(counters.get("metric.NotesSaved").calls, 0);
    let (code, v) = dev
        .cli()
        .args(["queue-depth", "--local", &dev.api_url, "--fail-above", "0"])
        .json::<QueueDepth>()
        .await;
    assert_eq!(code, 1, "CI gate: {v:?}");
    assert!(
        v.problem
            .as_deref()
            .is_some_and(|p| p.contains("dev-note-processing-dlq"))
    );

    let (code, v) = dev
        .cli()
        .args(["redrive-dlq", "--local", &dev.api_url, "--dry-run"])
        .json::<RedriveReport>()
        .await;
    assert_eq!(code, 0, "{v:?}");
    assert_eq!((v.found, v.moved), (1, 0));
    assert_eq!(v.sample[0].note_id.as_deref(), Some("not-a-note-id"));

    // A real note that had been dead-lettered: redriven, it is saved.
    let http = reqwest::Client::new();
    let token = dev.sign_up("ada", "pw-12345").await;
    sqs.send_message()
        .queue_url(&dlq)
        .message_body(note_created("1767225600000-rescued", "ada"))
        .send()
        .await
        .unwrap();

    let refused = dev
        .cli()
        .args(["redrive-dlq", "--local", &dev.api_url])
        .run()
        .await;
    assert_eq!(
        refused.code, 2,
        "no --yes and no terminal: {}",
        refused.stderr
    );
    assert!(refused.stderr.contains("--yes"));

    let (code, v) = dev
        .cli()
        .args(["redrive-dlq", "--local", &dev.api_url, "--yes"])
        .json::<RedriveReport>()
        .await;
    assert_eq!(code, 0, "{v:?}");
    assert_eq!((v.moved, v.method), (2, Method::MoveTask));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let notes: Value = http
            .get(format!("{}/notes", dev.api_url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if notes["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["noteId"] == "1767225600000-rescued")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the redriven note was never saved: {notes}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The poison fails again, and the manual path moves it too.
    wait_for_dlq(&dev, 1).await;
    let (code, v) = dev
        .cli()
        .args(["redrive-dlq", "--local", &dev.api_url, "--yes", "--manual"])
        .json::<RedriveReport>()
        .await;
    assert_eq!(code, 0, "{v:?}");
    assert_eq!((v.moved, v.method), (1, Method::Manual));
}

/// `tail --local` reads the functions' logs from `dev`, as `tail` reads CloudWatch Logs on AWS.
#[tokio::test]
async fn tail_local_shows_and_follows_the_functions_logs() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &[]).await;
    let http = reqwest::Client::new();
    let token = dev.sign_up("ada", "pw-12345").await;
    let post = |content: &'static str| {
        let (http, url, token) = (
            http.clone(),
            format!("{}/notes", dev.api_url),
            token.clone(),
        );
        async move {
            http.post(url)
                .bearer_auth(token)
                .json(&json!({"content": content}))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()["noteId"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let first = post("first").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let run = dev
            .cli()
            .args([
                "tail",
                "save",
                "publish",
                "--local",
                &dev.api_url,
                "--since",
                "5m",
                "--output",
                "json",
            ])
            .run()
            .await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        let lines: Vec<Line> = run.json_lines();
        if lines.iter().any(|l| l.function == "dev-notes-save") {
            break lines;
        }
        assert!(Instant::now() < deadline, "no save logs: {}", run.stdout);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let publish = lines
        .iter()
        .position(|l| l.function == "dev-notes-publish" && l.message.contains(&first))
        .expect("publish logged the note");
    let save = lines
        .iter()
        .position(|l| l.function == "dev-notes-save")
        .unwrap();
    assert!(publish < save, "interleaved by time: publish before save");

    let run = dev
        .cli()
        .args([
            "tail",
            "notes-publish",
            "--local",
            &dev.api_url,
            "--filter",
            "\"note submitted\"",
        ])
        .run()
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
    assert!(run.stdout.contains("publish") && run.stdout.contains(&first));

    let mut follow = tokio::process::Command::new(notesctl_tests::dev::notesctl_binary())
        .env("NOTESCTL_DEV_DATA_DIR", &dev.data_dir)
        .args([
            "tail",
            "publish",
            "--follow",
            "--local",
            &dev.api_url,
            "--since",
            "1s",
            "--output",
            "json",
        ])
        .env("NOTESCTL_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(follow.stdout.take().unwrap()).lines();
    let mut until_line_with = async |id: &str| loop {
        let line = tokio::time::timeout(Duration::from_secs(15), out.next_line())
            .await
            .expect("followed")
            .unwrap()
            .unwrap();
        if line.contains(id) {
            break line;
        }
    };
    // The follow is reading once a note posted now shows; a note posted after that can only come
    // by following.
    let reading = post("follow is reading").await;
    until_line_with(&reading).await;
    let second = post("second").await;
    let line = until_line_with(&second).await;
    let v: Line = serde_json::from_str(&line).unwrap();
    assert_eq!(v.function, "dev-notes-publish");
    let _ = follow.kill().await;
}

/// A manual redrive on a terminal draws one progress bar instead of a line per batch; in CI, or with
/// `--output json`, it never draws (plain lines, or nothing). Run under a real pseudo-terminal.
#[tokio::test]
async fn redrive_progress_is_drawn_only_for_a_person() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &[]).await;
    let sqs = sqs(&dev).await;
    let dlq = queue_url(&sqs, "dev-note-processing-dlq").await;
    let fill = |n: usize| {
        let (sqs, dlq) = (sqs.clone(), dlq.clone());
        async move {
            for i in 0..n {
                sqs.send_message()
                    .queue_url(&dlq)
                    .message_body(note_created(&format!("1767225600000-p{i}"), "ada"))
                    .send()
                    .await
                    .unwrap();
            }
        }
    };
    // `script` gives the command a pseudo-terminal for stdin, stdout and stderr.
    let on_a_terminal = |ci: bool, extra: &'static str| {
        let bin = notesctl_tests::dev::notesctl_binary();
        let mut cmd = tokio::process::Command::new("script");
        cmd.args(["-q", "-e", "-c"])
            .arg(format!(
                "{} redrive-dlq --local {} --yes --manual --max-per-second 8 {extra}",
                bin.display(),
                dev.api_url
            ))
            .arg("/dev/null")
            .env("NOTESCTL_DEV_DATA_DIR", dir.path())
            .env_remove("NOTESCTL_OUTPUT")
            .env("TERM", "xterm");
        if ci {
            cmd.env("CI", "true");
        } else {
            cmd.env_remove("CI");
        }
        async move {
            let out = cmd.output().await.unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };

    fill(16).await;
    let shown = on_a_terminal(false, "").await;
    assert!(shown.contains("moving "), "a bar on a terminal: {shown}");
    assert!(
        !shown.contains("moved 10 of 16"),
        "no batch lines under the bar: {shown}"
    );
    assert!(
        shown.contains("moved 16 of 16 messages"),
        "the report: {shown}"
    );

    fill(16).await;
    let ci = on_a_terminal(true, "").await;
    assert!(!ci.contains("moving "), "no bar in CI: {ci}");
    assert!(ci.contains("moved 10 of 16"), "plain lines in CI: {ci}");

    fill(16).await;
    let json = on_a_terminal(false, "--output json").await;
    assert!(
        !json.contains("moving "),
        "no bar with --output json: {json}"
    );
    assert!(json.contains("\"moved\":16"), "{json}");
}

/// `queue-depth --watch` for a person: on a terminal it redraws its table in place (cursor up, clear)
/// at each refresh, and with `--fail-above 0` it stops with exit 1 the moment a dead letter arrives;
/// through a pipe it appends one table per refresh, with no control codes.
#[tokio::test]
async fn queue_depth_watch_redraws_in_place_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &[]).await;
    let sqs = sqs(&dev).await;
    let dlq = queue_url(&sqs, "dev-note-processing-dlq").await;
    let bin = notesctl_tests::dev::notesctl_binary();
    let watch = format!(
        "{} queue-depth --local {} --watch --interval 0.3 --fail-above 0",
        bin.display(),
        dev.api_url
    );
    let on_a_terminal = tokio::process::Command::new("script")
        .args(["-q", "-e", "-c", &watch, "/dev/null"])
        .env("NOTESCTL_DEV_DATA_DIR", dir.path())
        .env_remove("NOTESCTL_OUTPUT")
        .env("TERM", "xterm")
        .kill_on_drop(true)
        .output();
    let through_a_pipe = tokio::process::Command::new(&bin)
        .args(["queue-depth", "--local", &dev.api_url, "--watch"])
        .args(["--interval", "0.3", "--fail-above", "0"])
        .env("NOTESCTL_DEV_DATA_DIR", dir.path())
        .env_remove("NOTESCTL_OUTPUT")
        .kill_on_drop(true)
        .output();
    let send = async {
        // Several refreshes of an empty DLQ first.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        sqs.send_message()
            .queue_url(&dlq)
            .message_body(note_created("1767225600000-w", "ada"))
            .send()
            .await
            .unwrap();
    };
    let (shown, piped, ()) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(on_a_terminal, through_a_pipe, send)
    })
    .await
    .expect("both watches stop when the DLQ is over --fail-above");
    let (shown, piped) = (shown.unwrap(), piped.unwrap());
    assert_eq!(shown.status.code(), Some(1), "{shown:?}");
    assert_eq!(piped.status.code(), Some(1), "{piped:?}");

    let shown = String::from_utf8_lossy(&shown.stdout);
    let frames = shown.matches("QUEUE").count();
    assert!(frames >= 3, "several refreshes: {shown}");
    assert!(
        shown.matches("\x1b[3A\x1b[J").count() >= frames - 1,
        "each refresh after the first clears the table before it: {shown:?}"
    );
    assert!(
        shown.contains("dev-note-processing-dlq") && shown.contains("fail-above"),
        "{shown}"
    );

    let piped = String::from_utf8_lossy(&piped.stdout);
    assert!(
        !piped.contains('\x1b'),
        "no control codes through a pipe: {piped:?}"
    );
    assert!(piped.matches("QUEUE").count() >= 3, "{piped}");
}

/// `--max-receive-count 1`: a message that fails once is dead-lettered at its next receive, not
/// after three.
#[tokio::test]
async fn max_receive_count_sets_when_a_failing_message_is_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let (dev, log) = DevServer::start_with_log(
        dir.path(),
        &["--visibility-timeout", "1", "--max-receive-count", "1"],
    )
    .await;
    let sqs = sqs(&dev).await;
    let queue = queue_url(&sqs, "dev-note-processing-queue").await;
    send_poison(&sqs, &queue).await;
    wait_for_dlq(&dev, 1).await;
    // Given up on once, on its last delivery: the metric a dashboard alarms on.
    let counters = dev.counters().await;
    assert_eq!(
        counters.get("metric.NotesFailed.unreadable").calls,
        1,
        "{counters:?}"
    );
    assert_eq!(counters.get("metric.NotesSaved").calls, 0);
    let log = log.lock().unwrap().clone();
    let moved: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("moved to the dead-letter queue"))
        .collect();
    assert_eq!(moved.len(), 1, "{log}");
    assert!(
        moved[0].contains("receives=1") || moved[0].contains(r#""receives":1"#),
        "dead-lettered after one receive: {}",
        moved[0]
    );
}

/// `--local` finds dev's runbook token by itself when run from the folder `dev` runs in (its default
/// data directory, `.notesctl/dev`, is there), with neither `NOTESCTL_DEV_DATA_DIR` nor
/// `NOTESCTL_DEV_TOKEN` set; from another folder it cannot, and says where it looked and what to set.
#[tokio::test]
async fn local_finds_the_runbook_token_when_run_from_devs_folder() {
    let folder = tempfile::tempdir().unwrap();
    let dev = DevServer::start(&folder.path().join(".notesctl/dev"), &[]).await;
    let bare = |dir: &std::path::Path| {
        notesctl_tests::cli::Cli::new()
            .env_remove("NOTESCTL_DEV_DATA_DIR")
            .env_remove("NOTESCTL_DEV_TOKEN")
            .current_dir(dir)
            .args(["queue-depth", "--local", &dev.api_url])
    };
    let (code, depth) = bare(folder.path()).json::<QueueDepth>().await;
    assert_eq!(code, 0, "{depth:?}");
    assert_eq!(depth.queue.visible + depth.dlq.visible, 0, "{depth:?}");

    let elsewhere = tempfile::tempdir().unwrap();
    let lost = bare(elsewhere.path()).run().await;
    assert_eq!(lost.code, 2, "{}", lost.stderr);
    assert!(
        lost.stderr
            .contains("no runbook token at .notesctl/dev/runbook-token")
            && lost.stderr.contains("NOTESCTL_DEV_DATA_DIR"),
        "{}",
        lost.stderr
    );
}

/// `status --local`: dev as one screen — itself as the one stack, its queues under the "dev"
/// stage's names, its counters of the last 15 minutes, and where to look instead of alarms.
#[tokio::test]
async fn status_local_shows_devs_queues_and_counters() {
    use notesctl::commands::status::StatusReport;
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &[]).await;
    let token = dev.sign_up("ada", "correct horse battery").await;
    dev.post_note(&token, json!({"content": "hello", "isPublic": false}))
        .await;
    let (code, report) = dev
        .cli()
        .args(["status", "--local", &dev.api_url])
        .json::<StatusReport>()
        .await;
    assert_eq!(code, 0, "{report:#?}");
    assert!(report.local);
    assert_eq!(report.stacks.len(), 1);
    assert_eq!(report.stacks[0].status, "RUNNING");
    let queues = report.queues.as_ref().expect("dev's queues");
    assert_eq!(queues.queue.name, "dev-note-processing-queue");
    assert_eq!(queues.dlq.name, "dev-note-processing-dlq");
    assert!(
        report.metrics.iter().any(|l| l.starts_with("app:")),
        "{:?}",
        report.metrics
    );
    assert!(report.alarms.is_empty());
    assert!(
        report.notes.iter().any(|n| n.contains("doctor --local")),
        "{:?}",
        report.notes
    );
    let text = dev
        .cli()
        .args(["status", "--local", &dev.api_url])
        .run()
        .await;
    assert_eq!(text.code, 0, "{text:?}");
    assert!(
        text.stdout.contains("dev-note-processing-queue"),
        "{}",
        text.stdout
    );
    assert!(!text.stdout.contains("ALARMS"), "{}", text.stdout);
}
