//! Uploads within one request budget: small files in one PUT, large ones in parts sent in parallel,
//! each read from disk only when its turn comes.

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use base64::Engine;
use futures::StreamExt;
use md5::{Digest, Md5};

use super::local::{LocalFile, PART_SIZE, read_range};
use super::plan::cache_control;
use crate::aws::explain;
use crate::aws::s3::{Calls, hex};
use crate::mime;

/// What the uploads share: the client, the bucket, the request budget and the counters.
struct Uploader<'a> {
    s3: &'a Client,
    bucket: &'a str,
    calls: &'a Calls,
    /// One permit per request in flight, multipart parts included, so memory stays within
    /// `concurrency` × PART_SIZE however large the files.
    slots: tokio::sync::Semaphore,
    concurrency: usize,
    bar: Option<indicatif::ProgressBar>,
}

impl Uploader<'_> {
    fn progress(&self, bytes: u64) {
        if let Some(b) = &self.bar {
            b.inc(bytes);
        }
    }

    async fn slot(&self) -> anyhow::Result<tokio::sync::SemaphorePermit<'_>> {
        Ok(self.slots.acquire().await?)
    }

    async fn upload(&self, f: &LocalFile) -> anyhow::Result<()> {
        let (s3, bucket) = (self.s3, self.bucket);
        let content_type = mime::content_type(&f.key);
        let cache = cache_control(&f.key);
        let md5_hex = hex(&f.md5);
        if f.size < PART_SIZE {
            let _slot = self.slot().await?;
            let bytes = read_range(f, 0, f.size).await?;
            Calls::count(&self.calls.put);
            s3.put_object()
                .bucket(bucket)
                .key(&f.key)
                .body(ByteStream::from(bytes))
                .content_type(&content_type)
                .cache_control(cache)
                .content_md5(base64::engine::general_purpose::STANDARD.encode(f.md5))
                .metadata("md5", &md5_hex)
                .send()
                .await
                .map_err(|e| explain(&format!("uploading {}", f.key), &e))?;
            self.progress(f.size);
            return Ok(());
        }
        let created = {
            let _slot = self.slot().await?;
            Calls::count(&self.calls.put);
            s3.create_multipart_upload()
                .bucket(bucket)
                .key(&f.key)
                .content_type(&content_type)
                .cache_control(cache)
                .metadata("md5", &md5_hex)
                .send()
                .await
                .map_err(|e| explain(&format!("starting the upload of {}", f.key), &e))?
        };
        let upload_id = created.upload_id().unwrap_or_default().to_owned();
        // The parts go up in parallel, each read from the file when its turn comes.
        let count = f.size.div_ceil(PART_SIZE);
        let parts: Vec<anyhow::Result<CompletedPart>> = futures::stream::iter(1..=count)
            .map(|n| self.upload_part(f, &upload_id, n))
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        let parts = match parts.into_iter().collect::<anyhow::Result<Vec<_>>>() {
            Ok(mut parts) => {
                parts.sort_by_key(|p| p.part_number());
                parts
            }
            Err(e) => {
                // Best effort: an upload left behind costs storage until the bucket's lifecycle
                // rule (if any) removes it.
                let _ = s3
                    .abort_multipart_upload()
                    .bucket(bucket)
                    .key(&f.key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                return Err(e);
            }
        };
        let _slot = self.slot().await?;
        Calls::count(&self.calls.put);
        s3.complete_multipart_upload()
            .bucket(bucket)
            .key(&f.key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| explain(&format!("completing the upload of {}", f.key), &e))?;
        Ok(())
    }

    async fn upload_part(
        &self,
        f: &LocalFile,
        upload_id: &str,
        n: u64,
    ) -> anyhow::Result<CompletedPart> {
        let _slot = self.slot().await?;
        let offset = (n - 1) * PART_SIZE;
        let len = PART_SIZE.min(f.size - offset);
        let chunk = read_range(f, offset, len).await?;
        let md5 = Md5::digest(&chunk);
        Calls::count(&self.calls.put);
        let part = self
            .s3
            .upload_part()
            .bucket(self.bucket)
            .key(&f.key)
            .upload_id(upload_id)
            .part_number(n as i32)
            .content_md5(base64::engine::general_purpose::STANDARD.encode(md5))
            .body(ByteStream::from(chunk))
            .send()
            .await
            .map_err(|e| explain(&format!("uploading part {n} of {}", f.key), &e))?;
        self.progress(len);
        Ok(CompletedPart::builder()
            .part_number(n as i32)
            .set_e_tag(part.e_tag)
            .build())
    }
}

/// Uploads the files within `concurrency` requests in flight, with a bar on a terminal. Every file is
/// tried; the first failure is the error, and what did go up is not sent again by the next run.
pub async fn upload_all(
    s3: &Client,
    bucket: &str,
    files: &[&LocalFile],
    concurrency: usize,
    calls: &Calls,
    bar: Option<indicatif::ProgressBar>,
) -> anyhow::Result<()> {
    if let Some(b) = &bar {
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} uploading [{bar:30}] {bytes}/{total_bytes} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b.set_length(files.iter().map(|f| f.size).sum());
    }
    let uploader = Uploader {
        s3,
        bucket,
        calls,
        slots: tokio::sync::Semaphore::new(concurrency),
        concurrency,
        bar,
    };
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(files.iter().copied())
        .map(|f| uploader.upload(f))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    if let Some(b) = &uploader.bar {
        b.finish_and_clear();
    }
    let failures: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| format!("{e:#}")))
        .collect();
    if let Some(first) = failures.first() {
        anyhow::bail!(
            "{} of {} uploads failed; first: {first}. Run again: what did upload is not sent twice",
            failures.len(),
            files.len()
        );
    }
    Ok(())
}
