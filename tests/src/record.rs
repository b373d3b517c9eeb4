//! What an AWS adapter's client actually sends, as IAM actions on the app's resources. An SDK
//! interceptor keeps each request's operation and JSON body, so a test can hold the adapters to the
//! handlers' declaration: the adapters are the truth.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use notes_handlers::spec::{Action, Resource};
use serde_json::Value;

/// The service a recorded client talks to, and how its requests name the app's resources.
#[derive(Debug, Clone)]
pub enum Service {
    /// DynamoDB: the resource is the table the request names (`TableName`).
    DynamoDb(Vec<(String, Resource)>),
    EventBridge,
    SecretsManager,
    /// The API Gateway Management API of the WebSocket API.
    Connections,
}

#[derive(Debug, Clone)]
pub struct Recorder {
    service: Service,
    sent: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Recorder {
    pub fn new(service: Service) -> Recorder {
        Recorder {
            service,
            sent: Arc::default(),
        }
    }

    /// The operations sent so far, as IAM actions on the resources they name.
    pub fn actions(&self) -> BTreeSet<Action> {
        let sent = self.sent.lock().unwrap();
        let mut out = BTreeSet::new();
        for (op, body) in sent.iter() {
            match &self.service {
                Service::DynamoDb(tables) => {
                    let on = |item: &Value| {
                        let name = item["TableName"].as_str().unwrap_or_default();
                        tables
                            .iter()
                            .find(|(t, _)| t == name)
                            .map(|(_, r)| *r)
                            .unwrap_or_else(|| panic!("{op} on a table of no app resource: {name}"))
                    };
                    if op == "TransactWriteItems" {
                        // IAM authorises each item of a transaction by the item's own action.
                        for item in body["TransactItems"].as_array().into_iter().flatten() {
                            for (kind, inner) in item.as_object().into_iter().flatten() {
                                out.insert(Action {
                                    action: format!("dynamodb:{kind}Item"),
                                    on: on(inner),
                                });
                            }
                        }
                    } else {
                        out.insert(Action {
                            action: format!("dynamodb:{op}"),
                            on: on(body),
                        });
                    }
                }
                Service::EventBridge => {
                    out.insert(Action {
                        action: format!("events:{op}"),
                        on: Resource::EventBus,
                    });
                }
                Service::SecretsManager => {
                    out.insert(Action {
                        action: format!("secretsmanager:{op}"),
                        on: Resource::JwtSecret,
                    });
                }
                Service::Connections => {
                    // PostToConnection, GetConnection and DeleteConnection are one IAM action.
                    out.insert(Action {
                        action: "execute-api:ManageConnections".into(),
                        on: Resource::WebSocketApi,
                    });
                }
            }
        }
        out
    }
}

impl Intercept for Recorder {
    fn name(&self) -> &'static str {
        "Recorder"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (_, op, body) = request_of(context, cfg);
        self.sent.lock().unwrap().push((op, body));
        Ok(())
    }
}

/// A request about to be sent: its service and operation as the SDK names them (`DynamoDB`,
/// `TransactWriteItems`) and its JSON body (null when it has none).
pub fn request_of(
    context: &BeforeTransmitInterceptorContextRef<'_>,
    cfg: &ConfigBag,
) -> (String, String, Value) {
    let (service, op) = cfg
        .load::<Metadata>()
        .map(|m| (m.service().to_owned(), m.name().to_owned()))
        .unwrap_or_default();
    let body = context
        .request()
        .body()
        .bytes()
        .and_then(|b| serde_json::from_slice(b).ok())
        .unwrap_or(Value::Null);
    (service, op, body)
}
