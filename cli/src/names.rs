//! Resource names, by the original system's convention (`{stage}-…`): operational commands find
//! queues and log groups by name, so they work without the stacks' outputs. Function names come from
//! the handlers' own declaration.

use notes_handlers::HandlerName;

pub fn data_table(stage: &str) -> String {
    format!("{stage}-data-table")
}

pub fn connections_table(stage: &str) -> String {
    format!("{stage}-websocket-connections")
}

pub fn queue(stage: &str) -> String {
    format!("{stage}-note-processing-queue")
}

pub fn dlq(stage: &str) -> String {
    format!("{stage}-note-processing-dlq")
}

/// The full function name for a short name (`save`), a handler name (`notes-save`) or a full name.
pub fn function(stage: &str, given: &str) -> String {
    match HandlerName::find(given) {
        Some(h) => h.spec().function_name(stage),
        None => given.to_owned(),
    }
}

pub fn log_group(function: &str) -> String {
    format!("/aws/lambda/{function}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_handler_and_full_names() {
        assert_eq!(function("production", "save"), "production-notes-save");
        assert_eq!(function("dev", "websocket-notify"), "dev-websocket-notify");
        assert_eq!(function("dev", "custom-fn"), "custom-fn");
        assert_eq!(
            log_group("production-notes-save"),
            "/aws/lambda/production-notes-save"
        );
        assert_eq!(queue("p"), "p-note-processing-queue");
        assert_eq!(dlq("p"), "p-note-processing-dlq");
    }
}
