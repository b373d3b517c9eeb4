//! The HTTP routes in-process, against embedded ports: bodies, status codes and the required fixes.

mod support;

use std::sync::Arc;

use notes_handlers::HandlerName;
use notes_handlers::domain::events::NoteEvent;
use notes_handlers::domain::token::{AUDIENCE, ISSUER, LIFETIME_SECS, TokenKeys, now_secs};
use notes_handlers::embedded::StaticSecret;
use serde_json::json;
use support::fakes::RefusingBus;
use support::{App, SECRET};

#[tokio::test]
async fn signup_login_and_profile() {
    let app = App::new();
    let creds = json!({"username": "ada", "password": "long enough"});
    let r = app
        .http("POST", "/auth/signup", Some(creds.clone()), None)
        .await;
    assert_eq!(
        (r.status, &r.body),
        (
            201,
            &json!({"message": "User created successfully", "username": "ada"})
        )
    );
    let r = app
        .http("POST", "/auth/signup", Some(creds.clone()), None)
        .await;
    assert_eq!(
        (r.status, r.body["message"].as_str()),
        (409, Some("User already exists"))
    );

    let r = app.http("POST", "/auth/login", Some(creds), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["message"], "Login successful");
    assert_eq!(r.body["username"], "ada");
    let token = r.body["token"].as_str().unwrap();
    let claims = TokenKeys::new(SECRET).unwrap().verify(token).unwrap();
    assert_eq!(
        (claims.username.as_str(), claims.sub.as_str()),
        ("ada", "ada")
    );
    assert_eq!(claims.exp - claims.iat, LIFETIME_SECS);

    let r = app.get("/auth/user", token).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["pk"], "USER#ada");
    assert_eq!(r.body["sk"], "PROFILE");
    assert_eq!(r.body["username"], "ada");
    assert!(r.body["createdAt"].as_str().unwrap().ends_with('Z'));
    assert!(
        r.body.get("passwordHash").is_none(),
        "never the password hash"
    );
}

/// `Alice`, `ALICE` and a full-width `Ａlice` are one account, shown as first typed; a short password
/// is refused at sign-up with the rule.
#[tokio::test]
async fn one_account_per_normalised_name_and_passwords_of_eight() {
    let app = App::new();
    let short = app
        .http(
            "POST",
            "/auth/signup",
            Some(json!({"username": "Alice", "password": "1234567"})),
            None,
        )
        .await;
    assert_eq!(short.status, 400);
    assert_eq!(
        short.body["errors"][0]["message"],
        "password must be at least 8 characters"
    );
    let r = app
        .http(
            "POST",
            "/auth/signup",
            Some(json!({"username": "Alice", "password": "long enough"})),
            None,
        )
        .await;
    assert_eq!(r.status, 201);
    for other in ["alice", "ALICE", "\u{FF21}lice"] {
        let r = app
            .http(
                "POST",
                "/auth/signup",
                Some(json!({"username": other, "password": "another password"})),
                None,
            )
            .await;
        assert_eq!(
            (r.status, r.body["message"].as_str()),
            (409, Some("User already exists")),
            "{other:?}"
        );
        let login = app
            .http(
                "POST",
                "/auth/login",
                Some(json!({"username": other, "password": "long enough"})),
                None,
            )
            .await;
        assert_eq!(login.status, 200, "{other:?} logs in to the one account");
        assert_eq!(login.body["username"], "Alice", "shown as first typed");
        let claims = TokenKeys::new(SECRET)
            .unwrap()
            .verify(login.body["token"].as_str().unwrap())
            .unwrap();
        assert_eq!(claims.username, "Alice", "notes are kept under one name");
    }
    let spoof = app
        .http(
            "POST",
            "/auth/signup",
            Some(json!({"username": "Al\u{200B}ice", "password": "long enough"})),
            None,
        )
        .await;
    assert_eq!(
        spoof.status, 400,
        "a zero-width space is refused, not a new account"
    );
}

/// An all-blank password is no password, and `zоe` with a Cyrillic `о` beside `Zoe` is no second
/// account: both are refused with 400 like any invalid body, and nothing is created.
#[tokio::test]
async fn blank_passwords_and_names_mixing_scripts_are_refused() {
    let app = App::new();
    let blank = app
        .http(
            "POST",
            "/auth/signup",
            Some(json!({"username": "ada", "password": "        "})),
            None,
        )
        .await;
    assert_eq!(blank.status, 400, "{:?}", blank.body);
    assert_eq!(blank.body["errors"][0]["path"], json!(["password"]));
    let login = app
        .http(
            "POST",
            "/auth/login",
            Some(json!({"username": "ada", "password": "        "})),
            None,
        )
        .await;
    assert_eq!(login.status, 401, "no account was made");

    let zoe = app
        .http(
            "POST",
            "/auth/signup",
            Some(json!({"username": "Zoe", "password": "long enough"})),
            None,
        )
        .await;
    assert_eq!(zoe.status, 201);
    let mixed = app
        .http(
            "POST",
            "/auth/signup",
            Some(json!({"username": "z\u{43E}e", "password": "long enough"})),
            None,
        )
        .await;
    assert_eq!(mixed.status, 400, "{:?}", mixed.body);
    assert!(
        mixed.body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("must not mix scripts")),
        "{:?}",
        mixed.body
    );
    let cyrillic = app
        .http(
            "POST",
            "/auth/signup",
            Some(json!({"username": "\u{417}\u{43E}\u{44F}", "password": "long enough"})),
            None,
        )
        .await;
    assert_eq!(cyrillic.status, 201, "one script alone is a name");
}

#[tokio::test]
async fn unknown_user_and_wrong_password_get_the_same_answer() {
    let app = App::new();
    app.signup_and_login("ada").await;
    let wrong = app
        .post_anonymous("/auth/login", json!({"username":"ada","password":"nope"}))
        .await;
    let unknown = app
        .post_anonymous("/auth/login", json!({"username":"bob","password":"nope"}))
        .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(unknown.status, 401);
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(wrong.body["message"], "Invalid username or password");
}

/// Required fix 8: argon2id PHC strings, not bare scrypt.
#[tokio::test]
async fn fix8_passwords_are_stored_as_argon2id() {
    let app = App::new();
    app.signup_and_login("ada").await;
    use notes_handlers::ports::UserStore;
    let user = app.store.get_user("ada").await.unwrap().unwrap();
    assert!(
        user.password_hash.starts_with("$argon2id$v=19$"),
        "{}",
        user.password_hash
    );
    assert!(!user.password_hash.contains("correct horse"));
}

/// Required fix 8: a JWT secret shorter than 32 bytes is refused; no token is ever signed with it.
#[tokio::test]
async fn fix8_short_secrets_are_refused() {
    let app = App::new().with(|d| {
        *d = notes_handlers::embedded::deps(
            notes_handlers::embedded::EmbeddedStore::in_memory(),
            Arc::new(StaticSecret::new(b"short".to_vec())),
            Default::default(),
        )
        .0
    });
    let r = app
        .post_anonymous(
            "/auth/signup",
            json!({"username":"ada","password":"pw-12345"}),
        )
        .await;
    assert_eq!(r.status, 201);
    let r = app
        .post_anonymous(
            "/auth/login",
            json!({"username":"ada","password":"pw-12345"}),
        )
        .await;
    assert_eq!(r.status, 500);
    assert!(r.body.get("token").is_none());
    assert_eq!(
        r.body["message"], "Internal server error",
        "the cause stays in the logs"
    );
}

fn forged_tokens() -> Vec<(&'static str, String)> {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    let now = now_secs();
    let claims = json!({"sub":"ada","username":"ada","iat":now,"exp":now + 3600,"iss":ISSUER,"aud":AUDIENCE});
    let enc = |v: &serde_json::Value| B64.encode(v.to_string());
    let keys = TokenKeys::new(SECRET).unwrap();
    let good = keys.issue("ada", now).unwrap();
    let sig = good.rsplit('.').next().unwrap().to_owned();
    let other = TokenKeys::new(b"some-other-key-some-other-key-some-other").unwrap();
    vec![
        // The original's notes and WebSocket handlers accepted this: a payload, base64-decoded.
        (
            "unsigned payload",
            format!(
                "{}.{}.",
                enc(&json!({"alg":"none","typ":"JWT"})),
                enc(&claims)
            ),
        ),
        (
            "alg none with a signature",
            format!("{}.{}.{sig}", enc(&json!({"alg":"none"})), enc(&claims)),
        ),
        (
            "payload swapped",
            format!(
                "{}.{}.{sig}",
                enc(&json!({"alg":"HS256","typ":"JWT"})),
                enc(
                    &json!({"sub":"eve","username":"eve","iat":now,"exp":now+3600,"iss":ISSUER,"aud":AUDIENCE})
                )
            ),
        ),
        ("other key", other.issue("ada", now).unwrap()),
        (
            "expired",
            keys.issue("ada", now - 2 * LIFETIME_SECS).unwrap(),
        ),
        ("garbage", "not.a.jwt".to_owned()),
    ]
}

/// Required fix 1: every authenticated route verifies signature, algorithm and expiry.
#[tokio::test]
async fn fix1_authenticated_routes_reject_forged_tokens() {
    let mut app = App::new();
    let token = app.signup_and_login("ada").await;
    let id = app.post_and_save(&token, "mine", false).await;
    for (what, forged) in forged_tokens() {
        for (method, path, body) in [
            ("GET", "/auth/user".to_owned(), None),
            ("POST", "/notes".to_owned(), Some(json!({"content": "x"}))),
            ("GET", "/notes".to_owned(), None),
            ("PUT", format!("/notes/{id}"), Some(json!({"content": "y"}))),
            ("DELETE", format!("/notes/{id}"), None),
        ] {
            let r = app.http(method, &path, body, Some(&forged)).await;
            assert_eq!(
                r.status, 401,
                "{what}: {method} {path} gave {} {}",
                r.status, r.body
            );
            assert_eq!(r.body["message"], "Invalid or expired token");
        }
    }
    assert!(
        app.drain_events().is_empty(),
        "nothing was published with a forged token"
    );
    let r = app.http("GET", "/notes", None, None).await;
    assert_eq!(
        r.status, 401,
        "a missing header on a notes route: {}",
        r.body
    );
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("Authorization")
    );
}

#[tokio::test]
async fn publish_answers_202_and_publishes_note_created() {
    let mut app = App::new();
    let token = app.signup_and_login("ada").await;
    let r = app
        .post(
            "/notes",
            json!({"content": "  hello  ", "isPublic": true}),
            &token,
        )
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(r.body["message"], "Note submitted for processing");
    assert_eq!(r.body["status"], "pending");
    let id = r.body["noteId"].as_str().unwrap();
    let (millis, suffix) = id.split_once('-').unwrap();
    assert!(millis.parse::<u64>().is_ok() && suffix.len() == 7);
    let events = app.drain_events();
    assert_eq!(events.len(), 1);
    match &events[0] {
        NoteEvent::Created {
            note_id,
            username,
            content,
            is_public,
            ..
        } => {
            assert_eq!(
                (
                    note_id.as_str(),
                    username.as_str(),
                    content.as_str(),
                    *is_public
                ),
                (id, "ada", "hello", true)
            );
        }
        other => panic!("expected note-created, got {other:?}"),
    }
    let cors = &r.raw["headers"];
    assert_eq!(cors["access-control-allow-origin"], "*");
    assert_eq!(
        cors["access-control-allow-headers"],
        "Content-Type,Authorization"
    );
}

/// A `PutEvents` answer with `FailedEntryCount > 0` is retried, and never a silent 202.
#[tokio::test]
async fn refused_events_are_retried_then_fail_loudly() {
    let bus = Arc::new(RefusingBus::refusing(1));
    let app = App::new().with(|d| d.bus = bus.clone());
    let token = app.signup_and_login("ada").await;
    let r = app.post("/notes", json!({"content": "x"}), &token).await;
    assert_eq!(r.status, 202, "one refusal is retried");
    assert_eq!(bus.accepted.lock().unwrap().len(), 1);

    let bus = Arc::new(RefusingBus::refusing(usize::MAX));
    let app = App::new().with(|d| d.bus = bus.clone());
    let token = app.signup_and_login("ada").await;
    let r = app.post("/notes", json!({"content": "x"}), &token).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(bus.accepted.lock().unwrap().is_empty());
    assert!(bus.calls.load(std::sync::atomic::Ordering::SeqCst) >= 3);
}

/// Required fix 2: public notes appear in the owner's list and can be updated and deleted by them.
#[tokio::test]
async fn fix2_public_notes_belong_to_their_owner() {
    let mut app = App::new();
    let token = app.signup_and_login("ada").await;
    let public_id = app.post_and_save(&token, "for everyone", true).await;
    let private_id = app.post_and_save(&token, "for me", false).await;

    let mine = app.get("/notes", &token).await;
    assert_eq!(mine.status, 200);
    let ids: Vec<&str> = mine.body["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["noteId"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![private_id.as_str(), public_id.as_str()],
        "newest first, public included"
    );
    assert_eq!(mine.body["count"], 2);
    assert_eq!(mine.body["notes"][1]["isPublic"], true);
    assert_eq!(mine.body["notes"][1]["status"], "saved");
    assert!(mine.body["notes"][0].get("username").is_none());

    let public = app.http("GET", "/notes/public", None, None).await;
    assert_eq!(public.body["count"], 1);
    assert_eq!(public.body["notes"][0]["username"], "ada");

    let r = app
        .put(
            &format!("/notes/{public_id}"),
            json!({"content": "edited"}),
            &token,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["message"], "Note updated successfully");
    assert_eq!(r.body["content"], "edited");
    let public = app.http("GET", "/notes/public", None, None).await;
    assert_eq!(
        public.body["notes"][0]["content"], "edited",
        "the public copy follows"
    );
    assert!(matches!(
        app.drain_events().as_slice(),
        [NoteEvent::Updated {
            is_public: true,
            ..
        }]
    ));

    let r = app.delete(&format!("/notes/{public_id}"), &token).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["message"], "Note deleted successfully");
    assert_eq!(r.body["noteId"], public_id);
    assert_eq!(
        app.http("GET", "/notes/public", None, None).await.body["count"],
        0
    );
    assert_eq!(app.get("/notes", &token).await.body["count"], 1);
    assert!(matches!(
        app.drain_events().as_slice(),
        [NoteEvent::Deleted {
            is_public: true,
            ..
        }]
    ));
}

/// Required fix 3: another user's note is a 404, found by key; nothing of it changes.
#[tokio::test]
async fn fix3_other_users_notes_are_not_found() {
    let mut app = App::new();
    let ada = app.signup_and_login("ada").await;
    let eve = app.signup_and_login("eve").await;
    let id = app.post_and_save(&ada, "ada's", true).await;
    let r = app
        .put(&format!("/notes/{id}"), json!({"content": "pwned"}), &eve)
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.body["message"],
        "Note not found or you do not have permission to update it"
    );
    let r = app.delete(&format!("/notes/{id}"), &eve).await;
    assert_eq!(r.status, 404);
    let r = app
        .put(
            "/notes/1700000000000-unknown",
            json!({"content": "x"}),
            &ada,
        )
        .await;
    assert_eq!(r.status, 404);
    let r = app.delete("/notes/not-an-id!", &ada).await;
    assert_eq!(r.status, 404);
    let public = app.http("GET", "/notes/public", None, None).await;
    assert_eq!(public.body["notes"][0]["content"], "ada's");
    assert!(app.drain_events().is_empty());
}

/// Required fix 7: lists page with an opaque cursor instead of stopping at 50.
#[tokio::test]
async fn fix7_lists_page_with_a_cursor() {
    let mut app = App::new();
    let token = app.signup_and_login("ada").await;
    let mut ids = Vec::new();
    for i in 0..57u32 {
        ids.push(
            app.post_and_save(&token, &format!("note {i}"), i.is_multiple_of(2))
                .await,
        );
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    ids.reverse();
    for (path, expect) in [
        ("/notes", ids.clone()),
        (
            "/notes/public",
            ids.iter()
                .enumerate()
                .filter(|(i, _)| (56 - i).is_multiple_of(2usize))
                .map(|(_, id)| id.clone())
                .collect(),
        ),
    ] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let url = match &cursor {
                Some(c) => format!("{path}?cursor={c}&limit=20"),
                None => format!("{path}?limit=20"),
            };
            let r = app.get(&url, &token).await;
            assert_eq!(r.status, 200, "{}", r.body);
            pages += 1;
            for n in r.body["notes"].as_array().unwrap() {
                seen.push(n["noteId"].as_str().unwrap().to_owned());
            }
            match r.body.get("cursor").and_then(|c| c.as_str()) {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        assert_eq!(seen, expect, "{path}: every note once, newest first");
        assert!(pages >= 2, "{path}");
    }
    let r = app.get("/notes", &token).await;
    assert_eq!(r.body["count"], 50, "default page");
    assert!(r.body["cursor"].is_string());
    let r = app.get("/notes?cursor=%%%", &token).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn preflight_and_cors_on_errors() {
    let app = App::new();
    let (h, mut ev) = App::http_event("POST", "/notes", None, None);
    ev["requestContext"]["http"]["method"] = json!("OPTIONS");
    let r = app.http_raw(h, ev).await;
    assert_eq!(r.status, 204);
    assert_eq!(
        r.raw["headers"]["access-control-allow-methods"],
        "GET,POST,PUT,DELETE,OPTIONS"
    );
    let r = app.post_anonymous("/auth/signup", json!({})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.raw["headers"]["access-control-allow-origin"], "*");
    assert_eq!(r.body["errors"][0]["path"], json!(["username"]));
}

#[tokio::test]
async fn base64_bodies_are_decoded() {
    use base64::Engine;
    let app = App::new();
    let body = base64::engine::general_purpose::STANDARD
        .encode(r#"{"username":"ada","password":"pw-12345"}"#);
    let (h, mut ev) = App::http_event("POST", "/auth/signup", Some(&body), None);
    ev["isBase64Encoded"] = json!(true);
    assert_eq!(app.http_raw(h, ev).await.status, 201);
    let _ = HandlerName::AuthSignup;
}
