//! Everything a handler needs, behind the ports. Only `main`, `config` and `notesctl dev` know
//! which implementations are inside.

use std::sync::Arc;

use tokio::sync::OnceCell;

use crate::domain::AppError;
use crate::domain::token::TokenKeys;
use crate::metering::{Meter, MeterSink, Metered};
use crate::ports::{
    ConnectionRegistry, EventBus, MetricSink, NoMetrics, NoteStore, Notifier, SecretSource,
    UserStore,
};

/// Settings that are not capabilities.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `Access-Control-Allow-Origin` on every HTTP response.
    pub allowed_origin: String,
    /// The queue's maxReceiveCount: on this delivery a failing save publishes `note-failed`.
    pub max_receive_count: u32,
    /// How many WebSocket posts notify runs at once. One invocation reaches about this many ÷ the
    /// post latency connections a second, up to what its CPU allows (docs/CAPACITY.md).
    pub notify_concurrency: usize,
    /// Rounds of posting notify makes within one invocation: a connection that was throttled or
    /// answered 5xx is posted to again (and only it), after a backoff, up to this many times.
    pub notify_attempts: u32,
    /// How long a save delivery holds the right to announce its note (ms). Shorter than the
    /// queue's visibility timeout, so a redelivery after a failed announcement can take it over.
    pub announce_lease_ms: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            allowed_origin: "*".to_owned(),
            max_receive_count: 3,
            notify_concurrency: 256,
            notify_attempts: 4,
            announce_lease_ms: 30_000,
        }
    }
}

pub struct Deps {
    pub users: Arc<dyn UserStore>,
    pub notes: Arc<dyn NoteStore>,
    pub bus: Arc<dyn EventBus>,
    pub connections: Arc<dyn ConnectionRegistry>,
    pub notifier: Arc<dyn Notifier>,
    pub secrets: Arc<dyn SecretSource>,
    pub settings: Settings,
    /// Where invocations are counted, when the ports are metered (`notesctl dev`).
    pub meter: Option<Arc<Meter>>,
    /// Where the app's own metrics go (none unless set with [`Deps::with_metrics`]).
    pub metrics: Arc<dyn MetricSink>,
    keys: OnceCell<TokenKeys>,
}

impl Deps {
    pub fn new(
        users: Arc<dyn UserStore>,
        notes: Arc<dyn NoteStore>,
        bus: Arc<dyn EventBus>,
        connections: Arc<dyn ConnectionRegistry>,
        notifier: Arc<dyn Notifier>,
        secrets: Arc<dyn SecretSource>,
        settings: Settings,
    ) -> Self {
        Self {
            users,
            notes,
            bus,
            connections,
            notifier,
            secrets,
            settings,
            meter: None,
            metrics: Arc::new(NoMetrics),
            keys: OnceCell::new(),
        }
    }

    /// The same capabilities, each port counted into `meter`, which is kept for counting
    /// invocations, and the app's metrics counted there too. The secret source is read once per
    /// process and not counted.
    pub fn metered(&self, meter: &Arc<Meter>) -> Deps {
        let mut counted = Deps::new(
            Arc::new(Metered::new(self.users.clone(), meter.clone())),
            Arc::new(Metered::new(self.notes.clone(), meter.clone())),
            Arc::new(Metered::new(self.bus.clone(), meter.clone())),
            Arc::new(Metered::new(self.connections.clone(), meter.clone())),
            Arc::new(Metered::new(self.notifier.clone(), meter.clone())),
            self.secrets.clone(),
            self.settings.clone(),
        );
        counted.meter = Some(meter.clone());
        counted.with_metrics(Arc::new(MeterSink(meter.clone())))
    }

    /// The same, reporting its metrics to `sink`.
    pub fn with_metrics(mut self, sink: Arc<dyn MetricSink>) -> Self {
        self.metrics = sink;
        self
    }

    /// The JWT keys, read from the secret source once per container and refused if the secret is
    /// shorter than 32 bytes. A failed read is retried on the next request.
    pub async fn token_keys(&self) -> Result<&TokenKeys, AppError> {
        self.keys
            .get_or_try_init(|| async {
                let secret = self
                    .secrets
                    .jwt_secret()
                    .await
                    .map_err(|e| AppError::Unavailable(e.to_string()))?;
                TokenKeys::new(&secret).map_err(AppError::internal)
            })
            .await
    }
}
