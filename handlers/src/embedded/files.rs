//! Private files on disk: the data directory only its owner can enter, databases and secrets only its
//! owner can read, and secrets that appear whole or not at all.

use std::io::Write;
use std::path::Path;

/// Creates `dir` (and its parents) and makes it readable by its owner only (0700).
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Makes sure `path` exists and is readable by its owner only (0600), before a database opens it:
/// a new file is created with that mode, an existing one (an older data directory) is narrowed.
pub fn private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    drop(options.open(path)?);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// How [`write_private`] treats a file that already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Replace it (a token made fresh for each run).
    Replace,
    /// Keep it and fail with `AlreadyExists` (a secret another process created first).
    Keep,
}

/// Writes `bytes` to `path` atomically, mode 0600: into a temporary file beside it, flushed to disk,
/// then moved into place (`rename`, or a hard link that fails if the file appeared meanwhile), and the
/// directory flushed. A crash leaves either no file or the whole file, never a partial one.
pub fn write_private(path: &Path, bytes: &[u8], existing: Existing) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let result = (|| {
        let mut f = options.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        match existing {
            Existing::Replace => std::fs::rename(&tmp, path),
            Existing::Keep => std::fs::hard_link(&tmp, path),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    result?;
    // The new directory entry survives a power cut only once the directory itself is flushed.
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn directories_and_files_are_the_owners_only() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let db = dir.join("store.redb");
        std::fs::write(&db, b"x").unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        private_file(&db).unwrap();
        assert_eq!(mode(&db), 0o600, "an existing file is narrowed");
        assert_eq!(std::fs::read(&db).unwrap(), b"x", "and kept as it was");
        let fresh = dir.join("queue.redb");
        private_file(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o600);
    }

    #[test]
    fn secrets_appear_whole_and_leave_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_private(&path, b"first", Existing::Keep).unwrap();
        assert_eq!(mode(&path), 0o600);
        let again = write_private(&path, b"second", Existing::Keep).unwrap_err();
        assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        write_private(&path, b"third", Existing::Replace).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"third");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["secret"], "no temporary file left behind");
    }
}
