//! The events of the notes pipeline. On EventBridge: source `notes.service`, detail-type = `eventType`,
//! detail = the event object itself.

use serde::{Deserialize, Serialize};

use super::note::NoteId;

pub const EVENT_SOURCE: &str = "notes.service";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "eventType")]
pub enum NoteEvent {
    #[serde(rename = "note-created", rename_all = "camelCase")]
    Created {
        note_id: NoteId,
        username: String,
        content: String,
        is_public: bool,
        timestamp: String,
    },
    #[serde(rename = "note-saved", rename_all = "camelCase")]
    Saved {
        note_id: NoteId,
        username: String,
        content: String,
        is_public: bool,
        saved_at: String,
        timestamp: String,
    },
    #[serde(rename = "note-failed", rename_all = "camelCase")]
    Failed {
        note_id: NoteId,
        username: String,
        error: String,
        timestamp: String,
    },
    #[serde(rename = "note-updated", rename_all = "camelCase")]
    Updated {
        note_id: NoteId,
        username: String,
        content: String,
        is_public: bool,
        updated_at: String,
        timestamp: String,
    },
    #[serde(rename = "note-deleted", rename_all = "camelCase")]
    Deleted {
        note_id: NoteId,
        username: String,
        is_public: bool,
        deleted_at: String,
        timestamp: String,
    },
}

impl NoteEvent {
    /// EventBridge's `detail-type`, equal to `eventType`.
    pub fn detail_type(&self) -> &'static str {
        match self {
            Self::Created { .. } => "note-created",
            Self::Saved { .. } => "note-saved",
            Self::Failed { .. } => "note-failed",
            Self::Updated { .. } => "note-updated",
            Self::Deleted { .. } => "note-deleted",
        }
    }

    pub fn note_id(&self) -> &NoteId {
        match self {
            Self::Created { note_id, .. }
            | Self::Saved { note_id, .. }
            | Self::Failed { note_id, .. }
            | Self::Updated { note_id, .. }
            | Self::Deleted { note_id, .. } => note_id,
        }
    }

    pub fn username(&self) -> &str {
        match self {
            Self::Created { username, .. }
            | Self::Saved { username, .. }
            | Self::Failed { username, .. }
            | Self::Updated { username, .. }
            | Self::Deleted { username, .. } => username,
        }
    }

    /// Events of a public note that every connected client receives (saved, updated, deleted);
    /// everything else goes to the owner's connections only.
    pub fn is_broadcast(&self) -> bool {
        matches!(
            self,
            Self::Saved {
                is_public: true,
                ..
            } | Self::Updated {
                is_public: true,
                ..
            } | Self::Deleted {
                is_public: true,
                ..
            }
        )
    }

    /// The `detail` JSON, which is also the WebSocket message body.
    pub fn to_detail_json(&self) -> String {
        serde_json::to_string(self).expect("events serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wire_shape_matches_the_contract() {
        let id = NoteId::parse("1700000000123-abc1234").unwrap();
        let ev = NoteEvent::Saved {
            note_id: id,
            username: "ada".into(),
            content: "hi".into(),
            is_public: true,
            saved_at: "2023-11-14T22:13:21.000Z".into(),
            timestamp: "2023-11-14T22:13:21.000Z".into(),
        };
        let v: serde_json::Value = serde_json::from_str(&ev.to_detail_json()).unwrap();
        assert_eq!(
            v,
            json!({"eventType":"note-saved","noteId":"1700000000123-abc1234","username":"ada",
                   "content":"hi","isPublic":true,"savedAt":"2023-11-14T22:13:21.000Z",
                   "timestamp":"2023-11-14T22:13:21.000Z"})
        );
        assert!(ev.is_broadcast());
        let back: NoteEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn private_and_failed_events_are_not_broadcast() {
        let failed: NoteEvent = serde_json::from_value(json!({"eventType":"note-failed",
            "noteId":"1-a","username":"u","error":"e","timestamp":"t"}))
        .unwrap();
        assert!(!failed.is_broadcast());
        let created: NoteEvent = serde_json::from_value(json!({"eventType":"note-created",
            "noteId":"1-a","username":"u","content":"c","isPublic":true,"timestamp":"t"}))
        .unwrap();
        assert!(
            !created.is_broadcast(),
            "note-created goes to the queue, not to clients"
        );
    }
}
