//! `notesctl load --local` against a real `notesctl dev`: every note accepted is seen saved on its
//! author's socket and, when public, on every socket; the report's numbers add up; the notes are
//! deleted afterwards; a ramp reports its knee; with dev's queue held, nothing is saved and it exits 1.

use notesctl::commands::load::LoadReport;
use notesctl_tests::dev::DevServer;
use serde_json::Value;

async fn public_feed(dev: &DevServer) -> Vec<Value> {
    let body: Value = reqwest::get(format!("{}/notes/public?limit=50", dev.api_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["notes"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn load_measures_every_note_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &[]).await;
    let (code, report) = dev
        .cli()
        .args(["load", "--local", &dev.api_url])
        .args([
            "--rate",
            "100",
            "--total",
            "120",
            "--users",
            "4",
            "--sockets",
            "12",
        ])
        .args(["--public-ratio", "0.25"])
        .json::<LoadReport>()
        .await;
    assert_eq!(code, 0, "{report:#?}");
    assert_eq!(report.steps.len(), 1);
    let step = &report.steps[0];
    assert_eq!((step.sent, step.accepted, step.saved), (120, 120, 120));
    assert_eq!(step.public, 30, "a quarter public, evenly");
    assert!(step.errors.is_empty(), "{:?}", step.errors);
    let l = &step.saved_latency;
    assert_eq!(l.count, 120);
    assert!(
        0.0 < l.p50 && l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.max,
        "{l:?}"
    );
    assert_eq!(l.histogram.iter().map(|b| b.count).sum::<usize>(), 120);
    // A public note reaches all 12 sockets, after (or when) its author hears of it.
    assert_eq!(step.fanout_latency.count, 30);
    assert!(step.fanout_latency.max >= step.fanout_latency.p50);
    assert!(
        step.offered_rate > 50.0 && step.sustained_rate > 0.0,
        "{step:?}"
    );
    assert_eq!((report.cleanup.deleted, report.cleanup.left), (120, 0));
    assert!(
        public_feed(&dev).await.is_empty(),
        "the load's notes are gone"
    );

    // The same users log in again; the text report draws the histogram.
    let run = dev
        .cli()
        .args(["load", "--local", &dev.api_url])
        .args([
            "--rate",
            "50",
            "--total",
            "20",
            "--users",
            "4",
            "--sockets",
            "4",
        ])
        .args(["--public-ratio", "1"])
        .run()
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("POST → note-saved at"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains('█'), "{}", run.stdout);
    assert!(
        run.stdout.contains("cleanup: 20 notes deleted, 0 left"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("signing in 4 load users"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn a_ramp_reports_the_knee_and_a_held_queue_fails() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &[]).await;
    // An objective no step can miss: the ramp climbs to --max-rate and says so.
    let (code, ramp) = dev
        .cli()
        .args(["load", "--local", &dev.api_url, "--ramp"])
        .args(["--rate", "20", "--duration", "1s", "--ramp-factor", "2"])
        .args(["--max-rate", "100", "--slo", "10s"])
        .args(["--users", "2", "--sockets", "2"])
        .json::<LoadReport>()
        .await;
    assert_eq!(code, 0, "{ramp:#?}");
    let rates: Vec<f64> = ramp.steps.iter().map(|s| s.target_rate).collect();
    assert_eq!(rates, [20.0, 40.0, 80.0]);
    let knee = ramp.knee.as_ref().expect("a knee");
    assert!(knee.rate > 60.0, "{knee:?}");
    assert!(knee.next.contains("--max-rate"), "{knee:?}");
    // An objective the first step cannot meet: no knee, exit 1.
    let (code, missed) = dev
        .cli()
        .args(["load", "--local", &dev.api_url, "--ramp"])
        .args(["--rate", "20", "--duration", "1s", "--slo", "0.001ms"])
        .args(["--users", "2", "--sockets", "2"])
        .json::<LoadReport>()
        .await;
    assert_eq!(code, 1, "{missed:#?}");
    assert_eq!(missed.steps.len(), 1);
    assert!(missed.knee.is_none());
    dev.terminate().await;

    // Notes accepted but never saved: each counted, exit 1.
    let dev = DevServer::start(dir.path(), &["--hold-queue"]).await;
    let (code, held) = dev
        .cli()
        .args(["load", "--local", &dev.api_url])
        .args([
            "--rate",
            "20",
            "--total",
            "5",
            "--users",
            "1",
            "--sockets",
            "1",
        ])
        .args(["--drain", "1s", "--keep"])
        .json::<LoadReport>()
        .await;
    assert_eq!(code, 1, "{held:#?}");
    let step = &held.steps[0];
    assert_eq!((step.accepted, step.saved), (5, 0));
    assert_eq!(
        step.errors.get("not saved within --drain 1s"),
        Some(&5),
        "{:?}",
        step.errors
    );
    assert_eq!(held.cleanup.left, 5, "--keep leaves them");
    assert!(held.problem.as_deref().unwrap().contains("5 notes failed"));
}

#[tokio::test]
async fn a_deployed_stage_needs_yes_and_a_password() {
    let run = notesctl_tests::cli::Cli::new()
        .args(["load", "--stage", "nowhere", "--yes"])
        .run()
        .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("NOTESCTL_LOAD_PASSWORD"),
        "{}",
        run.stderr
    );
    let run = notesctl_tests::cli::Cli::new()
        .args(["load", "--stage", "nowhere"])
        .env("NOTESCTL_LOAD_PASSWORD", "long-enough-password")
        .run()
        .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--yes"), "{}", run.stderr);
}
