//! `notesctl sync-frontend DIR`: uploads the frontend to its bucket, deciding by content, not by
//! timestamps. The AWS CLI compares size and modification time, so a rebuilt site re-uploads every
//! file while a same-size edit with an older timestamp is skipped; here an unchanged file is never
//! sent and a changed one always is. Single-part objects compare MD5 with the ETag; multipart ones
//! the MD5 we store in their metadata. `config.json` is written from the stacks' outputs, so the
//! frontend needs no hand edit.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use base64::Engine;
use futures::StreamExt;
use md5::{Digest, Md5};
use serde::Serialize;

use crate::aws::{explain, sdk_config};
use crate::{Exit, Global, mime, output, stacks};

/// Files at least this large go up in parts of this size (and their ETag is computed the same way).
pub const PART_SIZE: u64 = 8 * 1024 * 1024;
/// Names never uploaded (and never deleted remotely).
const ALWAYS_EXCLUDED: &[&str] = &[
    ".DS_Store",
    "**/.DS_Store",
    "Thumbs.db",
    "**/Thumbs.db",
    ".git/**",
    "**/.git/**",
];

#[derive(Debug, Clone, clap::Args)]
pub struct SyncArgs {
    /// The built frontend (the folder with index.html).
    pub dir: PathBuf,
    /// Bucket to sync to (default: the frontend stack's BucketName output).
    #[arg(long)]
    pub bucket: Option<String>,
    /// Delete objects that are not in DIR (never more than half the bucket without --force).
    #[arg(long)]
    pub delete: bool,
    /// Print the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Allow an empty DIR, case-colliding names, and deleting more than half the bucket.
    #[arg(long)]
    pub force: bool,
    /// Requests in flight at once (S3's latency, not bandwidth, bounds small files).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Do not write config.json.
    #[arg(long)]
    pub no_config: bool,
    /// Skip files matching this glob (repeatable); excluded keys are not deleted either.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// API URL for config.json (default: the auth stack's ApiUrl output).
    #[arg(long)]
    pub api_url: Option<String>,
    /// WebSocket URL for config.json (default: the websocket stack's WebSocketUrl output).
    #[arg(long)]
    pub ws_url: Option<String>,
}

/// A file to publish: from DIR, or generated (config.json).
#[derive(Debug, Clone)]
pub struct LocalFile {
    pub key: String,
    pub source: Source,
    pub size: u64,
    pub md5: [u8; 16],
    /// The ETag S3 gives this content when uploaded as we upload it (multipart above PART_SIZE).
    pub etag: String,
}

#[derive(Debug, Clone)]
pub enum Source {
    Path(PathBuf),
    Bytes(Arc<Vec<u8>>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteObject {
    pub key: String,
    pub size: u64,
    pub etag: String,
    /// The whole-content MD5 from our metadata, for multipart objects (read with HeadObject).
    pub md5_meta: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Why {
    New,
    Changed,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    pub upload: Vec<(String, Why)>,
    pub delete: Vec<String>,
    pub unchanged: usize,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// MD5 of the content and its S3 ETag (plain MD5, or MD5-of-part-MD5s `-N` for multipart).
pub fn digest(mut read: impl Read, size: u64) -> std::io::Result<([u8; 16], String)> {
    let mut whole = Md5::new();
    let mut part = Md5::new();
    let mut parts: Vec<u8> = Vec::new();
    let mut in_part = 0u64;
    // Sized to the file (plus one byte to see the end in one read): most web assets are small, and
    // zeroing a large buffer per file would cost more than hashing it.
    let mut buf = vec![0u8; (size as usize).saturating_add(1).clamp(4096, 256 * 1024)];
    loop {
        let n = read.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let mut chunk = &buf[..n];
        whole.update(chunk);
        while !chunk.is_empty() {
            let take = ((PART_SIZE - in_part) as usize).min(chunk.len());
            part.update(&chunk[..take]);
            in_part += take as u64;
            chunk = &chunk[take..];
            if in_part == PART_SIZE {
                parts.extend_from_slice(&part.finalize_reset());
                in_part = 0;
            }
        }
    }
    let md5: [u8; 16] = whole.finalize().into();
    if size < PART_SIZE {
        return Ok((md5, hex(&md5)));
    }
    if in_part > 0 {
        parts.extend_from_slice(&part.finalize());
    }
    let count = parts.len() / 16;
    Ok((md5, format!("{}-{count}", hex(&Md5::digest(&parts)))))
}

fn globs(patterns: &[String]) -> anyhow::Result<globset::GlobSet> {
    let mut b = globset::GlobSetBuilder::new();
    for p in ALWAYS_EXCLUDED
        .iter()
        .map(|s| s.to_string())
        .chain(patterns.iter().cloned())
    {
        b.add(globset::Glob::new(&p).map_err(|e| anyhow::anyhow!("--exclude {p:?}: {e}"))?);
    }
    Ok(b.build()?)
}

/// A file of DIR, found but not yet read.
#[derive(Debug, Clone)]
pub struct Found {
    pub key: String,
    pub path: PathBuf,
}

/// The files of DIR as keys (`/`-separated), without excluded ones, sorted by key. Names only (what
/// the directory listing gives; a `stat` only for symbolic links, which are followed): cheap, so the
/// bucket listing can start while the files are hashed.
pub fn walk(dir: &Path, excluded: &globset::GlobSet) -> anyhow::Result<Vec<Found>> {
    let meta = std::fs::metadata(dir).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e}; pass the folder of the built frontend",
            dir.display()
        )
    })?;
    if !meta.is_dir() {
        anyhow::bail!(
            "{} is not a folder; pass the folder of the built frontend",
            dir.display()
        );
    }
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries =
            std::fs::read_dir(&d).map_err(|e| anyhow::anyhow!("reading {}: {e}", d.display()))?;
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let rel = path.strip_prefix(dir).unwrap_or(&path);
            let key = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            if excluded.is_match(&key) {
                continue;
            }
            let ft = entry.file_type()?;
            let is_dir = if ft.is_symlink() {
                std::fs::metadata(&path)
                    .map_err(|e| anyhow::anyhow!("following the link {}: {e}", path.display()))?
                    .is_dir()
            } else {
                ft.is_dir()
            };
            if is_dir {
                stack.push(path);
            } else {
                out.push(Found { key, path });
            }
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// Reads and hashes the files on every core; keeps their order.
pub fn hash_files(found: &[Found]) -> anyhow::Result<Vec<LocalFile>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8)
        .min(found.len().max(1));
    let next = AtomicUsize::new(0);
    let hash_one = |f: &Found| -> anyhow::Result<LocalFile> {
        let failed = |e: std::io::Error| anyhow::anyhow!("reading {}: {e}", f.path.display());
        let file = std::fs::File::open(&f.path).map_err(failed)?;
        let size = file.metadata().map_err(failed)?.len();
        let (md5, etag) = digest(file, size).map_err(failed)?;
        Ok(LocalFile {
            key: f.key.clone(),
            source: Source::Path(f.path.clone()),
            size,
            md5,
            etag,
        })
    };
    let mut done: Vec<(usize, LocalFile)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(f) = found.get(i) else { break };
                        mine.push((i, hash_one(f)?));
                    }
                    anyhow::Ok(mine)
                })
            })
            .collect();
        let mut all = Vec::with_capacity(found.len());
        for w in workers {
            all.extend(
                w.join()
                    .map_err(|_| anyhow::anyhow!("a hashing thread panicked"))??,
            );
        }
        anyhow::Ok(all)
    })?;
    done.sort_by_key(|(i, _)| *i);
    Ok(done.into_iter().map(|(_, f)| f).collect())
}

/// The files of DIR, hashed.
pub fn scan(dir: &Path, excluded: &globset::GlobSet) -> anyhow::Result<Vec<LocalFile>> {
    hash_files(&walk(dir, excluded)?)
}

pub fn generated(key: &str, bytes: Vec<u8>) -> LocalFile {
    let size = bytes.len() as u64;
    let (md5, etag) = digest(bytes.as_slice(), size).expect("reading memory");
    LocalFile {
        key: key.to_owned(),
        source: Source::Bytes(Arc::new(bytes)),
        size,
        md5,
        etag,
    }
}

/// Names that differ only by case: fine for S3, trouble for anyone who checks the site out on macOS
/// or Windows, and a sign of a broken build.
pub fn case_collisions(local: &[LocalFile]) -> Vec<(String, String)> {
    let mut seen: HashMap<String, &str> = HashMap::new();
    let mut out = Vec::new();
    for f in local {
        if let Some(other) = seen.insert(f.key.to_lowercase(), &f.key) {
            out.push((other.to_owned(), f.key.clone()));
        }
    }
    out
}

/// What to upload and delete. Pure: the decisions, tested on their own.
pub fn plan(
    local: &[LocalFile],
    remote: &[RemoteObject],
    delete: bool,
    force: bool,
    excluded: &globset::GlobSet,
) -> anyhow::Result<Plan> {
    if local.iter().all(|f| matches!(f.source, Source::Bytes(_))) && !force {
        anyhow::bail!(
            "the folder has no files to publish; refusing (with --delete this would empty the bucket). Build the frontend first, or pass --force"
        );
    }
    let collisions = case_collisions(local);
    if !collisions.is_empty() && !force {
        let (a, b) = &collisions[0];
        anyhow::bail!(
            "{a} and {b} differ only by case ({} such pairs): rename one, or pass --force",
            collisions.len()
        );
    }
    let remote_by_key: HashMap<&str, &RemoteObject> =
        remote.iter().map(|r| (r.key.as_str(), r)).collect();
    let mut p = Plan::default();
    for f in local {
        match remote_by_key.get(f.key.as_str()) {
            None => p.upload.push((f.key.clone(), Why::New)),
            Some(r) => {
                let etag = r.etag.trim_matches('"');
                let same = r.size == f.size
                    && (etag == f.etag || r.md5_meta.as_deref() == Some(hex(&f.md5).as_str()));
                if same {
                    p.unchanged += 1;
                } else {
                    p.upload.push((f.key.clone(), Why::Changed));
                }
            }
        }
    }
    if delete {
        let keep: HashSet<&str> = local.iter().map(|f| f.key.as_str()).collect();
        p.delete = remote
            .iter()
            .filter(|r| !keep.contains(r.key.as_str()) && !excluded.is_match(&r.key))
            .map(|r| r.key.clone())
            .collect();
        if !force && !remote.is_empty() && p.delete.len() * 2 > remote.len() {
            anyhow::bail!(
                "--delete would remove {} of the bucket's {} objects (more than half): check DIR and --exclude, or pass --force",
                p.delete.len(),
                remote.len()
            );
        }
    }
    Ok(p)
}

/// `index.html`, other HTML and `config.json` are revalidated on every load; content-hashed assets are
/// cached for a year; everything else for five minutes.
pub fn cache_control(key: &str) -> &'static str {
    let name = key.rsplit('/').next().unwrap_or(key);
    if name == "config.json" || name.ends_with(".html") || name.ends_with(".htm") {
        "no-cache"
    } else if is_content_hashed(name) {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=300"
    }
}

/// `app.3f2a1b9c.js`, `index-BdK3x9Qa.js`, `chunk.5e2f8a1d7c.css`: a name part of 8+ letters and
/// digits, with a digit in it, besides the stem and the extension.
pub fn is_content_hashed(name: &str) -> bool {
    let Some((stem, _ext)) = name.rsplit_once('.') else {
        return false;
    };
    let parts: Vec<&str> = stem.split(['.', '-', '_']).collect();
    parts.len() > 1
        && parts[1..].iter().any(|p| {
            p.len() >= 8
                && p.chars().all(|c| c.is_ascii_alphanumeric())
                && p.chars().any(|c| c.is_ascii_digit())
        })
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncReport {
    pub uploaded: usize,
    pub deleted: usize,
    pub unchanged: usize,
    pub bytes: u64,
    pub bucket: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<PlannedChange>,
    /// The S3 requests this run made, by kind.
    pub requests: CallCounts,
    /// A content hash of what the bucket now holds (keys and ETags): invalidations use it as their
    /// caller reference.
    #[serde(skip)]
    pub content_hash: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedChange {
    pub action: &'static str,
    pub key: String,
}

impl fmt::Display for SyncReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.plan {
            writeln!(f, "{:<8} s3://{}/{}", c.action, self.bucket, c.key)?;
        }
        let verb = if self.dry_run {
            "would upload"
        } else {
            "uploaded"
        };
        let del = if self.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        write!(
            f,
            "{verb} {} ({} bytes), {del} {}, {} unchanged — s3://{}",
            self.uploaded, self.bytes, self.deleted, self.unchanged, self.bucket
        )?;
        let r = self.requests;
        let kinds: Vec<String> = [
            ("list", r.list),
            ("head", r.head),
            ("put", r.put),
            ("delete", r.delete),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
        if !kinds.is_empty() {
            write!(f, " ({} requests)", kinds.join(", "))?;
        }
        Ok(())
    }
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

/// The S3 requests a sync made, by kind. The report shows what a run cost: a no-op re-sync of a
/// bucket whose listing carries ETags makes List calls only.
#[derive(Debug, Default)]
pub struct Calls {
    list: AtomicU64,
    head: AtomicU64,
    put: AtomicU64,
    delete: AtomicU64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CallCounts {
    pub list: u64,
    pub head: u64,
    pub put: u64,
    pub delete: u64,
}

impl Calls {
    fn count(counter: &AtomicU64) {
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

/// `len` bytes of a file from `offset`. A file that shrank since it was hashed fails here instead of
/// going up half-written.
async fn read_range(f: &LocalFile, offset: u64, len: u64) -> anyhow::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    match &f.source {
        Source::Bytes(b) => Ok(b[offset as usize..(offset + len) as usize].to_vec()),
        Source::Path(p) => {
            let failed = |e: std::io::Error| {
                anyhow::anyhow!(
                    "reading {}: {e} (did it change during the sync? run again)",
                    p.display()
                )
            };
            let mut file = tokio::fs::File::open(p).await.map_err(failed)?;
            if offset > 0 {
                file.seek(std::io::SeekFrom::Start(offset))
                    .await
                    .map_err(failed)?;
            }
            let mut buf = vec![0u8; len as usize];
            file.read_exact(&mut buf).await.map_err(failed)?;
            Ok(buf)
        }
    }
}

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
                .content_type(content_type)
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
                .content_type(content_type)
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

fn progress_bar(global: &Global, len: u64) -> Option<indicatif::ProgressBar> {
    let show = !global.no_progress
        && !global.quiet
        && std::env::var_os("CI").is_none()
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    show.then(|| {
        let bar = indicatif::ProgressBar::new(len);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} uploading [{bar:30}] {bytes}/{total_bytes} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    })
}

/// Syncs and reports; shared by `sync-frontend` and `deploy --frontend`.
pub async fn sync(
    global: &Global,
    config: &aws_config::SdkConfig,
    args: &SyncArgs,
) -> anyhow::Result<SyncReport> {
    let cfn = aws_sdk_cloudformation::Client::new(config);
    let bucket = match &args.bucket {
        Some(b) => b.clone(),
        None => stacks::output(&cfn, &global.stage, "frontend", "BucketName", "--bucket").await?,
    };
    let excluded = globs(&args.exclude)?;
    let (dir, ex) = (args.dir.clone(), excluded.clone());
    let found = Arc::new(tokio::task::spawn_blocking(move || walk(&dir, &ex)).await??);
    let s3 = s3_client(config, global.endpoint_url.is_some());
    let calls = Calls::default();
    // Three things at once: hash the files (every core), list the bucket (ranges in parallel), and
    // read the URLs for config.json.
    let key_refs: Vec<&str> = found.iter().map(|f| f.key.as_str()).collect();
    let to_hash = found.clone();
    let hashing = async {
        tokio::task::spawn_blocking(move || hash_files(&to_hash))
            .await
            .map_err(|e| anyhow::anyhow!("hashing the files: {e}"))?
    };
    let config_json = async {
        if args.no_config {
            return anyhow::Ok(None);
        }
        let api_url = match &args.api_url {
            Some(u) => u.clone(),
            None => {
                stacks::output(
                    &cfn,
                    &global.stage,
                    "auth",
                    "ApiUrl",
                    "--api-url (or --no-config)",
                )
                .await?
            }
        };
        let ws_url = match &args.ws_url {
            Some(u) => u.clone(),
            None => {
                stacks::output(
                    &cfn,
                    &global.stage,
                    "websocket",
                    "WebSocketUrl",
                    "--ws-url (or --no-config)",
                )
                .await?
            }
        };
        let body =
            serde_json::to_vec_pretty(&serde_json::json!({"apiUrl": api_url, "wsUrl": ws_url}))?;
        Ok(Some(generated("config.json", body)))
    };
    let (local, remote, config_json) = tokio::join!(
        hashing,
        list_bucket_near(&s3, &bucket, &key_refs, &calls),
        config_json
    );
    let (mut local, mut remote) = (local?, remote?);
    if let Some(cfg) = config_json? {
        local.retain(|f| f.key != "config.json");
        local.push(cfg);
    }
    // Listings without ETags (some S3-compatible servers), and multipart objects whose ETag is not the
    // one our part size gives (uploaded by another tool): read the ETag and the MD5 we store in metadata.
    let local_keys: HashMap<&str, &LocalFile> = local.iter().map(|f| (f.key.as_str(), f)).collect();
    let heads = futures::stream::iter(remote.iter_mut().filter(|r| {
        local_keys.get(r.key.as_str()).is_some_and(|f| {
            f.size == r.size && (r.etag.is_empty() || (r.etag.contains('-') && r.etag != f.etag))
        })
    }))
    .map(|r| {
        let (s3, bucket, calls) = (&s3, &bucket, &calls);
        async move {
            Calls::count(&calls.head);
            if let Ok(h) = s3.head_object().bucket(bucket).key(&r.key).send().await {
                r.md5_meta = h.metadata().and_then(|m| m.get("md5").cloned());
                if r.etag.is_empty() {
                    r.etag = h.e_tag().unwrap_or_default().trim_matches('"').to_owned();
                }
            }
        }
    })
    .buffer_unordered(args.concurrency as usize)
    .collect::<Vec<()>>();
    heads.await;
    let the_plan = plan(&local, &remote, args.delete, args.force, &excluded)?;
    let uploads: Vec<&LocalFile> = the_plan
        .upload
        .iter()
        .filter_map(|(k, _)| local_keys.get(k.as_str()).copied())
        .collect();
    let bytes: u64 = uploads.iter().map(|f| f.size).sum();
    let mut report = SyncReport {
        uploaded: uploads.len(),
        deleted: the_plan.delete.len(),
        unchanged: the_plan.unchanged,
        bytes,
        bucket: bucket.clone(),
        dry_run: args.dry_run,
        plan: Vec::new(),
        requests: CallCounts::default(),
        content_hash: String::new(),
    };
    if args.dry_run {
        report.plan = the_plan
            .upload
            .iter()
            .map(|(k, why)| PlannedChange {
                action: if *why == Why::New { "upload" } else { "update" },
                key: k.clone(),
            })
            .chain(the_plan.delete.iter().map(|k| PlannedChange {
                action: "delete",
                key: k.clone(),
            }))
            .collect();
        report.requests = calls.counts();
        return Ok(report);
    }
    let concurrency = args.concurrency as usize;
    let uploader = Uploader {
        s3: &s3,
        bucket: &bucket,
        calls: &calls,
        slots: tokio::sync::Semaphore::new(concurrency),
        concurrency,
        bar: progress_bar(global, bytes),
    };
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(uploads.iter().copied())
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
            uploads.len()
        );
    }
    for chunk in the_plan.delete.chunks(1000) {
        let objects = chunk
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k).build())
            .collect::<Result<Vec<_>, _>>()?;
        Calls::count(&calls.delete);
        let out = s3
            .delete_objects()
            .bucket(&bucket)
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
                "deleting {} failed: {}",
                err.key().unwrap_or("?"),
                err.message().unwrap_or("no reason given")
            );
        }
    }
    let mut after: BTreeMap<String, String> = remote.into_iter().map(|r| (r.key, r.etag)).collect();
    for k in &the_plan.delete {
        after.remove(k);
    }
    for f in &local {
        after.insert(f.key.clone(), f.etag.clone());
    }
    let objects: Vec<RemoteObject> = after
        .into_iter()
        .map(|(key, etag)| RemoteObject {
            key,
            size: 0,
            etag,
            md5_meta: None,
        })
        .collect();
    report.content_hash = content_hash(&objects);
    report.requests = calls.counts();
    Ok(report)
}

pub async fn run(global: &Global, args: SyncArgs) -> anyhow::Result<Exit> {
    let config = sdk_config(global, None).await?;
    let report = sync(global, &config, &args).await?;
    output::print(global.output, &report);
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(key: &str, content: &[u8]) -> LocalFile {
        let mut f = generated(key, content.to_vec());
        f.source = Source::Path(PathBuf::from(key));
        f
    }

    fn remote(f: &LocalFile) -> RemoteObject {
        RemoteObject {
            key: f.key.clone(),
            size: f.size,
            etag: format!("\"{}\"", f.etag),
            md5_meta: None,
        }
    }

    fn none() -> globset::GlobSet {
        globs(&[]).unwrap()
    }

    #[test]
    fn unchanged_files_are_not_sent_and_same_size_edits_are() {
        let a = file("index.html", b"<h1>v1</h1>");
        let b = file("app.js", b"console.log(1)");
        let remote_objs = vec![remote(&a), remote(&b)];
        let p = plan(&[a.clone(), b.clone()], &remote_objs, false, false, &none()).unwrap();
        assert_eq!((p.upload.len(), p.unchanged), (0, 2));
        let edited = file("index.html", b"<h1>v2</h1>");
        assert_eq!(edited.size, a.size, "same size");
        let p = plan(&[edited, b], &remote_objs, false, false, &none()).unwrap();
        assert_eq!(p.upload, vec![("index.html".to_owned(), Why::Changed)]);
    }

    #[test]
    fn multipart_objects_compare_by_stored_md5_or_computed_etag() {
        let big = vec![7u8; (PART_SIZE + 10) as usize];
        let (md5, etag) = digest(big.as_slice(), big.len() as u64).unwrap();
        assert!(etag.ends_with("-2"), "{etag}");
        let f = LocalFile {
            key: "big.bin".into(),
            source: Source::Path("big.bin".into()),
            size: big.len() as u64,
            md5,
            etag: etag.clone(),
        };
        let same_parts = RemoteObject {
            key: "big.bin".into(),
            size: f.size,
            etag: etag.clone(),
            md5_meta: None,
        };
        assert_eq!(
            plan(
                std::slice::from_ref(&f),
                &[same_parts],
                false,
                false,
                &none()
            )
            .unwrap()
            .unchanged,
            1
        );
        let other_parts = RemoteObject {
            key: "big.bin".into(),
            size: f.size,
            etag: "abc-3".into(),
            md5_meta: Some(hex(&md5)),
        };
        assert_eq!(
            plan(
                std::slice::from_ref(&f),
                &[other_parts],
                false,
                false,
                &none()
            )
            .unwrap()
            .unchanged,
            1
        );
        let changed = RemoteObject {
            key: "big.bin".into(),
            size: f.size,
            etag: "abc-3".into(),
            md5_meta: Some("0".repeat(32)),
        };
        assert_eq!(
            plan(&[f], &[changed], false, false, &none())
                .unwrap()
                .upload
                .len(),
            1
        );
    }

    #[test]
    fn delete_only_what_the_plan_says_and_never_half_the_bucket() {
        let keep: Vec<LocalFile> = (0..4).map(|i| file(&format!("f{i}.js"), b"x")).collect();
        let mut remote_objs: Vec<RemoteObject> = keep.iter().map(remote).collect();
        remote_objs.push(RemoteObject {
            key: "old.js".into(),
            size: 1,
            etag: "e".into(),
            md5_meta: None,
        });
        remote_objs.push(RemoteObject {
            key: "uploads/keep.png".into(),
            size: 1,
            etag: "e".into(),
            md5_meta: None,
        });
        let excluded = globs(&["uploads/**".into()]).unwrap();
        let p = plan(&keep, &remote_objs, true, false, &excluded).unwrap();
        assert_eq!(
            p.delete,
            vec!["old.js".to_owned()],
            "excluded keys are kept"
        );
        assert!(
            plan(&keep, &remote_objs, false, false, &excluded)
                .unwrap()
                .delete
                .is_empty(),
            "no --delete, no deletes"
        );
        let few = &keep[..1];
        let err = plan(few, &remote_objs, true, false, &excluded)
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than half"), "{err}");
        assert_eq!(
            plan(few, &remote_objs, true, true, &excluded)
                .unwrap()
                .delete
                .len(),
            4
        );
    }

    #[test]
    fn refuses_empty_folders_and_case_collisions() {
        let only_config = vec![generated("config.json", b"{}".to_vec())];
        assert!(
            plan(&only_config, &[], true, false, &none())
                .unwrap_err()
                .to_string()
                .contains("no files")
        );
        let clash = vec![file("Logo.png", b"a"), file("logo.png", b"b")];
        assert!(
            plan(&clash, &[], false, false, &none())
                .unwrap_err()
                .to_string()
                .contains("differ only by case")
        );
        assert_eq!(
            plan(&clash, &[], false, true, &none())
                .unwrap()
                .upload
                .len(),
            2
        );
    }

    #[test]
    fn cache_control_by_kind() {
        assert_eq!(cache_control("index.html"), "no-cache");
        assert_eq!(cache_control("config.json"), "no-cache");
        assert_eq!(
            cache_control("assets/app.3f2a1b9c.js"),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(
            cache_control("assets/index-BdK3x9Q1.css"),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(cache_control("app.js"), "public, max-age=300");
        assert_eq!(
            cache_control("jquery-3.7.1.min.js"),
            "public, max-age=300",
            "a version is not a hash"
        );
        assert_eq!(cache_control("favicon.ico"), "public, max-age=300");
    }

    #[test]
    fn scan_hashes_every_file_in_key_order_following_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let sizes = [0usize, 1, 4095, 4096, 4097, 300 * 1024];
        for (i, size) in sizes.iter().enumerate() {
            let sub = root.join(format!("d{}", i % 3));
            std::fs::create_dir_all(&sub).unwrap();
            let body: Vec<u8> = (0..*size).map(|b| (b % 251) as u8).collect();
            std::fs::write(sub.join(format!("f{i}.bin")), body).unwrap();
        }
        std::fs::write(root.join(".DS_Store"), b"junk").unwrap();
        std::fs::create_dir_all(root.join("real")).unwrap();
        std::fs::write(root.join("real/x.css"), b"a{}").unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("linked")).unwrap();
        let files = scan(root, &none()).unwrap();
        let keys: Vec<&str> = files.iter().map(|f| f.key.as_str()).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "in key order");
        assert!(keys.contains(&"linked/x.css") && keys.contains(&"real/x.css"));
        assert!(!keys.contains(&".DS_Store"));
        assert_eq!(files.len(), sizes.len() + 2);
        for f in &files {
            let Source::Path(p) = &f.source else {
                panic!("a file")
            };
            let body = std::fs::read(p).unwrap();
            assert_eq!(f.size, body.len() as u64, "{}", f.key);
            assert_eq!(f.md5, <[u8; 16]>::from(Md5::digest(&body)), "{}", f.key);
        }
    }

    #[test]
    fn etags_match_s3s_rules() {
        let (md5, etag) = digest(&b""[..], 0).unwrap();
        assert_eq!(etag, "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(hex(&md5), etag);
        assert_eq!(
            content_hash(&[RemoteObject {
                key: "a".into(),
                size: 1,
                etag: "e".into(),
                md5_meta: None
            }])
            .len(),
            32
        );
    }
}
