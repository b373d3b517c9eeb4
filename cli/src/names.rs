//! Resource names, by the original system's convention (`spec/CLI.md`): operational commands find
//! queues and log groups by name, so they work without the stacks' outputs.

pub fn queue(stage: &str) -> String {
    format!("{stage}-note-processing-queue")
}

pub fn dlq(stage: &str) -> String {
    format!("{stage}-note-processing-dlq")
}

/// Every function of the app: (short name, name suffix).
pub const FUNCTIONS: &[(&str, &str)] = &[
    ("signup", "auth-signup"),
    ("login", "auth-login"),
    ("get-user", "auth-get-user"),
    ("publish", "notes-publish"),
    ("save", "notes-save"),
    ("get", "notes-get"),
    ("get-public", "notes-get-public"),
    ("update", "notes-update"),
    ("delete", "notes-delete"),
    ("connect", "websocket-connect"),
    ("disconnect", "websocket-disconnect"),
    ("notify", "websocket-notify"),
];

/// The full function name for a short name (`save`), a handler name (`notes-save`) or a full name.
pub fn function(stage: &str, given: &str) -> String {
    if let Some((_, suffix)) = FUNCTIONS
        .iter()
        .find(|(short, suffix)| given == *short || given == *suffix)
    {
        format!("{stage}-{suffix}")
    } else {
        given.to_owned()
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
