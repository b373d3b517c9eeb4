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

/// Script_Extensions of `c` as UTS #39 augments it (Han also counts as Japanese, Korean and Han with
/// Bopomofo; Hiragana and Katakana as Japanese; Hangul as Korean; Bopomofo as Han with Bopomofo), or
/// `None` for a Common or Inherited character (digits, punctuation, combining marks), which goes
/// with any script.
fn scripts_of(c: char) -> Option<Vec<icu_properties::props::Script>> {
    use icu_properties::props::Script;
    let mut set: Vec<Script> = icu_properties::script::ScriptWithExtensions::new()
        .get_script_extensions_val(c)
        .iter()
        .collect();
    if set.contains(&Script::Common) || set.contains(&Script::Inherited) {
        return None;
    }
    let mut extra = Vec::new();
    for s in &set {
        match *s {
            Script::Han => {
                extra.extend([Script::HanWithBopomofo, Script::Japanese, Script::Korean])
            }
            Script::Hiragana | Script::Katakana => extra.push(Script::Japanese),
            Script::Hangul => extra.push(Script::Korean),
            Script::Bopomofo => extra.push(Script::HanWithBopomofo),
            _ => {}
        }
    }
    set.extend(extra);
    Some(set)
}

/// The scripts every character of `chars` can be written in (UTS #39's resolved script set), or
/// `None` when no character has a script of its own.
fn resolved_scripts(
    chars: impl Iterator<Item = char>,
) -> Option<Vec<icu_properties::props::Script>> {
    chars.filter_map(scripts_of).reduce(|mut common, next| {
        common.retain(|s| next.contains(s));
        common
    })
}

/// Whether `name` mixes scripts the way a look-alike does: `zоe` with a Cyrillic `о` beside an
/// existing `Zoe`. A name is one script (Common and Inherited characters — digits, `-`, `_`, `.` —
/// go with any), or Latin with Japanese, Chinese or Korean (UTS #39's "highly restrictive" level).
fn mixes_scripts(name: &str) -> bool {
    use icu_properties::props::Script;
    if resolved_scripts(name.chars()).is_none_or(|set| !set.is_empty()) {
        return false;
    }
    let latin = |c: &char| scripts_of(*c).is_some_and(|set| set.contains(&Script::Latin));
    match resolved_scripts(name.chars().filter(|c| !latin(c))) {
        None => false,
        Some(rest) => ![Script::Japanese, Script::HanWithBopomofo, Script::Korean]
            .iter()
            .any(|cjk| rest.contains(cjk)),
    }
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
                } else if purpose == Purpose::SignUp && mixes_scripts(s) {
                    errors.push(FieldError::new(
                        "username",
                        "username must not mix scripts (such as Latin with Cyrillic or Greek letters)",
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
                } else if purpose == Purpose::SignUp && s.chars().all(char::is_whitespace) {
                    errors.push(FieldError::new(
                        "password",
                        "password must not be only spaces or other whitespace",
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
    fn an_all_blank_password_is_refused_at_sign_up() {
        for blank in ["        ", "\t\t\t\t\t\t\t\t", " \u{3000}\u{A0}\n      "] {
            let body = json!({"username": "ada", "password": blank});
            assert_eq!(
                field_message(body.clone(), Purpose::SignUp),
                "password must not be only spaces or other whitespace",
                "{blank:?}"
            );
            assert_eq!(
                Credentials::from_json(&body, Purpose::SignUp)
                    .unwrap_err()
                    .status(),
                400
            );
        }
        let spaced = json!({"username": "ada", "password": "  a long pass  "});
        assert_eq!(
            field_message(spaced, Purpose::SignUp),
            "",
            "spaces inside are fine"
        );
    }

    #[test]
    fn names_that_mix_scripts_are_refused_at_sign_up() {
        for name in [
            "z\u{43E}e",      // Cyrillic о among Latin letters
            "\u{440}aypal",   // Cyrillic р
            "\u{3BF}scar",    // Greek ο
            "adm\u{456}n-1",  // Cyrillic і, with a digit and a hyphen
            "\u{5D0}bc",      // Hebrew with Latin
            "\u{43C}\u{3B1}", // Cyrillic with Greek
        ] {
            let msg = field_message(
                json!({"username": name, "password": "long enough"}),
                Purpose::SignUp,
            );
            assert!(msg.contains("must not mix scripts"), "{name:?}: {msg}");
            assert_eq!(
                field_message(
                    json!({"username": name, "password": "long enough"}),
                    Purpose::Login
                ),
                "",
                "{name:?}: login only looks the name up"
            );
        }
        for name in [
            "Zoe",
            "zoe_2.0-x",
            "\u{417}\u{43E}\u{44F}",               // Зоя: Cyrillic alone
            "\u{3A3}\u{3BF}\u{3C6}\u{3AF}\u{3B1}", // Σοφία: Greek alone
            "渡辺さん",                            // Han with Hiragana
            "tanaka\u{7530}\u{4E2D}",              // Latin with Han
            "\u{AE40}\u{6F22}",                    // Hangul with Han
            "e\u{301}mile",                        // a combining accent (Inherited)
            "42",
        ] {
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
