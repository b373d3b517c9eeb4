//! Bad input never earns a 5xx or a panic: each is a 4xx whose message says what is wrong. Property
//! tests throw arbitrary bodies and tokens at the routes.

mod support;

use notes_handlers::HandlerName;
use proptest::prelude::*;
use serde_json::json;
use support::App;

fn assert_client_error(r: &support::Response, status: u16, needle: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    let message = r.body["message"].as_str().unwrap_or_default();
    assert!(
        message.to_lowercase().contains(&needle.to_lowercase()),
        "'{message}' should mention '{needle}'"
    );
}

async fn raw(
    app: &App,
    method: &str,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> support::Response {
    let (handler, ev) = App::http_event(method, path, Some(body), token);
    app.http_raw(handler, ev).await
}

#[tokio::test]
async fn malformed_bodies_are_400s_that_say_why() {
    let app = App::new();
    let token = app.signup_and_login("ada").await;
    assert_client_error(
        &raw(&app, "POST", "/notes", "{not json", Some(&token)).await,
        400,
        "not valid JSON",
    );
    assert_client_error(
        &raw(&app, "POST", "/notes", "", Some(&token)).await,
        400,
        "required",
    );
    assert_client_error(
        &raw(&app, "POST", "/notes", "[]", Some(&token)).await,
        400,
        "JSON object",
    );
    assert_client_error(
        &raw(&app, "POST", "/notes", r#"{"content": 42}"#, Some(&token)).await,
        400,
        "must be a string",
    );
    assert_client_error(
        &raw(&app, "POST", "/notes", r#"{"content": "  "}"#, Some(&token)).await,
        400,
        "must not be empty",
    );
    assert_client_error(
        &raw(
            &app,
            "POST",
            "/notes",
            r#"{"content":"x","isPublic":"yes"}"#,
            Some(&token),
        )
        .await,
        400,
        "boolean",
    );
    assert_client_error(
        &raw(
            &app,
            "POST",
            "/auth/signup",
            r#"{"username": ["a"], "password": "long enough"}"#,
            None,
        )
        .await,
        400,
        "username",
    );
    assert_client_error(
        &raw(&app, "POST", "/auth/login", r#"{"username": "ada"}"#, None).await,
        400,
        "password is required",
    );
    let r = raw(
        &app,
        "PUT",
        "/notes/1710253330000-abcdefg",
        r#"{"content": ""}"#,
        Some(&token),
    )
    .await;
    assert_client_error(&r, 400, "must not be empty");
}

#[tokio::test]
async fn bodies_over_256_kib_are_refused_with_413() {
    let app = App::new();
    let token = app.signup_and_login("ada").await;
    let huge = json!({"content": "x".repeat(300 * 1024)}).to_string();
    assert_client_error(
        &raw(&app, "POST", "/notes", &huge, Some(&token)).await,
        413,
        "256 KiB",
    );
    let signup = json!({"username": "bob", "password": "p".repeat(260 * 1024)}).to_string();
    assert_client_error(
        &raw(&app, "POST", "/auth/signup", &signup, None).await,
        413,
        "limit",
    );
    // Under the body limit but over the content limit: a 400 that names the field.
    let big = json!({"content": "x".repeat(200 * 1024)}).to_string();
    assert_client_error(
        &raw(&app, "POST", "/notes", &big, Some(&token)).await,
        400,
        "at most",
    );
}

#[tokio::test]
async fn missing_and_malformed_authorization() {
    let app = App::new();
    let (h, mut ev) = App::http_event("GET", "/notes", None, None);
    ev["headers"]["authorization"] = json!("Basic YWRhOnB3");
    assert_client_error(&app.http_raw(h, ev).await, 401, "Bearer");
    assert_client_error(
        &app.http("GET", "/auth/user", None, None).await,
        400,
        "Authorization header is required",
    );
}

#[test]
fn unknown_routes_are_404_like_api_gateway() {
    use notes_handlers::router::route;
    let e = route(&http::Method::GET, "/admin").unwrap_err();
    assert_eq!(e.status(), 404);
    assert!(e.to_string().contains("GET /admin"));
    let e = route(&http::Method::PATCH, "/notes/123-abc").unwrap_err();
    assert_eq!(e.status(), 404);
    assert!(e.to_string().contains("PUT or DELETE"), "{e}");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn arbitrary_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        ".{0,40}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("content".to_owned()),
                    Just("isPublic".to_owned()),
                    Just("username".to_owned()),
                    Just("password".to_owned()),
                    ".{0,8}".prop_map(String::from)
                ],
                inner,
                0..4
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Any body, well-formed or not: never a 5xx, always a JSON answer with a message or a success.
    #[test]
    fn arbitrary_bodies_never_cause_a_server_error(
        body in prop_oneof![arbitrary_json().prop_map(|v| v.to_string()), ".{0,200}", prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| String::from_utf8_lossy(&b).into_owned())],
        route in prop::sample::select(vec![("POST", "/notes"), ("PUT", "/notes/1710253330000-abcdefg"), ("POST", "/auth/login")]),
    ) {
        let rt = runtime();
        rt.block_on(async {
            let app = App::new();
            let token = notes_handlers::domain::token::TokenKeys::new(support::SECRET).unwrap()
                .issue("ada", notes_handlers::domain::token::now_secs()).unwrap();
            let r = raw(&app, route.0, route.1, &body, Some(&token)).await;
            prop_assert!(r.status < 500, "{} {} with {:?} gave {} {}", route.0, route.1, body, r.status, r.body);
            if r.status >= 400 {
                prop_assert!(r.body["message"].as_str().is_some_and(|m| !m.is_empty()));
            }
            Ok(())
        })?;
    }

    /// Any token: 400 or 401, never a 5xx and never access. (An HTTP header holds printable
    /// characters only; the WebSocket query parameter may hold anything.)
    #[test]
    fn arbitrary_tokens_are_refused(
        header_token in prop_oneof![
            "[A-Za-z0-9_\\-]{0,40}\\.[A-Za-z0-9_\\-]{0,80}\\.[A-Za-z0-9_\\-]{0,43}",
            "[ -~]{0,120}",
            "eyJhbGciOiJub25lIn0\\.[A-Za-z0-9_\\-]{0,80}\\.",
        ],
        query_token in ".{0,120}",
    ) {
        let rt = runtime();
        rt.block_on(async {
            let app = App::new();
            let r = app.get("/notes", &header_token).await;
            prop_assert!(r.status == 401 || r.status == 400, "token {:?} gave {} {}", header_token, r.status, r.body);
            for token in [&header_token, &query_token] {
                let r = app.invoke(HandlerName::WebsocketConnect, support::ws_event("$connect", "c", Some(token))).await;
                prop_assert_eq!(r["statusCode"].as_u64(), Some(401));
            }
            Ok(())
        })?;
    }
}

/// JSON routes take JSON only: a `text/plain` or form post (which a browser sends cross-origin with
/// no preflight) or a body with no type is 415; `application/json` with any charset passes.
#[tokio::test]
async fn json_routes_refuse_other_content_types_with_415() {
    let app = App::new();
    let token = app.signup_and_login("ada").await;
    let creds = r#"{"username":"bob","password":"long enough"}"#;
    let with_type =
        |method: &str, path: &str, body: &str, token: Option<&str>, ct: Option<&str>| {
            let (handler, mut ev) = App::http_event(method, path, Some(body), token);
            let headers = ev["headers"].as_object_mut().unwrap();
            headers.retain(|k, _| !k.eq_ignore_ascii_case("content-type"));
            if let Some(ct) = ct {
                headers.insert("content-type".into(), json!(ct));
            }
            (handler, ev)
        };
    for ct in [
        Some("text/plain"),
        Some("text/plain;charset=UTF-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonx"),
        None,
    ] {
        for (method, path, body, token) in [
            ("POST", "/auth/signup", creds, None),
            ("POST", "/auth/login", creds, None),
            (
                "POST",
                "/notes",
                r#"{"content":"hi"}"#,
                Some(token.as_str()),
            ),
        ] {
            let (handler, ev) = with_type(method, path, body, token, ct);
            let r = app.http_raw(handler, ev).await;
            assert_client_error(&r, 415, "Content-Type: application/json");
        }
    }
    for ct in ["application/json; charset=utf-8", "Application/JSON"] {
        let (handler, ev) = with_type(
            "POST",
            "/notes",
            r#"{"content":"hi"}"#,
            Some(&token),
            Some(ct),
        );
        assert_eq!(app.http_raw(handler, ev).await.status, 202, "{ct}");
    }
    let (handler, ev) = with_type(
        "POST",
        "/auth/signup",
        creds,
        None,
        Some("application/json;charset=UTF-8"),
    );
    assert_eq!(app.http_raw(handler, ev).await.status, 201);
}
