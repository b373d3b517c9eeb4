//! An endpoint that accepts connections, reads what comes and never answers: every command that
//! calls it ends, well within a minute, with exit 2 and a line naming the address where nothing
//! answered — after saying each retry on stderr — instead of hanging silently. AWS commands through
//! `--endpoint-url`, the app client through `--local`.

use std::time::{Duration, Instant};

use notesctl_tests::cli::{Cli, Run};
use tokio::io::AsyncReadExt;

/// A listener on 127.0.0.1 that accepts, reads and never writes; its port. The connections stay
/// open as long as the test runs.
async fn silent_listener() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {}
                // Held open after the client stops sending, never answered.
                std::future::pending::<()>().await;
            });
        }
    });
    port
}

/// The whole run: every command at once, each with this much time before it counts as hung.
const BOUND: Duration = Duration::from_secs(40);

fn cli(args: &[&str]) -> Cli {
    Cli::new()
        .args(["--stage", "hangs"])
        .args(args.iter().copied())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("NOTESCTL_DEV_TOKEN", "hangs-test-token")
}

/// Runs every command at once; each must end within [`BOUND`] with exit 2, nothing on stdout, a
/// retry line and the final "nothing answered at" line naming the address.
async fn each_ends_saying_nothing_answered(port: u16, commands: Vec<(String, Cli)>) {
    let address = format!("127.0.0.1:{port}");
    let started = Instant::now();
    let runs = futures::future::join_all(commands.into_iter().map(|(name, cli)| async move {
        let at = Instant::now();
        (name, cli.run_within(BOUND).await, at.elapsed())
    }))
    .await;
    let mut hung = Vec::new();
    for (name, run, took) in runs {
        let Some(Run {
            code,
            stdout,
            stderr,
        }) = run
        else {
            hung.push(name);
            continue;
        };
        assert_eq!(
            code, 2,
            "{name}: exit {code}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        assert!(
            stderr.contains(&format!("nothing answered at {address}")),
            "{name}: no line saying nothing answered at {address}:\n{stderr}"
        );
        assert!(
            stderr.contains(&format!("no answer from {address} in 5 s, retrying 2/3")),
            "{name}: the retries are not said:\n{stderr}"
        );
        assert!(
            stdout.trim().is_empty(),
            "{name}: a failure is not a result: stdout:\n{stdout}"
        );
        assert!(
            took < Duration::from_secs(30),
            "{name} took {took:?} (three unanswered attempts of 5 s and the backoff between)"
        );
    }
    assert!(
        hung.is_empty(),
        "still running after {BOUND:?}, killed: {hung:?} (whole run {:?})",
        started.elapsed()
    );
}

#[tokio::test]
async fn aws_commands_end_when_the_endpoint_never_answers() {
    let port = silent_listener().await;
    let url = format!("http://127.0.0.1:{port}");
    let commands = [
        vec!["queue-depth"],
        vec!["status"],
        vec!["history"],
        vec!["destroy", "--yes"],
        vec!["tail", "save"],
        vec!["metrics"],
    ]
    .into_iter()
    .map(|args| {
        let mut all = vec!["--endpoint-url", url.as_str()];
        all.extend(args.iter().copied());
        (args.join(" "), cli(&all))
    })
    .collect();
    each_ends_saying_nothing_answered(port, commands).await;
}

#[tokio::test]
async fn the_app_client_ends_when_dev_never_answers() {
    let port = silent_listener().await;
    let url = format!("http://127.0.0.1:{port}");
    let commands = vec![
        (
            "doctor --local".to_owned(),
            cli(&["doctor", "--local", &url]),
        ),
        (
            "load --local --total 1".to_owned(),
            cli(&["load", "--local", &url, "--total", "1"]),
        ),
    ];
    each_ends_saying_nothing_answered(port, commands).await;
}

/// `-q` keeps the retry lines off stderr; the error itself still comes.
#[tokio::test]
async fn quiet_keeps_only_the_error() {
    let port = silent_listener().await;
    let url = format!("http://127.0.0.1:{port}");
    let run = cli(&["-q", "--endpoint-url", &url, "queue-depth"])
        .run_within(BOUND)
        .await
        .expect("queue-depth -q ended");
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(!run.stderr.contains("retrying"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("nothing answered at 127.0.0.1:{port}")),
        "{}",
        run.stderr
    );
}
