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

#[tokio::test]
async fn cost_counts_what_each_private_and_public_note_makes_every_port_do() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &[]).await;
    let (code, report) = dev
        .cli()
        .args(["load", "--local", &dev.api_url, "--cost"])
        .args(["--rate", "100", "--total", "40", "--users", "4"])
        .args(["--sockets", "12", "--public-ratio", "0.5"])
        .json::<LoadReport>()
        .await;
    assert_eq!(code, 0, "{report:#?}");
    assert_eq!(report.steps.len(), 2, "private notes, then public ones");
    assert_eq!((report.steps[0].public, report.steps[1].public), (0, 20));
    let cost = report.cost.expect("--cost reports the counts");
    assert_eq!(cost.sockets, 12);
    let (private, public) = (cost.private.unwrap(), cost.public.unwrap());
    assert_eq!((private.notes, public.notes), (20, 20));
    let per = |phase: &notesctl::commands::load::PhaseCost, name: &str| {
        phase.per_note.get(name).copied().unwrap_or_default()
    };
    for phase in [&private, &public] {
        assert_eq!(
            per(phase, "function.notes-publish").calls,
            1.0,
            "{phase:#?}"
        );
        // note-created by publish, note-saved by save: one event each, however batched.
        assert_eq!(per(phase, "bus.publish").items, 2.0, "{phase:#?}");
        assert_eq!(per(phase, "queue.send").items, 1.0);
        assert_eq!(per(phase, "queue.receive").items, 1.0, "no redelivery");
        assert_eq!(per(phase, "queue.delete_batch").items, 1.0);
        assert_eq!(per(phase, "notes.save_if_absent").calls, 1.0);
        assert_eq!(per(phase, "notes.mark_notified").calls, 1.0);
        assert_eq!(per(phase, "bus.invoke_function").calls, 1.0);
        assert_eq!(per(phase, "function.websocket-notify").calls, 1.0);
        // The queue is polled in batches of up to ten.
        let saves = per(phase, "function.notes-save").calls;
        assert!((0.1..=1.0).contains(&saves), "{saves}");
        assert!(per(phase, "notes.save_if_absent").bytes > 40.0);
        // The app's own metrics, as dev counts them: what the EMF lines say on Lambda.
        assert_eq!(per(phase, "metric.NotesPublished").items, 1.0);
        assert_eq!(per(phase, "metric.NotesSaved").items, 1.0);
        assert_eq!(per(phase, "metric.SaveLatency").calls, 1.0);
        assert!(
            per(phase, "metric.SaveLatency").bytes > 0.0,
            "latency in µs"
        );
    }
    assert_eq!(per(&private, "metric.ConnectionsReached").items, 3.0);
    assert_eq!(per(&public, "metric.ConnectionsReached").items, 12.0);
    // A private note reaches its author's 3 sockets; a public one every socket, found in the index.
    assert_eq!(per(&private, "notifier.post").calls, 3.0, "{private:#?}");
    assert_eq!(per(&private, "connections.connections_of").calls, 1.0);
    assert_eq!(per(&private, "connections.all_connections").calls, 0.0);
    assert_eq!(per(&public, "notifier.post").calls, 12.0, "{public:#?}");
    assert_eq!(per(&public, "connections.all_connections").calls, 1.0);
    assert_eq!(per(&public, "connections.all_connections").items, 12.0);

    // The text report draws the table; --cost needs dev's counters.
    let run = dev
        .cli()
        .args(["load", "--local", &dev.api_url, "--cost"])
        .args([
            "--rate",
            "50",
            "--total",
            "4",
            "--users",
            "2",
            "--sockets",
            "2",
        ])
        .args(["--public-ratio", "0"])
        .run()
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("per note, as counted by notesctl dev's ports (4 private; 2 sockets)"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("notifier.post"), "{}", run.stdout);
    let run = notesctl_tests::cli::Cli::new()
        .args(["load", "--stage", "nowhere", "--yes", "--cost"])
        .env("NOTESCTL_LOAD_PASSWORD", "long-enough-password")
        .run()
        .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--local"), "{}", run.stderr);
    let run = dev
        .cli()
        .env("NOTESCTL_DEV_TOKEN", "not-this-runs-token")
        .args(["load", "--local", &dev.api_url, "--cost", "--total", "2"])
        .run()
        .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("did not give its counters (HTTP 403"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("signing in"),
        "refused before any user is made: {}",
        run.stderr
    );
}

/// `load --yes` without `--local` writes to a deployed stage: it needs the stage named, not
/// production by default, and refuses in one line before any call.
#[tokio::test]
async fn load_on_a_deployed_stage_needs_the_stage_named() {
    let run = notesctl_tests::cli::Cli::new()
        .args(["load", "--yes"])
        .env("NOTESCTL_LOAD_PASSWORD", "long-enough-password")
        .run()
        .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(
        run.stderr.trim(),
        "error: pass --stage (this writes to a deployed stage)"
    );
}

/// Ctrl-C in the middle of a run stops the sending, deletes every note made so far as the end of a
/// run does, and exits 1 saying it was interrupted.
#[tokio::test]
async fn an_interrupted_load_deletes_its_notes() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &[]).await;
    let child = dev
        .cli()
        .args(["load", "--local", &dev.api_url])
        .args(["--rate", "40", "--duration", "120s", "--users", "2"])
        .args(["--sockets", "2", "--public-ratio", "1", "--output", "json"])
        .spawn_in(dir.path());
    let pid = child.id().expect("running");
    // Wait on progress, not on a clock: some notes are in the feed.
    let deadline = Instant::now() + Duration::from_secs(60);
    while public_feed(&dev).await.len() < 10 {
        assert!(Instant::now() < deadline, "the load never got going");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("load ends soon after Ctrl-C")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let report: LoadReport = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{stderr}", String::from_utf8_lossy(&out.stdout)));
    assert!(
        report
            .problem
            .as_deref()
            .is_some_and(|p| p.contains("interrupted")),
        "{report:?}"
    );
    assert!(report.cleanup.deleted >= 10, "{:?}", report.cleanup);
    assert_eq!(report.cleanup.left, 0, "{:?}", report.cleanup);
    assert!(
        public_feed(&dev).await.is_empty(),
        "the interrupted load's notes are gone"
    );
}

/// Near `notesctl dev`'s `--max-connections` a run warns up front with the flag that raises the
/// cap; past it, the sockets dev refused are named as dev's cap (exit 2), not as the app failing.
#[tokio::test]
async fn a_run_past_devs_connection_cap_names_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &["--max-connections", "64"]).await;
    let (code, report) = dev
        .cli()
        .args(["load", "--local", &dev.api_url])
        .args(["--rate", "20", "--total", "10", "--users", "8"])
        .args(["--sockets", "48"])
        .json::<LoadReport>()
        .await;
    assert_eq!(code, 0, "{report:#?}");
    assert_eq!(report.notes.len(), 1, "{report:#?}");
    assert!(
        report.notes[0].contains("at least 56 connections")
            && report.notes[0].contains("dev serves 64 at once")
            && report.notes[0].contains("`notesctl dev --max-connections 128`"),
        "{}",
        report.notes[0]
    );
    assert_eq!(report.steps[0].saved, 10, "under the cap nothing fails");

    let run = dev
        .cli()
        .args(["load", "--local", &dev.api_url])
        .args(["--rate", "20", "--total", "10", "--users", "8"])
        .args(["--sockets", "100"])
        .run()
        .await;
    assert_eq!(run.code, 2, "{run:?}");
    let last = run.stderr.trim().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: dev refused ")
            && last.contains("connections past its --max-connections (64)")
            && last.contains("`notesctl dev --max-connections 256`"),
        "{}",
        run.stderr
    );
}
