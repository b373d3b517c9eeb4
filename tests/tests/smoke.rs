//! `notesctl smoke --local` against a real `notesctl dev`: every step passes (and a second run logs the
//! same user in); with dev's queue held, it fails at `saved`, names that step, and exits 1.

use notesctl::commands::smoke::SmokeReport;
use notesctl_tests::dev::DevServer;

fn names(r: &SmokeReport) -> Vec<(&str, bool)> {
    r.steps.iter().map(|s| (s.name.as_str(), s.ok)).collect()
}

#[tokio::test]
async fn smoke_passes_against_dev_and_names_the_step_that_fails_when_the_queue_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &[]).await;
    let smoke = async |dev: &DevServer, extra: &[&str]| {
        dev.cli()
            .args(["smoke", "--local", &dev.api_url])
            .args(extra.iter().copied())
            .json::<SmokeReport>()
            .await
    };
    let (code, first) = smoke(&dev, &[]).await;
    assert_eq!(code, 0, "{first:?}");
    assert_eq!(
        names(&first),
        [
            ("login", true),
            ("connect", true),
            ("post", true),
            ("saved", true),
            ("public", true),
            ("delete", true),
            ("deleted", true)
        ]
    );
    assert_eq!(first.failed, None);
    assert!(first.steps[0].detail.contains("signed up"), "{first:?}");
    assert!(first.steps.iter().all(|s| s.milliseconds > 0.0));

    let (code, again) = smoke(&dev, &[]).await;
    assert_eq!(code, 0, "{again:?}");
    assert_eq!(again.steps[0].detail, "logged in as notesctl-smoke");
    // Both notes were deleted: nothing of the check stays in the feed.
    let (_, feed) = dev
        .cli()
        .args(["smoke", "--local", &dev.api_url])
        .json::<SmokeReport>()
        .await;
    assert!(feed.steps[4].detail.starts_with("1 notes"), "{feed:?}");
    dev.terminate().await;

    // The same data, the queue held: the note is accepted but never saved.
    let dev = DevServer::start(dir.path(), &["--hold-queue"]).await;
    let (code, held) = smoke(&dev, &["--timeout", "2s"]).await;
    assert_eq!(code, 1, "{held:?}");
    assert_eq!(held.failed.as_deref(), Some("saved"));
    assert_eq!(
        names(&held)[..4],
        [
            ("login", true),
            ("connect", true),
            ("post", true),
            ("saved", false)
        ]
    );
    assert!(held.steps[3].detail.contains("--timeout"), "{held:?}");
    let text = dev
        .cli()
        .args(["smoke", "--local", &dev.api_url, "--timeout", "1s"])
        .run()
        .await;
    assert_eq!(text.code, 1);
    assert!(
        text.stdout.contains("smoke failed at saved"),
        "{}",
        text.stdout
    );
    dev.terminate().await;
}
