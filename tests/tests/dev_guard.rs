//! `notesctl dev` against callers it should not serve: other host names (DNS rebinding), runbook API
//! calls without this run's token, and SQS parameters outside SQS's limits. And what it leaves on
//! disk: a data directory and files only their owner can read; what it never serves from
//! `--frontend DIR` (dotfiles, the data directory); and data directories it refuses to use.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use aws_sdk_sqs::error::ProvideErrorMetadata;
use notesctl_tests::dev::DevServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn sqs(dev: &DevServer, secret: &str) -> aws_sdk_sqs::Client {
    dev.sqs(secret).await
}

/// One raw HTTP/1.1 request with the given `Host`; the status code and the body.
async fn raw(dev: &DevServer, method: &str, path: &str, host: &str) -> (u16, String) {
    let addr = dev.api_url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .expect("answered")
        .unwrap();
    let code = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (code, body)
}

#[tokio::test]
async fn other_host_names_are_refused_on_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &["--allowed-host", "notes.test"]).await;
    let port = dev.api_url.rsplit(':').next().unwrap().to_owned();
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/config.json"),
        ("GET", "/ws"),
        ("GET", "/notes/public"),
        ("POST", "/auth/signup"),
        ("POST", "/"),
    ] {
        let (code, body) = raw(&dev, method, path, &format!("rebind.example:{port}")).await;
        assert_eq!(code, 403, "{method} {path}: {body}");
        assert!(
            body.contains("--allowed-host rebind.example"),
            "{method} {path}: says how to allow it: {body}"
        );
    }
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("notes.test:{port}"),
    ] {
        let (code, body) = raw(&dev, "GET", "/config.json", &host).await;
        assert_eq!(code, 200, "{host}: {body}");
        assert!(
            body.contains(&format!("http://{host}")),
            "config.json names the host the browser used: {body}"
        );
    }
}

#[tokio::test]
async fn the_runbook_api_answers_only_this_runs_token() {
    let root = tempfile::tempdir().unwrap();
    // A directory dev creates, so its mode is dev's to choose (an existing one keeps its own).
    let dir = root.path().join("dev");
    let dev = DevServer::start(&dir, &[]).await;
    let token = dev.runbook_token();
    let queue_url = format!("{}/000000000000/dev-note-processing-queue", dev.api_url);

    // What any local process or page could do before: forge a note-created for another user.
    let forged = r#"{"detail-type":"note-created","detail":{"noteId":"x","username":"bob","content":"forged","isPublic":true}}"#;
    for secret in ["x", "local", &token[..token.len() - 1]] {
        let err = sqs(&dev, secret)
            .await
            .send_message()
            .queue_url(&queue_url)
            .message_body(forged)
            .send()
            .await
            .expect_err("a wrong secret is refused");
        assert_eq!(err.code(), Some("SignatureDoesNotMatch"), "{err:?}");
        assert!(
            err.message().unwrap_or_default().contains("runbook-token"),
            "{err:?}"
        );
    }
    // A request with no signature at all.
    let unsigned = reqwest::Client::new()
        .post(&dev.api_url)
        .header("x-amz-target", "AmazonSQS.SendMessage")
        .header("content-type", "application/x-amz-json-1.0")
        .body(format!(r#"{{"QueueUrl":"{queue_url}","MessageBody":"x"}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 403);
    // Logs too: they hold usernames.
    let logs = reqwest::Client::new()
        .post(&dev.api_url)
        .header("x-amz-target", "Logs_20140328.FilterLogEvents")
        .header("content-type", "application/x-amz-json-1.1")
        .body(r#"{"logGroupName":"/aws/lambda/dev-auth-signup"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(logs.status(), 403);

    let depth = sqs(&dev, "x")
        .await
        .get_queue_attributes()
        .queue_url(&queue_url)
        .send()
        .await;
    assert!(depth.is_err());
    let right = sqs(&dev, &token).await;
    right
        .get_queue_attributes()
        .queue_url(&queue_url)
        .send()
        .await
        .expect("the token opens it");

    // The token is new on every start and private to its owner.
    let path = dir.join("runbook-token");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let mode = |name: &str| {
        std::fs::metadata(dir.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("."), 0o700, "the data directory");
    for file in ["store.redb", "queue.redb", "jwt-secret"] {
        assert_eq!(mode(file), 0o600, "{file}");
    }
    dev.terminate().await;
    let again = DevServer::start(&dir, &[]).await;
    assert_ne!(again.runbook_token(), token, "a fresh token per run");
    again.terminate().await;
}

#[tokio::test]
async fn sqs_parameters_are_held_to_sqs_limits() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &[]).await;
    let q = sqs(&dev, &dev.runbook_token()).await;
    let url = format!("{}/000000000000/dev-note-processing-queue", dev.api_url);
    let code = |e: &dyn ProvideErrorMetadata| e.code().unwrap_or_default().to_owned();

    let hide = q
        .receive_message()
        .queue_url(&url)
        .visibility_timeout(1_000_000_000)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&hide), "InvalidParameterValue", "{hide:?}");
    let wait = q
        .receive_message()
        .queue_url(&url)
        .wait_time_seconds(21)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&wait), "InvalidParameterValue");
    let many = q
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(11)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&many), "InvalidParameterValue");
    let delay = q
        .send_message()
        .queue_url(&url)
        .message_body("x")
        .delay_seconds(901)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&delay), "InvalidParameterValue");
    let big = q
        .send_message()
        .queue_url(&url)
        .message_body("x".repeat(256 * 1024 + 1))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&big), "InvalidParameterValue");
    let empty = q
        .send_message()
        .queue_url(&url)
        .message_body("")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&empty), "MissingParameter");
    let entries: Vec<_> = (0..11)
        .map(|i| {
            aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                .id(format!("m{i}"))
                .message_body("x")
                .build()
                .unwrap()
        })
        .collect();
    let batch = q
        .send_message_batch()
        .queue_url(&url)
        .set_entries(Some(entries))
        .send()
        .await
        .unwrap_err();
    assert!(
        code(&batch).ends_with("TooManyEntriesInBatchRequest"),
        "{batch:?}"
    );

    // Within the limits: a delayed message is counted as delayed, then delivered.
    q.send_message()
        .queue_url(&url)
        .message_body("later")
        .delay_seconds(1)
        .send()
        .await
        .unwrap();
    let attrs = q
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let delayed = attrs
        .attributes()
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        })
        .cloned();
    assert_eq!(delayed.as_deref(), Some("1"));
    // Nothing was stored by the refused calls: only the delayed message is there.
    let visible = attrs
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages))
        .cloned();
    assert_eq!(visible.as_deref(), Some("0"));
}

#[tokio::test]
async fn binding_beyond_loopback_says_what_becomes_reachable() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(notesctl_tests::dev::notesctl_binary())
        .args(["dev", "--port", "0", "--host", "0.0.0.0", "--data-dir"])
        .arg(dir.path())
        .env("NOTESCTL_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let warned = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let n = stderr.read(&mut buf).await.unwrap();
            assert!(n > 0, "dev ended: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen);
            if text.contains("not only on this machine") {
                return text.into_owned();
            }
        }
    })
    .await
    .expect("a warning within 30 s");
    assert!(warned.contains("sign up"), "{warned}");
    assert!(warned.contains("--host 127.0.0.1"), "{warned}");
    let _ = child.kill().await;
}

/// `notesctl dev` with `args`, run in `cwd`, that is expected to stop at once: its exit code and
/// stderr.
async fn refused_start(cwd: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let run = tokio::process::Command::new(notesctl_tests::dev::notesctl_binary())
        .args(["dev", "--port", "0"])
        .args(args)
        .current_dir(cwd)
        .env_remove("NOTESCTL_OUTPUT")
        .env_remove("NOTESCTL_LOG")
        .env_remove("NOTESCTL_DEV_DATA_DIR")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("dev stops at once")
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `--frontend DIR` serves what a site needs, not what lies beside it: `.env`, `.git/`, any dotfile
/// (percent-encoded too) get a missing file's 404; `/.well-known/` is served.
#[tokio::test]
async fn dotfiles_in_the_frontend_dir_are_not_served() {
    let site = tempfile::tempdir().unwrap();
    for (rel, body) in [
        ("index.html", "<p>my page</p>"),
        (".env", "AWS_SECRET_ACCESS_KEY=xyz"),
        (".git/config", "[remote \"origin\"]"),
        ("js/.app.js.swp", "swap"),
        (
            ".well-known/security.txt",
            "Contact: mailto:sec@example.test",
        ),
    ] {
        let p = site.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    let data = tempfile::tempdir().unwrap();
    let frontend = site.path().to_string_lossy().into_owned();
    let dev = DevServer::start(data.path(), &["--frontend", &frontend]).await;
    let host = dev.api_url.trim_start_matches("http://").to_owned();
    let missing = raw(&dev, "GET", "/missing.txt", &host).await;
    assert_eq!(missing.0, 404, "{missing:?}");
    for path in [
        "/.env",
        "/%2eenv",
        "/%2Eenv",
        "/.git/config",
        "/.git/",
        "/js/.app.js.swp",
    ] {
        let (code, body) = raw(&dev, "GET", path, &host).await;
        assert_eq!(
            (code, body.replace(path, "/missing.txt")),
            missing,
            "{path}: the answer a missing file gets (which names the path)"
        );
        assert!(
            !body.contains("SECRET") && !body.contains("[remote"),
            "{body}"
        );
    }
    let (code, body) = raw(&dev, "GET", "/index.html", &host).await;
    assert_eq!((code, body.as_str()), (200, "<p>my page</p>"));
    let (code, body) = raw(&dev, "GET", "/.well-known/security.txt", &host).await;
    assert_eq!(
        (code, body.as_str()),
        (200, "Contact: mailto:sec@example.test")
    );
}

/// A data directory inside `--frontend DIR` would put the JWT secret, the runbook token and the
/// store on the web: `dev` refuses to start (exit 2, one line saying what to do) and creates nothing.
#[tokio::test]
async fn dev_refuses_a_data_dir_inside_the_frontend_dir() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("fe")).unwrap();
    std::fs::write(root.path().join("fe/index.html"), "<p>hi</p>").unwrap();
    let (code, err) = refused_start(
        root.path(),
        &["--data-dir", "fe/.notesctl/dev", "--frontend", "fe"],
    )
    .await;
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--data-dir fe/.notesctl/dev is inside --frontend fe")
            && err.contains("JWT secret")
            && err.contains("pass a --data-dir outside fe"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        !root.path().join("fe/.notesctl").exists(),
        "nothing created"
    );

    // The same folder reached another way (`..`, an absolute path) is found all the same.
    std::fs::create_dir(root.path().join("fe/data")).unwrap();
    let fe = root.path().join("fe").to_string_lossy().into_owned();
    let (code, err) = refused_start(
        root.path(),
        &["--data-dir", "x/../fe/data", "--frontend", &fe],
    )
    .await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("is inside --frontend"), "{err}");
}

/// `--data-dir` on a directory that already exists never changes its mode. A shared one (`1777`,
/// sticky) is refused, saying why and what to do, and keeps its mode and sticky bit; the owner's
/// own (0700) is used as it is; a directory `dev` creates is 0700.
#[tokio::test]
async fn an_existing_data_dir_keeps_its_mode_and_is_refused_if_others_may_write() {
    let root = tempfile::tempdir().unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;

    let shared = root.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let dir = shared.to_string_lossy().into_owned();
    let (code, err) = refused_start(root.path(), &["--data-dir", &dir]).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "the data directory {dir} may be written by other users (mode 1777)"
        )) && err.contains("could replace its JWT secret or its store")
            && err.contains(&format!("chmod 700 {dir}"))
            && err.contains("another --data-dir"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert_eq!(mode(&shared), 0o1777, "its mode and sticky bit are kept");
    assert_eq!(
        std::fs::read_dir(&shared).unwrap().count(),
        0,
        "nothing written in it"
    );

    let own = root.path().join("own");
    std::fs::create_dir(&own).unwrap();
    std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o700)).unwrap();
    let dev = DevServer::start(&own, &[]).await;
    assert_eq!(mode(&own), 0o700);
    assert!(own.join("jwt-secret").exists(), "in use");
    dev.terminate().await;
    assert_eq!(mode(&own), 0o700);

    let new = root.path().join("new/dev");
    let dev = DevServer::start(&new, &[]).await;
    assert_eq!(mode(&new), 0o700, "a directory dev creates is its owner's");
    dev.terminate().await;
}

/// CORS as dev answers it: a page of dev's own origin or of any local port may call the API from a
/// browser, another site may not (no `Access-Control-Allow-Origin`, so the browser refuses the
/// answer), a preflight likewise; `--allowed-origin` names others instead of the local ports, and
/// `'*'` allows every site with a warning. `dev` answered `*` to everyone before.
#[tokio::test]
async fn the_api_answers_the_origins_it_allows_and_no_others() {
    let allow_origin = async |dev: &DevServer, method: reqwest::Method, origin: Option<&str>| {
        let mut req = reqwest::Client::new()
            .request(method, format!("{}/notes/public", dev.api_url))
            .header("access-control-request-method", "GET");
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let resp = req.send().await.unwrap();
        resp.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &[]).await;
    let own = dev.api_url.trim_end_matches('/').to_owned();
    for method in [reqwest::Method::GET, reqwest::Method::OPTIONS] {
        for allowed in [
            own.as_str(),
            "http://localhost:5173",
            "http://127.0.0.1:8080",
        ] {
            assert_eq!(
                allow_origin(&dev, method.clone(), Some(allowed))
                    .await
                    .as_deref(),
                Some(allowed),
                "{method} from {allowed}"
            );
        }
        assert_eq!(
            allow_origin(&dev, method.clone(), Some("https://evil.example")).await,
            None,
            "{method} from another site"
        );
    }
    assert_eq!(
        allow_origin(&dev, reqwest::Method::GET, None)
            .await
            .as_deref(),
        Some(own.as_str()),
        "no Origin: dev's own"
    );
    drop(dev);

    let dir = tempfile::tempdir().unwrap();
    let named = DevServer::start(dir.path(), &["--allowed-origin", "http://localhost:8080"]).await;
    assert_eq!(
        allow_origin(&named, reqwest::Method::GET, Some("http://localhost:8080"))
            .await
            .as_deref(),
        Some("http://localhost:8080"),
        "the original web client, served from another local port"
    );
    assert_eq!(
        allow_origin(&named, reqwest::Method::GET, Some("http://localhost:5173")).await,
        None,
        "the flag replaces the local ports"
    );
    drop(named);

    let dir = tempfile::tempdir().unwrap();
    let (any, log) = DevServer::start_with_log(dir.path(), &["--allowed-origin", "*"]).await;
    assert_eq!(
        allow_origin(&any, reqwest::Method::GET, Some("https://evil.example"))
            .await
            .as_deref(),
        Some("*")
    );
    assert!(
        log.lock().unwrap().contains("--allowed-origin '*'"),
        "{}",
        log.lock().unwrap()
    );
}
