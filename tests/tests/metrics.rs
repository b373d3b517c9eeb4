//! `notesctl metrics --local` against a real `notesctl dev`: the rows are dev's counters over time,
//! and what a load did shows up in them — every note published and saved, no row marked.

use notesctl::commands::load::LoadReport;
use notesctl::commands::metrics::MetricsReport;
use notesctl_tests::dev::DevServer;

#[tokio::test]
async fn metrics_local_shows_what_a_load_did() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &[]).await;
    let (code, load) = dev
        .cli()
        .args([
            "load",
            "--local",
            &dev.api_url,
            "--rate",
            "50",
            "--total",
            "12",
        ])
        .args([
            "--users",
            "3",
            "--sockets",
            "3",
            "--public-ratio",
            "0.5",
            "--keep",
        ])
        .json::<LoadReport>()
        .await;
    assert_eq!(code, 0, "{load:#?}");

    let (code, report) = dev
        .cli()
        .args(["metrics", "--local", &dev.api_url, "--since", "10m"])
        .json::<MetricsReport>()
        .await;
    assert_eq!(code, 0, "nothing over its threshold: {report:#?}");
    assert_eq!((report.source.as_str(), report.period_seconds), ("dev", 10));
    let total = |label: &str| -> f64 {
        let row = report
            .rows
            .iter()
            .find(|r| r.label == label)
            .unwrap_or_else(|| panic!("no row {label}: {report:#?}"));
        row.points.iter().map(|p| p.v).sum()
    };
    assert_eq!(total("notes published"), 12.0);
    assert_eq!(total("notes saved"), 12.0);
    assert_eq!(total("notes-publish invocations"), 12.0);
    assert_eq!(total("notes-save errors"), 0.0);
    assert_eq!(total("sent"), 12.0, "one note-created a note on the queue");
    assert_eq!(total("deleted"), 12.0);
    assert!(total("connections reached") >= 12.0);
    assert!(report.rows.iter().all(|r| !r.over));
    assert!(
        report.notes.iter().any(|n| n.contains("since it started")),
        "the window reaches before dev started: {:?}",
        report.notes
    );

    // Text: one block per area; not a terminal, so numbers instead of sparklines.
    let run = dev
        .cli()
        .args(["metrics", "--local", &dev.api_url, "--since", "1m"])
        .run()
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    for area in ["FUNCTIONS", "QUEUE", "BUS", "WEBSOCKET", "APP"] {
        assert!(run.stdout.contains(area), "{}", run.stdout);
    }
    assert!(
        run.stdout.contains("notesctl dev of stage"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains('▁'), "{}", run.stdout);
}

/// `--watch` with `--output json`: one report a line, again every period (10 s at least), until it
/// is stopped.
#[tokio::test]
async fn metrics_watch_writes_a_report_a_line() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &[]).await;
    let mut child = dev
        .cli()
        .args([
            "metrics",
            "--local",
            &dev.api_url,
            "--since",
            "1m",
            "--watch",
        ])
        .args(["--output", "json"])
        .spawn_in(dir.path());
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut reports = Vec::new();
    let started = std::time::Instant::now();
    while reports.len() < 2 {
        let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
            .await
            .expect("a refresh within 30 s")
            .unwrap()
            .expect("a line");
        let report: MetricsReport = serde_json::from_str(&line).expect("each line is a report");
        reports.push(report);
    }
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(9),
        "refreshed every period (10 s), not in a loop"
    );
    assert!(
        reports
            .iter()
            .all(|r| r.source == "dev" && !r.rows.is_empty())
    );
    let _ = child.kill().await;
}
