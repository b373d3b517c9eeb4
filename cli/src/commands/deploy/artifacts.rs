//! The code zip's way to Lambda: read from `--artifacts`, uploaded once under its content address to
//! the artifacts bucket (which must be this account's), and — once the stacks are deployed — checked
//! against what each function actually runs.

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::Inputs;
use crate::aws::artifacts::{Artifacts, code_key};
use crate::aws::explain;
use crate::context::Context;
use crate::lambda::zip_path;

/// The zip `deploy` ships.
pub struct Code {
    pub zip: Vec<u8>,
    /// `{stage}/notes-lambda/{sha256}.zip`.
    pub key: String,
    /// Its SHA-256 as Lambda reports a function's `CodeSha256` (base64 of the digest).
    pub sha256: String,
}

/// Reads the zip of `--arch` from `--artifacts`.
pub async fn read(ctx: &Context, args: &Inputs) -> anyhow::Result<Code> {
    let path = zip_path(&args.artifacts, args.arch);
    let zip = tokio::fs::read(&path).await.map_err(|e| {
        anyhow::anyhow!(
            "{}: {e}; run `notesctl package --arch {}` first",
            path.display(),
            args.arch.as_str()
        )
    })?;
    use sha2::Digest;
    let sha256 = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&zip));
    Ok(Code {
        key: code_key(ctx.stage(), &zip),
        zip,
        sha256,
    })
}

/// Creates the bucket if it is missing and uploads the zip (once).
pub async fn upload(
    ctx: &Context,
    store: &Artifacts,
    code: &Code,
    region: Option<&str>,
) -> anyhow::Result<()> {
    if store.ensure(region).await? {
        ctx.say(format!(
            "created the artifacts bucket {} (private, TLS only)",
            store.bucket
        ));
    }
    if store.upload(&code.key, code.zip.clone()).await? {
        ctx.say(format!(
            "uploaded the code to s3://{}/{}",
            store.bucket, code.key
        ));
    }
    Ok(())
}

/// A function that does not run the zip this deploy shipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CodeMismatch {
    pub function: String,
    /// Its `CodeSha256`, where Lambda answered.
    pub code_sha256: Option<String>,
}

/// The functions whose `CodeSha256` is not `sha256` (base64), or that Lambda does not know.
pub async fn mismatches(
    lambda: &aws_sdk_lambda::Client,
    functions: &[String],
    sha256: &str,
) -> anyhow::Result<Vec<CodeMismatch>> {
    let mut out = Vec::new();
    for f in functions {
        let got = match lambda
            .get_function_configuration()
            .function_name(f)
            .send()
            .await
        {
            Ok(c) => c.code_sha256().map(str::to_owned),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                None
            }
            Err(e) => return Err(explain(&format!("reading the configuration of {f}"), &e)),
        };
        if got.as_deref() != Some(sha256) {
            out.push(CodeMismatch {
                function: f.clone(),
                code_sha256: got,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_lambda::operation::get_function_configuration::GetFunctionConfigurationOutput;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    #[tokio::test]
    async fn a_function_running_other_code_is_named() {
        let config =
            mock!(aws_sdk_lambda::Client::get_function_configuration).then_compute_output(|r| {
                let sha = if r.function_name() == Some("p-notes-save") {
                    "b3RoZXI="
                } else {
                    "c2FtZQ=="
                };
                GetFunctionConfigurationOutput::builder()
                    .code_sha256(sha)
                    .build()
            });
        let lambda = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&config]);
        let functions = ["p-auth-signup".to_owned(), "p-notes-save".to_owned()];
        let found = mismatches(&lambda, &functions, "c2FtZQ==").await.unwrap();
        assert_eq!(
            found,
            [CodeMismatch {
                function: "p-notes-save".into(),
                code_sha256: Some("b3RoZXI=".into())
            }]
        );
        assert!(
            mismatches(&lambda, &functions[..1], "c2FtZQ==")
                .await
                .unwrap()
                .is_empty()
        );
    }
}
