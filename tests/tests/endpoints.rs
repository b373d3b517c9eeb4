//! Where the commands send their calls: a server that is not AWS gets one line a person can act
//! on, never a dump of the SDK's error; and `AWS_ENDPOINT_URL_<SERVICE>` sends one service
//! elsewhere while `AWS_ENDPOINT_URL` takes the rest.

use notesctl::commands::status::StatusReport;
use notesctl_tests::cli::Cli;
use notesctl_tests::moto;
use notesctl_tests::stub::{Answer, Stub};

fn templates() -> String {
    notesctl_tests::workspace_root()
        .join("templates")
        .display()
        .to_string()
}

#[tokio::test]
async fn a_server_that_is_not_aws_gets_one_line_from_every_command() {
    let stub = Stub::start(|_| Answer::html_404()).await;
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "<p>hi</p>").unwrap();
    let site = site.path().to_str().unwrap().to_owned();
    let templates = templates();
    let commands: Vec<Vec<&str>> = vec![
        vec![
            "deploy",
            "--yes",
            "--stack",
            "event",
            "--templates",
            &templates,
        ],
        vec!["outputs"],
        vec!["ws-url"],
        vec!["status"],
        vec!["destroy", "--yes"],
        vec!["queue-depth"],
        vec!["redrive-dlq", "--yes"],
        vec!["tail", "save"],
        vec!["alarms"],
        vec!["sync-frontend", &site],
        vec!["invalidate", "--distribution-id", "E2EXAMPLE", "--wait"],
    ];
    let mut wrong = Vec::new();
    for args in &commands {
        let run = Cli::new()
            .args(["--quiet", "--stage", "nx", "--region", "us-east-1"])
            .args(["--endpoint-url", &stub.endpoint])
            .args(args.iter().copied())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .run()
            .await;
        let lines: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        let ok = run.code == 2
            && lines.len() == 1
            && lines[0].chars().count() < 200
            && lines[0].contains("the endpoint answered HTTP 404 (text/html), not ")
            && lines[0].contains("--endpoint-url");
        if !ok {
            wrong.push(format!(
                "{}: exit {}\n{}",
                args.join(" "),
                run.code,
                run.stderr
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(
        stub.heads().len() >= commands.len(),
        "every command reached the server"
    );
}

/// CBOR: a text string.
fn text(s: &str) -> Vec<u8> {
    let mut out = match s.len() {
        n @ 0..24 => vec![0x60 + n as u8],
        n @ 24..256 => vec![0x78, n as u8],
        n => panic!("a {n}-byte string"),
    };
    out.extend_from_slice(s.as_bytes());
    out
}

/// CBOR: DescribeAlarms' answer with these alarms (name, state), as CloudWatch's rpc-v2-cbor has it.
fn described(alarms: &[(String, &str)]) -> Vec<u8> {
    let mut out = vec![0xA1];
    out.extend(text("MetricAlarms"));
    out.push(0x80 + alarms.len() as u8);
    for (name, state) in alarms {
        out.push(0xA3);
        for (k, v) in [
            ("AlarmName", name.as_str()),
            ("StateValue", *state),
            (
                "StateReason",
                "Threshold Crossed: 1 datapoint [3.0] was greater than 0.0",
            ),
        ] {
            out.extend(text(k));
            out.extend(text(v));
        }
    }
    out
}

#[tokio::test]
async fn cloudwatch_goes_to_its_own_endpoint_and_the_rest_to_moto() {
    let stage = notesctl_tests::unique("ep");
    let (sqs, _, dlq) = moto::stage_queues(&stage).await;
    moto::fill_queue(&sqs, &dlq, 2, |i, m| m.message_body(format!("{i}"))).await;
    let names: Vec<String> = notesctl::aws::alarms::alarm_specs(&stage, 100.0)
        .into_iter()
        .map(|s| s.name)
        .collect();
    let firing = vec![(names[1].clone(), "ALARM"), (names[0].clone(), "OK")];
    let cloudwatch = Stub::start(move |req| {
        let cbor = |body| Answer {
            status: 200,
            content_type: "application/cbor",
            headers: vec![("smithy-protocol", "rpc-v2-cbor".into())],
            body,
        };
        if req.header("smithy-protocol") != Some("rpc-v2-cbor") {
            Answer::html_404()
        } else if req.head.contains("/operation/DescribeAlarms ") {
            cbor(described(&firing))
        } else if req.head.contains("/operation/GetMetricStatistics ") {
            // No datapoints yet (the queues' oldest-message age).
            let mut body = vec![0xA1];
            body.extend(text("Datapoints"));
            body.push(0x80);
            cbor(body)
        } else {
            Answer::html_404()
        }
    })
    .await;
    let m = moto::shared().await;
    let mut cli = Cli::new().args(["--stage", &stage, "--region", "us-east-1"]);
    for (k, v) in m.env() {
        cli = cli.env(&k, &v);
    }
    let (code, v) = cli
        .env("AWS_ENDPOINT_URL_CLOUDWATCH", &cloudwatch.endpoint)
        .args(["status"])
        .json::<StatusReport>()
        .await;
    assert_eq!(code, 1, "an alarm fires: {v:?}");
    assert!(v.notes.iter().all(|n| !n.starts_with("alarms:")), "{v:?}");
    let states: Vec<(&str, &str)> = v
        .alarms
        .iter()
        .map(|a| (a.name.as_str(), a.state.as_str()))
        .collect();
    assert_eq!(
        states,
        [(names[0].as_str(), "OK"), (names[1].as_str(), "ALARM")]
    );
    assert_eq!(
        v.queues.as_ref().map(|q| q.dlq.visible),
        Some(2),
        "SQS went to moto: {v:?}"
    );
    let heads = cloudwatch.heads();
    assert!(
        heads
            .iter()
            .any(|h| h.contains("/operation/DescribeAlarms "))
            && heads
                .iter()
                .all(|h| h.starts_with("POST /service/GraniteServiceVersion20100801/operation/")),
        "CloudWatch, and only CloudWatch, came here: {heads:?}"
    );
}

/// The access key and region a request was signed with (its SigV4 credential scope).
fn signed_as(r: &notesctl_tests::proxy::Request) -> (String, String) {
    let auth = r
        .headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("an unsigned request: {}", r.line));
    let scope = auth
        .split("Credential=")
        .nth(1)
        .and_then(|c| c.split(',').next())
        .unwrap_or_else(|| panic!("no credential scope in {auth}"));
    let parts: Vec<&str> = scope.split('/').collect();
    (parts[0].to_owned(), parts[2].to_owned())
}

/// `--profile` picks the AWS profile — its credentials and its region — from the config and
/// credentials files, over AWS_PROFILE: two profiles that differ in both, and the requests that
/// reach moto are signed with the chosen one's key for its region.
#[tokio::test]
async fn profile_selects_the_credentials_and_the_region() {
    let stage = notesctl_tests::unique("pf");
    moto::stage_queues(&stage).await;
    let files = tempfile::tempdir().unwrap();
    let config = files.path().join("config");
    let credentials = files.path().join("credentials");
    std::fs::write(
        &config,
        "[profile a]\nregion = eu-west-1\n\n[profile b]\nregion = us-east-1\n",
    )
    .unwrap();
    std::fs::write(
        &credentials,
        "[a]\naws_access_key_id = AKIDPROFILEA\naws_secret_access_key = secret-a\n\n\
         [b]\naws_access_key_id = AKIDPROFILEB\naws_secret_access_key = secret-b\n",
    )
    .unwrap();
    let m = moto::shared().await;
    let depth = async |profile: &[&str], env_profile: Option<&str>| {
        let log = notesctl_tests::proxy::RequestLog::start(&m.endpoint).await;
        let mut cli = Cli::new()
            .args(["--stage", &stage, "--endpoint-url", &log.endpoint])
            .args(profile.iter().copied())
            .args(["queue-depth"])
            .env("AWS_CONFIG_FILE", config.to_str().unwrap())
            .env("AWS_SHARED_CREDENTIALS_FILE", credentials.to_str().unwrap())
            .env("AWS_EC2_METADATA_DISABLED", "true");
        for key in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_PROFILE",
            "AWS_ENDPOINT_URL",
        ] {
            cli = cli.env_remove(key);
        }
        if let Some(p) = env_profile {
            cli = cli.env("AWS_PROFILE", p);
        }
        let run = cli.run().await;
        let signed: Vec<(String, String)> = log.requests().iter().map(signed_as).collect();
        assert!(!signed.is_empty(), "no request reached moto: {run:?}");
        (run, signed)
    };
    let b = ("AKIDPROFILEB".to_owned(), "us-east-1".to_owned());
    let a = ("AKIDPROFILEA".to_owned(), "eu-west-1".to_owned());

    // Profile b, whose region (us-east-1) holds the stage's queues.
    let (run, signed) = depth(&["--profile", "b"], None).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains(&format!("{stage}-note-processing-queue")),
        "{}",
        run.stdout
    );
    assert!(signed.iter().all(|s| *s == b), "{signed:?}");

    // --profile over AWS_PROFILE.
    let (run, signed) = depth(&["--profile", "b"], Some("a")).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(signed.iter().all(|s| *s == b), "{signed:?}");

    // Profile a: its key, its region — where this stage has no queues.
    let (run, signed) = depth(&["--profile", "a"], None).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("does not exist"), "{}", run.stderr);
    assert!(signed.iter().all(|s| *s == a), "{signed:?}");
}

/// CBOR: GetMetricData's answer with these series (id, points of epoch seconds and values).
fn metric_data(series: &[(String, Vec<(u32, f64)>)]) -> Vec<u8> {
    let mut out = vec![0xA1];
    out.extend(text("MetricDataResults"));
    assert!(series.len() < 24);
    out.push(0x80 + series.len() as u8);
    for (id, points) in series {
        out.push(0xA3);
        out.extend(text("Id"));
        out.extend(text(id));
        out.extend(text("Timestamps"));
        out.push(0x80 + points.len() as u8);
        for (t, _) in points {
            out.extend([0xC1, 0x1A]);
            out.extend(t.to_be_bytes());
        }
        out.extend(text("Values"));
        out.push(0x80 + points.len() as u8);
        for (_, v) in points {
            out.push(0xFB);
            out.extend(v.to_be_bytes());
        }
    }
    out
}

/// Where `key` (a CBOR text string) occurs in `body`: the offsets just after it.
fn after_key(body: &[u8], key: &str) -> Vec<usize> {
    let key = text(key);
    body.windows(key.len())
        .enumerate()
        .filter(|(_, w)| *w == key.as_slice())
        .map(|(i, _)| i + key.len())
        .collect()
}

/// A CBOR number at `at` (an unsigned integer or a float, after a timestamp's tag 1 if any).
fn number_at(body: &[u8], mut at: usize) -> f64 {
    if body[at] == 0xC1 {
        at += 1;
    }
    let be = |n: usize| body[at + 1..at + 1 + n].to_vec();
    match body[at] {
        b @ 0x00..=0x17 => f64::from(b),
        0x18 => f64::from(body[at + 1]),
        0x19 => f64::from(u16::from_be_bytes(be(2).try_into().unwrap())),
        0x1A => f64::from(u32::from_be_bytes(be(4).try_into().unwrap())),
        0x1B => u64::from_be_bytes(be(8).try_into().unwrap()) as f64,
        0xFA => f64::from(f32::from_be_bytes(be(4).try_into().unwrap())),
        0xFB => f64::from_be_bytes(be(8).try_into().unwrap()),
        other => panic!("not a number: {other:#x}"),
    }
}

/// `status` gains a line per area from the metrics `notesctl metrics` reads, over the last 15
/// minutes: one GetMetricData over a 15-minute window in 5-minute periods, each area's counts summed
/// and the rows past their threshold named (CloudWatch answered by a stub speaking its CBOR).
#[tokio::test]
async fn status_shows_the_last_15_minutes_per_area() {
    let stage = notesctl_tests::unique("st");
    let specs = notesctl::commands::metrics::aws::specs(
        &stage,
        None,
        notesctl::aws::alarms::DEFAULT_QUEUE_DEPTH,
    );
    let id = |label: &str| {
        format!(
            "m{}",
            specs
                .iter()
                .position(|s| s.label == label)
                .unwrap_or_else(|| panic!("no row {label}"))
        )
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    let two = |a: f64, b: f64| vec![(now - 600, a), (now - 300, b)];
    let series = vec![
        (id("notes-publish invocations"), two(5.0, 7.0)),
        (id("notes-save invocations"), two(5.0, 7.0)),
        (id("notes-save errors"), two(0.0, 2.0)),
        (id("sent"), two(6.0, 6.0)),
        (id("received"), two(6.0, 6.0)),
        (id("deleted"), two(5.0, 5.0)),
        (
            id(&format!("{stage}-note-created-to-queue matched")),
            two(5.0, 7.0),
        ),
        (id("notes published"), two(5.0, 7.0)),
        (id("notes saved"), two(5.0, 5.0)),
        (id("notes failed (store)"), two(0.0, 2.0)),
    ];
    let answer = metric_data(&series);
    let cloudwatch = Stub::start(move |req| {
        let cbor = |body| Answer {
            status: 200,
            content_type: "application/cbor",
            headers: vec![("smithy-protocol", "rpc-v2-cbor".into())],
            body,
        };
        if req.head.contains("/operation/GetMetricData ") {
            cbor(answer.clone())
        } else if req.head.contains("/operation/DescribeAlarms ") {
            cbor(described(&[]))
        } else if req.head.contains("/operation/GetMetricStatistics ") {
            let mut body = vec![0xA1];
            body.extend(text("Datapoints"));
            body.push(0x80);
            cbor(body)
        } else {
            Answer::html_404()
        }
    })
    .await;
    let m = moto::shared().await;
    let status = |json: bool| {
        let mut cli = Cli::new().args(["--stage", &stage, "--region", "us-east-1"]);
        for (k, v) in m.env() {
            cli = cli.env(&k, &v);
        }
        if json {
            cli = cli.args(["--output", "json"]);
        }
        cli.env("AWS_ENDPOINT_URL_CLOUDWATCH", &cloudwatch.endpoint)
            .args(["status"])
            .run()
    };
    let run = status(true).await;
    let v: StatusReport = run.json();
    assert_eq!(run.code, 0, "{v:?}");
    let lines = [
        "functions: 24 invocations, 2 errors, 0 throttles — past threshold: notes-save errors",
        "queue: 12 sent, 12 received, 10 deleted",
        "bus: 12 matched, 0 failed invocations",
        "app: 12 notes published, 10 saved, 2 failed — past threshold: notes failed (store)",
    ];
    assert_eq!(v.metrics, lines, "{v:?}");
    assert!(v.notes.iter().all(|n| !n.starts_with("metrics:")), "{v:?}");

    // One GetMetricData: the last 15 minutes, in 5-minute periods.
    let asked: Vec<Vec<u8>> = cloudwatch
        .requests()
        .into_iter()
        .filter(|(head, _)| head.contains("/operation/GetMetricData "))
        .map(|(_, body)| body)
        .collect();
    assert_eq!(asked.len(), 1);
    let body = &asked[0];
    let time = |key: &str| number_at(body, after_key(body, key)[0]);
    assert_eq!(time("EndTime") - time("StartTime"), 900.0);
    assert!((time("EndTime") - f64::from(now)).abs() < 60.0);
    let periods: Vec<f64> = after_key(body, "Period")
        .into_iter()
        .map(|at| number_at(body, at))
        .collect();
    assert_eq!(periods.len(), specs.len(), "every row asked");
    assert!(periods.iter().all(|p| *p == 300.0), "{periods:?}");

    let screen = status(false).await.stdout;
    let shown = format!("LAST 15 MINUTES\n  {}\n", lines.join("\n  "));
    assert!(screen.contains(&shown), "{screen}");
}

/// The protected-stage rule with the stage names of the help examples and the README: `load --yes`
/// and `destroy --yes` refuse `prod` and `production` in one line before any call (the server here
/// counts every request), `--force` / `--confirm-stage` let them through to the server, and a stage
/// that is not protected goes through as before; `smoke` is never refused. Commands that write
/// refuse without `--stage`.
#[tokio::test]
async fn protected_stages_are_refused_before_any_call() {
    let stub = Stub::start(|_| Answer::html_404()).await;
    let run = async |stage: Option<&str>, args: &[&str]| {
        let mut cli = Cli::new().args(["--quiet", "--region", "us-east-1"]);
        if let Some(stage) = stage {
            cli = cli.args(["--stage", stage]);
        }
        cli.args(["--endpoint-url", &stub.endpoint])
            .args(args.iter().copied())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("NOTESCTL_LOAD_PASSWORD", "a long enough password")
            .env("NOTESCTL_SMOKE_PASSWORD", "a long enough password")
            .run()
            .await
    };
    let calls = || stub.heads().len();
    for stage in ["prod", "production", "prod-eu"] {
        for (args, said) in [
            (&["load", "--yes"][..], "pass --force beside --yes"),
            (
                &["destroy", "--yes"],
                &*format!("pass --confirm-stage {stage}"),
            ),
            (
                &["destroy", "--yes", "--confirm-stage", "staging"],
                "is not the stage being destroyed",
            ),
        ] {
            let before = calls();
            let refused = run(Some(stage), args).await;
            assert_eq!(refused.code, 2, "{stage} {args:?}: {refused:?}");
            assert!(
                refused.stderr.contains(&format!("{stage:?}")) && refused.stderr.contains(said),
                "{stage} {args:?}: {}",
                refused.stderr
            );
            assert_eq!(
                refused.stderr.trim().lines().count(),
                1,
                "{}",
                refused.stderr
            );
            assert_eq!(calls(), before, "{stage} {args:?}: refused before any call");
        }
        // smoke is the check a protected stage gets after every deploy: never refused for it.
        for args in [
            &["load", "--yes", "--force"][..],
            &["destroy", "--yes", "--confirm-stage", stage],
            &["smoke"],
        ] {
            let before = calls();
            let through = run(Some(stage), args).await;
            assert_eq!(through.code, 2, "{through:?}");
            assert!(calls() > before, "{stage} {args:?} reached the server");
        }
    }
    for args in [&["load", "--yes"][..], &["destroy", "--yes"]] {
        let before = calls();
        run(Some("staging"), args).await;
        assert!(calls() > before, "staging {args:?} reached the server");
    }
    for args in [
        &["deploy", "--yes"][..],
        &["destroy", "--yes"],
        &["rollback", "--yes"],
        &["alarms"],
        &["invalidate"],
        &["redrive-dlq", "--yes"],
        &["migrate", "public-feed"],
        &["smoke"],
        &["load", "--yes"],
    ] {
        let before = calls();
        let refused = run(None, args).await;
        assert_eq!(refused.code, 2, "{args:?}: {refused:?}");
        assert_eq!(
            refused.stderr.trim(),
            "error: pass --stage (this writes to a deployed stage)",
            "{args:?}"
        );
        assert_eq!(calls(), before, "{args:?}");
    }
}
