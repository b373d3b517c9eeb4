//! A seeded fuzzing pass over the whole HTTP and WebSocket surface of a real `notesctl dev`: methods,
//! paths, query strings, headers and bodies, well-formed and not, and WebSocket frames. Whatever a
//! client sends, the server does not panic, answers a client's mistake with a 4xx that carries a
//! message, never a 5xx, and is still serving at the end.
//!
//! `FUZZ_SEED` picks the run (printed on failure, so a failing run can be replayed); `FUZZ_REQUESTS`
//! the number of HTTP requests (20,000 by default).

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use notesctl_tests::dev::DevServer;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// One generated request, kept to describe a failure.
#[derive(Debug, Clone)]
struct Case {
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

fn random_text(rng: &mut StdRng, max: usize) -> String {
    let len = rng.random_range(0..=max);
    (0..len)
        .map(|_| match rng.random_range(0..10) {
            0 => char::from_u32(rng.random_range(0..0x11_0000)).unwrap_or('\u{FFFD}'),
            1 => pick(
                rng,
                &[
                    '\u{202E}', '\u{200B}', '\0', '\n', '"', '\\', '#', '%', '/', '.',
                ],
            )
            .to_owned(),
            _ => rng.random_range(b' '..=b'~') as char,
        })
        .collect()
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn random_json(rng: &mut StdRng, depth: u32) -> Value {
    match rng.random_range(0..if depth > 3 { 5 } else { 8 }) {
        0 => Value::Null,
        1 => json!(rng.random::<bool>()),
        2 => json!(rng.random::<i64>()),
        3 => json!(rng.random::<f64>() * 1e300),
        4 => json!(random_text(rng, 40)),
        5 => Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| random_json(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let keys = [
                "content", "isPublic", "username", "password", "noteId", "x", "",
            ];
            Value::Object(
                (0..rng.random_range(0..5))
                    .map(|_| (pick(rng, &keys).to_string(), random_json(rng, depth + 1)))
                    .collect(),
            )
        }
    }
}

fn generate(rng: &mut StdRng, token: &str, note_id: &str) -> Case {
    let method = pick(
        rng,
        &[
            Method::GET,
            Method::GET,
            Method::POST,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::OPTIONS,
            Method::HEAD,
            Method::from_bytes(b"PROPFIND").unwrap(),
        ],
    )
    .clone();
    let mut path = match rng.random_range(0..14) {
        0 => "/notes".to_owned(),
        1 => "/notes/public".to_owned(),
        2 => format!("/notes/{note_id}"),
        3 => format!("/notes/{}", percent_encode(&random_text(rng, 30))),
        4 => "/auth/signup".to_owned(),
        5 => "/auth/login".to_owned(),
        6 => "/auth/user".to_owned(),
        7 => "/config.json".to_owned(),
        8 => "/ws".to_owned(),
        9 => pick(
            rng,
            &[
                "/",
                "/app.js",
                "/index.html",
                "/styles.css",
                "/favicon.ico",
                "/missing.js",
            ],
        )
        .to_string(),
        10 => pick(
            rng,
            &[
                "/notes/%2e%2e/%2e%2e/etc/passwd",
                "/..%2f..%2fetc%2fpasswd",
                "/notes//x",
                "/notes/x/y/z",
                "/auth/",
                "/auth",
                "/%00",
                "/notes/%FF%FE",
            ],
        )
        .to_string(),
        11 => format!("/{}", "a/".repeat(rng.random_range(1..2000))),
        12 => format!("/notes/{}", "n".repeat(rng.random_range(100..5000))),
        _ => (0..rng.random_range(1..5))
            .map(|_| format!("/{}", percent_encode(&random_text(rng, 12))))
            .collect(),
    };
    if rng.random_ratio(1, 3) {
        let pairs: Vec<String> = (0..rng.random_range(1..4))
            .map(|_| {
                let k = pick(rng, &["token", "limit", "cursor", "nextToken", "x", ""]).to_string();
                let v = match rng.random_range(0..4) {
                    0 => token.to_owned(),
                    1 => "%zz%4".to_owned(),
                    2 => rng.random::<i64>().to_string(),
                    _ => percent_encode(&random_text(rng, 60)),
                };
                format!("{k}={v}")
            })
            .collect();
        path = format!("{path}?{}", pairs.join("&"));
    }
    let mut headers = Vec::new();
    match rng.random_range(0..6) {
        0 => {}
        1 => headers.push(("authorization".into(), format!("Bearer {token}"))),
        2 => {
            // Any text a header may carry (visible ASCII and spaces).
            let text: String = random_text(rng, 80)
                .chars()
                .filter(|c| (' '..='~').contains(c))
                .collect();
            headers.push(("authorization".into(), format!("Bearer {text}")))
        }
        3 => headers.push((
            "authorization".into(),
            pick(rng, &["Basic YTpi", "Bearer", "bearer x.y.z", "Bearer a.b"]).to_string(),
        )),
        4 => {
            // The token with one character changed.
            let mut t: Vec<char> = token.chars().collect();
            let i = rng.random_range(0..t.len());
            t[i] = if t[i] == 'A' { 'B' } else { 'A' };
            headers.push((
                "authorization".into(),
                format!("Bearer {}", t.into_iter().collect::<String>()),
            ));
        }
        _ => headers.push((
            "authorization".into(),
            format!("Bearer {token}{}", "x".repeat(rng.random_range(1..3))),
        )),
    }
    let content_type = pick(
        rng,
        &[
            Some("application/json"),
            Some("application/json; charset=utf-8"),
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=zz"),
            Some("application/json; charset=latin1"),
            None,
        ],
    );
    if let Some(ct) = content_type {
        headers.push(("content-type".into(), ct.to_string()));
    }
    if rng.random_ratio(1, 20) {
        headers.push((
            "x-amz-target".into(),
            pick(
                rng,
                &[
                    "AmazonSQS.SendMessage",
                    "Logs_20140328.FilterLogEvents",
                    "Nope",
                ],
            )
            .to_string(),
        ));
    }
    if rng.random_ratio(1, 20) {
        headers.push(("upgrade".into(), "websocket".into()));
        headers.push(("connection".into(), "upgrade".into()));
    }
    let body = match rng.random_range(0..10) {
        0 | 1 => None,
        2 => Some(
            json!({"content": random_text(rng, 200), "isPublic": rng.random::<bool>()})
                .to_string()
                .into_bytes(),
        ),
        3 => Some(random_json(rng, 0).to_string().into_bytes()),
        4 => Some(
            (0..rng.random_range(0..300))
                .map(|_| rng.random::<u8>())
                .collect(),
        ),
        5 => Some(
            format!(
                "{}{}",
                "[".repeat(rng.random_range(100..5000)),
                "]".repeat(3)
            )
            .into_bytes(),
        ),
        6 => Some(vec![b'x'; rng.random_range(250 * 1024..300 * 1024)]),
        7 => {
            let mut b = json!({"content": "x"}).to_string().into_bytes();
            let i = rng.random_range(0..b.len());
            b[i] = rng.random();
            Some(b)
        }
        8 => Some(
            json!({"username": random_text(rng, 70), "password": random_text(rng, 12)})
                .to_string()
                .into_bytes(),
        ),
        _ => Some(b"{\"content\":\"\\ud800\"}".to_vec()),
    };
    Case {
        method,
        path,
        headers,
        body,
    }
}

/// The status and body the server sent, or why there was no answer.
type Answer = Result<(u16, Vec<u8>), String>;

/// What is wrong with the answer to `case`, if anything.
fn judge(case: &Case, status: u16, body: &[u8]) -> Option<String> {
    if status >= 500 {
        return Some(format!("{status}: {}", String::from_utf8_lossy(body)));
    }
    if (400..500).contains(&status) && case.method != Method::HEAD {
        let message = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned));
        match message {
            Some(m) if !m.trim().is_empty() => {}
            _ => {
                return Some(format!(
                    "{status} without a message: {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                ));
            }
        }
    }
    None
}

#[tokio::test]
async fn twenty_thousand_generated_requests_and_websocket_frames() {
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let total: usize = std::env::var("FUZZ_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().unwrap();
    let (dev, log) = DevServer::start_with_log(dir.path(), &[]).await;
    let token = dev.sign_up("fuzz", "fuzzing password").await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let note = dev
        .post_note(&token, json!({"content": "seed note", "isPublic": true}))
        .await;
    let note_id = note["noteId"].as_str().unwrap().to_owned();

    let mut rng = StdRng::seed_from_u64(seed);
    let cases: Vec<Case> = (0..total)
        .map(|_| generate(&mut rng, &token, &note_id))
        .collect();
    let base = Arc::new(dev.api_url.clone());
    let results: Vec<(Case, Answer)> = futures::stream::iter(cases)
        .map(|case| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let mut req = http.request(case.method.clone(), format!("{base}{}", case.path));
                for (k, v) in &case.headers {
                    req = req.header(k, v);
                }
                if let Some(b) = &case.body {
                    req = req.body(b.clone());
                }
                let answer = match req.send().await {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        match r.bytes().await {
                            Ok(b) => Ok((status, b.to_vec())),
                            Err(e) => Err(format!("reading the body: {e}")),
                        }
                    }
                    Err(e) => {
                        let mut text = e.to_string();
                        let mut cause = std::error::Error::source(&e);
                        while let Some(c) = cause {
                            text = format!("{text}: {c}");
                            cause = c.source();
                        }
                        Err(text)
                    }
                };
                (case, answer)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;

    let mut problems = Vec::new();
    let mut by_status = std::collections::BTreeMap::<u16, usize>::new();
    for (case, answer) in &results {
        match answer {
            Ok((status, body)) => {
                *by_status.entry(*status).or_default() += 1;
                if let Some(p) = judge(case, *status, body) {
                    problems.push(format!(
                        "{} {} → {p}  ({:?})",
                        case.method,
                        &case.path[..case.path.len().min(120)],
                        case.headers
                    ));
                }
            }
            Err(e) => problems.push(format!(
                "{} {} → no answer: {e}",
                case.method,
                &case.path[..case.path.len().min(120)]
            )),
        }
    }

    // WebSocket frames: sockets with good, bad and no tokens, each sent random frames.
    let mut frames = 0usize;
    for i in 0..60 {
        let t = match i % 3 {
            0 => token.clone(),
            1 => format!("{token}x"),
            _ => random_text(&mut rng, 20),
        };
        let url = format!("{}?token={}", dev.ws_url, percent_encode(&t));
        match tokio_tungstenite::connect_async(url.as_str()).await {
            Ok((mut ws, _)) => {
                for _ in 0..20 {
                    let frame = match rng.random_range(0..4) {
                        0 => Message::text(random_text(&mut rng, 500)),
                        1 => Message::binary((0..rng.random_range(0..2000)).map(|_| rng.random::<u8>()).collect::<Vec<u8>>()),
                        2 => Message::Ping(vec![1, 2, 3].into()),
                        _ => Message::text(json!({"action": random_text(&mut rng, 10), "data": random_json(&mut rng, 0)}).to_string()),
                    };
                    frames += 1;
                    if ws.send(frame).await.is_err() {
                        break;
                    }
                }
                let _ = ws.close(None).await;
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let status = resp.status().as_u16();
                assert!(
                    (400..500).contains(&status),
                    "seed {seed}: WebSocket refused with {status}"
                );
                assert!(
                    i % 3 != 0,
                    "seed {seed}: a valid token was refused with {status}"
                );
            }
            Err(e) => problems.push(format!("WebSocket connect: {e}")),
        }
    }

    // Still serving, and nothing panicked.
    let alive = http
        .get(format!("{}/notes/public", dev.api_url))
        .send()
        .await
        .expect("still serving after the fuzzing");
    assert_eq!(alive.status(), 200);
    let log = log.lock().unwrap().clone();
    assert!(
        !log.contains("panicked"),
        "seed {seed}: a panic in the server log:\n{log}"
    );
    assert!(
        problems.is_empty(),
        "seed {seed} (FUZZ_SEED={seed} replays it): {} of {} requests went wrong; the first:\n{}",
        problems.len(),
        results.len(),
        problems
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(frames >= 400, "WebSocket frames sent: {frames}");
    eprintln!(
        "fuzz seed {seed}: {} requests by status {by_status:?}; {frames} WebSocket frames",
        results.len()
    );
    assert!(
        by_status.keys().any(|s| *s == 200) && by_status.keys().any(|s| (400..500).contains(s)),
        "the cases reach both success and refusals: {by_status:?}"
    );
}
