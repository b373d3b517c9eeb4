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
