//! `notesctl dev` under clients that hold connections: idle sockets and sockets that never finish
//! their headers are closed after `--header-timeout`; past `--max-connections` a connection gets a
//! 503 at once instead of starving everyone; an open WebSocket is not timed out.

use std::time::{Duration, Instant};

use futures::StreamExt;
use notesctl_tests::dev::DevServer;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn addr(dev: &DevServer) -> String {
    dev.api_url.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the socket (or `limit` passes); what it sent, and whether it closed.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
        }
    }
}

#[tokio::test]
async fn slow_and_idle_clients_are_closed_and_the_cap_answers_503() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(
        dir.path(),
        &["--max-connections", "20", "--header-timeout", "1s"],
    )
    .await;
    let token = dev.sign_up("ada", "long enough").await;

    // A WebSocket that will sit quiet for longer than the header timeout.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{}?token={token}", dev.ws_url))
        .await
        .unwrap();

    // Fill the cap (the WebSocket holds one place): 19 idle sockets.
    let mut idle = Vec::new();
    for _ in 0..19 {
        idle.push(TcpStream::connect(addr(&dev)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Past the cap: an immediate 503, and the socket closed.
    for _ in 0..5 {
        let mut extra = TcpStream::connect(addr(&dev)).await.unwrap();
        let started = Instant::now();
        let (answer, closed) = read_until_closed(&mut extra, Duration::from_secs(3)).await;
        assert!(closed, "closed after the 503");
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("too many open connections"), "{answer}");
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "at once, not after a timeout"
        );
    }

    // The idle sockets are closed by the server after the header timeout …
    let started = Instant::now();
    for s in &mut idle {
        let (_, closed) = read_until_closed(s, Duration::from_secs(5)).await;
        assert!(closed, "an idle socket is closed");
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    // … and so is one that sends its headers a byte at a time.
    let mut slow = TcpStream::connect(addr(&dev)).await.unwrap();
    let started = Instant::now();
    let request = b"GET /notes/public HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
    let mut closed_early = false;
    for b in request.iter().chain(std::iter::repeat_n(&b'a', 40)) {
        if slow.write_all(&[*b]).await.is_err() {
            closed_early = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if started.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    if !closed_early {
        let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(3)).await;
        assert!(closed, "a slow-headers socket is closed");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // With the idle ones gone, real requests are served.
    let r = reqwest::get(format!("{}/notes/public", dev.api_url))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The WebSocket, quiet for seconds, is still open and still gets its user's events.
    let post = reqwest::Client::new()
        .post(format!("{}/notes", dev.api_url))
        .bearer_auth(&token)
        .json(&json!({"content": "still listening?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 202);
    let got = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("the WebSocket got the note-saved event")
        .expect("open")
        .unwrap();
    assert!(got.to_string().contains("still listening?"), "{got}");
}
