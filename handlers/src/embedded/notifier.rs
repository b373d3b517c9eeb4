//! Posts to WebSocket connections held in this process: each connection is a channel to the socket's
//! writer task. An unknown or closed connection is `Gone`, as API Gateway answers 410.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::ports::{Notifier, NotifyError, Posted};

#[derive(Clone, Default)]
pub struct LocalNotifier {
    senders: Arc<RwLock<HashMap<String, mpsc::UnboundedSender<String>>>>,
}

impl LocalNotifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Attaches a connection; messages posted to it arrive on the returned receiver.
    pub fn attach(&self, connection_id: &str) -> mpsc::UnboundedReceiver<String> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.senders
            .write()
            .expect("notifier lock")
            .insert(connection_id.to_owned(), tx);
        rx
    }

    pub fn detach(&self, connection_id: &str) {
        self.senders
            .write()
            .expect("notifier lock")
            .remove(connection_id);
    }

    pub fn connection_count(&self) -> usize {
        self.senders.read().expect("notifier lock").len()
    }
}

#[async_trait]
impl Notifier for LocalNotifier {
    async fn post(&self, connection_id: &str, message: &[u8]) -> Result<Posted, NotifyError> {
        let text = String::from_utf8(message.to_vec()).map_err(|e| NotifyError::Failed {
            connection_id: connection_id.to_owned(),
            reason: format!("message is not UTF-8: {e}"),
        })?;
        let sender = self
            .senders
            .read()
            .expect("notifier lock")
            .get(connection_id)
            .cloned();
        match sender {
            Some(tx) if tx.send(text).is_ok() => Ok(Posted::Delivered),
            Some(_) => {
                self.detach(connection_id);
                Ok(Posted::Gone)
            }
            None => Ok(Posted::Gone),
        }
    }
}
