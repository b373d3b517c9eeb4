//! IAM proved by running, not only read. Every handler's path runs as the real `notes-lambda`
//! process (through the local Runtime API) against a moto that enforces IAM, with the credentials of
//! an IAM user whose policy holds exactly the actions the template's role grants that function
//! (`Resource: "*"`: moto checks actions only, so resource scoping stays `notesctl validate`'s job).
//! The path must succeed with nothing refused; and with each granted action removed, moto must
//! refuse that action on the handler's path — so every granted action is needed and every needed one
//! is granted. (A refusal need not fail the request: update and delete store the change and only log
//! a notification they could not publish — which on AWS would be a lost live update.)
//!
//! What moto 5.2.5 enforces (probed): DynamoDB, EventBridge, Secrets Manager, SQS, CloudWatch Logs,
//! S3, CloudFormation, IAM and the API Gateway Management API, each by action name. Where its names
//! differ from AWS's, the test hands the user moto's name for exactly what the template grants:
//! - AWS authorises a DynamoDB transaction item by item (`PutItem`, `UpdateItem`, `DeleteItem`,
//!   `ConditionCheckItem`); moto by `dynamodb:TransactWriteItems`. The user gets moto's action only
//!   when it holds every item action its handler declares, so removing any one of them is seen.
//! - AWS's `execute-api:ManageConnections` is moto's `execute-api:PostToConnection` (and
//!   `GetConnection`, `DeleteConnection`).
//!
//! Not provable by running, named here and checked by `validate` instead:
//! - what Lambda does with the role, not the code: `logs:CreateLogStream`/`logs:PutLogEvents` (every
//!   function) and `sqs:ReceiveMessage`/`DeleteMessage`/`GetQueueAttributes` (save's event source
//!   mapping);
//! - notify's removal of a gone connection (`dynamodb:DeleteItem` on the connections table) needs a
//!   410 from PostToConnection, which moto never sends (it runs on recorded responses in
//!   handlers/tests/aws_adapters.rs).

use std::collections::BTreeSet;
use std::time::Duration;

use notes_handlers::HandlerName;
use notes_handlers::domain::note::NoteId;
use notes_handlers::spec::Resource;
use notesctl::commands::validate::functions::granted_actions;
use notesctl::commands::validate::model::App;
use notesctl_tests::lambda::{
    LambdaProcess, RuntimeApi, eventbridge_event, http_event, sqs_event, ws_event,
};
use notesctl_tests::moto::{self, Moto, Resources};
use notesctl_tests::proxy::DenialWatch;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

/// Item actions AWS authorises a DynamoDB transaction by.
const TRANSACTION_ITEMS: [&str; 4] = [
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:ConditionCheckItem",
];

struct Creds {
    key: String,
    secret: String,
}

struct Iam {
    moto: Moto,
    admin: Creds,
    res: Resources,
    templates: App,
    /// A user signed up by the admin's functions, and its token.
    token: String,
}

fn creds_env(c: &Creds) -> [(String, String); 2] {
    [
        ("AWS_ACCESS_KEY_ID".into(), c.key.clone()),
        ("AWS_SECRET_ACCESS_KEY".into(), c.secret.clone()),
    ]
}

async fn sdk_as(moto: &Moto, c: &Creds) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&moto.endpoint)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            &c.key, &c.secret, None, None, "iam-test",
        ))
        .load()
        .await
}

/// A new IAM user allowed exactly `actions` (on every resource), and its access key.
async fn user_with(iam_sdk: &aws_config::SdkConfig, actions: &BTreeSet<String>) -> Creds {
    let iam = aws_sdk_iam::Client::new(iam_sdk);
    let name = notesctl_tests::unique("fn");
    iam.create_user().user_name(&name).send().await.unwrap();
    let mut allowed: Vec<&str> = actions.iter().map(String::as_str).collect();
    if allowed.is_empty() {
        allowed.push("sts:GetCallerIdentity");
    }
    let policy = json!({"Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": allowed, "Resource": "*"}]});
    iam.put_user_policy()
        .user_name(&name)
        .policy_name("function")
        .policy_document(policy.to_string())
        .send()
        .await
        .unwrap();
    let key = iam
        .create_access_key()
        .user_name(&name)
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap();
    Creds {
        key: key.access_key_id,
        secret: key.secret_access_key,
    }
}

/// What a run of a handler's path came to.
#[derive(Debug)]
enum Ran {
    /// Each invocation's response, or its error document.
    Answered(Vec<Result<Value, Value>>),
    /// The process stopped before it served (a failed init), with what it logged.
    InitFailed(String),
}

/// Runs `handler` as a process with `env`, invoking it with each event in turn.
async fn run(handler: HandlerName, env: &[(String, String)], events: &[Value]) -> Ran {
    let api = RuntimeApi::start().await;
    let mut process = LambdaProcess::spawn(handler.as_str(), &api, env);
    let mut answers = Vec::new();
    for ev in events {
        tokio::select! {
            answer = api.invoke(ev.clone()) => answers.push(answer),
            _ = process.child.wait() => {
                return Ran::InitFailed(process.stop().await);
            }
        }
    }
    let _ = process.stop().await;
    Ran::Answered(answers)
}

/// The environment of a function whose AWS calls go through `via` with `creds`.
fn function_env(iam: &Iam, via: &str, creds: &Creds) -> Vec<(String, String)> {
    let mut env = iam.res.handler_env(&iam.moto);
    env.retain(|(k, _)| !k.starts_with("AWS_ACCESS_KEY") && !k.starts_with("AWS_SECRET"));
    for (k, v) in env.iter_mut() {
        if k == "AWS_ENDPOINT_URL" || k == "WEBSOCKET_API_ENDPOINT" {
            *v = via.to_owned();
        }
    }
    env.extend(creds_env(creds));
    env
}

async fn admin_run(iam: &Iam, handler: HandlerName, events: &[Value]) -> Vec<Value> {
    let env = function_env(iam, &iam.moto.endpoint, &iam.admin);
    match run(handler, &env, events).await {
        Ran::Answered(a) => a
            .into_iter()
            .map(|r| r.unwrap_or_else(|e| panic!("{handler} failed for the admin: {e}")))
            .collect(),
        Ran::InitFailed(logs) => panic!("{handler} did not start for the admin:\n{logs}"),
    }
}

fn status(v: &Value) -> u64 {
    v["statusCode"].as_u64().unwrap_or(0)
}

async fn iam() -> &'static Iam {
    static IAM: OnceCell<Iam> = OnceCell::const_new();
    IAM.get_or_init(|| async {
        // Unauthenticated setup first (enforcement starts after this many calls), then on at once.
        let moto = moto::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "1000000000")]).await;
        let root = moto.sdk_config().await;
        let res = Resources::create(&root).await;
        let admin = user_with(&root, &["*".to_owned()].into()).await;
        let on = reqwest::Client::new()
            .post(format!("{}/moto-api/reset-auth", moto.endpoint))
            .header("content-type", "text/plain")
            .body("0")
            .send()
            .await
            .unwrap();
        assert!(on.status().is_success(), "IAM enforcement did not start");
        let templates = App::load(&notesctl_tests::workspace_root().join("templates")).unwrap();
        let mut iam = Iam {
            moto,
            admin,
            res,
            templates,
            token: String::new(),
        };
        let creds = json!({"username": "ada", "password": "correct horse battery"});
        admin_run(
            &iam,
            HandlerName::AuthSignup,
            &[http_event(
                "POST",
                "/auth/signup",
                Some(creds.clone()),
                None,
            )],
        )
        .await;
        let login = admin_run(
            &iam,
            HandlerName::AuthLogin,
            &[http_event("POST", "/auth/login", Some(creds), None)],
        )
        .await;
        let body: Value = serde_json::from_str(login[0]["body"].as_str().unwrap()).unwrap();
        iam.token = body["token"].as_str().expect("a token").to_owned();
        iam
    })
    .await
}

/// The user's policy in moto's names, for what a template grants `handler`: the item actions of a
/// transaction become moto's TransactWriteItems when every one the handler declares is there;
/// ManageConnections becomes moto's connection actions. Lambda's own actions are left out.
fn for_moto(handler: HandlerName, granted: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = granted
        .iter()
        .filter(|a| !lambdas_own(handler, a))
        .cloned()
        .collect();
    let declared: BTreeSet<String> = handler
        .spec()
        .code_actions()
        .into_iter()
        .map(|a| a.action)
        .filter(|a| TRANSACTION_ITEMS.contains(&a.as_str()))
        .collect();
    if !declared.is_empty() && declared.is_subset(granted) {
        out.insert("dynamodb:TransactWriteItems".into());
    }
    if out.remove("execute-api:ManageConnections") {
        for a in ["PostToConnection", "GetConnection", "DeleteConnection"] {
            out.insert(format!("execute-api:{a}"));
        }
    }
    out
}

/// What Lambda itself does with the role: not the code's to prove.
fn lambdas_own(handler: HandlerName, action: &str) -> bool {
    // Lambda itself writes the logs and, with active tracing, the X-Ray segments; it polls the
    // processing queue for save; and it sends an event-invoked function's failed invocations to its
    // on-failure destination (notify's EventInvokeConfig), as the function. validate holds that
    // grant to exactly the destination queue.
    action.starts_with("logs:")
        || action.starts_with("xray:")
        || (action.starts_with("sqs:")
            && handler.spec().trigger == notes_handlers::spec::Trigger::ProcessingQueue)
        || (action == "sqs:SendMessage"
            && matches!(
                handler.spec().trigger,
                notes_handlers::spec::Trigger::Events { .. }
            ))
}

/// The names moto refuses when `action` is missing.
fn refused_as(action: &str) -> Vec<String> {
    let mut names = vec![action.to_owned()];
    if TRANSACTION_ITEMS.contains(&action) {
        names.push("dynamodb:TransactWriteItems".into());
    }
    if action == "execute-api:ManageConnections" {
        names.push("execute-api:PostToConnection".into());
    }
    names
}

/// A handler's path: the events it is invoked with, after any setup the admin's functions do.
async fn path(iam: &Iam, handler: HandlerName) -> Vec<Value> {
    let token = Some(iam.token.as_str());
    let note_created = |note_id: &NoteId, public: bool| {
        json!({"version": "0", "id": "e1", "detail-type": "note-created", "source": "notes.service",
               "account": "123456789012", "time": "2024-03-12T14:22:10Z", "region": "us-east-1",
               "resources": [], "detail": {"eventType": "note-created", "noteId": note_id.as_str(),
               "username": "ada", "content": "iam", "isPublic": public,
               "timestamp": "2024-03-12T14:22:10.000Z"}})
        .to_string()
    };
    let stored_note = async || {
        let id = NoteId::generate(notes_handlers::domain::clock::now_millis());
        let saved = admin_run(
            iam,
            HandlerName::NotesSave,
            &[sqs_event(&[("m", note_created(&id, true))])],
        )
        .await;
        assert_eq!(saved[0]["batchItemFailures"], json!([]));
        id
    };
    let connection = async || {
        let id = notesctl_tests::unique("conn");
        let r = admin_run(
            iam,
            HandlerName::WebsocketConnect,
            &[ws_event("$connect", &id, token)],
        )
        .await;
        assert_eq!(status(&r[0]), 200, "{r:?}");
        id
    };
    match handler {
        HandlerName::AuthSignup => {
            let creds = json!({"username": notesctl_tests::unique("u"), "password": "correct horse battery"});
            vec![http_event("POST", "/auth/signup", Some(creds), None)]
        }
        HandlerName::AuthLogin => {
            let creds = json!({"username": "ada", "password": "correct horse battery"});
            vec![http_event("POST", "/auth/login", Some(creds), None)]
        }
        HandlerName::AuthGetUser => vec![http_event("GET", "/auth/user", None, token)],
        HandlerName::NotesPublish => {
            vec![http_event(
                "POST",
                "/notes",
                Some(json!({"content": "iam"})),
                token,
            )]
        }
        HandlerName::NotesSave => {
            let id = NoteId::generate(notes_handlers::domain::clock::now_millis());
            vec![sqs_event(&[("m", note_created(&id, false))])]
        }
        HandlerName::NotesGet => vec![http_event("GET", "/notes", None, token)],
        HandlerName::NotesGetPublic => vec![http_event("GET", "/notes/public", None, None)],
        HandlerName::NotesUpdate => {
            let id = stored_note().await;
            let path = format!("/notes/{}", id.as_str());
            let mut ev = http_event("PUT", &path, Some(json!({"content": "edited"})), token);
            ev["routeKey"] = json!("PUT /notes/{noteId}");
            ev["pathParameters"] = json!({"noteId": id.as_str()});
            vec![ev]
        }
        HandlerName::NotesDelete => {
            let id = stored_note().await;
            let path = format!("/notes/{}", id.as_str());
            let mut ev = http_event("DELETE", &path, None, token);
            ev["routeKey"] = json!("DELETE /notes/{noteId}");
            ev["pathParameters"] = json!({"noteId": id.as_str()});
            vec![ev]
        }
        HandlerName::WebsocketConnect => {
            vec![ws_event("$connect", &notesctl_tests::unique("conn"), token)]
        }
        HandlerName::WebsocketDisconnect => {
            vec![ws_event("$disconnect", &connection().await, None)]
        }
        HandlerName::WebsocketNotify => {
            connection().await;
            let saved = json!({"eventType": "note-saved", "noteId": "1710253330000-k3j9x2a",
                "username": "ada", "content": "hello", "isPublic": false,
                "savedAt": "2024-03-12T14:22:11.000Z", "timestamp": "2024-03-12T14:22:11.000Z"});
            vec![eventbridge_event(saved)]
        }
    }
}

/// Whether every invocation of the path did what the handler is for.
fn succeeded(handler: HandlerName, ran: &Ran) -> bool {
    let Ran::Answered(answers) = ran else {
        return false;
    };
    answers.iter().all(|a| match (handler.spec().trigger, a) {
        (_, Err(_)) => false,
        (notes_handlers::spec::Trigger::ProcessingQueue, Ok(v)) => {
            v["batchItemFailures"] == json!([])
        }
        (notes_handlers::spec::Trigger::Events { .. }, Ok(v)) => v["delivered"].as_u64() >= Some(1),
        (_, Ok(v)) => (200..300).contains(&status(v)),
    })
}

/// Runs `handler`'s path as a user allowed `allowed` (moto's names); the outcome and what moto refused.
async fn run_as(
    iam: &Iam,
    handler: HandlerName,
    allowed: &BTreeSet<String>,
) -> (bool, Vec<String>, Ran) {
    let admin_sdk = sdk_as(&iam.moto, &iam.admin).await;
    let creds = user_with(&admin_sdk, allowed).await;
    let events = path(iam, handler).await;
    let watch = DenialWatch::start(&iam.moto.endpoint).await;
    let env = function_env(iam, &watch.endpoint, &creds);
    let ran = tokio::time::timeout(Duration::from_secs(90), run(handler, &env, &events))
        .await
        .unwrap_or_else(|_| panic!("{handler} did not finish within 90 s"));
    (succeeded(handler, &ran), watch.take(), ran)
}

/// Paths moto cannot drive, by handler and action.
fn not_drivable(handler: HandlerName, action: &str) -> Option<&'static str> {
    (handler == HandlerName::WebsocketNotify && action == "dynamodb:DeleteItem").then_some(
        "only a 410 from PostToConnection removes a connection, and moto never answers 410",
    )
}

async fn proved(handler: HandlerName) {
    let iam = iam().await;
    let granted = granted_actions(&iam.templates, handler);
    assert!(
        !granted.is_empty(),
        "{handler} has no role in the templates"
    );
    let all = for_moto(handler, &granted);
    let (ok, denied, ran) = run_as(iam, handler, &all).await;
    assert!(
        ok && denied.is_empty(),
        "{handler}'s path fails with exactly the template's actions {all:?}: moto refused {denied:?}; {ran:?}"
    );
    for action in granted.iter().filter(|a| !lambdas_own(handler, a)) {
        if not_drivable(handler, action).is_some() {
            continue;
        }
        let fewer: BTreeSet<String> = granted.iter().filter(|a| *a != action).cloned().collect();
        let (ok, denied, ran) = run_as(iam, handler, &for_moto(handler, &fewer)).await;
        let expected = refused_as(action);
        assert!(
            denied.iter().any(|d| expected.contains(d)),
            "{handler} without {action}: moto should refuse {expected:?} on its path; it refused {denied:?} and the path {}; {ran:?}",
            if ok { "succeeded" } else { "failed" }
        );
    }
}

macro_rules! proof {
    ($($test:ident: $handler:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            proved(HandlerName::$handler).await;
        }
    )*};
}

proof! {
    auth_signup_needs_exactly_its_grants: AuthSignup,
    auth_login_needs_exactly_its_grants: AuthLogin,
    auth_get_user_needs_exactly_its_grants: AuthGetUser,
    notes_publish_needs_exactly_its_grants: NotesPublish,
    notes_save_needs_exactly_its_grants: NotesSave,
    notes_get_needs_exactly_its_grants: NotesGet,
    notes_get_public_needs_exactly_its_grants: NotesGetPublic,
    notes_update_needs_exactly_its_grants: NotesUpdate,
    notes_delete_needs_exactly_its_grants: NotesDelete,
    websocket_connect_needs_exactly_its_grants: WebsocketConnect,
    websocket_disconnect_needs_exactly_its_grants: WebsocketDisconnect,
    websocket_notify_needs_exactly_its_grants: WebsocketNotify,
}

/// The actions left to `validate` are exactly the ones named above: Lambda's own and the 410 path.
#[tokio::test]
async fn what_running_cannot_prove_is_named() {
    let templates = App::load(&notesctl_tests::workspace_root().join("templates")).unwrap();
    let mut unproved = BTreeSet::new();
    for &h in HandlerName::ALL {
        for a in granted_actions(&templates, h) {
            if lambdas_own(h, &a) || not_drivable(h, &a).is_some() {
                unproved.insert(format!("{h} {a}"));
            }
        }
    }
    assert!(unproved.contains("websocket-notify dynamodb:DeleteItem"));
    assert!(
        unproved.iter().all(|u| u.contains(" logs:")
            || u.contains(" xray:")
            || u.contains(" sqs:")
            || u.ends_with("websocket-notify dynamodb:DeleteItem")),
        "{unproved:?}"
    );
    // What notify's gone-connection removal uses, declared on the connections table.
    assert!(
        HandlerName::WebsocketNotify
            .spec()
            .code_actions()
            .iter()
            .any(|a| a.action == "dynamodb:DeleteItem" && a.on == Resource::ConnectionsTable)
    );
}
