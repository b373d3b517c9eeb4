//! `notesctl smoke [--local]`: the app end to end, as a user meets it, after a deploy (or against
//! `dev`). A dedicated user signs up (first run) and logs in, opens the WebSocket, posts a public note,
//! waits for its `note-saved` on the socket, finds it in `GET /notes/public`, deletes it and waits for
//! `note-deleted`. Each step is timed; the first that fails stops the run and names itself, and the
//! note is deleted even then when it was posted. Exit 0 when every step passed, 1 otherwise.

use std::fmt;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::app_client::{Api, Endpoints, Socket, connect, endpoints, expect, tls_config};
use crate::context::{Context, LocalArg, parse_duration};
use crate::output::{Exit, Report};

/// The smoke user's password on `dev` when none is given (`dev` is yours alone).
const LOCAL_PASSWORD: &str = "notesctl-smoke-local";

#[derive(Debug, Clone, clap::Args)]
pub struct SmokeArgs {
    #[command(flatten)]
    pub local: LocalArg,
    /// The user the check signs up (on its first run) and logs in as.
    #[arg(long, default_value = "notesctl-smoke")]
    pub user: String,
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
    /// The first step that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    pub milliseconds: f64,
}

impl Report for SmokeReport {
    fn exit(&self) -> Exit {
        Exit::problem_if(self.failed.is_some())
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
            Some(step) => write!(f, "smoke failed at {step} (its reason above)"),
        }
    }
}

/// Where the check runs: the API and WebSocket URLs, and the smoke user's password.
struct Target {
    endpoints: Endpoints,
    password: String,
}

async fn target(ctx: &Context, args: &SmokeArgs) -> anyhow::Result<Target> {
    let password = match (&args.local.local, &args.password) {
        (_, Some(p)) => p.clone(),
        (Some(_), None) => LOCAL_PASSWORD.to_owned(),
        (None, None) => anyhow::bail!(
            "smoke needs the smoke user's password for a deployed stage: set NOTESCTL_SMOKE_PASSWORD (at least 8 characters; the first run signs the user up with it)"
        ),
    };
    Ok(Target {
        endpoints: endpoints(ctx, &args.local).await?,
        password,
    })
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
    let user = args.user.clone();
    let password = target.password.clone();
    let finished = |run: Run| SmokeReport {
        api_url: api_url.clone(),
        websocket_url: ws.clone(),
        failed: run.steps.iter().find(|s| !s.ok).map(|s| s.name.clone()),
        steps: run.steps,
        milliseconds: started.elapsed().as_secs_f64() * 1000.0,
    };

    let login = async {
        let (token, signed_up) = api
            .sign_in(
                &user,
                &password,
                "NOTESCTL_SMOKE_PASSWORD, or another --user",
            )
            .await?;
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

    // The note goes even when a step before failed, so smoke leaves nothing behind.
    let delete = async {
        let path = format!("/notes/{note_id}");
        let (status, body) = api
            .call(http::Method::DELETE, &path, Some(&token), None)
            .await?;
        if status == 404 && saved.is_none() {
            anyhow::bail!(
                "DELETE {path} answered 404: the note is not stored yet, and will be once the queue moves; delete it then"
            );
        }
        expect(status, &[200], &format!("DELETE {path}"), &body)?;
        Ok(((), "200".to_owned()))
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
