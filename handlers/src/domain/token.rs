//! Session tokens: JWT, HS256 pinned, 24 h, with `sub`, `iat`, `exp`, `iss`, `aud` and the original's
//! `username` claim. Verification checks the signature (in constant time), the algorithm, expiry
//! (30 s of leeway), issuer and audience.
//!
//! Written out rather than taken from a JWT crate: one algorithm is all the app signs or accepts,
//! and the general crates bring every other algorithm's code (RSA, elliptic curves) into the
//! Lambda binary and the build. RFC 7519 with RFC 7515's compact serialisation; a header naming
//! `crit` extensions is refused, as RFC 7515 §4.1.11 requires of a reader that knows none.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::error::AppError;

pub const ISSUER: &str = "notesctl";
pub const AUDIENCE: &str = "notes-app";
pub const LIFETIME_SECS: i64 = 24 * 60 * 60;
/// The shortest JWT signing key we accept (HS256 wants at least its output size).
pub const MIN_SECRET_BYTES: usize = 32;
/// How long past `exp` a token is still taken (clocks of two machines differ).
pub const LEEWAY_SECS: i64 = 30;
/// The protected header of every token issued.
const HEADER: &str = r#"{"typ":"JWT","alg":"HS256"}"#;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub username: String,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
}

/// The signing key, kept once from the secret.
pub struct TokenKeys {
    secret: Vec<u8>,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the JWT secret is {0} bytes; it must be at least {MIN_SECRET_BYTES} random bytes")]
pub struct WeakSecret(pub usize);

impl TokenKeys {
    pub fn new(secret: &[u8]) -> Result<Self, WeakSecret> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(WeakSecret(secret.len()));
        }
        Ok(Self {
            secret: secret.to_vec(),
        })
    }

    /// HMAC-SHA256 over `signing_input` (`header.payload`, both base64url).
    fn mac(&self, signing_input: &str) -> HmacSha256 {
        // HMAC takes a key of any length; `new` refused short ones.
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.secret)
            .expect("HMAC takes a key of any length");
        mac.update(signing_input.as_bytes());
        mac
    }

    pub fn issue(&self, username: &str, now_secs: i64) -> Result<String, AppError> {
        let claims = Claims {
            sub: username.to_owned(),
            username: username.to_owned(),
            iat: now_secs,
            exp: now_secs + LIFETIME_SECS,
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
        };
        let payload = serde_json::to_vec(&claims)
            .map_err(|e| AppError::internal(format!("signing a token failed: {e}")))?;
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(HEADER),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let signature = URL_SAFE_NO_PAD.encode(self.mac(&signing_input).finalize().into_bytes());
        Ok(format!("{signing_input}.{signature}"))
    }

    /// The verified claims, or 401 `Invalid or expired token` for anything else (forged, `alg:none`,
    /// other algorithms, other keys, expired, wrong issuer or audience, malformed).
    pub fn verify(&self, token: &str) -> Result<Claims, AppError> {
        self.verify_at(token, now_secs())
    }

    fn verify_at(&self, token: &str, now_secs: i64) -> Result<Claims, AppError> {
        let invalid = AppError::invalid_token;
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| invalid());
        // The header first: only HS256 is ever accepted, whatever a token claims.
        let head: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&decode(header)?).map_err(|_| invalid())?;
        if head.get("alg").and_then(|a| a.as_str()) != Some("HS256") || head.contains_key("crit") {
            return Err(invalid());
        }
        let signing_input = &token[..header.len() + 1 + payload.len()];
        self.mac(signing_input)
            .verify_slice(&decode(signature)?)
            .map_err(|_| invalid())?;
        let claims: Claims = serde_json::from_slice(&decode(payload)?).map_err(|_| invalid())?;
        if claims.exp < now_secs - LEEWAY_SECS
            || claims.iss != ISSUER
            || claims.aud != AUDIENCE
            || claims.sub != claims.username
            || claims.username.is_empty()
        {
            return Err(invalid());
        }
        Ok(claims)
    }
}

pub fn now_secs() -> i64 {
    super::clock::now_millis() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn b64(v: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    /// A token as another signer makes it: any header and claims, HS256 or HS512 with `key`.
    fn signed(
        header: serde_json::Value,
        claims: &serde_json::Value,
        key: &[u8],
        hs512: bool,
    ) -> String {
        let input = format!("{}.{}", b64(&header), b64(claims));
        let tag = if hs512 {
            let mut mac = <Hmac<sha2::Sha512> as KeyInit>::new_from_slice(key).unwrap();
            mac.update(input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        } else {
            let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).unwrap();
            mac.update(input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    fn hs256() -> serde_json::Value {
        serde_json::json!({"typ": "JWT", "alg": "HS256"})
    }

    #[test]
    fn issues_and_verifies() {
        let keys = TokenKeys::new(SECRET).unwrap();
        let t = keys.issue("ada", now_secs()).unwrap();
        let c = keys.verify(&t).unwrap();
        assert_eq!(c.username, "ada");
        assert_eq!(c.exp - c.iat, LIFETIME_SECS);
        assert_eq!((c.iss.as_str(), c.aud.as_str()), (ISSUER, AUDIENCE));
    }

    /// A token is RFC 7519's compact form: the header JWT libraries write, base64url without
    /// padding, and an HMAC-SHA256 any of them checks (RFC 7515 appendix A.1's key and input).
    #[test]
    fn tokens_are_standard_hs256_jwts() {
        let keys = TokenKeys::new(SECRET).unwrap();
        let t = keys.issue("ada", 1_700_000_000).unwrap();
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(
            URL_SAFE_NO_PAD.decode(parts[0]).unwrap(),
            br#"{"typ":"JWT","alg":"HS256"}"#
        );
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(
            claims,
            serde_json::json!({"sub": "ada", "username": "ada", "iat": 1_700_000_000_i64,
                "exp": 1_700_000_000_i64 + LIFETIME_SECS, "iss": ISSUER, "aud": AUDIENCE})
        );
        assert!(!t.contains('='));
        // RFC 7515 A.1: the HMAC-SHA256 of its example JWS, with its key.
        let key = URL_SAFE_NO_PAD
            .decode("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
            .unwrap();
        let input = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&key).unwrap();
        mac.update(input.as_bytes());
        assert_eq!(
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()),
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        );
    }

    #[test]
    fn refuses_short_secrets() {
        assert!(TokenKeys::new(b"short").is_err());
        assert!(TokenKeys::new(&[0u8; 31]).is_err());
    }

    /// Expiry with 30 s of leeway, as before.
    #[test]
    fn a_token_expires_after_its_lifetime_and_the_leeway() {
        let keys = TokenKeys::new(SECRET).unwrap();
        let t = keys.issue("ada", 1_000_000).unwrap();
        let exp = 1_000_000 + LIFETIME_SECS;
        assert!(keys.verify_at(&t, exp).is_ok());
        assert!(keys.verify_at(&t, exp + LEEWAY_SECS).is_ok());
        assert!(keys.verify_at(&t, exp + LEEWAY_SECS + 1).is_err());
    }

    /// Required fix 1: the original only base64-decoded the payload.
    #[test]
    fn rejects_forged_unsigned_expired_and_foreign_tokens() {
        let keys = TokenKeys::new(SECRET).unwrap();
        let now = now_secs();
        let claims = serde_json::json!({"sub":"ada","username":"ada","iat":now,"exp":now+3600,
                                        "iss":ISSUER,"aud":AUDIENCE});
        assert!(
            keys.verify(&signed(hs256(), &claims, SECRET, false))
                .is_ok(),
            "another HS256 signer's token with our key"
        );
        let none = format!(
            "{}.{}.",
            b64(&serde_json::json!({"alg":"none","typ":"JWT"})),
            b64(&claims)
        );
        assert!(keys.verify(&none).is_err(), "alg:none");
        let good = keys.issue("ada", now).unwrap();
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged_payload = b64(&serde_json::json!({"sub":"eve","username":"eve","iat":now,
            "exp":now+3600,"iss":ISSUER,"aud":AUDIENCE}));
        parts[1] = &forged_payload;
        assert!(
            keys.verify(&parts.join(".")).is_err(),
            "payload swapped under a valid signature"
        );
        let other = TokenKeys::new(b"another-key-another-key-another-k").unwrap();
        assert!(
            keys.verify(&other.issue("ada", now).unwrap()).is_err(),
            "other key"
        );
        assert!(
            keys.verify(&keys.issue("ada", now - 2 * LIFETIME_SECS).unwrap())
                .is_err(),
            "expired"
        );
        let hs512 = signed(
            serde_json::json!({"typ":"JWT","alg":"HS512"}),
            &claims,
            SECRET,
            true,
        );
        assert!(keys.verify(&hs512).is_err(), "algorithm pinned to HS256");
        let lying = signed(
            serde_json::json!({"typ":"JWT","alg":"HS512"}),
            &claims,
            SECRET,
            false,
        );
        assert!(
            keys.verify(&lying).is_err(),
            "a header naming another algorithm"
        );
        let critical = signed(
            serde_json::json!({"typ":"JWT","alg":"HS256","crit":["exp"]}),
            &claims,
            SECRET,
            false,
        );
        assert!(
            keys.verify(&critical).is_err(),
            "unknown critical extensions"
        );
        let wrong_aud = serde_json::json!({"sub":"ada","username":"ada","iat":now,"exp":now+3600,
                                           "iss":ISSUER,"aud":"someone-else"});
        assert!(
            keys.verify(&signed(hs256(), &wrong_aud, SECRET, false))
                .is_err(),
            "audience"
        );
        let wrong_iss = serde_json::json!({"sub":"ada","username":"ada","iat":now,"exp":now+3600,
                                           "iss":"someone-else","aud":AUDIENCE});
        assert!(
            keys.verify(&signed(hs256(), &wrong_iss, SECRET, false))
                .is_err(),
            "issuer"
        );
        let no_iat = serde_json::json!({"sub":"ada","username":"ada","exp":now+3600,
                                        "iss":ISSUER,"aud":AUDIENCE});
        assert!(
            keys.verify(&signed(hs256(), &no_iat, SECRET, false))
                .is_err(),
            "a required claim missing"
        );
        let other_sub = serde_json::json!({"sub":"eve","username":"ada","iat":now,"exp":now+3600,
                                           "iss":ISSUER,"aud":AUDIENCE});
        assert!(
            keys.verify(&signed(hs256(), &other_sub, SECRET, false))
                .is_err(),
            "sub is not the username"
        );
        let padded = format!("{good}=");
        assert!(keys.verify(&padded).is_err(), "padding");
        assert!(keys.verify(&format!("{good}.x")).is_err(), "four parts");
        assert!(keys.verify("garbage").is_err());
        assert!(keys.verify("").is_err());
        assert!(keys.verify("..").is_err());
    }
}
