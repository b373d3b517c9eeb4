//! Notes: identifiers, validation of what clients send, and the shapes they get back.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::clock::iso_millis;
use super::error::{AppError, FieldError, string_field};

/// Largest note content, in bytes of UTF-8. Chosen so a `note-created` event (content plus envelope)
/// stays well inside EventBridge's 256 KiB entry limit and a stored item inside DynamoDB's 400 KB.
pub const MAX_CONTENT_BYTES: usize = 100 * 1024;

/// How long a deleted note's tombstone lasts: longer than its `note-created` can live in the queue
/// and the DLQ (4 + 14 days would be the limit; redrives restart the clock, so keep a margin).
pub const TOMBSTONE_MS: i64 = 30 * 24 * 3600 * 1000;

const BASE36: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// `<epoch-millis>-<7 random base36 chars>`, as the original system generated. The creation time is
/// part of the id, so a note's storage key can be derived from its id alone (no scan, no index).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NoteId {
    raw: String,
    millis: i64,
}

impl NoteId {
    pub fn generate(now_millis: i64) -> Self {
        let mut rng = rand::rng();
        let suffix: String = (0..7)
            .map(|_| BASE36[rng.random_range(0..BASE36.len())] as char)
            .collect();
        Self {
            raw: format!("{now_millis}-{suffix}"),
            millis: now_millis,
        }
    }

    pub fn parse(s: &str) -> Result<Self, AppError> {
        let invalid = || {
            AppError::NotFound(format!(
                "Note not found: '{}' is not a note id",
                truncate(s, 64)
            ))
        };
        let (millis, suffix) = s.split_once('-').ok_or_else(invalid)?;
        let millis_ok =
            (1..=15).contains(&millis.len()) && millis.bytes().all(|b| b.is_ascii_digit());
        let suffix_ok = (1..=16).contains(&suffix.len())
            && suffix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !millis_ok || !suffix_ok {
            return Err(invalid());
        }
        let millis = millis.parse().map_err(|_| invalid())?;
        Ok(Self {
            raw: s.to_owned(),
            millis,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The note's `createdAt`, derived from the id.
    pub fn created_at(&self) -> String {
        iso_millis(self.millis)
    }

    /// `NOTE#{createdAt}#{noteId}`: the sort key under both the owner and `PUBLIC#NOTES`.
    pub fn sort_key(&self) -> String {
        format!("NOTE#{}#{}", self.created_at(), self.raw)
    }
}

impl std::fmt::Display for NoteId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.raw)
    }
}

impl TryFrom<String> for NoteId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).map_err(|e| e.to_string())
    }
}

impl From<NoteId> for String {
    fn from(id: NoteId) -> String {
        id.raw
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A stored note. Public notes are stored twice (under the owner and under `PUBLIC#NOTES`) with the
/// same fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Note {
    pub note_id: NoteId,
    pub username: String,
    pub content: String,
    pub is_public: bool,
    pub status: String,
    pub created_at: String,
    pub saved_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

/// A note as `GET /notes` shows it to its owner.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnNoteView<'a> {
    pub note_id: &'a str,
    pub content: &'a str,
    pub is_public: bool,
    pub status: &'a str,
    pub created_at: &'a str,
    pub saved_at: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<&'a str>,
}

/// A note as `GET /notes/public` shows it to anyone: the owner's view and whose it is.
#[derive(Debug, Clone, Serialize)]
pub struct PublicNoteView<'a> {
    pub username: &'a str,
    #[serde(flatten)]
    pub note: OwnNoteView<'a>,
}

impl Note {
    pub fn own_view(&self) -> OwnNoteView<'_> {
        OwnNoteView {
            note_id: self.note_id.as_str(),
            content: &self.content,
            is_public: self.is_public,
            status: &self.status,
            created_at: &self.created_at,
            saved_at: &self.saved_at,
            updated_at: self.updated_at.as_deref(),
        }
    }

    pub fn public_view(&self) -> PublicNoteView<'_> {
        PublicNoteView {
            username: &self.username,
            note: self.own_view(),
        }
    }
}

/// A validated `POST /notes` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNote {
    pub content: String,
    pub is_public: bool,
}

/// A validated `PUT /notes/{noteId}` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteEdit {
    pub content: String,
}

/// Bytes the content takes inside an event's JSON (escapes included): what counts against
/// EventBridge's 256 KiB entry limit.
fn encoded_len(content: &str) -> usize {
    serde_json::to_string(content)
        .map(|s| s.len() - 2)
        .unwrap_or(usize::MAX)
}

fn expect_object(
    body: &serde_json::Value,
) -> Result<&serde_json::Map<String, serde_json::Value>, AppError> {
    body.as_object()
        .ok_or_else(|| AppError::bad_request("Request body must be a JSON object"))
}

fn validate_content(
    obj: &serde_json::Map<String, serde_json::Value>,
    errors: &mut Vec<FieldError>,
) -> String {
    match string_field(obj, "content", errors) {
        None => String::new(),
        Some(s) => {
            let trimmed = s.trim();
            if trimmed.is_empty() {
                errors.push(FieldError::new("content", "content must not be empty"));
            } else if encoded_len(trimmed) > MAX_CONTENT_BYTES {
                errors.push(FieldError::new(
                    "content",
                    format!("content must be at most {MAX_CONTENT_BYTES} bytes"),
                ));
            }
            trimmed.to_owned()
        }
    }
}

impl NewNote {
    pub fn from_json(body: &serde_json::Value) -> Result<Self, AppError> {
        let obj = expect_object(body)?;
        let mut errors = Vec::new();
        let content = validate_content(obj, &mut errors);
        let is_public = match obj.get("isPublic") {
            None | Some(serde_json::Value::Null) => false,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(_) => {
                errors.push(FieldError::new("isPublic", "isPublic must be a boolean"));
                false
            }
        };
        if errors.is_empty() {
            Ok(Self { content, is_public })
        } else {
            Err(AppError::validation(errors))
        }
    }
}

impl NoteEdit {
    pub fn from_json(body: &serde_json::Value) -> Result<Self, AppError> {
        let obj = expect_object(body)?;
        let mut errors = Vec::new();
        let content = validate_content(obj, &mut errors);
        if errors.is_empty() {
            Ok(Self { content })
        } else {
            Err(AppError::validation(errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn generated_ids_parse_and_carry_their_time() {
        let id = NoteId::generate(1_700_000_000_123);
        let parsed = NoteId::parse(id.as_str()).unwrap();
        assert_eq!(parsed, id);
        assert_eq!(id.created_at(), "2023-11-14T22:13:20.123Z");
        assert!(
            id.sort_key()
                .starts_with("NOTE#2023-11-14T22:13:20.123Z#1700000000123-")
        );
        assert_eq!(id.as_str().len(), "1700000000123-".len() + 7);
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in [
            "",
            "abc",
            "123",
            "-abc",
            "123-",
            "123-ABC",
            "12#3-abc",
            "123-a/b",
            "1234567890123456-a",
        ] {
            assert!(NoteId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn new_note_validation() {
        let ok = NewNote::from_json(&json!({"content": "  hi  ", "isPublic": true})).unwrap();
        assert_eq!(
            ok,
            NewNote {
                content: "hi".into(),
                is_public: true
            }
        );
        assert!(
            !NewNote::from_json(&json!({"content": "x"}))
                .unwrap()
                .is_public
        );
        for bad in [
            json!({}),
            json!({"content": ""}),
            json!({"content": "   "}),
            json!({"content": 5}),
            json!({"content": "x", "isPublic": "yes"}),
            json!([1]),
            json!("content"),
        ] {
            let err = NewNote::from_json(&bad).unwrap_err();
            assert_eq!(err.status(), 400, "{bad}");
        }
        let big = "x".repeat(MAX_CONTENT_BYTES + 1);
        assert_eq!(
            NewNote::from_json(&json!({"content": big}))
                .unwrap_err()
                .status(),
            400
        );
        // Control characters escape to six bytes each: 20 KiB of them is too much.
        let escapes = "\u{1}".repeat(20 * 1024);
        assert_eq!(
            NewNote::from_json(&json!({"content": format!("a{escapes}a")}))
                .unwrap_err()
                .status(),
            400
        );
    }
}
