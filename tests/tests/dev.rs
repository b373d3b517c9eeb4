//! `notesctl dev` from outside, as a newcomer meets it: a real process, HTTP and WebSocket clients.

use std::time::Duration;

use futures::StreamExt;
use notesctl_tests::dev::DevServer;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(dev: &DevServer) -> Self {
        Client {
            http: reqwest::Client::new(),
            base: dev.api_url.clone(),
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("dev answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn user(&self, name: &str) -> String {
        let creds = json!({"username": name, "password": "correct horse"});
        let (s, b) = self
            .call("POST", "/auth/signup", Some(creds.clone()), None)
            .await;
        assert!(s == 201 || s == 409, "{s} {b}");
        let (s, b) = self.call("POST", "/auth/login", Some(creds), None).await;
        assert_eq!(s, 200, "{b}");
        b["token"].as_str().unwrap().to_owned()
    }
}

async fn connect(dev: &DevServer, token: &str) -> Ws {
    let (ws, resp) = tokio_tungstenite::connect_async(format!("{}?token={token}", dev.ws_url))
        .await
        .expect("WebSocket connects");
    assert_eq!(resp.status().as_u16(), 101);
    ws
}

async fn next_event(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an event within 10 s")
            .expect("socket open")
            .expect("frame");
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

#[tokio::test]
async fn notes_are_saved_and_pushed_live() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &[]).await;
    let c = Client::new(&dev);
    let ada = c.user("ada").await;
    let bob = c.user("bob").await;
    let mut ada_ws = connect(&dev, &ada).await;
    let mut bob_ws = connect(&dev, &bob).await;

    let (s, b) = c
        .call(
            "POST",
            "/notes",
            Some(json!({"content": "just for me"})),
            Some(&ada),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let ev = next_event(&mut ada_ws).await;
    assert_eq!(
        (ev["eventType"].as_str(), ev["noteId"].as_str()),
        (Some("note-saved"), b["noteId"].as_str())
    );

    let (s, b) = c
        .call(
            "POST",
            "/notes",
            Some(json!({"content": "for everyone", "isPublic": true})),
            Some(&ada),
        )
        .await;
    assert_eq!(s, 202);
    let to_bob = next_event(&mut bob_ws).await;
    assert_eq!(
        to_bob["noteId"], b["noteId"],
        "public notes reach every client; private ones did not"
    );
    assert_eq!(to_bob["username"], "ada");
    assert_eq!(next_event(&mut ada_ws).await["noteId"], b["noteId"]);

    let (s, mine) = c.call("GET", "/notes", None, Some(&ada)).await;
    assert_eq!((s, mine["count"].as_u64()), (200, Some(2)));
    let (_, public) = c.call("GET", "/notes/public", None, None).await;
    assert_eq!(public["count"], 1);

    let id = b["noteId"].as_str().unwrap();
    let (s, _) = c
        .call(
            "PUT",
            &format!("/notes/{id}"),
            Some(json!({"content": "edited"})),
            Some(&ada),
        )
        .await;
    assert_eq!(s, 200);
    let ev = next_event(&mut bob_ws).await;
    assert_eq!(
        (ev["eventType"].as_str(), ev["content"].as_str()),
        (Some("note-updated"), Some("edited"))
    );
    let (s, _) = c
        .call("DELETE", &format!("/notes/{id}"), None, Some(&bob))
        .await;
    assert_eq!(s, 404, "not bob's note");
    let (s, _) = c
        .call("DELETE", &format!("/notes/{id}"), None, Some(&ada))
        .await;
    assert_eq!(s, 200);
    assert_eq!(next_event(&mut bob_ws).await["eventType"], "note-deleted");
    let _ = ada_ws.close(None).await;
    let (status, took) = dev.terminate().await;
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(5), "stopped in {took:?}");
}

#[tokio::test]
async fn websocket_requires_a_valid_token() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &[]).await;
    for url in [
        dev.ws_url.clone(),
        format!("{}?token=forged.token.here", dev.ws_url),
    ] {
        match tokio_tungstenite::connect_async(&url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status().as_u16(), 401, "{url}")
            }
            other => panic!(
                "{url}: expected a 401 refusal, got {:?}",
                other.map(|(_, r)| r.status())
            ),
        }
    }
}

#[tokio::test]
async fn bad_requests_get_4xx_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &[]).await;
    let c = Client::new(&dev);
    let token = c.user("ada").await;
    let (s, b) = c.call("POST", "/nope", Some(json!({})), None).await;
    assert_eq!(s, 404, "{b}");
    assert!(b["message"].as_str().unwrap().contains("No route"));
    let (s, b) = c.call("PATCH", "/notes", None, Some(&token)).await;
    assert_eq!(s, 404, "as API Gateway answers an unmatched route: {b}");
    let (s, b) = c
        .call("POST", "/notes", Some(json!({"content": 1})), Some(&token))
        .await;
    assert_eq!(s, 400, "{b}");

    // Over the limit with a Content-Length: refused before reading.
    let big = "x".repeat(300 * 1024);
    let r = c
        .http
        .post(format!("{}/notes", c.base))
        .bearer_auth(&token)
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    // Over the limit without one (chunked): refused once the limit is crossed.
    let stream =
        futures::stream::iter((0..40).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 8 * 1024])));
    let r = c
        .http
        .post(format!("{}/notes", c.base))
        .bearer_auth(&token)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    // dev answers 413 once the limit is crossed and closes the connection; the client may still be
    // sending its body then, so what it sees is the 413 or the connection closed under its upload
    // — never a refused connection or a timeout.
    match r {
        Ok(r) => assert_eq!(r.status().as_u16(), 413),
        Err(e) => assert!(
            (e.is_request() || e.is_body()) && !e.is_connect() && !e.is_timeout(),
            "not the connection closed under the upload: {e:?}"
        ),
    }
    // A socket dropped without a close frame.
    let ws = connect(&dev, &token).await;
    drop(ws);
    let (s, _) = c
        .call(
            "POST",
            "/notes",
            Some(json!({"content": "still here"})),
            Some(&token),
        )
        .await;
    assert_eq!(s, 202);
    let (s, b) = c.call("OPTIONS", "/notes", None, None).await;
    assert_eq!(s, 204, "{b}");
}

/// Kill `dev` mid-load and restart it: every note it acknowledged with 202 is saved.
/// Eight writers POSTing as `token` until told to stop; the ids of the notes answered 202.
fn start_writers(
    c: &Client,
    token: &str,
) -> (
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (http, base, token, acked) = (
            c.http.clone(),
            c.base.clone(),
            token.to_owned(),
            acked.clone(),
        );
        writers.push(tokio::spawn(async move {
            for i in 0..200 {
                let r = http
                    .post(format!("{base}/notes"))
                    .bearer_auth(&token)
                    .json(&json!({"content": format!("w{w} n{i}")}))
                    .send()
                    .await;
                let Ok(r) = r else { return };
                if r.status().as_u16() != 202 {
                    return;
                }
                let Ok(b) = r.json::<Value>().await else {
                    return;
                };
                acked
                    .lock()
                    .unwrap()
                    .push(b["noteId"].as_str().unwrap().to_owned());
            }
        }));
    }
    (acked, writers)
}

/// Waits until the writers have had `n` notes acknowledged (at most 30 s).
async fn wait_for_acked(acked: &std::sync::Mutex<Vec<String>>, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = acked.lock().unwrap().len();
        if got >= n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {got} of {n} notes acknowledged within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until every note in `acked` is listed by `GET /notes` for the holder of `token`.
async fn every_note_is_saved(c: &Client, token: &str, acked: &[String]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut saved = std::collections::HashSet::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(cur) => format!("/notes?limit=100&cursor={cur}"),
                None => "/notes?limit=100".to_owned(),
            };
            let (s, b) = c.call("GET", &path, None, Some(token)).await;
            assert_eq!(s, 200, "the old token still works after a restart: {b}");
            for n in b["notes"].as_array().unwrap() {
                saved.insert(n["noteId"].as_str().unwrap().to_owned());
            }
            match b["cursor"].as_str() {
                Some(cur) => cursor = Some(cur.to_owned()),
                None => break,
            }
        }
        let missing: Vec<_> = acked.iter().filter(|id| !saved.contains(*id)).collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {} acknowledged notes never saved: {:?}",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn no_acknowledged_note_is_lost_when_dev_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &["--visibility-timeout", "1"]).await;
    let c = Client::new(&dev);
    let token = c.user("ada").await;
    let (acked, writers) = start_writers(&c, &token);
    wait_for_acked(&acked, 150).await;
    dev.kill().await;
    for w in writers {
        let _ = w.await;
    }
    let acked: Vec<String> = acked.lock().unwrap().clone();
    assert!(acked.len() >= 150);

    let dev = DevServer::start(dir.path(), &["--visibility-timeout", "1"]).await;
    every_note_is_saved(&Client::new(&dev), &token, &acked).await;
}

/// Ctrl-C while notes are arriving: dev stops taking requests, finishes what it has in hand, says
/// what is still queued, and exits 0 within seconds; after a restart every 202 is saved.
#[tokio::test]
async fn ctrl_c_with_work_in_hand_stops_cleanly_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (dev, log) =
        DevServer::start_with_log_at(dir.path(), &["--visibility-timeout", "1"], "info").await;
    let c = Client::new(&dev);
    let token = c.user("ada").await;
    let (acked, writers) = start_writers(&c, &token);
    wait_for_acked(&acked, 150).await;
    let (status, took) = dev.interrupt().await;
    for w in writers {
        let _ = w.await;
    }
    assert!(status.success(), "Ctrl-C is a normal stop: {status}");
    // README: "Ctrl-C stops it within a couple of seconds".
    assert!(took < Duration::from_secs(3), "stopped in {took:?}");
    // The last lines reach the log reader once the process is gone.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let log = loop {
        let log = log.lock().unwrap().clone();
        if log.contains("queued notes are kept in") || std::time::Instant::now() >= deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(log.contains("queued notes are kept in"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    let acked: Vec<String> = acked.lock().unwrap().clone();
    assert!(acked.len() >= 150);

    let dev = DevServer::start(dir.path(), &["--visibility-timeout", "1"]).await;
    every_note_is_saved(&Client::new(&dev), &token, &acked).await;
}

/// A second `dev` in the same place: one message names both the port and the data directory it
/// cannot have; with only one of them taken, that one is named. Exit 2 each time.
#[tokio::test]
async fn a_second_dev_names_what_is_taken_in_one_message() {
    let dir = tempfile::tempdir().unwrap();
    let first = DevServer::start(dir.path(), &[]).await;
    let port = first
        .api_url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    let other = tempfile::tempdir().unwrap();
    let second = async |port: &str, data: &std::path::Path| {
        let run = tokio::process::Command::new(notesctl_tests::dev::notesctl_binary())
            .args(["dev", "--port", port, "--data-dir"])
            .arg(data)
            .env_remove("NOTESCTL_OUTPUT")
            .env_remove("NOTESCTL_LOG")
            .kill_on_drop(true)
            .output();
        tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .expect("the second dev stops at once")
            .unwrap()
    };
    let both = second(&port, dir.path()).await;
    let err = String::from_utf8_lossy(&both.stderr);
    assert_eq!(both.status.code(), Some(2), "{err}");
    assert!(
        err.contains("another `notesctl dev` seems to be running here")
            && err.contains(&format!("port 127.0.0.1:{port} is taken"))
            && err.contains(&format!(
                "the data directory {} is in use",
                dir.path().display()
            ))
            && err.contains("--port N")
            && err.contains("--data-dir"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");

    let port_only = second(&port, other.path()).await;
    let err = String::from_utf8_lossy(&port_only.stderr);
    assert_eq!(port_only.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}"))
            && !err.contains("data directory"),
        "{err}"
    );

    let dir_only = second("0", dir.path()).await;
    let err = String::from_utf8_lossy(&dir_only.stderr);
    assert_eq!(dir_only.status.code(), Some(2), "{err}");
    assert!(
        err.contains("is in use by another `notesctl dev`") && !err.contains("port"),
        "{err}"
    );
}

/// `--frontend DIR`: the page and its files come from DIR, read at each request (an edit shows on
/// reload), with `config.json` still the server's own; a DIR without index.html is refused at start.
#[tokio::test]
async fn frontend_dir_is_served_live_and_config_json_stays_the_servers() {
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "<p>my page</p>").unwrap();
    std::fs::create_dir(site.path().join("js")).unwrap();
    std::fs::write(site.path().join("js/app.js"), "let v = 1;").unwrap();
    std::fs::write(
        site.path().join("config.json"),
        r#"{"apiUrl":"https://stale"}"#,
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let frontend = site.path().to_string_lossy().into_owned();
    let dev = DevServer::start(data.path(), &["--frontend", &frontend]).await;
    let http = reqwest::Client::new();
    let get = async |path: &str| {
        let r = http
            .get(format!("{}{path}", dev.frontend_url.trim_end_matches('/')))
            .send()
            .await
            .unwrap();
        let ty = r.headers()["content-type"].to_str().unwrap().to_owned();
        (r.status().as_u16(), ty, r.text().await.unwrap())
    };
    let (s, ty, body) = get("/").await;
    assert_eq!((s, body.as_str()), (200, "<p>my page</p>"));
    assert!(ty.starts_with("text/html"), "{ty}");
    let (s, ty, body) = get("/js/app.js").await;
    assert_eq!((s, body.as_str()), (200, "let v = 1;"));
    assert!(ty.contains("javascript"), "{ty}");
    std::fs::write(site.path().join("js/app.js"), "let v = 2;").unwrap();
    assert_eq!(
        get("/js/app.js").await.2,
        "let v = 2;",
        "read at each request"
    );
    let (s, _, body) = get("/config.json").await;
    let config: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(s, 200);
    assert_eq!(config["apiUrl"], dev.api_url.as_str(), "{config}");
    assert_eq!(get("/js/missing.js").await.0, 404);
    // A browser asking for a page gets the app's own routes from its page; a call that names no
    // file (a mistyped API path from curl or fetch) gets the API's JSON 404, as a POST does.
    let page = http
        .get(format!(
            "{}/dashboard",
            dev.frontend_url.trim_end_matches('/')
        ))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert_eq!(
        page.text().await.unwrap(),
        "<p>my page</p>",
        "the app's own routes fall back to its page"
    );
    for mistyped in ["/note", "/dashboard", "/notes-public"] {
        let (s, ty, body) = get(mistyped).await;
        assert_eq!(s, 404, "{mistyped}: {body}");
        assert!(ty.starts_with("application/json"), "{mistyped}: {ty}");
        let said: Value = serde_json::from_str(&body).unwrap();
        assert!(
            said["message"].as_str().unwrap().contains("No route"),
            "{mistyped}: {said}"
        );
    }

    let empty = tempfile::tempdir().unwrap();
    let refused = tokio::process::Command::new(notesctl_tests::dev::notesctl_binary())
        .args(["dev", "--port", "0", "--frontend"])
        .arg(empty.path())
        .arg("--data-dir")
        .arg(data.path().join("other"))
        .kill_on_drop(true)
        .output();
    let refused = tokio::time::timeout(Duration::from_secs(30), refused)
        .await
        .unwrap()
        .unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{err}");
    assert!(err.contains("has no index.html"), "{err}");
}

/// Nobody reads dev's stdout (`notesctl dev | head -0`, a closed pipe): it serves all the same and
/// stops cleanly.
#[tokio::test]
async fn a_closed_stdout_is_not_an_error() {
    let data = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = tokio::process::Command::new(notesctl_tests::dev::notesctl_binary())
        .args([
            "dev",
            "--output",
            "json",
            "--port",
            &port.to_string(),
            "--data-dir",
        ])
        .arg(data.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reading end closes before dev writes a byte
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let health = loop {
        match http
            .post(format!("http://127.0.0.1:{port}/auth/login"))
            .json(&json!({"username": "nobody", "password": "wrong-password"}))
            .send()
            .await
        {
            Ok(r) => break r.status().as_u16(),
            // Not listening yet: the connection is refused.
            Err(e) if e.is_connect() => {}
            Err(e) => panic!("dev answered {port} with an error: {e:?}"),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "dev never answered on {port}"
        );
        assert!(child.try_wait().unwrap().is_none(), "dev exited");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(health, 401, "it serves");
    let pid = child.id().unwrap();
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );
}
