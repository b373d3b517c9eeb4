//! `notesctl smoke --local` against a real `notesctl dev`: every step passes (and a second run logs the
//! same user in); with dev's queue held, it fails at `saved`, names that step, and exits 1. Someone
//! who signed up the old fixed name `notesctl-smoke` first no longer stops it; a user it cannot set
//! up is exit 3, not 1; a deployed stage must be named.

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
    // The stage's own smoke user, named from dev's runbook token: not the plain prefix anyone could
    // sign up first.
    let own = notesctl::names::check_user("smoke", "dev", &dev.runbook_token());
    assert_eq!(again.steps[0].detail, format!("logged in as {own}"));
    assert_eq!(again.user, own);
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

/// The old fixed name taken by someone else changes nothing: smoke signs in as the stage's own user,
/// whose name comes from the secret. Asked for the squatted name with `--user`, it cannot log in —
/// and says so as a set-up failure (exit 3, `set_up_failed`), which a pipeline does not roll back
/// for; so is a name sign-up refuses.
#[tokio::test]
async fn a_squatted_name_does_not_stop_smoke_and_a_set_up_failure_is_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &[]).await;
    dev.sign_up("notesctl-smoke", "the squatter's password")
        .await;
    let smoke = async |extra: &[&str]| {
        dev.cli()
            .args(["smoke", "--local", &dev.api_url])
            .args(extra.iter().copied())
            .json::<SmokeReport>()
            .await
    };
    let (code, report) = smoke(&[]).await;
    assert_eq!(code, 0, "{report:?}");
    assert!(!report.set_up_failed);
    assert!(
        report.user.starts_with("notesctl-smoke-") && report.user != "notesctl-smoke",
        "{report:?}"
    );

    let (code, squatted) = smoke(&["--user", "notesctl-smoke"]).await;
    assert_eq!(code, 3, "{squatted:?}");
    assert!(squatted.set_up_failed, "{squatted:?}");
    assert_eq!(squatted.failed.as_deref(), Some("login"));
    assert!(
        squatted.steps[0]
            .detail
            .contains("exists with another password"),
        "{squatted:?}"
    );
    let text = dev
        .cli()
        .args(["smoke", "--local", &dev.api_url, "--user", "notesctl-smoke"])
        .run()
        .await;
    assert_eq!(text.code, 3);
    assert!(
        text.stdout.contains("smoke could not set up at login"),
        "{}",
        text.stdout
    );

    // A name sign-up refuses (mixed scripts) is the set-up's fault too.
    let (code, refused) = smoke(&["--user", "z\u{43E}e-smoke"]).await;
    assert_eq!(code, 3, "{refused:?}");
    assert!(refused.steps[0].detail.contains("400"), "{refused:?}");
    dev.terminate().await;
}

/// `smoke` without `--local` writes to a deployed stage: it needs the stage named, not production by
/// default, and refuses in one line before any call.
#[tokio::test]
async fn smoke_on_a_deployed_stage_needs_the_stage_named() {
    let run = notesctl_tests::cli::Cli::new()
        .args(["smoke"])
        .env("NOTESCTL_SMOKE_PASSWORD", "a long enough password")
        .run()
        .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(
        run.stderr.trim(),
        "error: pass --stage (this writes to a deployed stage)"
    );
}

/// A deployed stage needs the smoke user's password: without NOTESCTL_SMOKE_PASSWORD, `smoke --stage
/// x` stops with exit 2 and one line naming the variable — before it asks anything of AWS (the
/// endpoint here counts every connection; with the password, the same command reaches it).
#[tokio::test]
async fn smoke_on_a_deployed_stage_needs_the_password_before_any_call() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let accepting = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    let smoke = || {
        notesctl_tests::cli::Cli::new()
            .args(["smoke", "--stage", "x", "--region", "us-east-1"])
            .args(["--endpoint-url", &endpoint])
            .env_remove("NOTESCTL_SMOKE_PASSWORD")
            .env_remove("AWS_PROFILE")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
    };
    let run = smoke().run().await;
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.starts_with("error: ") && run.stderr.contains("NOTESCTL_SMOKE_PASSWORD"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout, "");
    assert_eq!(connections.load(Ordering::SeqCst), 0, "no call was made");

    // The control: given the password, the same command goes to the endpoint for the stage's URLs.
    let reached = smoke()
        .env("NOTESCTL_SMOKE_PASSWORD", "a long enough password")
        .run_within(std::time::Duration::from_secs(5))
        .await;
    assert!(connections.load(Ordering::SeqCst) > 0, "{reached:?}");
    accepting.abort();
}

/// A save step that fails (dev's queue held): the note cannot be deleted while it is not stored, so
/// smoke asks again until `--timeout` and then says, in its `delete` step, that the note is left
/// and will be stored once the queue moves — which it is when dev runs without the hold.
#[tokio::test]
async fn a_note_not_stored_by_the_timeout_is_named_as_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &["--hold-queue"]).await;
    let (code, held) = dev
        .cli()
        .args(["smoke", "--local", &dev.api_url, "--timeout", "2s"])
        .json::<SmokeReport>()
        .await;
    assert_eq!(code, 1, "{held:?}");
    assert_eq!(held.failed.as_deref(), Some("saved"));
    assert_eq!(
        names(&held),
        [
            ("login", true),
            ("connect", true),
            ("post", true),
            ("saved", false),
            ("delete", false)
        ]
    );
    let note_id = held.steps[2]
        .detail
        .strip_prefix("202, note ")
        .expect("the note's id")
        .to_owned();
    let delete = &held.steps[4];
    assert!(
        delete
            .detail
            .contains(&format!("DELETE /notes/{note_id} answered 404"))
            && delete.detail.contains("it is left")
            && delete.detail.contains("delete it then"),
        "{held:?}"
    );
    // It asked again until --timeout before giving up.
    assert!(delete.milliseconds >= 1500.0, "{held:?}");
    dev.terminate().await;

    // The queue moves: the note left behind is stored, as the report said.
    let dev = DevServer::start(dir.path(), &[]).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let feed: serde_json::Value = reqwest::get(format!("{}/notes/public", dev.api_url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ids: Vec<&str> = feed["notes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["noteId"].as_str())
            .collect();
        if ids.contains(&note_id.as_str()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{note_id} not stored: {feed}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    dev.terminate().await;
}
