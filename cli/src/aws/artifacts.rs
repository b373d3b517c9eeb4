//! The code zips' bucket: `notesctl-artifacts-{account}-{region}`, shared by every stage of an account
//! and region, with each zip under its stage and content address.
//!
//! The default name is predictable, so another account could create the bucket first and receive (or
//! replace) our code. Every call to it therefore carries `ExpectedBucketOwner` — the caller's
//! account, from STS — and S3 refuses the call (403) when someone else owns the bucket. A bucket we
//! create blocks public access and denies every request not made over TLS.

use aws_sdk_s3::Client;
use aws_sdk_s3::types::{
    BucketLocationConstraint, CreateBucketConfiguration, PublicAccessBlockConfiguration,
};

use super::explain;
use super::s3::{Calls, delete_keys, list_owned};
use crate::lambda::sha256_hex;

/// The artifacts bucket, and the account that must own it.
#[derive(Debug, Clone)]
pub struct Artifacts {
    pub s3: Client,
    pub bucket: String,
    pub owner: String,
    /// The S3 endpoint is plain HTTP (`--endpoint-url http://…`), where a TLS-only bucket refuses
    /// every call.
    pub plain_http: bool,
}

/// The caller's account, from STS.
pub async fn account(config: &aws_config::SdkConfig) -> anyhow::Result<String> {
    let who = aws_sdk_sts::Client::new(config)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| explain("finding the AWS account", &e))?;
    who.account()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("STS did not say which account this is"))
}

/// `notesctl-artifacts-{account}-{region}`.
pub fn default_bucket(account: &str, region: &str) -> String {
    format!("notesctl-artifacts-{account}-{region}")
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

/// The zip's SHA-256 as Lambda reports a function's `CodeSha256` (base64 of the digest), read back from
/// a key [`code_key`] made; `None` for any other key.
pub fn sha256_of_key(key: &str) -> Option<String> {
    use base64::Engine;
    let hex = key.strip_suffix(".zip")?.rsplit_once("notes-lambda/")?.1;
    if hex.len() != 64 {
        return None;
    }
    let digest: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect::<Option<_>>()?;
    Some(base64::engine::general_purpose::STANDARD.encode(digest))
}

/// `{stage}/releases/`: one JSON record per deploy, named so that names sort by time.
pub fn releases_prefix(stage: &str) -> String {
    format!("{}releases/", stage_prefix(stage))
}

/// `{stage}/templates/{sha256}.yaml`: a template as a release deployed it, content-addressed.
pub fn template_key(stage: &str, text: &[u8]) -> String {
    format!("{}templates/{}.yaml", stage_prefix(stage), sha256_hex(text))
}

/// What a content-addressed key of [`template_key`] or [`code_key`] stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressed {
    /// `{stage}/templates/{sha256}.yaml`
    Template,
    /// `{stage}/notes-lambda/{sha256}.zip`
    Code,
}

impl Addressed {
    /// The key's form, for messages.
    pub fn form(self, stage: &str) -> String {
        match self {
            Addressed::Template => format!("{}templates/{{sha256}}.yaml", stage_prefix(stage)),
            Addressed::Code => format!("{}notes-lambda/{{sha256}}.zip", stage_prefix(stage)),
        }
    }
}

/// The SHA-256 (64 lowercase hex digits) a content-addressed key of `stage` names — the digest of
/// exactly the bytes stored under it; `None` for a key of any other form.
pub fn addressed_sha256<'k>(stage: &str, kind: Addressed, key: &'k str) -> Option<&'k str> {
    let rest = key.strip_prefix(&stage_prefix(stage))?;
    let hex = match kind {
        Addressed::Template => rest.strip_prefix("templates/")?.strip_suffix(".yaml")?,
        Addressed::Code => rest.strip_prefix("notes-lambda/")?.strip_suffix(".zip")?,
    };
    let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    (hex.len() == 64 && hex.bytes().all(lower_hex)).then_some(hex)
}

/// The HTTPS URL CloudFormation reads `key` of `bucket` from (`TemplateURL`): virtual-hosted, or
/// path-style for a bucket name with dots (whose virtual host no certificate covers); `.com.cn` in
/// the China regions.
pub fn object_url(bucket: &str, region: &str, key: &str) -> String {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    if bucket.contains('.') {
        format!("https://s3.{region}.{suffix}/{bucket}/{key}")
    } else {
        format!("https://{bucket}.s3.{region}.{suffix}/{key}")
    }
}

/// A policy that refuses every request to the bucket not made over TLS.
pub fn tls_only_policy(bucket: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}
        }]
    })
    .to_string()
}

/// Whether an S3 error is "someone else owns this bucket" (or it exists and is not ours to use).
fn refused<E>(
    e: &aws_smithy_runtime_api::client::result::SdkError<
        E,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
) -> bool {
    e.raw_response().is_some_and(|r| r.status().as_u16() == 403)
}

impl Artifacts {
    /// The bucket (`given`, or the account's default) and its owner, the caller's account.
    pub async fn locate(
        config: &aws_config::SdkConfig,
        s3: Client,
        given: Option<&str>,
    ) -> anyhow::Result<Artifacts> {
        let owner = account(config).await?;
        let region = config.region().map(|r| r.to_string()).unwrap_or_default();
        let bucket = given
            .map(str::to_owned)
            .unwrap_or_else(|| default_bucket(&owner, &region));
        let plain_http = config
            .endpoint_url()
            .is_some_and(|u| u.starts_with("http://"));
        Ok(Artifacts {
            s3,
            bucket,
            owner,
            plain_http,
        })
    }

    /// Why S3 refused a call naming this account as the bucket's owner (403). A bucket in this
    /// account's own list is ours: its policy or the caller's permissions refused the call — over
    /// plain HTTP, the TLS-only policy notesctl gives the bucket. Otherwise someone else owns it.
    async fn refusal(&self) -> anyhow::Error {
        let listed = self.listed().await;
        match listed {
            Ok(true) if self.plain_http => anyhow::anyhow!(
                "the bucket {} is this account's, and its policy refuses requests not made over TLS, which --endpoint-url (plain HTTP) cannot make: use an https:// endpoint, or pass --artifacts-bucket with a bucket that has no TLS-only policy (on an emulator)",
                self.bucket
            ),
            Ok(true) => anyhow::anyhow!(
                "the bucket {} is this account's, but S3 refused the call (403): its bucket policy or your IAM permissions deny it (notesctl needs s3:GetObject, s3:PutObject, s3:ListBucket and s3:DeleteObject on it)",
                self.bucket
            ),
            Ok(false) => self.not_ours(),
            Err(e) => anyhow::anyhow!(
                "S3 refused a call to the bucket {} (403), and which of two it is could not be told ({e:#}): another account owns the bucket (then pass --artifacts-bucket with a bucket this account owns), or its policy or your permissions deny the call{}",
                self.bucket,
                if self.plain_http {
                    " — over plain HTTP, the TLS-only policy notesctl gives its bucket denies every call"
                } else {
                    ""
                }
            ),
        }
    }

    /// Whether the bucket is in this account's list of buckets (ListBuckets, which no bucket
    /// policy governs).
    async fn listed(&self) -> anyhow::Result<bool> {
        let mut token = None;
        loop {
            let page = self
                .s3
                .list_buckets()
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| explain("listing this account's buckets", &e))?;
            if page
                .buckets()
                .iter()
                .any(|b| b.name() == Some(&self.bucket))
            {
                return Ok(true);
            }
            match page.continuation_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => return Ok(false),
            }
        }
    }

    fn not_ours(&self) -> anyhow::Error {
        anyhow::anyhow!(
            "the bucket {} exists but is not owned by this account ({}): refusing to upload code or templates there (anyone who owns it could read or replace them). Pass --artifacts-bucket with a bucket this account owns",
            self.bucket,
            self.owner
        )
    }

    /// Whether the bucket exists (and is ours); `Err` when it belongs to someone else.
    pub async fn exists(&self) -> anyhow::Result<bool> {
        match self
            .s3
            .head_bucket()
            .bucket(&self.bucket)
            .expected_bucket_owner(&self.owner)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error().is_some_and(|s| s.is_not_found())
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 404) =>
            {
                Ok(false)
            }
            Err(e) if refused(&e) => Err(self.refusal().await),
            Err(e) => Err(explain(&format!("checking bucket {}", self.bucket), &e)),
        }
    }

    /// Creates the bucket if it is missing: private (public access blocked) and TLS-only.
    pub async fn ensure(&self, region: Option<&str>) -> anyhow::Result<bool> {
        if self.exists().await? {
            return Ok(false);
        }
        let mut create = self.s3.create_bucket().bucket(&self.bucket);
        if let Some(region) = region.filter(|r| *r != "us-east-1") {
            create = create.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region))
                    .build(),
            );
        }
        match create.send().await {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_bucket_already_owned_by_you()) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_bucket_already_exists()) =>
            {
                return Err(self.not_ours());
            }
            Err(e) if refused(&e) => return Err(self.refusal().await),
            Err(e) => return Err(explain(&format!("creating bucket {}", self.bucket), &e)),
        }
        let block = PublicAccessBlockConfiguration::builder()
            .block_public_acls(true)
            .block_public_policy(true)
            .ignore_public_acls(true)
            .restrict_public_buckets(true)
            .build();
        self.s3
            .put_public_access_block()
            .bucket(&self.bucket)
            .expected_bucket_owner(&self.owner)
            .public_access_block_configuration(block)
            .send()
            .await
            .map_err(|e| {
                explain(
                    &format!("blocking public access to the new bucket {}", self.bucket),
                    &e,
                )
            })?;
        self.s3
            .put_bucket_policy()
            .bucket(&self.bucket)
            .expected_bucket_owner(&self.owner)
            .policy(tls_only_policy(&self.bucket))
            .send()
            .await
            .map_err(|e| {
                explain(
                    &format!("setting the TLS-only policy of {}", self.bucket),
                    &e,
                )
            })?;
        Ok(true)
    }

    /// Uploads `zip` (a code zip, a template, a release record) under `key` unless it is there
    /// already; whether it was uploaded.
    pub async fn upload(&self, key: &str, zip: Vec<u8>) -> anyhow::Result<bool> {
        let head = self
            .s3
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .expected_bucket_owner(&self.owner)
            .send()
            .await;
        match head {
            Ok(_) => return Ok(false),
            Err(e) if refused(&e) => return Err(self.refusal().await),
            Err(_) => {}
        }
        self.put(key, zip).await?;
        Ok(true)
    }

    /// Writes `bytes` under `key`, whatever is stored there now.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        match self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .expected_bucket_owner(&self.owner)
            .body(bytes.into())
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if refused(&e) => Err(self.refusal().await),
            Err(e) => Err(explain(
                &format!("uploading s3://{}/{key}", self.bucket),
                &e,
            )),
        }
    }

    /// The object at `key`.
    pub async fn get(&self, key: &str) -> anyhow::Result<Vec<u8>> {
        let object = match self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .expected_bucket_owner(&self.owner)
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) if refused(&e) => return Err(self.refusal().await),
            Err(e) => return Err(explain(&format!("reading s3://{}/{key}", self.bucket), &e)),
        };
        let bytes = object.body.collect().await.map_err(|e| {
            anyhow::anyhow!(
                "reading s3://{}/{key}: the download broke off: {e}",
                self.bucket
            )
        })?;
        Ok(bytes.into_bytes().to_vec())
    }

    /// The keys under `prefix`, in S3's order (ascending).
    pub async fn keys(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        list_owned(&self.s3, &self.bucket, &self.owner, prefix).await
    }

    /// Deletes everything of `stage` in the bucket; how many objects there were.
    pub async fn delete_stage(&self, stage: &str) -> anyhow::Result<usize> {
        let keys = list_owned(&self.s3, &self.bucket, &self.owner, &stage_prefix(stage)).await?;
        delete_keys(
            &self.s3,
            &self.bucket,
            Some(&self.owner),
            &keys,
            &Calls::default(),
        )
        .await?;
        Ok(keys.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key names the zip: Lambda's CodeSha256 of that zip reads back from it, nothing else does.
    #[test]
    fn a_code_key_gives_back_the_zips_sha256() {
        use base64::Engine;
        use sha2::Digest;
        let zip = b"zip bytes";
        let expected = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(zip));
        assert_eq!(sha256_of_key(&code_key("p", zip)), Some(expected));
        assert_eq!(sha256_of_key("p/notes-lambda/abc.zip"), None);
        assert_eq!(sha256_of_key("p/other/x.zip"), None);
        let bad = format!("p/notes-lambda/{}.zip", "zz".repeat(32));
        assert_eq!(sha256_of_key(&bad), None);
    }

    /// Only this stage's keys of the form `template_key` and `code_key` make: the digest they name.
    #[test]
    fn a_content_addressed_key_names_its_digest() {
        let t = template_key("p", b"Resources: {}");
        let c = code_key("p", b"zip");
        assert_eq!(
            addressed_sha256("p", Addressed::Template, &t),
            Some(sha256_hex(b"Resources: {}").as_str())
        );
        assert_eq!(
            addressed_sha256("p", Addressed::Code, &c),
            Some(sha256_hex(b"zip").as_str())
        );
        assert_eq!(addressed_sha256("p", Addressed::Code, &t), None);
        assert_eq!(addressed_sha256("q", Addressed::Template, &t), None);
        let hex = sha256_hex(b"x");
        for key in [
            format!("p/templates/{}.yaml", hex.to_uppercase()),
            format!("p/templates/{hex}x.yaml"),
            format!("p/templates/../{hex}.yaml"),
            format!("p/templates/{}.yaml", &hex[1..]),
            "../../x".to_owned(),
        ] {
            assert_eq!(
                addressed_sha256("p", Addressed::Template, &key),
                None,
                "{key}"
            );
        }
    }

    #[test]
    fn templates_are_read_over_https_from_the_regions_s3() {
        assert_eq!(
            object_url(
                "notesctl-artifacts-1-eu-west-2",
                "eu-west-2",
                "p/templates/a.yaml"
            ),
            "https://notesctl-artifacts-1-eu-west-2.s3.eu-west-2.amazonaws.com/p/templates/a.yaml"
        );
        assert_eq!(
            object_url("my.bucket", "cn-north-1", "k"),
            "https://s3.cn-north-1.amazonaws.com.cn/my.bucket/k"
        );
    }

    #[test]
    fn code_keys_are_per_stage_and_by_content() {
        assert_eq!(
            code_key("prod", b"zip"),
            format!("prod/notes-lambda/{}.zip", sha256_hex(b"zip"))
        );
        assert_eq!(
            default_bucket("123456789012", "eu-west-2"),
            "notesctl-artifacts-123456789012-eu-west-2"
        );
        let policy: serde_json::Value = serde_json::from_str(&tls_only_policy("b")).unwrap();
        assert_eq!(
            policy["Statement"][0]["Condition"]["Bool"]["aws:SecureTransport"],
            "false"
        );
        assert_eq!(policy["Statement"][0]["Effect"], "Deny");
    }

    mod recorded {
        use super::super::*;
        use aws_sdk_s3::operation::create_bucket::CreateBucketOutput;
        use aws_sdk_s3::operation::delete_objects::DeleteObjectsOutput;
        use aws_sdk_s3::operation::head_bucket::HeadBucketError;
        use aws_sdk_s3::operation::head_object::HeadObjectError;
        use aws_sdk_s3::operation::list_buckets::ListBucketsOutput;
        use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output;
        use aws_sdk_s3::operation::put_bucket_policy::PutBucketPolicyOutput;
        use aws_sdk_s3::operation::put_object::PutObjectOutput;
        use aws_sdk_s3::operation::put_public_access_block::PutPublicAccessBlockOutput;
        use aws_sdk_s3::types::error::NotFound;
        use aws_sdk_s3::types::{Bucket, Object};
        use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
        use aws_smithy_runtime_api::http::{Response, StatusCode};
        use aws_smithy_types::body::SdkBody;

        const OURS: &str = "123456789012";

        fn store(rules: &[&Rule]) -> Artifacts {
            Artifacts {
                s3: mock_client!(aws_sdk_s3, RuleMode::MatchAny, rules),
                bucket: default_bucket(OURS, "eu-west-2"),
                owner: OURS.into(),
                plain_http: false,
            }
        }

        fn forbidden() -> Response<SdkBody> {
            Response::new(StatusCode::try_from(403).unwrap(), SdkBody::empty())
        }

        /// Creating, uploading to and emptying the bucket: every call that can name the expected
        /// owner names ours (a rule matches only such requests; an unmatched request fails).
        #[tokio::test]
        async fn every_call_names_the_expected_owner() {
            let owner = Some(OURS);
            let head = mock!(aws_sdk_s3::Client::head_bucket)
                .match_requests(move |r| r.expected_bucket_owner() == owner)
                .then_error(|| HeadBucketError::NotFound(NotFound::builder().build()));
            let create = mock!(aws_sdk_s3::Client::create_bucket)
                .then_output(|| CreateBucketOutput::builder().build());
            let block = mock!(aws_sdk_s3::Client::put_public_access_block)
                .match_requests(move |r| r.expected_bucket_owner() == owner)
                .then_output(|| PutPublicAccessBlockOutput::builder().build());
            let policy = mock!(aws_sdk_s3::Client::put_bucket_policy)
                .match_requests(move |r| {
                    r.expected_bucket_owner() == owner
                        && r.policy()
                            .is_some_and(|p| p.contains("aws:SecureTransport"))
                })
                .then_output(|| PutBucketPolicyOutput::builder().build());
            let head_object = mock!(aws_sdk_s3::Client::head_object)
                .match_requests(move |r| r.expected_bucket_owner() == owner)
                .then_error(|| HeadObjectError::NotFound(NotFound::builder().build()));
            let put = mock!(aws_sdk_s3::Client::put_object)
                .match_requests(move |r| r.expected_bucket_owner() == owner)
                .then_output(|| PutObjectOutput::builder().build());
            let list = mock!(aws_sdk_s3::Client::list_objects_v2)
                .match_requests(move |r| {
                    r.expected_bucket_owner() == owner && r.prefix() == Some("p/")
                })
                .then_output(|| {
                    ListObjectsV2Output::builder()
                        .contents(Object::builder().key("p/notes-lambda/a.zip").build())
                        .build()
                });
            let delete = mock!(aws_sdk_s3::Client::delete_objects)
                .match_requests(move |r| r.expected_bucket_owner() == owner)
                .then_output(|| DeleteObjectsOutput::builder().build());
            let s = store(&[
                &head,
                &create,
                &block,
                &policy,
                &head_object,
                &put,
                &list,
                &delete,
            ]);
            assert!(s.ensure(Some("eu-west-2")).await.unwrap(), "created");
            assert!(
                s.upload("p/notes-lambda/a.zip", b"zip".to_vec())
                    .await
                    .unwrap()
            );
            assert_eq!(s.delete_stage("p").await.unwrap(), 1);
            for (rule, name) in [
                (&block, "PutPublicAccessBlock"),
                (&policy, "PutBucketPolicy"),
                (&put, "PutObject"),
                (&delete, "DeleteObjects"),
            ] {
                assert_eq!(rule.num_calls(), 1, "{name}");
            }
        }

        /// A bucket of that name that another account owns (S3 answers 403 to a call naming our
        /// account) is refused, and nothing is uploaded.
        #[tokio::test]
        async fn a_bucket_owned_by_another_account_is_refused() {
            let head = mock!(aws_sdk_s3::Client::head_bucket).then_http_response(forbidden);
            let put = mock!(aws_sdk_s3::Client::put_object)
                .then_output(|| PutObjectOutput::builder().build());
            let list = mock!(aws_sdk_s3::Client::list_buckets).then_output(|| {
                ListBucketsOutput::builder()
                    .buckets(Bucket::builder().name("some-other-bucket").build())
                    .build()
            });
            let s = store(&[&head, &put, &list]);
            let e = s.ensure(Some("eu-west-2")).await.unwrap_err().to_string();
            assert!(
                e.contains("not owned by this account") && e.contains("--artifacts-bucket"),
                "{e}"
            );
            let head_object = mock!(aws_sdk_s3::Client::head_object).then_http_response(forbidden);
            let s = store(&[&head_object, &put, &list]);
            let e = s
                .upload("k", b"zip".to_vec())
                .await
                .unwrap_err()
                .to_string();
            assert!(e.contains("not owned by this account"), "{e}");
            assert_eq!(put.num_calls(), 0, "no code goes to someone else's bucket");
        }

        /// A 403 on a bucket this account lists is its own policy's doing, not a squatter's: over
        /// plain HTTP, the TLS-only policy; over HTTPS, the policy or the caller's permissions.
        #[tokio::test]
        async fn a_refusal_by_our_own_buckets_policy_is_told_apart() {
            let head = mock!(aws_sdk_s3::Client::head_bucket).then_http_response(forbidden);
            let list = mock!(aws_sdk_s3::Client::list_buckets).then_output(|| {
                ListBucketsOutput::builder()
                    .buckets(Bucket::builder().name("other").build())
                    .buckets(
                        Bucket::builder()
                            .name(default_bucket(OURS, "eu-west-2"))
                            .build(),
                    )
                    .build()
            });
            let mut s = store(&[&head, &list]);
            s.plain_http = true;
            let e = s.exists().await.unwrap_err().to_string();
            assert!(
                e.contains("is this account's")
                    && e.contains("not made over TLS")
                    && !e.contains("not owned"),
                "{e}"
            );
            s.plain_http = false;
            let e = s.exists().await.unwrap_err().to_string();
            assert!(
                e.contains("IAM permissions deny it") && !e.contains("not owned"),
                "{e}"
            );
            // ListBuckets refused too (no s3:ListAllMyBuckets): the message gives both causes.
            let no_list = mock!(aws_sdk_s3::Client::list_buckets).then_http_response(forbidden);
            let failing = store(&[&head, &no_list]);
            let e = failing.exists().await.unwrap_err().to_string();
            assert!(
                e.contains("could not be told") && e.contains("--artifacts-bucket"),
                "{e}"
            );
        }
    }
}
