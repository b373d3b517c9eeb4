//! JWT secrets without Secrets Manager: a fixed value (tests) or a key file generated on first use
//! (`notesctl dev` keeps it under its data directory, readable by the owner only).

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;

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
        match std::fs::read_to_string(path) {
            Ok(text) => return Ok(text.trim().as_bytes().to_vec()),
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(describe("cannot read the secret file", e));
            }
            Err(_) => {}
        }
        let mut bytes = [0u8; 48];
        rand::rng().fill_bytes(&mut bytes);
        let text = STANDARD.encode(bytes);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| describe("cannot create the directory of", e))?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(mut f) => {
                std::io::Write::write_all(&mut f, text.as_bytes())
                    .map_err(|e| describe("cannot write the secret file", e))?;
                Ok(text.into_bytes())
            }
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                std::fs::read_to_string(path)
                    .map(|t| t.trim().as_bytes().to_vec())
                    .map_err(|e| describe("cannot read the secret file", e))
            }
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
