//! EventBridge: `PutEvents` on the app's bus, source `notes.service`, detail-type = `eventType`.
//! Entries the service refuses (`FailedEntryCount > 0`) come back in the report, never dropped.

use async_trait::async_trait;
use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use super::store_error;
use crate::domain::events::{EVENT_SOURCE, NoteEvent};
use crate::ports::{EventBus, FailedEntry, PublishReport, StoreError};

/// PutEvents takes at most 10 entries a call.
const MAX_ENTRIES: usize = 10;

#[derive(Clone, Debug)]
pub struct EventBridgeBus {
    client: std::sync::Arc<super::lazy::LazyClient<Client>>,
    bus_name: String,
}

impl EventBridgeBus {
    pub fn new(
        client: impl Into<super::lazy::LazyClient<Client>>,
        bus_name: impl Into<String>,
    ) -> Self {
        Self {
            client: std::sync::Arc::new(client.into()),
            bus_name: bus_name.into(),
        }
    }
}

#[async_trait]
impl EventBus for EventBridgeBus {
    async fn publish(&self, events: &[NoteEvent]) -> Result<PublishReport, StoreError> {
        const OP: &str = "publishing events";
        let mut report = PublishReport::default();
        for (chunk_no, chunk) in events.chunks(MAX_ENTRIES).enumerate() {
            let entries = chunk
                .iter()
                .map(|e| {
                    PutEventsRequestEntry::builder()
                        .event_bus_name(&self.bus_name)
                        .source(EVENT_SOURCE)
                        .detail_type(e.detail_type())
                        .detail(e.to_detail_json())
                        // The note's trace goes on with it (X-Ray's header; none outside a trace).
                        .set_trace_header(crate::trace::current())
                        .build()
                })
                .collect();
            let out = self
                .client
                .get()
                .await
                .put_events()
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| store_error(OP, e))?;
            if out.failed_entry_count() == 0 {
                continue;
            }
            let results = out.entries();
            for (i, _) in chunk.iter().enumerate() {
                let failed = match results.get(i) {
                    Some(r) => r.error_code().map(|code| {
                        (
                            code.to_owned(),
                            r.error_message().unwrap_or_default().to_owned(),
                        )
                    }),
                    // The service said some failed but did not say which: count the missing as failed.
                    None => Some(("Unknown".to_owned(), "no result entry returned".to_owned())),
                };
                if let Some((code, message)) = failed {
                    report.failed.push(FailedEntry {
                        index: chunk_no * MAX_ENTRIES + i,
                        code,
                        message,
                    });
                }
            }
        }
        Ok(report)
    }
}
