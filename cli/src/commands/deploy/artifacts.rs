//! The code zip's way to Lambda: read from `--artifacts`, uploaded once under its content address to
//! the artifacts bucket (which must be this account's), and — once the stacks are deployed — checked
//! against what each function actually runs; or, for `--hotswap`, given to each function directly.

use std::time::Duration;

use aws_sdk_lambda::types::LastUpdateStatus;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::Inputs;
use crate::aws::artifacts::{Artifacts, code_key, object_url, template_key};
use crate::aws::explain;
use crate::context::{Context, Deadline};
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

/// Where CloudFormation reads the templates from: the artifacts bucket, each template under its
/// content address (`{stage}/templates/{sha256}.yaml`, the key releases record). Every change set is
/// made from a `TemplateURL`, never a `TemplateBody`, whatever the template's size: a body is at
/// most 51,200 bytes, an S3 object 1 MB.
#[derive(Debug, Clone)]
pub struct Templates {
    pub store: Artifacts,
    pub region: String,
}

impl Templates {
    /// The artifacts bucket, created if missing (private, TLS only), as the home of the templates.
    pub async fn ready(ctx: &Context, store: Artifacts, region: &str) -> anyhow::Result<Templates> {
        if store.ensure(Some(region)).await? {
            ctx.say(format!(
                "created the artifacts bucket {} (private, TLS only)",
                store.bucket
            ));
        }
        Ok(Templates {
            store,
            region: region.to_owned(),
        })
    }

    /// Uploads `body` for the stack `name` under its digest and returns the URL that CloudFormation
    /// reads it from. An object already at that key is written again: CloudFormation reads whatever
    /// the bucket holds, so what it reads must be this file, not an object someone changed after
    /// it was stored (the key alone would not tell).
    pub async fn url(&self, ctx: &Context, name: &str, body: &str) -> anyhow::Result<String> {
        let key = template_key(ctx.stage(), body.as_bytes());
        let bytes = body.as_bytes().to_vec();
        if self.store.upload(&key, bytes.clone()).await? {
            ctx.say(format!(
                "{name}: uploaded its template to s3://{}/{key}",
                self.store.bucket
            ));
        } else {
            self.store.put(&key, bytes).await?;
        }
        Ok(object_url(&self.store.bucket, &self.region, &key))
    }
}

/// Where a function's latest update ended: Lambda's `LastUpdateStatus` once it is no longer
/// `InProgress`, its reason, and the code it runs.
async fn settled(
    lambda: &aws_sdk_lambda::Client,
    function: &str,
    deadline: &Deadline,
) -> anyhow::Result<(Option<LastUpdateStatus>, Option<String>, Option<String>)> {
    let mut delay = Duration::from_millis(250);
    loop {
        let c = lambda
            .get_function_configuration()
            .function_name(function)
            .send()
            .await
            .map_err(|e| explain(&format!("reading the configuration of {function}"), &e))?;
        if c.last_update_status() != Some(&LastUpdateStatus::InProgress) {
            return Ok((
                c.last_update_status().cloned(),
                c.last_update_status_reason().map(str::to_owned),
                c.code_sha256().map(str::to_owned),
            ));
        }
        if !deadline.sleep(delay).await {
            anyhow::bail!(
                "{function} was still updating after --timeout {}: Lambda goes on; check it with `aws lambda get-function-configuration --function-name {function}`",
                deadline.shown()
            );
        }
        delay = (delay * 3 / 2).min(Duration::from_secs(2));
    }
}

/// Points `function` at the zip `bucket`/`key` (SHA-256 `sha256`, base64) and waits until Lambda
/// has applied it: `Ok(true)` once its `LastUpdateStatus` is `Successful` and it runs that zip,
/// `Ok(false)` when it already ran it. A function still applying an earlier update is waited for
/// first (Lambda refuses a second one meanwhile).
pub async fn update_code(
    lambda: &aws_sdk_lambda::Client,
    function: &str,
    bucket: &str,
    key: &str,
    sha256: &str,
    deadline: &Deadline,
) -> anyhow::Result<bool> {
    let (_, _, running) = settled(lambda, function, deadline).await?;
    if running.as_deref() == Some(sha256) {
        return Ok(false);
    }
    lambda
        .update_function_code()
        .function_name(function)
        .s3_bucket(bucket)
        .s3_key(key)
        .send()
        .await
        .map_err(|e| explain(&format!("updating the code of {function}"), &e))?;
    match settled(lambda, function, deadline).await? {
        (Some(LastUpdateStatus::Failed), reason, _) => anyhow::bail!(
            "Lambda could not apply the new code to {function}: {}",
            reason.as_deref().unwrap_or("no reason given")
        ),
        (_, _, running) if running.as_deref() != Some(sha256) => anyhow::bail!(
            "{function} reports code {} after the update, not the zip's {sha256}: deploy again, or look for an update outside notesctl",
            running.as_deref().unwrap_or("(none)")
        ),
        _ => Ok(true),
    }
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

    fn configuration(status: LastUpdateStatus, sha: &str) -> GetFunctionConfigurationOutput {
        let reason = (status == LastUpdateStatus::Failed)
            .then_some("Lambda was unable to unzip the deployment package.");
        GetFunctionConfigurationOutput::builder()
            .last_update_status(status)
            .set_last_update_status_reason(reason.map(str::to_owned))
            .code_sha256(sha)
            .build()
    }

    /// A hotswap waits out an update already in progress, updates, follows InProgress to Successful and
    /// checks the code; a Failed update is an error with Lambda's reason; a function that already runs
    /// the zip is left alone.
    #[tokio::test]
    async fn update_code_waits_for_lambda_and_says_why_it_failed() {
        use aws_sdk_lambda::operation::update_function_code::UpdateFunctionCodeOutput;
        let deadline = Deadline::after(Duration::from_secs(30));
        let update = || {
            mock!(aws_sdk_lambda::Client::update_function_code)
                .match_requests(|r| r.s3_bucket() == Some("b") && r.s3_key() == Some("k"))
                .then_output(|| UpdateFunctionCodeOutput::builder().build())
        };
        let get = |states: Vec<(LastUpdateStatus, &'static str)>| {
            let mut rule = mock!(aws_sdk_lambda::Client::get_function_configuration).sequence();
            for (status, sha) in states {
                rule = rule.output(move || configuration(status.clone(), sha));
            }
            rule.build()
        };
        use LastUpdateStatus::{Failed, InProgress, Successful};

        let (up, states) = (
            update(),
            get(vec![
                (InProgress, "old"),
                (Successful, "old"),
                (InProgress, "old"),
                (InProgress, "old"),
                (Successful, "new"),
            ]),
        );
        let lambda = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&states, &up]);
        assert!(
            update_code(&lambda, "p-auth-signup", "b", "k", "new", &deadline)
                .await
                .unwrap()
        );
        assert_eq!((up.num_calls(), states.num_calls()), (1, 5));

        let (up, states) = (update(), get(vec![(Successful, "old"), (Failed, "old")]));
        let lambda = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&states, &up]);
        let err = update_code(&lambda, "p-auth-signup", "b", "k", "new", &deadline)
            .await
            .unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "Lambda could not apply the new code to p-auth-signup: Lambda was unable to unzip the deployment package."
        );

        let (up, states) = (update(), get(vec![(Successful, "new")]));
        let lambda = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&states, &up]);
        assert!(
            !update_code(&lambda, "p-auth-signup", "b", "k", "new", &deadline)
                .await
                .unwrap()
        );
        assert_eq!(up.num_calls(), 0);
    }

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
