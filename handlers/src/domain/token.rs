//! Session tokens: JWT, HS256 pinned, 24 h, with `sub`, `iat`, `exp`, `iss`, `aud` and the original's
//! `username` claim. Verification checks signature, algorithm, expiry, issuer and audience.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::error::AppError;

pub const ISSUER: &str = "notesctl";
pub const AUDIENCE: &str = "notes-app";
pub const LIFETIME_SECS: i64 = 24 * 60 * 60;
/// The shortest JWT signing key we accept (HS256 wants at least its output size).
pub const MIN_SECRET_BYTES: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub username: String,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
}

/// Signing and verification keys built once from the secret.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
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
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = 30;
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        })
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
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AppError::internal(format!("signing a token failed: {e}")))
    }

    /// The verified claims, or 401 `Invalid or expired token` for anything else (forged, `alg:none`,
    /// other algorithms, other keys, expired, wrong issuer or audience, malformed).
    pub fn verify(&self, token: &str) -> Result<Claims, AppError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| AppError::invalid_token())?;
        if data.claims.sub != data.claims.username || data.claims.username.is_empty() {
            return Err(AppError::invalid_token());
        }
        Ok(data.claims)
    }
}

pub fn now_secs() -> i64 {
    super::clock::now_millis() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn b64(v: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
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

    #[test]
    fn refuses_short_secrets() {
        assert!(TokenKeys::new(b"short").is_err());
        assert!(TokenKeys::new(&[0u8; 31]).is_err());
    }

    /// Required fix 1: the original only base64-decoded the payload.
    #[test]
    fn rejects_forged_unsigned_expired_and_foreign_tokens() {
        let keys = TokenKeys::new(SECRET).unwrap();
        let now = now_secs();
        let claims = serde_json::json!({"sub":"ada","username":"ada","iat":now,"exp":now+3600,
                                        "iss":ISSUER,"aud":AUDIENCE});
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
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert!(keys.verify(&hs512).is_err(), "algorithm pinned to HS256");
        let wrong_aud = serde_json::json!({"sub":"ada","username":"ada","iat":now,"exp":now+3600,
                                           "iss":ISSUER,"aud":"someone-else"});
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &wrong_aud,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert!(keys.verify(&t).is_err(), "audience");
        assert!(keys.verify("garbage").is_err());
        assert!(keys.verify("").is_err());
    }
}
