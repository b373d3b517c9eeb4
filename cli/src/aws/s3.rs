//! S3 as the commands use it: a client fit for S3 and S3-compatible servers, the bucket listed in
//! parallel key ranges, a bucket's content hash, and deletes in batches of 1,000 — each counted.

use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_s3::Client;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::explain;

/// An object as a listing (or a HEAD) shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteObject {
    pub key: String,
    pub size: u64,
    pub etag: String,
    /// The whole-content MD5 from our metadata, for multipart objects (read with HeadObject).
    pub md5_meta: Option<String>,
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn s3_client(config: &aws_config::SdkConfig, custom_endpoint: bool) -> Client {
    use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
    let conf = aws_sdk_s3::config::Builder::from(config)
        // Custom endpoints (moto, MinIO, s3s) are addressed by path, not by bucket subdomain.
        .force_path_style(custom_endpoint)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(5))
        .build();
    Client::from_conf(conf)
}

/// The S3 requests a command made, by kind. The report shows what a run cost: a no-op re-sync of a
/// bucket whose listing carries ETags makes List calls only.
#[derive(Debug, Default)]
pub struct Calls {
    pub list: AtomicU64,
    pub head: AtomicU64,
    pub put: AtomicU64,
    pub delete: AtomicU64,
}

#[derive(
    Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct CallCounts {
    pub list: u64,
    pub head: u64,
    pub put: u64,
    pub delete: u64,
}

impl Calls {
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn counts(&self) -> CallCounts {
        CallCounts {
            list: self.list.load(Ordering::Relaxed),
            head: self.head.load(Ordering::Relaxed),
            put: self.put.load(Ordering::Relaxed),
            delete: self.delete.load(Ordering::Relaxed),
        }
    }
}

/// Every object of the bucket, in key order, one page after another.
pub async fn list_bucket(s3: &Client, bucket: &str) -> anyhow::Result<Vec<RemoteObject>> {
    list_range(s3, bucket, None, None, &Calls::default()).await
}

/// The objects under `prefix` of a bucket that must belong to `owner` (S3 refuses the call with 403
/// when it does not: `ExpectedBucketOwner`).
pub async fn list_owned(
    s3: &Client,
    bucket: &str,
    owner: &str,
    prefix: &str,
) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .expected_bucket_owner(owner)
            .prefix(prefix)
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| explain(&format!("listing s3://{bucket}/{prefix}"), &e))?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
        match page.next_continuation_token() {
            Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_owned()),
            _ => return Ok(keys),
        }
    }
}

/// Keys per listing range in [`list_bucket_near`]: one short of a page, so a range whose objects match
/// the local files ends within its first page (the page's last key is already past the range).
const RANGE_KEYS: usize = 999;

/// Every object of the bucket, in key order, listed as ranges in parallel: the local keys (sorted) cut
/// the key space, so a bucket that mirrors 10,000 local files is listed in one round of ten List calls
/// instead of ten in a row. Objects that are not local are listed too: the ranges cover every key.
pub async fn list_bucket_near(
    s3: &Client,
    bucket: &str,
    sorted_local_keys: &[&str],
    calls: &Calls,
) -> anyhow::Result<Vec<RemoteObject>> {
    list_in_ranges(s3, bucket, sorted_local_keys, RANGE_KEYS, calls).await
}

/// [`list_bucket_near`] with ranges of `per_range` local keys.
pub async fn list_in_ranges(
    s3: &Client,
    bucket: &str,
    sorted_local_keys: &[&str],
    per_range: usize,
    calls: &Calls,
) -> anyhow::Result<Vec<RemoteObject>> {
    let per_range = per_range.max(1);
    let cuts: Vec<&str> = sorted_local_keys
        .iter()
        .skip(per_range - 1)
        .step_by(per_range)
        .copied()
        .collect();
    let mut bounds: Vec<(Option<&str>, Option<&str>)> = Vec::with_capacity(cuts.len() + 1);
    let mut after = None;
    for cut in &cuts {
        bounds.push((after, Some(*cut)));
        after = Some(*cut);
    }
    bounds.push((after, None));
    let ranges: Vec<anyhow::Result<Vec<RemoteObject>>> = futures::stream::iter(bounds)
        .map(|(after, upto)| list_range(s3, bucket, after, upto, calls))
        .buffered(16)
        .collect()
        .await;
    let mut out = Vec::new();
    for r in ranges {
        out.extend(r?);
    }
    Ok(out)
}

/// The objects with `after < key <= upto` (either end open), in key order.
async fn list_range(
    s3: &Client,
    bucket: &str,
    after: Option<&str>,
    upto: Option<&str>,
    calls: &Calls,
) -> anyhow::Result<Vec<RemoteObject>> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        Calls::count(&calls.list);
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .set_start_after(after.map(str::to_owned))
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error().is_some_and(|s| s.is_no_such_bucket()) {
                    anyhow::anyhow!("bucket {bucket} does not exist: deploy the frontend stack, or check --bucket and --region")
                } else {
                    explain(&format!("listing s3://{bucket}"), &e)
                }
            })?;
        for o in page.contents() {
            let key = o.key().unwrap_or_default();
            if upto.is_some_and(|u| key > u) {
                return Ok(out);
            }
            // A server that ignores StartAfter would list earlier ranges' keys again.
            if after.is_some_and(|a| key <= a) {
                continue;
            }
            out.push(RemoteObject {
                key: key.to_owned(),
                size: o.size().unwrap_or(0).max(0) as u64,
                etag: o.e_tag().unwrap_or_default().trim_matches('"').to_owned(),
                md5_meta: None,
            });
        }
        match page.next_continuation_token() {
            Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_owned()),
            _ => return Ok(out),
        }
    }
}

/// The hash of a bucket's content, for idempotent invalidations.
pub fn content_hash(objects: &[RemoteObject]) -> String {
    let mut lines: Vec<String> = objects
        .iter()
        .map(|o| format!("{}\t{}", o.key, o.etag))
        .collect();
    lines.sort();
    hex(&sha2::Sha256::digest(lines.join("\n").as_bytes())[..16])
}

/// Deletes `keys` from the bucket in batches of 1,000 (S3's limit per request); the first key S3
/// refused is an error.
pub async fn delete_keys(
    s3: &Client,
    bucket: &str,
    owner: Option<&str>,
    keys: &[String],
    calls: &Calls,
) -> anyhow::Result<()> {
    for chunk in keys.chunks(1000) {
        let objects = chunk
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k).build())
            .collect::<Result<Vec<_>, _>>()?;
        Calls::count(&calls.delete);
        let out = s3
            .delete_objects()
            .bucket(bucket)
            .set_expected_bucket_owner(owner.map(str::to_owned))
            .delete(
                Delete::builder()
                    .set_objects(Some(objects))
                    .quiet(true)
                    .build()?,
            )
            .send()
            .await
            .map_err(|e| explain(&format!("deleting from s3://{bucket}"), &e))?;
        if let Some(err) = out.errors().first() {
            anyhow::bail!(
                "could not delete s3://{bucket}/{}: {}",
                err.key().unwrap_or("?"),
                err.message().unwrap_or("no reason given")
            );
        }
    }
    Ok(())
}
