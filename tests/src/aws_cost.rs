//! What one note costs on AWS, counted at the SDK: the handlers run in-process on their AWS adapters
//! against moto, every client carrying [`Counter`] (an SDK interceptor) that counts each request by
//! service and operation, and works out DynamoDB's capacity units from the items themselves (their
//! size by DynamoDB's rules: a write unit per 1 KB of item, a read unit per 4 KB read, halved for
//! eventually consistent reads, doubled in transactions). The harness plays the parts AWS plays:
//! the event source mapping (receive ten, invoke save, delete what succeeded) and the rule that
//! invokes notify — its own calls are counted too when they are what AWS would bill (SQS receive and
//! delete), and not when they only observe (reading the result events).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use notes_handlers::adapters::apigw_management::{ApiGatewayNotifier, management_endpoint};
use notes_handlers::adapters::dynamodb::DynamoStore;
use notes_handlers::adapters::eventbridge::EventBridgeBus;
use notes_handlers::adapters::secrets_manager::SecretsManagerSecret;
use notes_handlers::deps::Settings;
use notes_handlers::{Deps, HandlerName};
use serde_json::{Value, json};

use crate::lambda::{eventbridge_event, http_event, sqs_event, ws_event};
use crate::moto::{Moto, Resources};

/// What AWS was asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AwsCount {
    /// Requests by `Service.Operation` (`DynamoDB.TransactWriteItems`, `SQS.ReceiveMessage`…),
    /// refused ones included (a retried request is billed, or throttled, twice).
    pub requests: BTreeMap<String, u64>,
    /// Of those, the refused, by `Service.Operation: error code`.
    pub refused: BTreeMap<String, u64>,
    /// DynamoDB write capacity units (on-demand: write request units).
    pub write_units: f64,
    /// DynamoDB read capacity units (on-demand: read request units).
    pub read_units: f64,
    /// Entries put on the bus (PutEvents is billed per entry, per 64 KB).
    pub event_entries: u64,
    /// Items written (a transaction's items each count).
    pub items_written: u64,
    /// The largest item written, in bytes as DynamoDB sizes it.
    pub largest_item: u64,
    /// Bytes of the items reads returned, as DynamoDB sizes them.
    pub bytes_read: u64,
}

impl AwsCount {
    pub fn requests(&self, name: &str) -> u64 {
        self.requests.get(name).copied().unwrap_or_default()
    }

    /// Requests that succeeded.
    pub fn succeeded(&self, name: &str) -> u64 {
        let refused: u64 = self
            .refused
            .iter()
            .filter(|(k, _)| k.split(": ").next() == Some(name))
            .map(|(_, n)| n)
            .sum();
        self.requests(name) - refused
    }

    pub fn since(&self, earlier: &AwsCount) -> AwsCount {
        let diff = |now: &BTreeMap<String, u64>, was: &BTreeMap<String, u64>| {
            now.iter()
                .filter_map(|(k, v)| {
                    let d = v - was.get(k).copied().unwrap_or(0);
                    (d > 0).then(|| (k.clone(), d))
                })
                .collect()
        };
        AwsCount {
            requests: diff(&self.requests, &earlier.requests),
            refused: diff(&self.refused, &earlier.refused),
            write_units: self.write_units - earlier.write_units,
            read_units: self.read_units - earlier.read_units,
            event_entries: self.event_entries - earlier.event_entries,
            items_written: self.items_written - earlier.items_written,
            largest_item: self.largest_item,
            bytes_read: self.bytes_read - earlier.bytes_read,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    count: AwsCount,
    /// Item sizes last seen, by table and key, so an update or delete is charged for its item.
    sizes: HashMap<String, u64>,
}

/// The SDK interceptor: put it on every client whose requests count.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<Mutex<State>>);

impl Counter {
    pub fn snapshot(&self) -> AwsCount {
        self.0.lock().unwrap().count.clone()
    }
}

/// The request as sent, kept until its response is read.
#[derive(Debug, Clone)]
struct Sent {
    name: String,
    body: Value,
}

impl Storable for Sent {
    type Storer = StoreReplace<Self>;
}

impl Intercept for Counter {
    fn name(&self) -> &'static str {
        "AwsCostCounter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (service, op, body) = crate::record::request_of(context, cfg);
        let name = format!("{service}.{op}");
        cfg.interceptor_state().store_put(Sent { name, body });
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(sent) = cfg.load::<Sent>().cloned() else {
            return Ok(());
        };
        let ok = context.response().status().is_success();
        let answer: Value = context
            .response()
            .body()
            .bytes()
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or(Value::Null);
        let mut state = self.0.lock().unwrap();
        *state.count.requests.entry(sent.name.clone()).or_default() += 1;
        if ok {
            state.charge(&sent.name, &sent.body, &answer);
        } else {
            let header = context
                .response()
                .headers()
                .get("x-amzn-errortype")
                .map(|h| h.split(':').next().unwrap_or(h).to_owned());
            let code = answer["__type"]
                .as_str()
                .map(|t| t.rsplit('#').next().unwrap_or(t).to_owned())
                .or(header)
                .unwrap_or_else(|| format!("HTTP {}", context.response().status().as_u16()));
            *state
                .count
                .refused
                .entry(format!("{}: {code}", sent.name))
                .or_default() += 1;
        }
        Ok(())
    }
}

/// An item's size as DynamoDB counts it: each attribute's name plus its value.
pub fn item_size(item: &Value) -> u64 {
    item.as_object()
        .map(|m| m.iter().map(|(k, v)| k.len() as u64 + value_size(v)).sum())
        .unwrap_or(0)
}

fn value_size(v: &Value) -> u64 {
    let Some((kind, inner)) = v.as_object().and_then(|m| m.iter().next()) else {
        return 0;
    };
    match (kind.as_str(), inner) {
        ("S", Value::String(s)) => s.len() as u64,
        ("N", Value::String(n)) => {
            let digits = n.trim_start_matches('-').replace('.', "");
            let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
            (significant as u64).div_ceil(2) + 1
        }
        ("B", Value::String(b)) => (b.len() as u64) * 3 / 4,
        ("BOOL" | "NULL", _) => 1,
        ("M", Value::Object(m)) => {
            3 + m
                .iter()
                .map(|(k, v)| 1 + k.len() as u64 + value_size(v))
                .sum::<u64>()
        }
        ("L", Value::Array(l)) => 3 + l.iter().map(|v| 1 + value_size(v)).sum::<u64>(),
        ("SS" | "NS" | "BS", Value::Array(l)) => l
            .iter()
            .map(|s| s.as_str().map_or(0, |s| s.len() as u64))
            .sum(),
        _ => 0,
    }
}

fn key_of(table: &Value, key: &Value) -> String {
    format!(
        "{}|{}|{}",
        table.as_str().unwrap_or_default(),
        key["pk"]["S"].as_str().unwrap_or_default(),
        key["sk"]["S"].as_str().unwrap_or_default()
    )
}

fn write_units(size: u64) -> f64 {
    size.div_ceil(1024).max(1) as f64
}

fn read_units(size: u64, consistent: bool) -> f64 {
    let units = size.div_ceil(4096).max(1) as f64;
    if consistent { units } else { units / 2.0 }
}

impl State {
    fn put(&mut self, table: &Value, item: &Value, factor: f64) {
        let size = item_size(item);
        self.sizes.insert(key_of(table, item), size);
        self.count.write_units += write_units(size) * factor;
        self.count.items_written += 1;
        self.count.largest_item = self.count.largest_item.max(size);
    }

    /// An update or delete is charged for the item as last seen (at least one unit).
    fn touch(&mut self, table: &Value, key: &Value, factor: f64) {
        let size = self.sizes.get(&key_of(table, key)).copied().unwrap_or(0);
        self.count.write_units += write_units(size) * factor;
        self.count.items_written += 1;
    }

    fn charge(&mut self, name: &str, body: &Value, answer: &Value) {
        let consistent = body["ConsistentRead"].as_bool().unwrap_or(false);
        match name {
            "DynamoDB.PutItem" => self.put(&body["TableName"], &body["Item"], 1.0),
            "DynamoDB.UpdateItem" | "DynamoDB.DeleteItem" => {
                self.touch(&body["TableName"], &body["Key"], 1.0)
            }
            "DynamoDB.TransactWriteItems" => {
                for item in body["TransactItems"].as_array().into_iter().flatten() {
                    if let Some(put) = item.get("Put") {
                        self.put(&put["TableName"], &put["Item"], 2.0);
                    }
                    for kind in ["Update", "Delete", "ConditionCheck"] {
                        if let Some(op) = item.get(kind) {
                            self.touch(&op["TableName"], &op["Key"], 2.0);
                        }
                    }
                }
            }
            "DynamoDB.GetItem" => {
                let size = item_size(&answer["Item"]);
                if size > 0 {
                    self.sizes
                        .insert(key_of(&body["TableName"], &answer["Item"]), size);
                }
                self.count.read_units += read_units(size, consistent);
                self.count.bytes_read += size;
            }
            "DynamoDB.Query" => {
                let items = answer["Items"].as_array().cloned().unwrap_or_default();
                let size: u64 = items.iter().map(item_size).sum();
                for item in &items {
                    self.sizes
                        .insert(key_of(&body["TableName"], item), item_size(item));
                }
                self.count.read_units += read_units(size, consistent);
                self.count.bytes_read += size;
            }
            "EventBridge.PutEvents" => {
                self.count.event_entries += body["Entries"].as_array().map_or(0, |e| e.len()) as u64
            }
            _ => {}
        }
    }
}

/// The app's capabilities on moto, each AWS client counted by `counter`.
pub async fn counted_deps(moto: &Moto, res: &Resources, counter: &Counter) -> Deps {
    let sdk = moto.sdk_config().await;
    let ddb = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .interceptor(counter.clone())
        .build();
    let events = aws_sdk_eventbridge::config::Builder::from(&sdk)
        .interceptor(counter.clone())
        .build();
    let secrets = aws_sdk_secretsmanager::config::Builder::from(&sdk)
        .interceptor(counter.clone())
        .build();
    let mgmt = aws_sdk_apigatewaymanagement::config::Builder::from(&sdk)
        .endpoint_url(management_endpoint(&moto.endpoint, ""))
        .interceptor(counter.clone())
        .build();
    let store = Arc::new(DynamoStore::new(
        aws_sdk_dynamodb::Client::from_conf(ddb),
        res.table.clone(),
        res.connections_table.clone(),
    ));
    Deps::new(
        store.clone(),
        store.clone(),
        Arc::new(EventBridgeBus::new(
            aws_sdk_eventbridge::Client::from_conf(events),
            res.bus.clone(),
        )),
        store,
        Arc::new(ApiGatewayNotifier::new(
            aws_sdk_apigatewaymanagement::Client::from_conf(mgmt),
        )),
        Arc::new(SecretsManagerSecret::new(
            aws_sdk_secretsmanager::Client::from_conf(secrets),
            res.secret_arn.clone(),
        )),
        Settings::default(),
    )
}

async fn invoke(deps: &Deps, handler: HandlerName, payload: Value) -> Value {
    let mut context = lambda_runtime_context();
    context.invoked_function_arn =
        format!("arn:aws:lambda:us-east-1:000000000000:function:{handler}");
    notes_handlers::dispatch::invoke_json(handler, deps, payload, context)
        .await
        .unwrap_or_else(|e| panic!("{handler} failed: {e}"))
}

fn lambda_runtime_context() -> lambda_runtime::Context {
    let mut c = lambda_runtime::Context::default();
    c.request_id = format!("{:032x}", rand::random::<u128>());
    c
}

/// One kind of note, measured on moto: what AWS was asked for, per note, and how many invocations.
#[derive(Debug, Clone)]
pub struct Measured {
    pub notes: usize,
    pub sockets: usize,
    /// Of the sockets, the author's.
    pub own: usize,
    pub aws: AwsCount,
    /// Invocations by function.
    pub invocations: BTreeMap<&'static str, u64>,
    /// Their run time by function, in all (each invocation in-process, its AWS calls to moto on
    /// loopback: AWS's in-region round trips come on top).
    pub run_time: BTreeMap<&'static str, std::time::Duration>,
}

/// A fresh set of resources on moto with `sockets` connections, `own` of them the author's and the
/// rest another user's, then `notes` notes of one kind published, queued, saved (batches of ten, as
/// the event source mapping delivers them) and announced — every AWS request counted from the first
/// publish to the last post.
pub async fn measure(
    moto: &Moto,
    notes: usize,
    sockets: usize,
    own: usize,
    public: bool,
) -> Measured {
    let sdk = moto.sdk_config().await;
    let res = Resources::create(&sdk).await;
    let results = crate::moto::observe(&sdk, &res, &["note-saved"]).await;
    let counter = Counter::default();
    let deps = counted_deps(moto, &res, &counter).await;
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&sdk)
            .interceptor(counter.clone())
            .build(),
    );
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let creds = json!({"username": crate::unique("cost"), "password": "long-enough-password"});
        invoke(
            &deps,
            HandlerName::AuthSignup,
            http_event("POST", "/auth/signup", Some(creds.clone()), None),
        )
        .await;
        let login = invoke(
            &deps,
            HandlerName::AuthLogin,
            http_event("POST", "/auth/login", Some(creds), None),
        )
        .await;
        let login: Value = serde_json::from_str(login["body"].as_str().unwrap()).unwrap();
        tokens.push(login["token"].as_str().expect("a token").to_owned());
    }
    let token = tokens[0].clone();
    for i in 0..sockets {
        let whose = if i < own { &tokens[0] } else { &tokens[1] };
        let resp = invoke(
            &deps,
            HandlerName::WebsocketConnect,
            ws_event("$connect", &format!("conn-{i}"), Some(whose)),
        )
        .await;
        assert_eq!(resp["statusCode"], 200, "{resp}");
    }

    // Marked as the deploy that creates a stage's table marks it.
    DynamoStore::from_sdk_config(&sdk, &res.table, &res.connections_table)
        .mark_new_table()
        .await
        .expect("marking the table new");
    let before = counter.snapshot();
    let mut invocations: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut run_time: BTreeMap<&'static str, std::time::Duration> = BTreeMap::new();
    let mut count = |h: HandlerName, started: std::time::Instant| {
        *invocations.entry(h.as_str()).or_default() += 1;
        *run_time.entry(h.as_str()).or_default() += started.elapsed();
    };
    for i in 0..notes {
        let body = json!({"content": format!("a note of about the size people write, number {i}"), "isPublic": public});
        let started = std::time::Instant::now();
        let resp = invoke(
            &deps,
            HandlerName::NotesPublish,
            http_event("POST", "/notes", Some(body), Some(&token)),
        )
        .await;
        count(HandlerName::NotesPublish, started);
        assert_eq!(resp["statusCode"], 202, "{resp}");
    }
    // The event source mapping: receive up to ten, invoke save, delete the batch.
    let mut saved = 0;
    while saved < notes {
        let got = sqs
            .receive_message()
            .queue_url(&res.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive");
        let messages = got.messages.unwrap_or_default();
        if messages.is_empty() {
            continue;
        }
        let records: Vec<(&str, String)> = messages
            .iter()
            .map(|m| (m.message_id().unwrap(), m.body().unwrap().to_owned()))
            .collect();
        let started = std::time::Instant::now();
        let resp = invoke(&deps, HandlerName::NotesSave, sqs_event(&records)).await;
        count(HandlerName::NotesSave, started);
        assert_eq!(resp["batchItemFailures"], json!([]), "{resp}");
        let mut delete = sqs.delete_message_batch().queue_url(&res.queue_url);
        for (i, m) in messages.iter().enumerate() {
            delete = delete.entries(
                aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap())
                    .build()
                    .unwrap(),
            );
        }
        delete.send().await.expect("delete batch");
        saved += messages.len();
    }
    // The rule's function target: notify, once per note-saved.
    let mut announced = 0;
    for envelope in crate::moto::drain_observed(&sdk, &results, notes).await {
        let event = envelope["detail"].clone();
        let started = std::time::Instant::now();
        invoke(
            &deps,
            HandlerName::WebsocketNotify,
            eventbridge_event(event),
        )
        .await;
        count(HandlerName::WebsocketNotify, started);
        announced += 1;
    }
    assert_eq!(announced, notes, "every note announced once");
    Measured {
        notes,
        sockets,
        own,
        aws: counter.snapshot().since(&before),
        invocations,
        run_time,
    }
}
