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

#[tokio::test]
async fn sign_up_log_in_post_and_see_it_live() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &[]).await;
    let mut b = Browser::launch().await;
    let wait = Duration::from_secs(15);
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
    b.close().await;
}
