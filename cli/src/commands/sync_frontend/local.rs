//! The frontend's files: found (names only, so listing the bucket can start at once), hashed on
//! every core as S3 would (MD5, and the multipart ETag of our part size), and read back by range.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use crate::aws::s3::hex;

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

/// What is never published: our always-excluded names, `--exclude` globs, and dotfiles (`.env`,
/// `.npmrc`, …) unless `--include-dotfiles`; `.well-known/` is published, as the web needs it.
/// Excluded keys are not deleted from the bucket either.
#[derive(Debug, Clone)]
pub struct Filter {
    globs: globset::GlobSet,
    dotfiles: bool,
}

impl Filter {
    pub fn is_excluded(&self, key: &str) -> bool {
        self.globs.is_match(key) || (!self.dotfiles && is_dotfile(key))
    }
}

/// A key with a part that starts with `.` (other than `.well-known`).
pub fn is_dotfile(key: &str) -> bool {
    key.split('/')
        .any(|part| part.starts_with('.') && part != ".well-known")
}

/// The filter of `--exclude` patterns and `--include-dotfiles`.
pub fn globs(patterns: &[String], include_dotfiles: bool) -> anyhow::Result<Filter> {
    let mut b = globset::GlobSetBuilder::new();
    for p in ALWAYS_EXCLUDED
        .iter()
        .map(|s| s.to_string())
        .chain(patterns.iter().cloned())
    {
        b.add(globset::Glob::new(&p).map_err(|e| anyhow::anyhow!("--exclude {p:?}: {e}"))?);
    }
    Ok(Filter {
        globs: b.build()?,
        dotfiles: include_dotfiles,
    })
}

/// A file of DIR, found but not yet read.
#[derive(Debug, Clone)]
pub struct Found {
    pub key: String,
    pub path: PathBuf,
}

/// Why a name in DIR is not published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SkipReason {
    /// A dotfile (`.env`, …): pass --include-dotfiles to publish them.
    Dotfile,
    /// A symbolic link to something outside DIR: never followed.
    LinkOutside,
    /// A link back to a folder already walked.
    LinkLoop,
    /// A link whose target does not exist.
    BrokenLink,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Skipped {
    pub key: String,
    pub reason: SkipReason,
}

/// What walking DIR found: the files to publish, and the names it left out and why.
#[derive(Debug, Default)]
pub struct Walked {
    pub files: Vec<Found>,
    pub skipped: Vec<Skipped>,
}

/// The files of DIR as keys (`/`-separated), without excluded ones, sorted by key. Names only (what
/// the directory listing gives; a `stat` only for symbolic links): cheap, so the bucket listing can
/// start while the files are hashed. Links are followed only to what lies inside DIR, never back
/// up into a folder they are in; dotfiles are left out unless the filter includes them.
pub fn walk(dir: &Path, excluded: &Filter) -> anyhow::Result<Walked> {
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
    let root = std::fs::canonicalize(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    let mut out = Walked::default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let here =
            std::fs::canonicalize(&d).map_err(|e| anyhow::anyhow!("{}: {e}", d.display()))?;
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
            if excluded.globs.is_match(&key) {
                continue;
            }
            if !excluded.dotfiles && is_dotfile(&key) {
                out.skipped.push(Skipped {
                    key,
                    reason: SkipReason::Dotfile,
                });
                continue;
            }
            let ft = entry.file_type()?;
            let is_dir = if ft.is_symlink() {
                let Ok(target) = std::fs::canonicalize(&path) else {
                    out.skipped.push(Skipped {
                        key,
                        reason: SkipReason::BrokenLink,
                    });
                    continue;
                };
                if !target.starts_with(&root) {
                    out.skipped.push(Skipped {
                        key,
                        reason: SkipReason::LinkOutside,
                    });
                    continue;
                }
                let is_dir = target.is_dir();
                // A link to a folder this one lies in would be walked for ever.
                if is_dir && here.starts_with(&target) {
                    out.skipped.push(Skipped {
                        key,
                        reason: SkipReason::LinkLoop,
                    });
                    continue;
                }
                is_dir
            } else {
                ft.is_dir()
            };
            if is_dir {
                stack.push(path);
            } else {
                out.files.push(Found { key, path });
            }
        }
    }
    out.files.sort_by(|a, b| a.key.cmp(&b.key));
    out.skipped.sort_by(|a, b| a.key.cmp(&b.key));
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
pub fn scan(dir: &Path, excluded: &Filter) -> anyhow::Result<Vec<LocalFile>> {
    hash_files(&walk(dir, excluded)?.files)
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

/// `len` bytes of a file from `offset`. A file that shrank since it was hashed fails here instead of
/// going up half-written.
pub async fn read_range(f: &LocalFile, offset: u64, len: u64) -> anyhow::Result<Vec<u8>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::s3::{RemoteObject, content_hash};

    fn none() -> Filter {
        globs(&[], false).unwrap()
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
    fn links_out_of_the_folder_and_dotfiles_are_not_published() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.txt"), b"s3cr3t").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("index.html"), b"<p>").unwrap();
        std::fs::write(root.join(".env"), b"API_KEY=1").unwrap();
        std::fs::create_dir_all(root.join("assets/.cache")).unwrap();
        std::fs::write(root.join("assets/.cache/x"), b"1").unwrap();
        std::fs::write(root.join("assets/app.js"), b"1").unwrap();
        std::fs::create_dir_all(root.join(".well-known")).unwrap();
        std::fs::write(root.join(".well-known/security.txt"), b"c").unwrap();
        let link = |target: &Path, name: &str| {
            std::os::unix::fs::symlink(target, root.join(name)).unwrap()
        };
        link(outside.path(), "out");
        link(&outside.path().join("secret.txt"), "secret.txt");
        link(root, "loop");
        link(&root.join("assets"), "static");
        link(&root.join("missing"), "dangling");
        let walked = walk(root, &none()).unwrap();
        let keys: Vec<&str> = walked.files.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                ".well-known/security.txt",
                "assets/app.js",
                "index.html",
                "static/app.js"
            ]
        );
        let skipped: Vec<(&str, SkipReason)> = walked
            .skipped
            .iter()
            .map(|s| (s.key.as_str(), s.reason))
            .collect();
        assert_eq!(
            skipped,
            [
                (".env", SkipReason::Dotfile),
                ("assets/.cache", SkipReason::Dotfile),
                ("dangling", SkipReason::BrokenLink),
                ("loop", SkipReason::LinkLoop),
                ("out", SkipReason::LinkOutside),
                ("secret.txt", SkipReason::LinkOutside),
                ("static/.cache", SkipReason::Dotfile),
            ]
        );
        let with_dotfiles = walk(root, &globs(&[], true).unwrap()).unwrap();
        assert!(with_dotfiles.files.iter().any(|f| f.key == ".env"));
        assert!(
            with_dotfiles
                .files
                .iter()
                .any(|f| f.key == "assets/.cache/x")
        );
        assert!(none().is_excluded(".env") && !none().is_excluded(".well-known/x"));
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
