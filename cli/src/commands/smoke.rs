//! `notesctl smoke [--local]`: the app end to end, as a user meets it, after a deploy (or against
//! `dev`). A dedicated user signs up (first run) and logs in, opens the WebSocket, posts a public note,
//! waits for its `note-saved` on the socket, finds it in `GET /notes/public`, deletes it and waits for
//! `note-deleted`. Each step is timed; the first that fails stops the run and names itself, and the
//! note is deleted even then when it was posted — once it is stored: a note not stored within
//! `--timeout` (the queue held) is left, and the `delete` step says so. Exit 0 when every step
//! passed, 1 otherwise — but 3 when the check could not set itself up (its user exists with another
//! password, or sign-up refused it): that says nothing about the app, and a pipeline must not roll
//! back for it.
//!
//! The user is the stage's own: `notesctl-smoke-` and 16 hex digits derived from the stage and the
//! password (on `dev` without one, its runbook token), see [`crate::names::check_user`], so nobody
//! without the secret can sign the name up first.

use std::fmt;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::app_client::{Api, Endpoints, Socket, connect, endpoints, expect, tls_config};
use crate::context::{Context, LocalArg, dev_token, parse_duration};
use crate::output::{Exit, Report};

/// The smoke user's password on `dev` when none is given (`dev` is yours alone).
const LOCAL_PASSWORD: &str = "notesctl-smoke-local";
/// How often a delete asks again for a note not stored yet.
const STORED_POLL: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, clap::Args)]
pub struct SmokeArgs {
    #[command(flatten)]
    pub local: LocalArg,
    /// The user the check signs up (on its first run) and logs in as. Default: the stage's own,
    /// `notesctl-smoke-` and 16 hex digits derived from the stage and the password (on `dev` without
    /// one, from its runbook token), which nobody without them can take first.
    #[arg(long)]
    pub user: Option<String>,
    /// The smoke user's password (at least 8 characters). Required for a deployed stage; on `dev`
    /// it defaults to a fixed one. Best given in the environment, not on the command line.
    #[arg(long, env = "NOTESCTL_SMOKE_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// How long each step may take (2s, 30s, 1m).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// One step of the check.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Step {
    /// `login`, `connect`, `post`, `saved`, `public`, `delete`, `deleted`.
    pub name: String,
    pub ok: bool,
    pub milliseconds: f64,
    /// What it saw (the note id, a status) or why it failed.
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SmokeReport {
    /// The API checked.
    pub api_url: String,
    pub websocket_url: String,
    pub steps: Vec<Step>,
    /// The user the check signed in as.
    #[serde(default)]
    pub user: String,
    /// The first step that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    /// The check could not set itself up: its user exists with another password, or sign-up refused
    /// the name or the password. Nothing was judged about the app (exit 3, not 1).
    #[serde(default)]
    pub set_up_failed: bool,
    pub milliseconds: f64,
}

impl Report for SmokeReport {
    fn exit(&self) -> Exit {
        if self.set_up_failed {
            Exit::SetUp
        } else {
            Exit::problem_if(self.failed.is_some())
        }
    }
}

impl fmt::Display for SmokeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.steps {
            writeln!(
                f,
                "{} {:<8} {:>9.1} ms  {}",
                if s.ok { "✓" } else { "✗" },
                s.name,
                s.milliseconds,
                s.detail
            )?;
        }
        match &self.failed {
            None => write!(
                f,
                "smoke passed: {} steps in {:.0} ms against {}",
                self.steps.len(),
                self.milliseconds,
                self.api_url
            ),
            Some(step) if self.set_up_failed => write!(
                f,
                "smoke could not set up at {step} (its reason above): nothing was judged about the app"
            ),
            Some(step) => write!(f, "smoke failed at {step} (its reason above)"),
        }
    }
}

/// Where the check runs: the API and WebSocket URLs, and the smoke user with its password.
struct Target {
    endpoints: Endpoints,
    user: String,
    password: String,
}

/// The smoke user of `stage` unless `--user` names one: derived from the password, or on `dev`
/// without one from its runbook token (read only then).
fn smoke_user(
    args: &SmokeArgs,
    stage: &str,
    runbook_token: impl FnOnce() -> anyhow::Result<String>,
) -> anyhow::Result<String> {
    if let Some(user) = &args.user {
        return Ok(user.clone());
    }
    let secret = match &args.password {
        Some(p) => p.clone(),
        None => runbook_token()?,
    };
    Ok(crate::names::check_user("smoke", stage, &secret))
}

async fn target(ctx: &Context, args: &SmokeArgs) -> anyhow::Result<Target> {
    let stage = match &args.local.local {
        Some(_) => ctx.stage(),
        None => ctx.explicit_stage()?,
    };
    let password = match (&args.local.local, &args.password) {
        (_, Some(p)) => p.clone(),
        (Some(_), None) => LOCAL_PASSWORD.to_owned(),
        (None, None) => anyhow::bail!(
            "smoke needs the smoke user's password for a deployed stage: set NOTESCTL_SMOKE_PASSWORD (at least 8 characters; the first run signs the user up with it)"
        ),
    };
    Ok(Target {
        user: smoke_user(args, stage, dev_token)?,
        endpoints: endpoints(ctx, &args.local).await?,
        password,
    })
}

/// Signs `user` up (201, or 409 when it exists) and logs in: the token, and whether it signed up.
/// A refusal that is the check's own doing — sign-up answering 400 for the name or password, or the
/// user existing with another password — marks `set_up`; anything else is the app's.
async fn sign_in(
    api: &Api,
    user: &str,
    password: &str,
    set_up: &std::cell::Cell<bool>,
) -> anyhow::Result<(String, bool)> {
    let own = |e: anyhow::Error| {
        set_up.set(true);
        e
    };
    let credentials = json!({ "username": user, "password": password });
    let (status, body) = api
        .call(
            http::Method::POST,
            "/auth/signup",
            None,
            Some(credentials.clone()),
        )
        .await?;
    if status == 400 {
        let why: Vec<&str> = body["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["message"].as_str())
            .collect();
        let why = if why.is_empty() {
            body["message"].as_str().unwrap_or("").to_owned()
        } else {
            why.join("; ")
        };
        return Err(own(anyhow::anyhow!(
            "POST /auth/signup refused the smoke user {user} (400 {why}): check --user and NOTESCTL_SMOKE_PASSWORD"
        )));
    }
    expect(status, &[201, 409], "POST /auth/signup", &body)?;
    let signed_up = status == 201;
    let (status, body) = api
        .call(http::Method::POST, "/auth/login", None, Some(credentials))
        .await?;
    if status == 401 && !signed_up {
        return Err(own(anyhow::anyhow!(
            "the user {user} exists with another password: pass the one it was created with (NOTESCTL_SMOKE_PASSWORD), or leave out --user for the stage's own smoke user"
        )));
    }
    expect(status, &[200], "POST /auth/login", &body)?;
    let token = body["token"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("POST /auth/login answered 200 without a token"))?
        .to_owned();
    Ok((token, signed_up))
}

/// Waits on the socket for `event` about `note_id`, answering pings; other messages are skipped.
async fn wait_for(socket: &mut Socket, event: &str, note_id: &str) -> anyhow::Result<String> {
    while let Some(message) = socket.next().await {
        match message.map_err(|e| anyhow::anyhow!("the WebSocket broke: {e}"))? {
            Message::Text(text) => {
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                if v["eventType"] == event && v["noteId"] == note_id {
                    return Ok(format!("{event} for {note_id}"));
                }
                if v["eventType"] == "note-failed" && v["noteId"] == note_id {
                    anyhow::bail!("note-failed for {note_id}: {}", v["error"]);
                }
            }
            Message::Ping(p) => {
                let _ = socket.send(Message::Pong(p)).await;
            }
            Message::Close(frame) => anyhow::bail!("the server closed the WebSocket ({frame:?})"),
            _ => {}
        }
    }
    anyhow::bail!("the WebSocket closed before {event} arrived")
}

/// The steps run so far, and the note to clean up.
struct Run {
    steps: Vec<Step>,
    timeout: Duration,
}

impl Run {
    /// Runs one step under the timeout; its result, after recording it.
    async fn step<T>(
        &mut self,
        name: &str,
        work: impl Future<Output = anyhow::Result<(T, String)>>,
    ) -> Option<T> {
        let started = Instant::now();
        let outcome = match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!(
                "no answer within {} s (--timeout)",
                self.timeout.as_secs_f64()
            )),
        };
        let milliseconds = started.elapsed().as_secs_f64() * 1000.0;
        let (ok, detail, value) = match outcome {
            Ok((value, detail)) => (true, detail, Some(value)),
            Err(e) => (false, format!("{e:#}"), None),
        };
        self.steps.push(Step {
            name: name.to_owned(),
            ok,
            milliseconds,
            detail,
        });
        value
    }
}

pub async fn run(ctx: &Context, args: SmokeArgs) -> anyhow::Result<SmokeReport> {
    let target = target(ctx, &args).await?;
    let tls = tls_config(target.endpoints.secure())?;
    let Endpoints { api: api_url, ws } = &target.endpoints;
    let api = Api::new(api_url, &tls);
    let started = Instant::now();
    let mut run = Run {
        steps: Vec::new(),
        timeout: args.timeout,
    };
    let user = target.user.clone();
    let password = target.password.clone();
    let set_up = std::cell::Cell::new(false);
    let finished = |run: Run| SmokeReport {
        api_url: api_url.clone(),
        websocket_url: ws.clone(),
        user: user.clone(),
        failed: run.steps.iter().find(|s| !s.ok).map(|s| s.name.clone()),
        set_up_failed: set_up.get(),
        steps: run.steps,
        milliseconds: started.elapsed().as_secs_f64() * 1000.0,
    };

    let login = async {
        let (token, signed_up) = sign_in(&api, &user, &password, &set_up).await?;
        let how = if signed_up {
            "signed up and logged in"
        } else {
            "logged in"
        };
        Ok((token, format!("{how} as {user}")))
    };
    let Some(token) = run.step("login", login).await else {
        return Ok(finished(run));
    };

    let ws_url = format!("{ws}?token={token}");
    let connect = async {
        let socket = connect(&ws_url, &tls).await?;
        Ok((socket, format!("connected to {ws}")))
    };
    let Some(mut socket) = run.step("connect", connect).await else {
        return Ok(finished(run));
    };

    let content = format!(
        "notesctl smoke {} {:08x}",
        time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        rand::random::<u32>()
    );
    let post = async {
        let (status, body) = api
            .call(
                http::Method::POST,
                "/notes",
                Some(&token),
                Some(json!({ "content": content, "isPublic": true })),
            )
            .await?;
        expect(status, &[202], "POST /notes", &body)?;
        let id = body["noteId"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("POST /notes answered 202 without a noteId"))?
            .to_owned();
        Ok((id.clone(), format!("202, note {id}")))
    };
    let Some(note_id) = run.step("post", post).await else {
        return Ok(finished(run));
    };

    let saved = run
        .step("saved", async {
            let seen = wait_for(&mut socket, "note-saved", &note_id).await?;
            Ok(((), seen))
        })
        .await;
    if saved.is_some() {
        let public = async {
            // Saved means stored: the feed has it on the first read.
            let (status, body) = api
                .call(http::Method::GET, "/notes/public", None, None)
                .await?;
            expect(status, &[200], "GET /notes/public", &body)?;
            let notes = body["notes"].as_array().cloned().unwrap_or_default();
            if notes.iter().any(|n| n["noteId"] == note_id.as_str()) {
                Ok(((), format!("{} notes, {note_id} among them", notes.len())))
            } else {
                anyhow::bail!(
                    "{note_id} is not in GET /notes/public ({} notes)",
                    notes.len()
                )
            }
        };
        run.step("public", public).await;
    }

    // The note goes even when a step before failed, so smoke leaves nothing behind. A note whose
    // `note-saved` did not come may not be stored yet (DELETE answers 404 until it is): smoke asks
    // again until --timeout, and a note still not stored then is left, and named.
    let delete_started = Instant::now();
    let delete = async {
        let path = format!("/notes/{note_id}");
        let mut waited = false;
        loop {
            let (status, body) = api
                .call(http::Method::DELETE, &path, Some(&token), None)
                .await?;
            if status == 404 && saved.is_none() {
                if delete_started.elapsed() + STORED_POLL < args.timeout {
                    waited = true;
                    tokio::time::sleep(STORED_POLL).await;
                    continue;
                }
                anyhow::bail!(
                    "DELETE {path} answered 404 for {} s (--timeout): the note is not stored yet, so it is left; it will be stored once the queue moves: delete it then",
                    args.timeout.as_secs_f64()
                );
            }
            expect(status, &[200], &format!("DELETE {path}"), &body)?;
            let detail = if waited {
                format!(
                    "200 once the note was stored ({:.1} s after the first try)",
                    delete_started.elapsed().as_secs_f64()
                )
            } else {
                "200".to_owned()
            };
            return Ok(((), detail));
        }
    };
    let deleted = run.step("delete", delete).await;
    if deleted.is_some() && saved.is_some() {
        run.step("deleted", async {
            let seen = wait_for(&mut socket, "note-deleted", &note_id).await?;
            Ok(((), seen))
        })
        .await;
    }
    let _ = socket.close(None).await;
    Ok(finished(run))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(argv: &[&str]) -> SmokeArgs {
        use clap::Parser;
        let mut all = vec!["notesctl", "smoke"];
        all.extend_from_slice(argv);
        match crate::Cli::try_parse_from(all).expect("parses").command {
            crate::Command::Smoke(a) => a,
            other => panic!("{other:?}"),
        }
    }

    fn no_token() -> anyhow::Result<String> {
        anyhow::bail!("the runbook token is not read when a password is given")
    }

    #[test]
    fn the_smoke_user_is_the_stages_own_unless_named() {
        let given = args(&["--password", "a long secret"]);
        let prod = smoke_user(&given, "production", no_token).unwrap();
        assert_eq!(
            prod,
            crate::names::check_user("smoke", "production", "a long secret")
        );
        assert_ne!(prod, "notesctl-smoke");
        assert_ne!(prod, smoke_user(&given, "dev", no_token).unwrap());
        // `dev` without a password: from its runbook token.
        let local = args(&["--local"]);
        let from_token = smoke_user(&local, "production", || Ok("token-1".into())).unwrap();
        assert_eq!(
            from_token,
            crate::names::check_user("smoke", "production", "token-1")
        );
        assert_ne!(
            from_token,
            smoke_user(&local, "production", || Ok("token-2".into())).unwrap()
        );
        let named = args(&["--user", "notesctl-smoke", "--password", "a long secret"]);
        assert_eq!(
            smoke_user(&named, "production", no_token).unwrap(),
            "notesctl-smoke"
        );
    }

    fn report(failed: Option<&str>, set_up_failed: bool) -> SmokeReport {
        SmokeReport {
            api_url: "http://x".into(),
            websocket_url: "ws://x".into(),
            steps: Vec::new(),
            user: "u".into(),
            failed: failed.map(str::to_owned),
            set_up_failed,
            milliseconds: 1.0,
        }
    }

    #[test]
    fn a_set_up_failure_is_exit_3_not_a_verdict_on_the_app() {
        assert_eq!(report(None, false).exit(), Exit::Ok);
        assert_eq!(report(Some("saved"), false).exit(), Exit::Problem);
        let set_up = report(Some("login"), true);
        assert_eq!(set_up.exit(), Exit::SetUp);
        assert_eq!(set_up.exit().code(), std::process::ExitCode::from(3));
        assert!(set_up.to_string().contains("could not set up at login"));
    }
}
