//! `notes-lambda`: the one binary behind every function of the notes app. Lambda starts it with
//! `_HANDLER` naming the function; an unknown or missing name fails at init with a clear message.

use std::process::ExitCode;

use notes_handlers::spec::Env;
use notes_handlers::{HandlerName, config, dispatch, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let step = std::time::Instant::now();
    let mut phases = config::InitPhases {
        main_at_us: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros(),
        ..Default::default()
    };
    telemetry::init_json_logs();
    phases.logs_us = step.elapsed().as_micros();
    let handler: HandlerName = match std::env::var("_HANDLER").unwrap_or_default().parse() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("notes-lambda: {e}");
            tracing::error!(error = %e, "init failed");
            return ExitCode::from(2);
        }
    };
    let deps = match config::deps_from_env(handler, &mut phases).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("notes-lambda: {e}");
            tracing::error!(error = %e, "init failed");
            return ExitCode::from(2);
        }
    };
    // A missing or weak JWT secret is a configuration error: fail the init, not every request.
    let step = std::time::Instant::now();
    if handler.spec().reads(Env::SecretArn)
        && let Err(e) = deps.token_keys().await
    {
        eprintln!("notes-lambda: {handler}: the JWT secret is unusable: {e}");
        tracing::error!(error = %e, "init failed");
        return ExitCode::from(2);
    }
    phases.secret_us = step.elapsed().as_micros();
    phases.log(handler);
    if handler == HandlerName::AuthLogin {
        // Off the init path: the dummy hash that makes unknown users cost a real verification.
        tokio::task::spawn_blocking(notes_handlers::domain::password::warm_up);
    }
    match dispatch::run(handler, deps).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("notes-lambda: {handler}: {e}");
            ExitCode::FAILURE
        }
    }
}
