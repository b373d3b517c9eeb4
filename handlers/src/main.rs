//! `notes-lambda`: the one binary behind every function of the notes app. Lambda starts it with
//! `_HANDLER` naming the function; an unknown or missing name fails at init with a clear message.

use std::process::ExitCode;

use notes_handlers::{HandlerName, config, dispatch, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    telemetry::init_json_logs();
    let handler: HandlerName = match std::env::var("_HANDLER").unwrap_or_default().parse() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("notes-lambda: {e}");
            tracing::error!(error = %e, "init failed");
            return ExitCode::from(2);
        }
    };
    let deps = match config::deps_from_env(handler).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("notes-lambda: {e}");
            tracing::error!(error = %e, "init failed");
            return ExitCode::from(2);
        }
    };
    match dispatch::run(handler, deps).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("notes-lambda: {handler}: {e}");
            ExitCode::FAILURE
        }
    }
}
