//! The load users' side: their sockets, opened before the run and read for every `note-saved`, and
//! the cleanup that deletes every accepted note as its author.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use super::*;

/// A user of the run: name and token.
pub(super) struct User {
    pub(super) token: String,
}

/// Opens `count` sockets: socket i belongs to user i mod users, the first of each user records when
/// its own notes are saved, and every one counts the public notes it receives.
pub(super) async fn open_sockets(
    target: &Endpoints,
    tls: &Arc<rustls::ClientConfig>,
    names: &[String],
    users: &[User],
    count: usize,
    seen: &Seen,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut opened = futures::stream::iter((0..count).map(|i| {
        let url = format!("{}?token={}", target.ws, users[i % users.len()].token);
        async move { (i, connect(&url, tls).await) }
    }))
    .buffer_unordered(32);
    let mut tasks = Vec::with_capacity(count);
    while let Some((i, socket)) = opened.next().await {
        let socket = socket.map_err(|e| anyhow::anyhow!("socket {i}: {e:#}"))?;
        let own = (i < users.len()).then(|| names[i].clone());
        let seen = seen.clone();
        tasks.push(tokio::spawn(async move {
            let (_tx, mut rx) = socket.split();
            while let Some(Ok(msg)) = rx.next().await {
                let Message::Text(text) = msg else { continue };
                let now = Instant::now();
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let Some(id) = v["noteId"].as_str() else {
                    continue;
                };
                let mut seen = seen.lock().unwrap();
                let a = seen.entry(id.to_owned()).or_default();
                match v["eventType"].as_str() {
                    Some("note-saved") => {
                        a.sockets += 1;
                        a.last = Some(now);
                        if own.as_deref() == v["username"].as_str() && a.author.is_none() {
                            a.author = Some(now);
                        }
                    }
                    Some("note-failed") => {
                        a.failed = Some(v["error"].as_str().unwrap_or("note-failed").to_owned());
                    }
                    _ => {}
                }
            }
        }));
    }
    Ok(tasks)
}

/// Deletes every accepted note as its author, 32 at a time; a delete refused in passing (a 5xx, a
/// broken connection) is tried again, up to three times.
pub(super) async fn clean_up(
    api: &Arc<Api>,
    users: &[User],
    accepted: &[(usize, String)],
) -> Cleanup {
    let mut results = futures::stream::iter(accepted.iter().map(|(author, note_id)| {
        let (api, token) = (api.clone(), users[*author].token.clone());
        let path = format!("/notes/{note_id}");
        async move {
            let mut why = String::new();
            for attempt in 0..3u64 {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                }
                match api
                    .call(http::Method::DELETE, &path, Some(&token), None)
                    .await
                {
                    Ok((200 | 204, _)) => return Ok(()),
                    Ok((status, _)) if status < 500 => return Err(format!("HTTP {status}")),
                    Ok((status, _)) => why = format!("HTTP {status}"),
                    Err(e) => why = format!("{e:#}"),
                }
            }
            Err(why)
        }
    }))
    .buffer_unordered(32);
    let mut cleanup = Cleanup::default();
    while let Some(deleted) = results.next().await {
        match deleted {
            Ok(()) => cleanup.deleted += 1,
            Err(why) => {
                cleanup.left += 1;
                *cleanup.failures.entry(why).or_default() += 1;
            }
        }
    }
    cleanup
}
