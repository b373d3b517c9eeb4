//! Resource names, by the original system's convention (`{stage}-…`): operational commands find
//! queues and log groups by name, so they work without the stacks' outputs. Function names come from
//! the handlers' own declaration.

use notes_handlers::HandlerName;

pub fn data_table(stage: &str) -> String {
    format!("{stage}-data-table")
}

pub fn connections_table(stage: &str) -> String {
    format!("{stage}-websocket-connections")
}

pub fn queue(stage: &str) -> String {
    format!("{stage}-note-processing-queue")
}

pub fn dlq(stage: &str) -> String {
    format!("{stage}-note-processing-dlq")
}

/// Where the notify rule's undeliverable events and websocket-notify's failed invocations wait.
pub fn notify_dlq(stage: &str) -> String {
    format!("{stage}-websocket-notify-dlq")
}

/// The full function name for a short name (`save`), a handler name (`notes-save`) or a full name.
pub fn function(stage: &str, given: &str) -> String {
    match HandlerName::find(given) {
        Some(h) => h.spec().function_name(stage),
        None => given.to_owned(),
    }
}

pub fn log_group(function: &str) -> String {
    format!("/aws/lambda/{function}")
}

/// The rounds of PBKDF2 behind [`check_user`]: the name is public (the smoke user's notes show
/// it), so guessing the password from it should cost what guessing it at login costs, or more.
const CHECK_USER_ROUNDS: u32 = 20_000;

/// The user `smoke`, `doctor` or `load` (`role`) signs in as on `stage`: `notesctl-{role}-` and 16
/// hex digits of PBKDF2-HMAC-SHA256 of the role and stage keyed by `secret` — the password the
/// operator gives it (`NOTESCTL_SMOKE_PASSWORD`, …), or `notesctl dev`'s runbook token for `--local`.
/// Stable for the same inputs, different per stage, role and secret, and not guessable without the
/// secret: nobody can sign the name up first and make the check fail.
pub fn check_user(role: &str, stage: &str, secret: &str) -> String {
    let salt = format!("notesctl {role} user\0{stage}");
    let key = pbkdf2_sha256(secret.as_bytes(), salt.as_bytes(), CHECK_USER_ROUNDS);
    let hex: String = key[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("notesctl-{role}-{hex}")
}

/// HMAC-SHA256 (RFC 2104) with the key's padded blocks hashed once, for PBKDF2's many rounds.
struct Hmac {
    inner: sha2::Sha256,
    outer: sha2::Sha256,
}

impl Hmac {
    fn new(key: &[u8]) -> Hmac {
        use sha2::Digest;
        let mut block = [0u8; 64];
        if key.len() > 64 {
            block[..32].copy_from_slice(&sha2::Sha256::digest(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let pad = |byte: u8| {
            let padded: Vec<u8> = block.iter().map(|b| b ^ byte).collect();
            sha2::Sha256::new_with_prefix(padded)
        };
        Hmac {
            inner: pad(0x36),
            outer: pad(0x5c),
        }
    }

    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        use sha2::Digest;
        let mut inner = self.inner.clone();
        for part in parts {
            inner.update(part);
        }
        let mut outer = self.outer.clone();
        outer.update(inner.finalize());
        outer.finalize().into()
    }
}

/// PBKDF2 (RFC 8018) with HMAC-SHA256: the first 32-byte block.
fn pbkdf2_sha256(password: &[u8], salt: &[u8], rounds: u32) -> [u8; 32] {
    let hmac = Hmac::new(password);
    let mut u = hmac.mac(&[salt, &1u32.to_be_bytes()]);
    let mut t = u;
    for _ in 1..rounds {
        u = hmac.mac(&[&u]);
        t.iter_mut().zip(u).for_each(|(t, u)| *t ^= u);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// RFC 4231 test case 2, and PBKDF2-HMAC-SHA256 vectors (RFC 7914 section 11).
    #[test]
    fn hmac_and_pbkdf2_match_their_standards() {
        assert_eq!(
            hex(&Hmac::new(b"Jefe").mac(&[b"what do ya want ", b"for nothing?"])),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(&pbkdf2_sha256(b"passwd", b"salt", 1)),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
        assert_eq!(
            hex(&pbkdf2_sha256(b"Password", b"NaCl", 80000)),
            "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56"
        );
        let long_key = [0xaau8; 131];
        assert_eq!(
            hex(&Hmac::new(&long_key)
                .mac(&[b"Test Using Larger Than Block-Size Key - Hash Key First"])),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn check_users_differ_per_stage_role_and_secret_and_hide_the_prefix() {
        let name = check_user("smoke", "production", "a long secret");
        assert_eq!(
            name,
            check_user("smoke", "production", "a long secret"),
            "stable"
        );
        assert!(name.starts_with("notesctl-smoke-") && name.len() == "notesctl-smoke-".len() + 16);
        assert_ne!(name, "notesctl-smoke", "not the plain prefix alone");
        for other in [
            check_user("smoke", "dev", "a long secret"),
            check_user("smoke", "production", "another secret"),
            check_user("doctor", "production", "a long secret"),
            check_user("load", "production", "a long secret"),
        ] {
            assert_ne!(name, other);
        }
    }

    #[test]
    fn short_handler_and_full_names() {
        assert_eq!(function("production", "save"), "production-notes-save");
        assert_eq!(function("dev", "websocket-notify"), "dev-websocket-notify");
        assert_eq!(function("dev", "custom-fn"), "custom-fn");
        assert_eq!(
            log_group("production-notes-save"),
            "/aws/lambda/production-notes-save"
        );
        assert_eq!(queue("p"), "p-note-processing-queue");
        assert_eq!(dlq("p"), "p-note-processing-dlq");
    }
}
