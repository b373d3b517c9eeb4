//! JWT secrets without Secrets Manager: a fixed value (tests) or a key file generated on first use
//! (`notesctl dev` keeps it under its data directory, readable by the owner only, written atomically).

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;

use super::files::{Existing, write_private};
use crate::ports::{SecretError, SecretSource};

pub struct StaticSecret(Vec<u8>);

impl StaticSecret {
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self(secret.into())
    }
}

#[async_trait]
impl SecretSource for StaticSecret {
    async fn jwt_secret(&self) -> Result<Vec<u8>, SecretError> {
        Ok(self.0.clone())
    }
}

/// A secret kept in a file: 48 random bytes, base64, created on first use.
pub struct FileSecret {
    path: PathBuf,
}

impl FileSecret {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    fn load_or_create(path: &Path) -> Result<Vec<u8>, SecretError> {
        let describe =
            |what: &str, e: std::io::Error| SecretError(format!("{what} {}: {e}", path.display()));
        let read = || match std::fs::read_to_string(path) {
            Ok(text) if text.trim().is_empty() => Err(SecretError(format!(
                "the secret file {} is empty: delete it and a new secret is made (everyone signed in must sign in again)",
                path.display()
            ))),
            Ok(text) => Ok(Some(text.trim().as_bytes().to_vec())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(describe("cannot read the secret file", e)),
        };
        if let Some(secret) = read()? {
            return Ok(secret);
        }
        let mut bytes = [0u8; 48];
        rand::rng().fill_bytes(&mut bytes);
        let text = STANDARD.encode(bytes);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| describe("cannot create the directory of", e))?;
        }
        // Whole or not at all: a crash while writing must not leave an empty secret behind.
        match write_private(path, text.as_bytes(), Existing::Keep) {
            Ok(()) => Ok(text.into_bytes()),
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read()?
                .ok_or_else(|| SecretError(format!("the secret file {} vanished", path.display()))),
            Err(e) => Err(describe("cannot create the secret file", e)),
        }
    }
}

#[async_trait]
impl SecretSource for FileSecret {
    async fn jwt_secret(&self) -> Result<Vec<u8>, SecretError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || Self::load_or_create(&path))
            .await
            .map_err(|e| SecretError(e.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_secret_is_made_once_kept_private_and_never_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwt-secret");
        let first = FileSecret::new(&path).jwt_secret().await.unwrap();
        assert_eq!(first.len(), 64, "48 random bytes, base64");
        assert_eq!(FileSecret::new(&path).jwt_secret().await.unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // What a crash between create and write used to leave: refused, with the way out.
        std::fs::write(&path, "").unwrap();
        let err = FileSecret::new(&path).jwt_secret().await.unwrap_err();
        assert!(err.0.contains("is empty: delete it"), "{}", err.0);
    }
}
