//! The errors a request can end in, each with the HTTP status and message the API contract gives it.

use serde::Serialize;

/// One field that failed validation, as `{"path":["content"],"message":"..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub path: Vec<String>,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            path: vec![field.to_owned()],
            message: message.into(),
        }
    }
}

/// A required string field of a JSON body, or `None` with "`field` is required" or "`field` must be
/// a string" added to `errors`.
pub fn string_field<'a>(
    obj: &'a serde_json::Map<String, serde_json::Value>,
    field: &str,
    errors: &mut Vec<FieldError>,
) -> Option<&'a str> {
    match obj.get(field) {
        Some(serde_json::Value::String(s)) => Some(s),
        None | Some(serde_json::Value::Null) => {
            errors.push(FieldError::new(field, format!("{field} is required")));
            None
        }
        Some(_) => {
            errors.push(FieldError::new(field, format!("{field} must be a string")));
            None
        }
    }
}

/// Why a request failed. Client errors carry the sentence the client sees; server errors carry the
/// cause for the log only, never for the response body.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{message}")]
    BadRequest {
        message: String,
        errors: Vec<FieldError>,
    },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A dependency refused or failed in a way a retry may fix (event bus, throttling).
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest {
            message: message.into(),
            errors: Vec::new(),
        }
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let message = match errors.as_slice() {
            [one] => format!("Invalid request body: {}", one.message),
            _ => "Invalid request body".to_owned(),
        };
        Self::BadRequest { message, errors }
    }

    pub fn invalid_token() -> Self {
        Self::Unauthorized("Invalid or expired token".to_owned())
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }

    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest { .. } => 400,
            Self::Unauthorized(_) => 401,
            Self::NotFound(_) => 404,
            Self::MethodNotAllowed(_) => 405,
            Self::Conflict(_) => 409,
            Self::PayloadTooLarge(_) => 413,
            Self::UnsupportedMediaType(_) => 415,
            Self::Unavailable(_) => 503,
            Self::Internal(_) => 500,
        }
    }

    /// The message a client may see. Server-side causes stay in the logs.
    pub fn public_message(&self) -> String {
        match self {
            Self::Unavailable(_) => {
                "The service is temporarily unavailable; please retry shortly".to_owned()
            }
            Self::Internal(_) => "Internal server error".to_owned(),
            other => other.to_string(),
        }
    }

    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            Self::BadRequest { errors, .. } => errors,
            _ => &[],
        }
    }
}

/// An error and its causes on one line, `a: b: c`, each cause once (a layer that repeats the text of
/// the one below is not shown twice).
#[derive(Clone, Copy)]
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown: Vec<String> = Vec::new();
        let mut next = Some(self.0);
        while let Some(e) = next {
            let text = e.to_string();
            if !text.is_empty() && !shown.iter().any(|s| s.contains(&text)) {
                shown.push(text);
            }
            next = e.source();
        }
        f.write_str(&shown.join(": "))
    }
}
