//! The code zip's way to the artifacts bucket: created (private) if missing, uploaded once under its
//! content address.

use super::DeployArgs;
use crate::aws::s3::s3_client;
use crate::aws::{artifacts, explain};
use crate::context::Context;
use crate::lambda::zip_path;

/// Uploads the zip to the artifacts bucket under its sha256 (once); the bucket and key. With `upload`
/// false (a preview) it only works them out.
pub async fn upload_code(
    ctx: &Context,
    config: &aws_config::SdkConfig,
    args: &DeployArgs,
    upload: bool,
) -> anyhow::Result<(String, String)> {
    let path = zip_path(&args.artifacts, args.arch);
    let zip = tokio::fs::read(&path).await.map_err(|e| {
        anyhow::anyhow!(
            "{}: {e}; run `notesctl package --arch {}` first",
            path.display(),
            args.arch.as_str()
        )
    })?;
    let key = artifacts::code_key(ctx.stage(), &zip);
    let bucket = artifacts::bucket(config, args.artifacts_bucket.as_deref()).await?;
    if !upload {
        return Ok((bucket, key));
    }
    let s3 = s3_client(config, ctx.custom_endpoint());
    match s3.head_bucket().bucket(&bucket).send().await {
        Ok(_) => {}
        Err(e)
            if e.as_service_error().is_some_and(|s| s.is_not_found())
                || e.raw_response().is_some_and(|r| r.status().as_u16() == 404) =>
        {
            ctx.say(format!("creating the artifacts bucket {bucket}"));
            let mut create = s3.create_bucket().bucket(&bucket);
            if let Some(region) = config
                .region()
                .map(|r| r.to_string())
                .filter(|r| r != "us-east-1")
            {
                create = create.create_bucket_configuration(
                    aws_sdk_s3::types::CreateBucketConfiguration::builder()
                        .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                            region.as_str(),
                        ))
                        .build(),
                );
            }
            match create.send().await {
                Ok(_) => {}
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_bucket_already_owned_by_you()) => {}
                Err(e) => return Err(explain(&format!("creating bucket {bucket}"), &e)),
            }
            let block = aws_sdk_s3::types::PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .block_public_policy(true)
                .ignore_public_acls(true)
                .restrict_public_buckets(true)
                .build();
            let _ = s3
                .put_public_access_block()
                .bucket(&bucket)
                .public_access_block_configuration(block)
                .send()
                .await;
        }
        Err(e) => {
            return Err(anyhow::anyhow!(
                "{:#}. The bucket {bucket} exists but is not usable here (another account's, or in another region): pass --artifacts-bucket with a bucket of yours in this region",
                explain(&format!("checking bucket {bucket}"), &e)
            ));
        }
    }
    if s3
        .head_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .is_err()
    {
        ctx.say(format!(
            "uploading {} to s3://{bucket}/{key}",
            path.display()
        ));
        s3.put_object()
            .bucket(&bucket)
            .key(&key)
            .body(zip.into())
            .send()
            .await
            .map_err(|e| explain(&format!("uploading the code to s3://{bucket}/{key}"), &e))?;
    }
    Ok((bucket, key))
}
