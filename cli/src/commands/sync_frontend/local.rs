//! The frontend's files: found (names only, so listing the bucket can start at once), hashed on
//! every core as S3 would (MD5, and the multipart ETag of our part size), and read back by range.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use md5::{Digest, Md5};

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

/// The excluded names: ours, and `--exclude`.
pub fn globs(patterns: &[String]) -> anyhow::Result<globset::GlobSet> {
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

    fn none() -> globset::GlobSet {
        globs(&[]).unwrap()
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
