//! Users and the sign-up / login request bodies.

use serde::{Deserialize, Serialize};

use super::error::{AppError, FieldError, string_field};

pub const MAX_USERNAME_CHARS: usize = 64;
/// argon2 hashes any length, but an unbounded password is a cheap way to burn our CPU.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A stored user: `pk USER#{username}`, `sk PROFILE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRecord {
    pub username: String,
    pub password_hash: String,
    pub created_at: String,
}

/// `GET /auth/user`: the profile without the password hash.
#[derive(Debug, Clone, Serialize)]
pub struct UserView<'a> {
    pub pk: String,
    pub sk: &'static str,
    pub username: &'a str,
    #[serde(rename = "createdAt")]
    pub created_at: &'a str,
}

impl UserRecord {
    pub fn view(&self) -> UserView<'_> {
        UserView {
            pk: format!("USER#{}", self.username),
            sk: "PROFILE",
            username: &self.username,
            created_at: &self.created_at,
        }
    }
}

/// A validated `{"username","password"}` body (sign-up and login).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    pub fn from_json(body: &serde_json::Value) -> Result<Self, AppError> {
        let obj = body
            .as_object()
            .ok_or_else(|| AppError::bad_request("Request body must be a JSON object"))?;
        let mut errors = Vec::new();
        let username = match string_field(obj, "username", &mut errors) {
            Some(s) => {
                let s = s.trim();
                if s.is_empty() {
                    errors.push(FieldError::new("username", "username must not be empty"));
                } else if s.chars().count() > MAX_USERNAME_CHARS {
                    errors.push(FieldError::new(
                        "username",
                        format!("username must be at most {MAX_USERNAME_CHARS} characters"),
                    ));
                } else if s.chars().any(|c| c == '#' || c.is_control()) {
                    // '#' separates the parts of storage keys (USER#name).
                    errors.push(FieldError::new(
                        "username",
                        "username must not contain '#' or control characters",
                    ));
                }
                s.to_owned()
            }
            None => String::new(),
        };
        let password = match string_field(obj, "password", &mut errors) {
            Some(s) => {
                if s.is_empty() {
                    errors.push(FieldError::new("password", "password must not be empty"));
                } else if s.len() > MAX_PASSWORD_BYTES {
                    errors.push(FieldError::new(
                        "password",
                        format!("password must be at most {MAX_PASSWORD_BYTES} bytes"),
                    ));
                }
                s.to_owned()
            }
            None => String::new(),
        };
        if errors.is_empty() {
            Ok(Self { username, password })
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
    fn validates_credentials() {
        let ok = Credentials::from_json(&json!({"username":" ada ","password":"pw"})).unwrap();
        assert_eq!(ok.username, "ada");
        for bad in [
            json!({}),
            json!({"username":"","password":"x"}),
            json!({"username":"a","password":""}),
            json!({"username":1,"password":"x"}),
            json!({"username":"a#b","password":"x"}),
            json!({"username":"a","password":["x"]}),
            json!(null),
        ] {
            assert_eq!(
                Credentials::from_json(&bad).unwrap_err().status(),
                400,
                "{bad}"
            );
        }
    }

    #[test]
    fn debug_never_shows_the_password() {
        let c = Credentials {
            username: "ada".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
