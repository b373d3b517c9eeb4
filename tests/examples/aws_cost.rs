//! What one note costs, measured twice and priced: `notesctl load --local --cost` against `dev` (what
//! each port did per note), and the handlers on their AWS adapters against moto with every SDK
//! request counted (`notesctl_tests::aws_cost`): requests per note by service and operation,
//! DynamoDB capacity units worked out from the items, invocations and their run time. From those
//! counts and AWS's published on-demand prices (us-east-1, in [`PRICES`]), the cost per million
//! private and public notes. Writes the section "cost" of BENCHMARKS.md; docs/CAPACITY.md quotes it.
//!
//! Run with `scripts/bench.sh cost` (`NOTES=`, `SOCKETS=` override).

use std::collections::BTreeMap;

use notesctl::commands::load::{LoadReport, PhaseCost};
use notesctl_tests::aws_cost::{Measured, measure};

use notesctl_tests::dev::DevServer;

/// On-demand prices in US dollars (us-east-1), per unit as named, as AWS publishes them on each
/// service's pricing page (checked 2026-12-02). Free tiers are left out.
const PRICES: &[(&str, f64, &str)] = &[
    (
        "lambda_request",
        0.20 / 1e6,
        "Lambda: $0.20 per million requests",
    ),
    (
        "lambda_gb_second_arm64",
        0.000_013_333_4,
        "Lambda (arm64): $0.0000133334 per GB-second",
    ),
    (
        "dynamodb_write_unit",
        0.625 / 1e6,
        "DynamoDB on-demand: $0.625 per million write request units",
    ),
    (
        "dynamodb_read_unit",
        0.125 / 1e6,
        "DynamoDB on-demand: $0.125 per million read request units",
    ),
    (
        "eventbridge_event",
        1.00 / 1e6,
        "EventBridge: $1.00 per million custom events put (per 64 KB)",
    ),
    (
        "sqs_request",
        0.40 / 1e6,
        "SQS standard: $0.40 per million requests (per 64 KB)",
    ),
    (
        "http_api_request",
        1.00 / 1e6,
        "API Gateway HTTP API: $1.00 per million requests",
    ),
    (
        "websocket_message",
        1.00 / 1e6,
        "API Gateway WebSocket: $1.00 per million messages (per 32 KB)",
    ),
];

/// A function's default memory in GB: MemorySize (templates/notes.yaml) and NotifyMemorySize
/// (templates/websocket.yaml).
fn memory_gb(function: &str) -> f64 {
    if function == "websocket-notify" {
        1.0
    } else {
        0.25
    }
}

fn price(name: &str) -> f64 {
    PRICES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, p, _)| *p)
        .expect("a known price")
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One kind of note on AWS: each line of the bill per note, in dollars per million notes.
fn bill(m: &Measured) -> Vec<(String, f64, f64)> {
    let n = m.notes as f64;
    let invocations: u64 = m.invocations.values().sum();
    let gb_seconds: f64 = m
        .run_time
        .iter()
        .map(|(f, d)| d.as_secs_f64() * memory_gb(f))
        .sum();
    // EventBridge delivers note-created to the queue with one SendMessage per event: SQS bills it.
    let sqs = m.aws.requests("SQS.ReceiveMessage") + m.aws.requests("SQS.DeleteMessageBatch");
    let sends = m.aws.event_entries as f64 / 2.0;
    let lines = [
        ("HTTP API: POST /notes", 1.0, price("http_api_request")),
        (
            "Lambda requests",
            invocations as f64 / n,
            price("lambda_request"),
        ),
        (
            "Lambda GB-seconds (256 MB; notify 1,024 MB)",
            gb_seconds / n,
            price("lambda_gb_second_arm64"),
        ),
        (
            "DynamoDB write units",
            m.aws.write_units / n,
            price("dynamodb_write_unit"),
        ),
        (
            "DynamoDB read units",
            m.aws.read_units / n,
            price("dynamodb_read_unit"),
        ),
        (
            "EventBridge events put",
            m.aws.event_entries as f64 / n,
            price("eventbridge_event"),
        ),
        (
            "SQS requests (rule's send, receive, delete)",
            (sends + sqs as f64) / n,
            price("sqs_request"),
        ),
        (
            "WebSocket messages (PostToConnection)",
            m.aws.requests("ApiGatewayManagementApi.PostToConnection") as f64 / n,
            price("websocket_message"),
        ),
    ];
    lines
        .into_iter()
        .map(|(what, per_note, unit)| (what.to_owned(), per_note, per_note * unit * 1e6))
        .collect()
}

fn aws_table(private: &Measured, public: &Measured) -> String {
    let mut out = String::from("| per note | private | public |\n|---|---:|---:|\n");
    let names: std::collections::BTreeSet<&String> = private
        .aws
        .requests
        .keys()
        .chain(public.aws.requests.keys())
        .collect();
    for name in names {
        let per = |m: &Measured| m.aws.requests(name) as f64 / m.notes as f64;
        out += &format!("| `{name}` | {:.2} | {:.2} |\n", per(private), per(public));
    }
    for (m, kind) in [(private, "private"), (public, "public")] {
        for (what, n) in &m.aws.refused {
            out += &format!(
                "| refused and retried ({kind}): `{what}` | {:.2} | |\n",
                *n as f64 / m.notes as f64
            );
        }
    }
    let per = |m: &Measured, v: f64| v / m.notes as f64;
    out += &format!(
        "| DynamoDB write units | {:.2} | {:.2} |\n| DynamoDB read units | {:.2} | {:.2} |\n| EventBridge entries | {:.2} | {:.2} |\n| largest item written | {} B | {} B |\n| bytes read per connection reached | {:.0} B | {:.0} B |\n",
        per(private, private.aws.write_units),
        per(public, public.aws.write_units),
        per(private, private.aws.read_units),
        per(public, public.aws.read_units),
        per(private, private.aws.event_entries as f64),
        per(public, public.aws.event_entries as f64),
        private.aws.largest_item,
        public.aws.largest_item,
        private.aws.bytes_read as f64 / (private.notes * private.own.max(1)) as f64,
        public.aws.bytes_read as f64 / (public.notes * public.sockets.max(1)) as f64,
    );
    let functions: std::collections::BTreeSet<&&str> = private.invocations.keys().collect();
    for f in functions {
        let inv = |m: &Measured| m.invocations.get(f).copied().unwrap_or(0) as f64 / m.notes as f64;
        let ms = |m: &Measured| {
            m.run_time.get(f).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
                / m.invocations.get(f).copied().unwrap_or(1).max(1) as f64
        };
        out += &format!(
            "| `{f}` invocations (mean run time) | {:.2} ({:.1} ms) | {:.2} ({:.1} ms) |\n",
            inv(private),
            ms(private),
            inv(public),
            ms(public)
        );
    }
    out
}

fn bill_table(private: &Measured, public: &Measured) -> String {
    let (a, b) = (bill(private), bill(public));
    let mut out = String::from(
        "| line | private: per note | $ per million | public: per note | $ per million |\n|---|---:|---:|---:|---:|\n",
    );
    for ((what, pa, ca), (_, pb, cb)) in a.iter().zip(&b) {
        out += &format!("| {what} | {pa:.3} | {ca:.2} | {pb:.3} | {cb:.2} |\n");
    }
    let total = |lines: &[(String, f64, f64)]| lines.iter().map(|l| l.2).sum::<f64>();
    out += &format!(
        "| **total** | | **{:.2}** | | **{:.2}** |\n",
        total(&a),
        total(&b)
    );
    out
}

fn dev_table(private: &PhaseCost, public: &PhaseCost) -> String {
    let mut out = String::from(
        "| port operation (dev) | private: calls · records · bytes | public: calls · records · bytes |\n|---|---:|---:|\n",
    );
    let names: std::collections::BTreeSet<&String> = private
        .per_note
        .keys()
        .chain(public.per_note.keys())
        .collect();
    for name in names {
        let cell = |p: &PhaseCost| match p.per_note.get(name) {
            None => "–".to_owned(),
            Some(c) if notesctl::commands::load::counts_time(name) => {
                format!("{:.2} · {:.2} ms", c.calls, c.bytes / 1000.0)
            }
            Some(c) => format!("{:.2} · {:.2} · {:.0} B", c.calls, c.items, c.bytes),
        };
        out += &format!("| `{name}` | {} | {} |\n", cell(private), cell(public));
    }
    out
}

#[tokio::main]
async fn main() {
    let run = notesctl_tests::bench::Run::start();
    notesctl_tests::bench::prefer_release_binary();
    let notes = env("NOTES", 200);
    let sockets = env("SOCKETS", 10);
    let users = 5;

    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &[]).await;
    let (code, report) = dev
        .cli()
        .args(["load", "--local", &dev.api_url, "--cost", "--rate", "100"])
        .args(["--total", &notes.to_string(), "--users", &users.to_string()])
        .args(["--sockets", &sockets.to_string(), "--public-ratio", "0.5"])
        .json::<LoadReport>()
        .await;
    assert_eq!(code, 0, "{report:#?}");
    let cost = report.cost.expect("--cost");
    let (dev_private, dev_public) = (cost.private.unwrap(), cost.public.unwrap());

    let moto = notesctl_tests::moto::shared().await;
    let own = sockets / users;
    let private = measure(moto, notes / 2, sockets, own, false).await;
    let public = measure(moto, notes / 2, sockets, own, true).await;
    let prices: BTreeMap<&str, &str> = PRICES.iter().map(|(n, _, s)| (*n, *s)).collect();
    let body = format!(
        "## What one note costs (issue: per-note counts for private and public notes)\n\n\
`dev` and `load` from `{bin}`. Repeat: `scripts/bench.sh cost` (`NOTES=`, `SOCKETS=` override).\n\n\
### Through the ports, in `dev`: `notesctl load --local --cost --total {notes} --users {users} --sockets {sockets} --public-ratio 0.5`\n\n\
{sockets} sockets over {users} users: a private note reaches its author's {own} sockets, a public one all {sockets}.\n\n\
{dev}\n\
### On AWS's APIs: the handlers on their AWS adapters against moto, every SDK request counted\n\n\
{half} notes of each kind, {sockets} connections ({own} the author's); the harness plays the event source mapping (batches of ten) and the\n\
notify rule. Capacity units are worked out from the items (DynamoDB's sizing rules), run times are in-process with moto\n\
on loopback (AWS's in-region round trips come on top).\n\n\
{aws}\n\
### Priced (on-demand, us-east-1)\n\n\
{bill}\n\
Prices: {prices}.\n",
        bin = notesctl_tests::dev::notesctl_binary().display(),
        dev = dev_table(&dev_private, &dev_public),
        half = notes / 2,
        aws = aws_table(&private, &public),
        bill = bill_table(&private, &public),
        prices = prices.values().copied().collect::<Vec<_>>().join("; "),
    );
    print!("{body}");
    run.write_section("cost", &body);
}
