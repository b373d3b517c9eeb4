//! An event bus that hands every accepted event to a channel. `notesctl dev` routes from the other
//! end; tests read it to see exactly what was published.

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::domain::events::NoteEvent;
use crate::ports::{EventBus, FailedEntry, PublishReport, StoreError};

#[derive(Clone)]
pub struct ChannelBus {
    tx: mpsc::UnboundedSender<NoteEvent>,
}

impl ChannelBus {
    pub fn new() -> (Self, mpsc::UnboundedReceiver<NoteEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx }, rx)
    }
}

#[async_trait]
impl EventBus for ChannelBus {
    async fn publish(&self, events: &[NoteEvent]) -> Result<PublishReport, StoreError> {
        let mut report = PublishReport::default();
        for (index, event) in events.iter().enumerate() {
            if self.tx.send(event.clone()).is_err() {
                report.failed.push(FailedEntry {
                    index,
                    code: "BusClosed".to_owned(),
                    message: "the local event router has stopped".to_owned(),
                });
            }
        }
        Ok(report)
    }
}
