//! The frontend in a real browser against `notesctl dev`: sign up, log in, post a note, and see it
//! saved without reloading (the WebSocket pushes it).

use std::time::Duration;

use notesctl_tests::browser::Browser;
use notesctl_tests::dev::DevServer;

fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

async fn fill_and_submit(b: &mut Browser, form: &str, fields: &[(&str, &str)]) {
    let mut script = format!(
        "(() => {{ const f = document.getElementById({}); ",
        js(form)
    );
    for (name, value) in fields {
        script.push_str(&format!(
            "{{ const el = f.elements[{}]; el.value = {}; el.dispatchEvent(new Event('input', {{bubbles: true}})); }} ",
            js(name),
            js(value)
        ));
    }
    script.push_str("f.requestSubmit(); return true; })()");
    b.eval(&script).await;
}

const RECORD_FRAMES: &str = r#"
(() => {
  const Native = window.WebSocket;
  window.__frames = [];
  window.__sockets = [];
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      window.__sockets.push(this);
      this.addEventListener("message", (m) => window.__frames.push(m.data));
    }
  };
  window.__deliverAgain = (data) => window.__sockets[window.__sockets.length - 1].onmessage({ data });
})();
"#;

#[tokio::test]
async fn sign_up_log_in_post_and_see_it_live() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &[]).await;
    let mut b = Browser::launch().await;
    let wait = Duration::from_secs(15);
    // Keep every WebSocket frame the page receives, and a way to deliver one again, as a retried
    // notify would.
    b.call(
        "Page.addScriptToEvaluateOnNewDocument",
        serde_json::json!({"source": RECORD_FRAMES}),
    )
    .await;
    b.navigate(&dev.frontend_url).await;

    b.wait_for("!document.getElementById('login-form').hidden", wait)
        .await;
    b.eval("document.getElementById('show-signup').click()")
        .await;
    b.wait_for("!document.getElementById('signup-form').hidden", wait)
        .await;
    fill_and_submit(
        &mut b,
        "signup-form",
        &[("username", "grace"), ("password", "correct horse")],
    )
    .await;
    let flash = b.wait_for("(document.getElementById('flash').textContent || '').includes('Account created') && document.getElementById('flash').textContent", wait).await;
    assert!(flash.as_str().unwrap().contains("log in"));

    fill_and_submit(
        &mut b,
        "login-form",
        &[("username", "grace"), ("password", "correct horse")],
    )
    .await;
    b.wait_for("!document.getElementById('dashboard').hidden", wait)
        .await;
    assert_eq!(
        b.eval("document.getElementById('whoami').textContent")
            .await,
        "grace"
    );
    b.wait_for(
        "document.getElementById('ws-status').dataset.state === 'open'",
        wait,
    )
    .await;

    // Anything that reloads the page would drop this marker.
    b.eval("window.__sameDocument = 'yes'").await;
    let b_ref = &mut b;
    b_ref
        .eval("(() => { const f = document.getElementById('note-form'); f.elements['isPublic'].checked = true; return true; })()")
        .await;
    fill_and_submit(b_ref, "note-form", &[("content", "hello from chromium")]).await;
    let saved = b
        .wait_for(
            "(() => { const li = [...document.querySelectorAll('#my-notes li[data-status=saved]')].find(li => li.querySelector('.note-content').textContent === 'hello from chromium'); return li ? li.dataset.noteId : null; })()",
            wait,
        )
        .await;
    assert!(
        saved.as_str().unwrap().contains('-'),
        "a real noteId: {saved}"
    );
    assert_eq!(
        b.eval("window.__sameDocument").await,
        "yes",
        "the note appeared without a reload"
    );
    b.wait_for("[...document.querySelectorAll('#public-notes li .note-content')].some(e => e.textContent === 'hello from chromium')", wait).await;

    let shot = notesctl_tests::workspace_root().join("target/browser-dashboard.png");
    b.screenshot(&shot).await;

    // Delivered twice: after the note is deleted, a late duplicate of its note-saved event must
    // not bring it back; a new event for it still applies.
    let id = js(saved.as_str().unwrap());
    let frame = b
        .wait_for(
            &format!("window.__frames.find(f => {{ try {{ const e = JSON.parse(f); return e.eventType === 'note-saved' && e.noteId === {id}; }} catch {{ return false; }} }}) || null"),
            wait,
        )
        .await;
    let mine = format!(
        "[...document.querySelectorAll('#my-notes li')].some(li => li.dataset.noteId === {id})"
    );
    b.eval(&format!("[...document.querySelectorAll('#my-notes li')].find(li => li.dataset.noteId === {id}).querySelector('button.delete').click()")).await;
    b.wait_for(&format!("!({mine})"), wait).await;
    b.wait_for(
        &format!("window.__frames.some(f => f.includes('note-deleted') && f.includes({id}))"),
        wait,
    )
    .await;
    b.eval(&format!(
        "window.__deliverAgain({})",
        js(frame.as_str().unwrap())
    ))
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        b.eval(&mine).await,
        false,
        "a duplicate event brought back a deleted note"
    );
    let mut later: serde_json::Value = serde_json::from_str(frame.as_str().unwrap()).unwrap();
    later["timestamp"] = "2099-01-01T00:00:00.000Z".into();
    b.eval(&format!(
        "window.__deliverAgain({})",
        js(&later.to_string())
    ))
    .await;
    b.wait_for(&mine, wait).await;

    b.close().await;
}
