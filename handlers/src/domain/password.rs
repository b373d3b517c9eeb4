//! Password hashing: argon2id with the crate's defaults (m=19 MiB, t=2, p=1: OWASP's minimum), as PHC
//! strings. Hashing is CPU-bound, so async callers run it on the blocking pool.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use super::error::AppError;

pub fn hash(password: &str) -> Result<String, AppError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| AppError::internal(format!("hashing a password failed: {e}")))
}

/// Verifications run so far (tests use it to see that an unknown user costs a real verification).
pub static VERIFICATIONS: AtomicUsize = AtomicUsize::new(0);

/// True only if `password` matches the PHC string `stored`. A stored value that is not a PHC string
/// (say, a hash from another system) still costs a full verification, so it cannot be told apart by
/// timing.
pub fn verify(password: &str, stored: &str) -> bool {
    VERIFICATIONS.fetch_add(1, Ordering::Relaxed);
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => verify_dummy(password),
    }
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash("not a real password; timing equaliser").unwrap_or_default())
}

/// Spends the time of a real verification against a hash nobody's password matches, so an unknown
/// username costs the same as a wrong password.
pub fn verify_dummy(password: &str) -> bool {
    if let Ok(parsed) = PasswordHash::new(dummy_hash()) {
        let _ = Argon2::default().verify_password(password.as_bytes(), &parsed);
    }
    false
}

/// Builds the dummy hash now (at init), so the first unknown-user login is not slower than the rest.
pub fn warm_up() {
    let _ = dummy_hash();
}

/// argon2 takes ~19 MiB and a core for each hash: at most this many run at once.
fn permits() -> &'static tokio::sync::Semaphore {
    static SEM: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    SEM.get_or_init(|| {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        tokio::sync::Semaphore::new(cores.max(2))
    })
}

pub async fn hash_async(password: String) -> Result<String, AppError> {
    let _permit = permits().acquire().await.map_err(AppError::internal)?;
    tokio::task::spawn_blocking(move || hash(&password))
        .await
        .map_err(AppError::internal)?
}

/// Verifies on the blocking pool. With `stored == None` (no such user) it verifies against a dummy
/// hash and answers false, in the same time.
pub async fn verify_async(password: String, stored: Option<String>) -> bool {
    let Ok(_permit) = permits().acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || match stored {
        Some(s) => verify(&password, &s),
        None => {
            VERIFICATIONS.fetch_add(1, Ordering::Relaxed);
            verify_dummy(&password)
        }
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_phc_and_verify() {
        let h = hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify("correct horse", &h));
        assert!(!verify("wrong", &h));
        assert!(!verify("x", "not a phc string"));
        assert_ne!(hash("correct horse").unwrap(), h, "salted");
    }
}
