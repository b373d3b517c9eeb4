//! Users and the sign-up / login request bodies.

use serde::{Deserialize, Serialize};

use super::error::{AppError, FieldError, string_field};

pub const MAX_USERNAME_CHARS: usize = 64;
/// argon2 hashes any length, but an unbounded password is a cheap way to burn our CPU.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// The shortest password sign-up accepts.
pub const MIN_PASSWORD_CHARS: usize = 8;

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

/// Which request the credentials come with: sign-up holds new names and passwords to the rules;
/// login only looks them up (an account made before a rule existed can still log in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    SignUp,
    Login,
}

/// The form a username is unique by: NFKC, then case-folded. `Alice`, `ALICE`, `alice` with a
/// full-width `Ａ`, or `é` composed or decomposed are one account; the name is kept as first typed.
pub fn username_key(username: &str) -> String {
    let nfkc = icu_normalizer::ComposingNormalizerBorrowed::new_nfkc().normalize(username);
    icu_casemap::CaseMapper::new()
        .fold_string(&nfkc)
        .into_owned()
}

/// A character that would make two names look alike or hide what a name says: control and format
/// characters (zero-width, bidi overrides and isolates), line and paragraph separators.
fn deceptive(c: char) -> bool {
    use icu_properties::CodePointMapData;
    use icu_properties::props::GeneralCategory;
    matches!(
        CodePointMapData::<GeneralCategory>::new().get(c),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    )
}

impl Credentials {
    pub fn from_json(body: &serde_json::Value, purpose: Purpose) -> Result<Self, AppError> {
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
                } else if s.contains('#') {
                    // '#' separates the parts of storage keys (USER#name).
                    errors.push(FieldError::new("username", "username must not contain '#'"));
                } else if purpose == Purpose::SignUp
                    && let Some(c) = s.chars().find(|c| deceptive(*c))
                {
                    errors.push(FieldError::new(
                        "username",
                        format!(
                            "username must not contain invisible, control, direction-changing or line-separating characters (found U+{:04X})",
                            c as u32
                        ),
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
                } else if purpose == Purpose::SignUp && s.chars().count() < MIN_PASSWORD_CHARS {
                    errors.push(FieldError::new(
                        "password",
                        format!("password must be at least {MIN_PASSWORD_CHARS} characters"),
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
        let ok = Credentials::from_json(
            &json!({"username":" ada ","password":"pw-long-enough"}),
            Purpose::SignUp,
        )
        .unwrap();
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
            for purpose in [Purpose::SignUp, Purpose::Login] {
                assert_eq!(
                    Credentials::from_json(&bad, purpose).unwrap_err().status(),
                    400,
                    "{bad}"
                );
            }
        }
    }

    fn field_message(body: serde_json::Value, purpose: Purpose) -> String {
        match Credentials::from_json(&body, purpose) {
            Ok(_) => String::new(),
            Err(e) => e
                .field_errors()
                .iter()
                .map(|f| f.message.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        }
    }

    #[test]
    fn sign_up_wants_eight_characters_login_does_not() {
        let short = json!({"username": "ada", "password": "1234567"});
        assert_eq!(
            field_message(short.clone(), Purpose::SignUp),
            "password must be at least 8 characters"
        );
        assert_eq!(
            field_message(short, Purpose::Login),
            "",
            "old accounts still log in"
        );
        let eight_chars = json!({"username": "ada", "password": "pässwörd"});
        assert_eq!(
            field_message(eight_chars, Purpose::SignUp),
            "",
            "characters, not bytes"
        );
    }

    #[test]
    fn names_that_only_look_like_another_are_refused_at_sign_up() {
        for name in [
            "al\u{200B}ice",  // zero-width space
            "ali\u{202E}ecb", // right-to-left override
            "bob\u{2066}",    // left-to-right isolate
            "a\u{2028}b",     // line separator
            "a\u{2029}b",     // paragraph separator
            "a\u{00AD}b",     // soft hyphen
            "a\u{FEFF}b",     // byte order mark
            "a\u{0007}b",     // control
        ] {
            let msg = field_message(
                json!({"username": name, "password": "long enough"}),
                Purpose::SignUp,
            );
            assert!(
                msg.contains("must not contain invisible"),
                "{name:?}: {msg}"
            );
        }
        for name in ["Åsa", "渡辺", "José", "o'brien", "ada lovelace"] {
            let msg = field_message(
                json!({"username": name, "password": "long enough"}),
                Purpose::SignUp,
            );
            assert_eq!(msg, "", "{name:?}");
        }
    }

    #[test]
    fn names_are_one_account_by_their_normalised_form() {
        let same = [
            ("alice", "ALICE"),
            ("alice", "Alice"),
            ("Jos\u{E9}", "jose\u{301}"), // composed and decomposed é
            ("alice", "\u{FF41}lice"),    // full-width a
            ("strasse", "STRA\u{DF}E"),   // ß folds to ss
            ("\u{3A3}\u{39F}\u{3A3}", "\u{3C3}\u{3BF}\u{3C2}"), // Greek final sigma
        ];
        for (a, b) in same {
            assert_eq!(username_key(a), username_key(b), "{a:?} ~ {b:?}");
        }
        assert_ne!(username_key("alice"), username_key("alicf"));
        assert_eq!(username_key("bob"), "bob", "plain names are their own key");
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
