//! Secrets Manager: the JWT signing secret, generated at deploy time. The secret may be a plain
//! string or a JSON object with a `secret` field.

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;

use crate::ports::{SecretError, SecretSource};

#[derive(Clone, Debug)]
pub struct SecretsManagerSecret {
    client: std::sync::Arc<super::lazy::LazyClient<Client>>,
    secret_id: String,
}

impl SecretsManagerSecret {
    pub fn new(
        client: impl Into<super::lazy::LazyClient<Client>>,
        secret_id: impl Into<String>,
    ) -> Self {
        Self {
            client: std::sync::Arc::new(client.into()),
            secret_id: secret_id.into(),
        }
    }
}

/// The key bytes inside a secret string.
pub fn key_from_secret_string(text: &str) -> Vec<u8> {
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(text)
        && let Some(serde_json::Value::String(s)) =
            map.get("secret").or_else(|| map.get("jwtSecret"))
    {
        return s.as_bytes().to_vec();
    }
    text.as_bytes().to_vec()
}

#[async_trait]
impl SecretSource for SecretsManagerSecret {
    async fn jwt_secret(&self) -> Result<Vec<u8>, SecretError> {
        let out = self
            .client
            .get()
            .await
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|e| {
                SecretError(format!(
                    "GetSecretValue {}: {}",
                    self.secret_id,
                    aws_smithy_types::error::display::DisplayErrorContext(&e)
                ))
            })?;
        if let Some(text) = out.secret_string() {
            Ok(key_from_secret_string(text))
        } else if let Some(blob) = out.secret_binary() {
            Ok(blob.as_ref().to_vec())
        } else {
            Err(SecretError(format!(
                "secret {} has no value",
                self.secret_id
            )))
        }
    }
}
