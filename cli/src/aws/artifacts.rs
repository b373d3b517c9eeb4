//! The code zips' bucket: `notesctl-artifacts-{account}-{region}`, shared by every stage of an account
//! and region, with each zip under its stage and content address.

use super::explain;
use crate::lambda::sha256_hex;

/// The artifacts bucket: `given` (`--artifacts-bucket`), or `notesctl-artifacts-{account}-{region}`.
pub async fn bucket(config: &aws_config::SdkConfig, given: Option<&str>) -> anyhow::Result<String> {
    if let Some(b) = given {
        return Ok(b.to_owned());
    }
    let who = aws_sdk_sts::Client::new(config)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| explain("finding the AWS account", &e))?;
    let account = who.account().ok_or_else(|| {
        anyhow::anyhow!("STS did not say which account this is; pass --artifacts-bucket")
    })?;
    let region = config.region().map(|r| r.to_string()).unwrap_or_default();
    Ok(format!("notesctl-artifacts-{account}-{region}"))
}

/// `{stage}/` : everything of one stage in the bucket.
pub fn stage_prefix(stage: &str) -> String {
    format!("{stage}/")
}

/// `{stage}/notes-lambda/{sha256}.zip`: content-addressed, and per stage so `destroy` removes only its own.
pub fn code_key(stage: &str, zip: &[u8]) -> String {
    format!(
        "{}notes-lambda/{}.zip",
        stage_prefix(stage),
        sha256_hex(zip)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_keys_are_per_stage_and_by_content() {
        assert_eq!(
            code_key("prod", b"zip"),
            format!("prod/notes-lambda/{}.zip", sha256_hex(b"zip"))
        );
    }
}
