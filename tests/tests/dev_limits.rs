//! `notesctl dev` under clients that hold connections: idle sockets and sockets that never finish
//! their headers are closed after `--header-timeout`; past `--max-connections` a connection gets a
//! 503 at once instead of starving everyone; an open WebSocket is not timed out by it, but by
//! `--ws-idle-timeout` (with a close frame), and one user holds at most `--max-sockets-per-user`.
//! A client's close frame is answered with one. A request for another host is refused before its
//! body is read.

use std::time::{Duration, Instant};

use futures::StreamExt;
use notesctl_tests::dev::DevServer;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

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

/// A whole HTTP/1.1 answer's `content-length` is its body's length.
fn assert_length_is_body(answer: &str) {
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no content-length in {head}"));
    assert_eq!(length, body.len(), "{answer:?}");
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
    // Until dev has taken them all in, a further connection may still get a place: wait for the
    // first 503 (a probe that got a place is dropped, and its place freed).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut probe = TcpStream::connect(addr(&dev)).await.unwrap();
        let (answer, _) = read_until_closed(&mut probe, Duration::from_millis(300)).await;
        if answer.starts_with("HTTP/1.1 503") {
            break;
        }
        assert!(
            answer.is_empty(),
            "a probe below the cap gets nothing before its headers: {answer}"
        );
        assert!(Instant::now() < deadline, "the cap never answered 503");
    }
    // Past the cap: an immediate 503, and the socket closed.
    for _ in 0..5 {
        let mut extra = TcpStream::connect(addr(&dev)).await.unwrap();
        let started = Instant::now();
        let (answer, closed) = read_until_closed(&mut extra, Duration::from_secs(3)).await;
        assert!(closed, "closed after the 503");
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("too many open connections"), "{answer}");
        assert_length_is_body(&answer);
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
        if let Err(e) = slow.write_all(&[*b]).await {
            // The server closed it: the write meets the reset or the closed pipe.
            assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                ),
                "{e:?}"
            );
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

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn open_ws(
    dev: &DevServer,
    token: &str,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    tokio_tungstenite::connect_async(format!("{}?token={token}", dev.ws_url))
        .await
        .map(|(ws, _)| ws)
}

/// The next frame that is not a ping or pong (within 10 s).
async fn next_frame(ws: &mut Ws) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    loop {
        let got = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("the server answers or closes within 10 s");
        match got {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => return other,
        }
    }
}

#[tokio::test]
async fn a_clients_close_frame_is_answered_with_one() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &[]).await;
    let token = dev.sign_up("ada", "long enough").await;
    let mut ws = open_ws(&dev, &token).await.unwrap();
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "logging out".into(),
    }))
    .await
    .unwrap();
    match next_frame(&mut ws).await {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(frame.code, CloseCode::Normal, "{frame:?}")
        }
        other => panic!("expected the server's close frame (1000), got {other:?}"),
    }
    // The handshake is done: the connection ends cleanly.
    assert!(next_frame(&mut ws).await.is_none(), "the connection ends");
}

#[tokio::test]
async fn one_user_holds_at_most_max_sockets_per_user() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &["--max-sockets-per-user", "2"]).await;
    let ada = dev.sign_up("ada", "long enough").await;
    let bob = dev.sign_up("bob", "long enough").await;
    let mut first = open_ws(&dev, &ada).await.unwrap();
    let _second = open_ws(&dev, &ada).await.unwrap();
    match open_ws(&dev, &ada).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 429);
            let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default());
            assert!(body.contains("Too many open WebSockets"), "{body}");
        }
        other => panic!(
            "the third socket of one user: expected 429, got {:?}",
            other.map(|_| "a socket")
        ),
    }
    let _bob = open_ws(&dev, &bob)
        .await
        .expect("another user still connects");

    // A socket closed gives its place back.
    first.close(None).await.unwrap();
    while next_frame(&mut first).await.is_some() {}
    let started = Instant::now();
    loop {
        match open_ws(&dev, &ada).await {
            Ok(_) => break,
            Err(e) if started.elapsed() < Duration::from_secs(5) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the place of a closed socket was not given back: {e}"),
        }
    }
}

#[tokio::test]
async fn an_idle_websocket_is_closed_and_its_place_freed() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(
        dir.path(),
        &[
            "--max-connections",
            "4",
            "--max-sockets-per-user",
            "4",
            "--ws-idle-timeout",
            "2s",
        ],
    )
    .await;
    let token = dev.sign_up("ada", "long enough").await;
    // The sign-up's connections are gone once its client is.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let mut sockets = Vec::new();
    for _ in 0..4 {
        sockets.push(open_ws(&dev, &token).await.unwrap());
    }
    // Every place is taken by a quiet WebSocket.
    let mut extra = TcpStream::connect(addr(&dev)).await.unwrap();
    let (answer, _) = read_until_closed(&mut extra, Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "checked before the idle timeout"
    );

    // After the idle timeout, each is closed with a close frame …
    for ws in &mut sockets {
        match next_frame(ws).await {
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!(frame.code, CloseCode::Away, "{frame:?}")
            }
            other => panic!("expected a close frame (1001), got {other:?}"),
        }
        assert!(next_frame(ws).await.is_none(), "and the connection ends");
    }
    let idle_for = started.elapsed();
    assert!(
        idle_for >= Duration::from_millis(1900) && idle_for < Duration::from_secs(6),
        "{idle_for:?}"
    );
    // … and their places are free again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = reqwest::get(format!("{}/notes/public", dev.api_url))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ws = open_ws(&dev, &token).await.expect("a new socket connects");
}

#[tokio::test]
async fn a_request_for_another_host_is_refused_before_its_body_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &[]).await;
    let mut s = TcpStream::connect(addr(&dev)).await.unwrap();
    // 900 KiB announced (under the 1 MiB read limit), 1 KiB sent: the rest never comes.
    let head = format!(
        "POST /notes HTTP/1.1\r\nHost: rebind.evil.example:{}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        dev.api_url.rsplit(':').next().unwrap(),
        900 * 1024
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&[b'a'; 1024]).await.unwrap();
    let started = Instant::now();
    let (answer, _) = read_until_closed(&mut s, Duration::from_secs(3)).await;
    assert!(
        answer.starts_with("HTTP/1.1 403"),
        "answered at once, before the body: {answer:?} after {:?}",
        started.elapsed()
    );
    assert!(
        answer.contains("does not answer to the host name"),
        "{answer}"
    );
}
