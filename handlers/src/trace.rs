//! The trace a piece of work belongs to, carried with a note across its asynchronous hops so that one
//! note is one trace: Lambda gives each invocation its X-Ray header, `publish` puts it on the
//! `note-created` entry (EventBridge's `TraceHeader`), SQS hands it to `save` as the message's
//! `AWSTraceHeader`, and `save` puts the same header on `note-saved`, which EventBridge passes on to
//! `notify`. The header is opaque here; the adapter that publishes reads it from [`current`].

use std::future::Future;

tokio::task_local! {
    static HEADER: Option<String>;
}

/// Runs `work` as part of the trace `header` (none: outside any trace).
pub async fn within<F: Future>(header: Option<String>, work: F) -> F::Output {
    HEADER.scope(header, work).await
}

/// The trace header of the work running now, if it has one.
pub fn current() -> Option<String> {
    HEADER.try_with(Clone::clone).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_header_is_seen_inside_its_scope_only() {
        assert_eq!(current(), None);
        let inner = within(Some("Root=1-a-b".into()), async {
            let nested = within(Some("Root=1-c-d".into()), async { current() }).await;
            (current(), nested)
        })
        .await;
        assert_eq!(
            inner,
            (Some("Root=1-a-b".into()), Some("Root=1-c-d".into()))
        );
        assert_eq!(current(), None);
    }
}
