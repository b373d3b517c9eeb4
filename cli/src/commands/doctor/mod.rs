//! `notesctl doctor [--local]`: the three troubleshooting runbooks of docs/EVENT_FLOW.md — "Notes not
//! saving", "WebSocket not connecting", "Real-time updates not working" — run as checks, in order,
//! each ✓, ✗ or – (could not tell) with its evidence, and for ✗ the next step. It reads what
//! `metrics` reads, the queues as `queue-depth` does, the functions' logs as `tail` does, and meets the
//! app as a user: a doctor user connects a WebSocket and posts a private note, which must come back
//! saved on that socket (and is deleted). Exit 1 when a check fails. On a deployed stage the doctor
//! user's password comes from `NOTESCTL_DOCTOR_PASSWORD`. The doctor user is the stage's own,
//! `notesctl-doctor-{16 hex digits}` derived from the stage and that password (on `dev` without one,
//! its runbook token; see [`crate::names::check_user`]), so nobody can take the name first.

use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::app_client::{Api, connect, endpoints, tls_config};
use crate::commands::metrics::{MetricsArgs, MetricsReport};
use crate::context::{Context, LocalArg, dev_token, parse_duration};
use crate::output::{Exit, Report};

mod logs;
mod realtime;
mod saving;

use logs::logs_check;
use realtime::{notify_dlq, wait_saved};
use saving::notes_not_saving;

const LOCAL_PASSWORD: &str = "notesctl-doctor-local";

#[derive(Debug, Clone, clap::Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub local: LocalArg,
    /// How far back metrics and logs are read (15m, 1h).
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    pub since: Duration,
    /// The doctor user's password (at least 8 characters; it signs up on first use). Required for a
    /// deployed stage; `dev` has a fixed default. Best given in the environment.
    #[arg(long, env = "NOTESCTL_DOCTOR_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Pass,
    Fail,
    /// Could not tell.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Check {
    pub name: String,
    pub verdict: Verdict,
    pub evidence: String,
    /// What to do about a failure (or how to find out, when it could not tell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Runbook {
    pub name: String,
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DoctorReport {
    pub stage: String,
    pub runbooks: Vec<Runbook>,
}

impl Report for DoctorReport {
    fn exit(&self) -> Exit {
        Exit::problem_if(
            self.runbooks
                .iter()
                .flat_map(|r| &r.checks)
                .any(|c| c.verdict == Verdict::Fail),
        )
    }
}

impl fmt::Display for DoctorReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.runbooks.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(f, "{}", r.name)?;
            for c in &r.checks {
                let mark = match c.verdict {
                    Verdict::Pass => '✓',
                    Verdict::Fail => '✗',
                    Verdict::Unknown => '–',
                };
                writeln!(f, "  {mark} {:<44} {}", c.name, c.evidence)?;
                if let Some(next) = &c.next {
                    writeln!(f, "      next: {next}")?;
                }
            }
        }
        let failed = self
            .runbooks
            .iter()
            .flat_map(|r| &r.checks)
            .filter(|c| c.verdict == Verdict::Fail)
            .count();
        write!(
            f,
            "\n{}",
            if failed == 0 {
                "no check failed".to_owned()
            } else {
                format!("{failed} checks failed")
            }
        )
    }
}

fn check(name: &str, verdict: Verdict, evidence: impl Into<String>, next: Option<&str>) -> Check {
    Check {
        name: name.to_owned(),
        verdict,
        evidence: evidence.into(),
        next: next.map(str::to_owned),
    }
}

/// A row's values summed over the window (none: no such row, or no data).
fn total(m: &MetricsReport, label: &str) -> Option<f64> {
    let row = m.rows.iter().find(|r| r.label == label)?;
    (!row.points.is_empty()).then(|| row.points.iter().map(|p| p.v).fold(0.0, |a, b| a + b))
}

pub async fn run(ctx: &Context, args: DoctorArgs) -> anyhow::Result<DoctorReport> {
    let local = args.local.local.is_some();
    let password = match (&args.password, local) {
        (Some(p), _) => Some(p.clone()),
        (None, true) => Some(LOCAL_PASSWORD.to_owned()),
        (None, false) => None,
    };
    let config = ctx.aws_or_local(&args.local).await?;
    let metrics = crate::commands::metrics::run(
        ctx,
        MetricsArgs {
            local: args.local.clone(),
            since: args.since,
            period: "auto".into(),
            watch: false,
        },
    )
    .await;
    // Nothing answers there: every further check would wait as long for nothing.
    let metrics = match metrics {
        Err(e) if crate::patience::no_answer(&e).is_some() => {
            return Err(e.context("the doctor could not examine anything"));
        }
        m => m,
    };
    let metrics_note = metrics.as_ref().err().map(|e| format!("{e:#}"));
    let metrics = metrics.ok();
    let stage = ctx.stage().to_owned();
    let doctor_user = match (&args.password, local) {
        (Some(p), _) => Some(crate::names::check_user("doctor", &stage, p)),
        (None, true) => Some(crate::names::check_user("doctor", &stage, &dev_token()?)),
        (None, false) => None,
    };
    let logs = aws_sdk_cloudwatchlogs::Client::new(&config);

    let saving = notes_not_saving(ctx, local, &config, &metrics, args.since).await;

    // WebSocket not connecting: the URL, a connect with a fresh token, errors in connect's logs.
    let mut ws = Vec::new();
    let mut socket = None;
    let mut session = None;
    match endpoints(ctx, &args.local).await {
        Err(e) => ws.push(check(
            "the WebSocket URL",
            Verdict::Fail,
            format!("{e:#}"),
            Some("deploy the websocket stack, or check --stage and --region"),
        )),
        Ok(target) => {
            ws.push(check(
                "the WebSocket URL",
                Verdict::Pass,
                target.ws.clone(),
                None,
            ));
            let tls = tls_config(target.secure())?;
            let api = Api::new(&target.api, &tls);
            let name = "a connect with a fresh token";
            match (&password, &doctor_user) {
                (None, _) | (_, None) => ws.push(check(name, Verdict::Unknown, "no password for the doctor user", Some("set NOTESCTL_DOCTOR_PASSWORD (at least 8 characters): the doctor signs up as the stage's own notesctl-doctor-… user, named from it"))),
                (Some(password), Some(doctor_user)) => match api.sign_in(doctor_user, password, "NOTESCTL_DOCTOR_PASSWORD").await {
                    Err(e) => ws.push(check(name, Verdict::Fail, format!("signing in: {e:#}"), Some("the auth functions: `notesctl tail login --since 15m`"))),
                    Ok((token, _)) => match connect(&format!("{}?token={token}", target.ws), &tls).await {
                        Ok(s) => {
                            ws.push(check(name, Verdict::Pass, format!("connected as {doctor_user}"), None));
                            socket = Some(s);
                            session = Some((api, token));
                        }
                        Err(e) => ws.push(check(name, Verdict::Fail, format!("{e:#}"), Some("a 401 means the token was refused: the connect function must read the same JWT secret as login"))),
                    },
                },
            }
        }
    }
    ws.push(
        logs_check(
            &format!("no errors in {stage}-websocket-connect's logs"),
            &logs,
            &stage,
            "websocket-connect",
            args.since,
            "refused tokens after a JWT secret change: those clients must log in again; otherwise `notesctl tail connect --since 15m`",
        )
        .await,
    );

    // Real-time updates: a note comes back saved on its author's socket; notify runs cleanly.
    let mut rt = Vec::new();
    let name = "a note reaches its author's socket";
    // Whether notify found the doctor's connection in the registry: the probe came back on it.
    let mut reached = None;
    match (socket.as_mut(), &session) {
        (Some(socket), Some((api, token))) => {
            let started = Instant::now();
            let posted = api
                .call(
                    http::Method::POST,
                    "/notes",
                    Some(token),
                    Some(json!({"content": "notesctl doctor's probe", "isPublic": false})),
                )
                .await;
            match posted {
                Ok((202, v)) => {
                    let id = v["noteId"].as_str().unwrap_or_default().to_owned();
                    let saved = wait_saved(socket, &id, Duration::from_secs(10)).await;
                    reached = saved.then_some(true);
                    rt.push(if saved {
                        check(name, Verdict::Pass, format!("note-saved in {:.0} ms", started.elapsed().as_secs_f64() * 1000.0), None)
                    } else {
                        check(name, Verdict::Fail, "no note-saved within 10 s", Some("the note is queued: see \"Notes not saving\" above; if it was saved, notify and its rule: `notesctl tail notify --since 15m`"))
                    });
                    let _ = api
                        .call(
                            http::Method::DELETE,
                            &format!("/notes/{id}"),
                            Some(token),
                            None,
                        )
                        .await;
                }
                Ok((status, v)) => rt.push(check(
                    name,
                    Verdict::Fail,
                    format!("POST /notes answered {status}: {v}"),
                    Some("`notesctl tail publish --since 15m`"),
                )),
                Err(e) => rt.push(check(name, Verdict::Fail, format!("{e:#}"), None)),
            }
        }
        _ => rt.push(check(
            name,
            Verdict::Unknown,
            "no WebSocket to listen on (see above)",
            None,
        )),
    }
    let name = "notify runs without errors";
    rt.push(match &metrics {
        None => check(name, Verdict::Unknown, metrics_note.clone().unwrap_or_default(), Some("notesctl metrics")),
        Some(m) => {
            let runs = total(m, "websocket-notify invocations").unwrap_or(0.0);
            let errors = total(m, "websocket-notify errors").unwrap_or(0.0);
            let failed = total(m, &format!("{stage}-note-results-to-notify failed invocations")).unwrap_or(0.0);
            if errors > 0.0 || failed > 0.0 {
                check(name, Verdict::Fail, format!("{runs} runs, {errors} errors, {failed} failed deliveries by the rule"), Some(&format!("`notesctl tail notify --since 15m`; undelivered events wait in {stage}-websocket-notify-dlq")))
            } else {
                check(name, Verdict::Pass, format!("{runs} runs, no errors"), None)
            }
        }
    });
    let name = "stale connections are being removed";
    rt.push(
        match metrics
            .as_ref()
            .and_then(|m| total(m, "stale connections removed"))
        {
            Some(n) => check(
                name,
                Verdict::Pass,
                format!("{n} removed in the window"),
                None,
            ),
            None => check(name, Verdict::Unknown, "no data", None),
        },
    );
    rt.insert(2, notify_dlq(&config, &stage, local).await);
    ws.push(match reached {
        Some(_) => check(
            "the connection is in the registry",
            Verdict::Pass,
            "notify found it: the probe note came back on it",
            None,
        ),
        None => check(
            "the connection is in the registry",
            Verdict::Unknown,
            "the probe note did not come back (see below)",
            Some(&format!(
                "rows of {} in {stage}-websocket-connections; `notesctl tail connect --since 15m`",
                doctor_user.as_deref().unwrap_or("the doctor user")
            )),
        ),
    });
    if let Some(mut s) = socket {
        let _ = futures::SinkExt::close(&mut s).await;
    }
    Ok(DoctorReport {
        stage,
        runbooks: vec![
            saving,
            Runbook {
                name: "WebSocket not connecting".into(),
                checks: ws,
            },
            Runbook {
                name: "Real-time updates not working".into(),
                checks: rt,
            },
        ],
    })
}
