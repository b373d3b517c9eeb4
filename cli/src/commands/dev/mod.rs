//! `notesctl dev`: the whole app on one machine. The same handler code as on Lambda, behind a local
//! API Gateway (HTTP and WebSocket), an event bus that routes by the templates' rules, a durable queue
//! with visibility timeout and a DLQ, and an embedded store under `--data-dir`.

pub mod aws_api;
pub mod bus;
pub mod cors;
pub mod data;
pub mod frontend;
pub mod gateway;
pub mod guard;
pub mod history;
pub mod logbook;
pub mod queue;
pub mod server;
pub mod workers;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::routing::get;
use clap::builder::TypedValueParser as _;
use notes_handlers::Deps;
use notes_handlers::deps::Settings;
use notes_handlers::domain::feed::ShardCount;
use notes_handlers::embedded::{FileSecret, LocalNotifier};
use notes_handlers::metering::Meter;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, watch};

use crate::context::{Context, add_app_log_layer};
use crate::output::{Exit, Streamed};
use bus::DevBus;
use frontend::Frontend;
use gateway::Gateway;

#[derive(Debug, Clone, clap::Args)]
pub struct DevArgs {
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 3000, env = "NOTESCTL_DEV_PORT")]
    pub port: u16,
    /// Address to listen on. The default serves this machine only; another address also serves
    /// the app (and its sign-up) to every machine that can reach it.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Also answer requests that name this server by NAME (its `Host` header), e.g. a name in
    /// /etc/hosts; `.example.test` allows every subdomain too. Loopback names and IP addresses
    /// are always answered; other names are refused (403), which stops DNS-rebinding pages.
    #[arg(long = "allowed-host", value_name = "NAME")]
    pub allowed_hosts: Vec<String>,
    /// A web page's origin that may call the API from a browser (CORS), besides dev's own: exact
    /// (`http://localhost:8080`), any port of a host (`http://localhost:*`), or `*` for any site
    /// (with a warning). Repeatable. Default: `http://localhost:*` and `http://127.0.0.1:*`.
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    pub allowed_origins: Vec<String>,
    /// Where users, notes, the queue and the JWT secret are kept across restarts.
    #[arg(long, default_value = crate::context::DEV_DATA_DIR, env = "NOTESCTL_DEV_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Serve the frontend from this directory instead of the built-in copy.
    #[arg(long)]
    pub frontend: Option<PathBuf>,
    /// Seconds a received message stays hidden before it is delivered again.
    #[arg(long, default_value_t = 30)]
    pub visibility_timeout: u64,
    /// Receives after which a message moves to the dead-letter queue.
    #[arg(long, default_value_t = 3)]
    pub max_receive_count: u32,
    /// Connections served at once, WebSockets included; past it a connection gets 503 and is
    /// closed (default 1024, or fewer if the open-files limit is lower).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000).map(|n| n as usize))]
    pub max_connections: Option<usize>,
    /// How long a client may take to send a request's headers, counted from connecting or from
    /// the end of its previous response: slow or idle connections are closed after it.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = crate::context::parse_duration)]
    pub header_timeout: Duration,
    /// Close a WebSocket with no message either way for this long (with a close frame, 1001), as
    /// API Gateway does after 10 minutes; its place under --max-connections is freed.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = crate::context::parse_duration)]
    pub ws_idle_timeout: Duration,
    /// WebSockets one user may hold open at once; past it the upgrade is refused with HTTP 429
    /// (where `$connect` refuses a bad token with 401). Default: a quarter of --max-connections,
    /// at most 50.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000).map(|n| n as usize))]
    pub max_sockets_per_user: Option<usize>,
    /// Accept and queue notes (202) but do not save them: rehearse "notes not saving" with
    /// `queue-depth --local` and `smoke --local`. The queue keeps them for the next run.
    #[arg(long)]
    pub hold_queue: bool,
    /// Partitions of the public feed (1–64), as the notes stack's PublicFeedShards. Notes stored
    /// by an older `dev` without shards are moved into them at start.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub public_feed_shards: u32,
}

/// What `dev` prints once it listens.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Listening {
    pub api_url: String,
    pub ws_url: String,
    pub frontend_url: String,
}

impl std::fmt::Display for Listening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "notes app running — open {}", self.frontend_url)?;
        writeln!(f, "  API:       {}", self.api_url)?;
        writeln!(f, "  WebSocket: {}", self.ws_url)?;
        write!(f, "Press Ctrl-C to stop.")
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

pub async fn run(ctx: &Context, args: DevArgs) -> anyhow::Result<Streamed> {
    // What the handlers log also goes to their log groups, whatever -q/-v say for stderr.
    add_app_log_layer(Box::new(logbook::LogBookLayer));
    let frontend = match &args.frontend {
        Some(dir) if !dir.join("index.html").is_file() => {
            anyhow::bail!(
                "--frontend {} has no index.html; point it at the frontend's folder",
                dir.display()
            )
        }
        Some(dir) => {
            // Whatever lies in DIR may be fetched: the secrets in the data directory must not.
            let inside = frontend::data_dir_inside(dir, &args.data_dir).with_context(|| {
                format!(
                    "cannot tell whether --data-dir {} is inside --frontend {}",
                    args.data_dir.display(),
                    dir.display()
                )
            })?;
            anyhow::ensure!(
                !inside,
                "--data-dir {} is inside --frontend {}, which would serve its JWT secret, runbook token and store to anyone who can reach dev: pass a --data-dir outside {}",
                args.data_dir.display(),
                dir.display(),
                dir.display()
            );
            Frontend::Dir(dir.clone())
        }
        None => Frontend::Embedded,
    };
    // The port and the data directory are both tried before either failure is reported: another
    // `dev` running here holds both, and one message should say so.
    let addr = format!("{}:{}", args.host, args.port);
    let bound = tokio::net::TcpListener::bind(&addr).await;
    let data = data::DataDir::open(
        &args.data_dir,
        Duration::from_secs(args.visibility_timeout),
        args.max_receive_count,
    );
    let (listener, data) = match (bound, data) {
        (Ok(listener), Ok(data)) => (listener, data),
        (Err(port), Err(dir)) if dir.downcast_ref::<data::InUse>().is_some() => anyhow::bail!(
            "another `notesctl dev` seems to be running here: port {addr} is taken ({port}) and the data directory {} is in use. Stop it, or pass both --port N (0 picks a free port) and another --data-dir",
            args.data_dir.display()
        ),
        (_, Err(dir)) => return Err(dir),
        (Err(port), Ok(_)) => {
            return Err(anyhow::Error::new(port).context(format!(
                "cannot listen on {addr}: is the port in use? Pass --port N (0 picks a free port)"
            )));
        }
    };
    let shards = ShardCount::new(args.public_feed_shards).map_err(anyhow::Error::msg)?;
    let (store, queue) = (
        data.store.with_feed_shards(shards).with_deferred_saves(),
        data.queue,
    );
    data::migrate_public_feed(&store).await?;
    let secret = Arc::new(FileSecret::new(args.data_dir.join("jwt-secret")));

    let (functions_tx, functions_rx) = mpsc::unbounded_channel();
    let queued = Arc::new(Notify::new());
    let meter = Meter::new();
    let bus = Arc::new(DevBus::new(
        queue.clone(),
        functions_tx,
        queued.clone(),
        meter.clone(),
    ));
    let notifier = LocalNotifier::new();
    let store = Arc::new(store);
    let checkpoint: workers::Checkpoint = {
        let store = store.clone();
        Arc::new(move || {
            let store = store.clone();
            Box::pin(async move { store.checkpoint().await })
        })
    };
    let settings = Settings {
        max_receive_count: args.max_receive_count,
        // A redelivery must be able to take over an announcement that failed.
        announce_lease_ms: (args.visibility_timeout as i64 * 1000 / 2).clamp(100, 30_000),
        ..Settings::default()
    };
    // Every port counted, for `notesctl load --cost` (served by the runbook API).
    let deps = Arc::new(
        Deps::new(
            store.clone(),
            store.clone(),
            bus,
            store,
            Arc::new(notifier.clone()),
            secret,
            settings,
        )
        .metered(&meter),
    );
    tokio::task::spawn_blocking(notes_handlers::domain::password::warm_up);
    deps.token_keys()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| {
            format!(
                "cannot set up the JWT secret in {}",
                args.data_dir.display()
            )
        })?;

    let max_connections = args
        .max_connections
        .unwrap_or_else(server::default_max_connections);
    let counters = history::DevCounters::new(meter.clone(), max_connections);
    counters.spawn_sampler();
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() {
        tracing::warn!(
            "listening on {local}, not only on this machine: every machine that can reach it can use the app (sign up, read public notes, open WebSockets) and load the frontend. The runbook API (SQS, logs) still needs this run's token. Use --host 127.0.0.1 to serve this machine only"
        );
    }
    let token = guard::new_token(&args.data_dir).with_context(|| {
        format!(
            "cannot write the runbook token to {}",
            args.data_dir.join(guard::TOKEN_FILE).display()
        )
    })?;
    let guard = Arc::new(guard::Guard::new(local.ip(), &args.allowed_hosts, token));
    let shown_host = if local.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        local.ip().to_string()
    };
    let base = format!("http://{shown_host}:{}", local.port());
    let origins =
        cors::AllowedOrigins::new(&base, &args.allowed_origins).map_err(|e| anyhow::anyhow!(e))?;
    if origins.any() {
        tracing::warn!(
            "--allowed-origin '*': any web page the browser opens may call this API with its user's token (CORS allows every site); name the origins instead"
        );
    }
    let gw = Gateway {
        deps: deps.clone(),
        notifier,
        queue: queue.clone(),
        frontend: Arc::new(frontend),
        move_tasks: Default::default(),
        guard: guard.clone(),
        counters: counters.clone(),
        sockets: Arc::new(gateway::Sockets::new(
            args.ws_idle_timeout,
            args.max_sockets_per_user
                .unwrap_or_else(|| gateway::default_sockets_per_user(max_connections)),
        )),
    };
    let app = Router::new()
        .route(
            "/ws",
            get(gateway::websocket).fallback(gateway::method_not_allowed),
        )
        .route(
            "/config.json",
            get(gateway::config).fallback(gateway::method_not_allowed),
        )
        .fallback(gateway::fallback)
        .with_state(gw)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(origins),
            cors::answer,
        ))
        .layer(axum::middleware::from_fn_with_state(
            // A body has as long as headers, and then some: it may be 256 KiB on a slow link.
            server::BodyLimits::new(args.header_timeout * 2),
            server::read_body_first,
        ))
        // Outermost: a request for another host is refused before its body is read.
        .layer(axum::middleware::from_fn_with_state(
            guard,
            guard::check_host,
        ));

    ctx.lines().write(&Listening {
        api_url: base.clone(),
        ws_url: format!("ws://{shown_host}:{}/ws", local.port()),
        frontend_url: format!("{base}/"),
    });
    tracing::info!(data_dir = %args.data_dir.display(), "listening on {local}");

    let (stop_tx, stop_rx) = watch::channel(false);
    if args.hold_queue {
        tracing::warn!("--hold-queue: notes are queued but not saved until dev runs without it");
    }
    let pollers: Vec<_> = (0..if args.hold_queue { 0 } else { 2 })
        .map(|_| {
            tokio::spawn(workers::save_poller(
                deps.clone(),
                queue.clone(),
                queued.clone(),
                checkpoint.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();
    tokio::spawn(workers::function_dispatcher(deps.clone(), functions_rx));

    let limits = server::Limits {
        max_connections,
        header_timeout: args.header_timeout,
        refused: counters.refused.clone(),
    };
    let server = tokio::spawn(server::serve(
        listener,
        app,
        limits,
        stop_rx.clone(),
        // Open WebSockets would hold a graceful shutdown forever: give requests in flight a moment.
        Duration::from_secs(2),
    ));
    shutdown_signal().await;
    tracing::info!("stopping: no new requests; finishing the work in hand");
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(3), server).await;
    for p in pollers {
        let _ = tokio::time::timeout(Duration::from_secs(2), p).await;
    }
    let left = queue.queued_count().unwrap_or(0);
    tracing::info!(
        queued = left,
        "stopped; queued notes are kept in {}",
        args.data_dir.display()
    );
    Ok(Streamed(Exit::Ok))
}

/// Invokes a handler as Lambda would, inside a `function` span, so its logs land in the function's
/// log group (`notesctl tail --local`).
pub async fn invoke(
    handler: notes_handlers::HandlerName,
    deps: &Deps,
    payload: serde_json::Value,
    context: lambda_runtime::Context,
) -> Result<serde_json::Value, lambda_runtime::Error> {
    use tracing::Instrument;
    let span =
        tracing::info_span!("function", name = handler.as_str(), requestId = %context.request_id);
    let started = std::time::Instant::now();
    let result = notes_handlers::dispatch::invoke_json(handler, deps, payload, context)
        .instrument(span)
        .await;
    if let Some(meter) = &deps.meter {
        meter.invoked(handler.as_str(), started.elapsed());
        if result.is_err() {
            meter.add(&format!("function.{handler}.errors"), 1, 0);
        }
    }
    result
}
