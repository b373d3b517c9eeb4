//! The data directory of `notesctl dev`: users, notes and connections (`store.redb`), the queue and
//! its DLQ (`queue.redb`), the JWT secret and the runbook token. A directory `dev` creates is its
//! owner's only (0700); one that already exists keeps its mode, and is refused if other users may
//! write to it. Its files are readable by their owner only (0600). Opening it tells apart the ways it
//! goes wrong: others may write to it, another `dev` holds it, a file is not ours to read, a file is
//! damaged.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use notes_handlers::domain::error::Chain;
use notes_handlers::embedded::EmbeddedStore;
use notes_handlers::embedded::files::private_file;
use notes_handlers::ports::NoteStore as _;

use super::queue::LocalQueue;

pub struct DataDir {
    pub store: EmbeddedStore,
    pub queue: LocalQueue,
}

/// Another `notesctl dev` holds the data directory.
#[derive(Debug)]
pub struct InUse(pub PathBuf);

impl std::fmt::Display for InUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the data directory {} is in use by another `notesctl dev`: stop it, or pass another --data-dir",
            self.0.display()
        )
    }
}

impl std::error::Error for InUse {}

/// Makes sure the data directory exists and that only its owner may change what is in it. A missing
/// directory is created (its missing parents as `mkdir -p` would) and made 0700. An existing one is
/// never changed (it may be shared, `1777`); if its group or other users may write to it, it is
/// refused: they could replace the JWT secret (and sign in as anyone) or the store.
fn own_dir(dir: &Path) -> anyhow::Result<()> {
    let created = match std::fs::metadata(dir) {
        Ok(_) => false,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).with_context(|| {
                    format!("cannot create the data directory {}", dir.display())
                })?;
            }
            let mut builder = std::fs::DirBuilder::new();
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            match builder.create(dir) {
                Ok(()) => true,
                // Made meanwhile by someone else: checked as any existing directory.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!(
                        "cannot create the data directory {}",
                        dir.display()
                    )));
                }
            }
        }
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context(format!("cannot read the data directory {}", dir.display())));
        }
    };
    let meta = std::fs::metadata(dir)
        .with_context(|| format!("cannot read the data directory {}", dir.display()))?;
    anyhow::ensure!(
        meta.is_dir(),
        "the data directory {} is not a directory: pass another --data-dir",
        dir.display()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if created {
            // Ours: 0700 whatever the umask took away.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).with_context(
                || format!("cannot make {} accessible by its owner only", dir.display()),
            )?;
        } else {
            let mode = meta.permissions().mode() & 0o7777;
            anyhow::ensure!(
                mode & 0o022 == 0,
                "the data directory {} may be written by other users (mode {mode:o}): anyone on this machine could replace its JWT secret or its store. Run chmod 700 {}, or pass another --data-dir",
                dir.display(),
                dir.display()
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (created, meta);
    Ok(())
}

/// Why a database would not open, in the words a person acts on.
fn explain(
    dir: &Path,
    file: &Path,
    what: &str,
    err: &(dyn std::error::Error + 'static),
) -> anyhow::Error {
    let busy = |dir: &Path| anyhow::Error::new(InUse(dir.to_path_buf()));
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        if let Some(redb::DatabaseError::DatabaseAlreadyOpen) = e.downcast_ref() {
            return busy(dir);
        }
        if let Some(redb::Error::DatabaseAlreadyOpen) = e.downcast_ref() {
            return busy(dir);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::PermissionDenied => {
                    return anyhow::anyhow!(
                        "cannot open the {what} {}: permission denied. It belongs to another user; run as its owner or pass another --data-dir",
                        file.display()
                    );
                }
                std::io::ErrorKind::WouldBlock => return busy(dir),
                _ => {}
            }
        }
        cause = e.source();
    }
    let aside = aside_name(file);
    anyhow::anyhow!(
        "the {what} {} is damaged or is not a notesctl database ({}). Move it aside and start again with an empty one: mv {} {}",
        file.display(),
        Chain(err),
        file.display(),
        aside.display()
    )
}

/// `store.redb` → `store.redb.damaged-<unix seconds>`.
fn aside_name(file: &Path) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".damaged-{secs}"));
    file.with_file_name(name)
}

/// Moves public notes an older `dev` stored without shards (or in shards past `--public-feed-shards`)
/// into their shard, before the app serves anything. Each step is one transaction, so a stop
/// half-way loses nothing and the next start goes on.
pub async fn migrate_public_feed(store: &EmbeddedStore) -> anyhow::Result<()> {
    let mut moved = 0;
    loop {
        let step = store.migrate_public_feed(500).await.map_err(|e| {
            anyhow::anyhow!("moving the public feed into its shards: {}", e.chain())
        })?;
        moved += step.moved;
        if !step.remaining {
            break;
        }
        anyhow::ensure!(
            step.moved > 0,
            "moving the public feed into its shards made no progress; start with --public-feed-shards as before"
        );
    }
    if moved > 0 {
        tracing::info!(moved, "public notes moved into the feed's shards");
    }
    Ok(())
}

impl DataDir {
    pub fn open(dir: &Path, visibility: Duration, max_receives: u32) -> anyhow::Result<DataDir> {
        own_dir(dir)?;
        let store_file = dir.join("store.redb");
        let queue_file = dir.join("queue.redb");
        for file in [&store_file, &queue_file] {
            private_file(file).with_context(|| {
                format!("cannot make {} readable by its owner only", file.display())
            })?;
        }
        let store =
            EmbeddedStore::open(&store_file).map_err(|e| explain(dir, &store_file, "store", &e))?;
        let queue = LocalQueue::open(&queue_file, visibility, max_receives)
            .map_err(|e| explain(dir, &queue_file, "queue", &e))?;
        Ok(DataDir { store, queue })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIS: Duration = Duration::from_secs(30);

    #[test]
    fn the_directory_and_its_databases_are_the_owners_only() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("dev");
        let _data = DataDir::open(&dir, VIS, 3).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("store.redb")), 0o600);
        assert_eq!(mode(&dir.join("queue.redb")), 0o600);
    }

    /// A shared directory (`1777`) is not narrowed to 0700 and its sticky bit kept: it is refused,
    /// with why and what to do, and left as it was. The owner's own directory is opened as it is.
    #[test]
    fn an_existing_directory_keeps_its_mode_and_is_refused_if_others_may_write() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let set = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        for shared in [0o1777, 0o777, 0o770, 0o720, 0o702] {
            let dir = root.path().join(format!("shared-{shared:o}"));
            std::fs::create_dir(&dir).unwrap();
            set(&dir, shared);
            let err = DataDir::open(&dir, VIS, 3).err().expect("refused");
            let text = format!("{err:#}");
            assert!(
                text.contains(&format!("(mode {shared:o})"))
                    && text.contains("replace its JWT secret")
                    && text.contains(&format!("chmod 700 {}", dir.display()))
                    && text.contains("another --data-dir"),
                "{text}"
            );
            assert_eq!(mode(&dir), shared, "its mode is left as it was");
            assert_eq!(
                std::fs::read_dir(&dir).unwrap().count(),
                0,
                "nothing written"
            );
        }
        for own in [0o700, 0o755, 0o750] {
            let dir = root.path().join(format!("own-{own:o}"));
            std::fs::create_dir(&dir).unwrap();
            set(&dir, own);
            drop(DataDir::open(&dir, VIS, 3).unwrap());
            assert_eq!(mode(&dir), own, "opened and left as it was");
        }
        let new = root.path().join("a/b/dev");
        drop(DataDir::open(&new, VIS, 3).unwrap());
        assert_eq!(mode(&new), 0o700, "a directory dev creates is its owner's");
        let file = root.path().join("a-file");
        std::fs::write(&file, "x").unwrap();
        let err = DataDir::open(&file, VIS, 3).err().expect("not a directory");
        assert!(format!("{err:#}").contains("is not a directory"), "{err:#}");
    }

    #[test]
    fn a_damaged_store_is_called_damaged_with_the_way_out() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path();
        drop(DataDir::open(dir, VIS, 3).unwrap());
        let store = dir.join("store.redb");
        let len = std::fs::metadata(&store).unwrap().len();
        let mut bytes = std::fs::read(&store).unwrap();
        bytes.truncate((len / 3) as usize);
        bytes[..64].fill(0xAB);
        std::fs::write(&store, &bytes).unwrap();
        let err = DataDir::open(dir, VIS, 3)
            .err()
            .expect("a damaged store is refused");
        let text = format!("{err:#}");
        assert!(
            text.contains("is damaged or is not a notesctl database"),
            "{text}"
        );
        assert!(text.contains(&format!("mv {}", store.display())), "{text}");
        assert!(!text.contains("another `notesctl dev`"), "{text}");
    }

    #[test]
    fn a_directory_in_use_is_called_in_use() {
        let root = tempfile::tempdir().unwrap();
        let _held = DataDir::open(root.path(), VIS, 3).unwrap();
        let err = DataDir::open(root.path(), VIS, 3).err().expect("held");
        let text = format!("{err:#}");
        assert!(
            text.contains("is in use by another `notesctl dev`"),
            "{text}"
        );
        assert!(!text.contains("damaged"), "{text}");
    }

    /// A data directory an older `dev` filled (public notes without shards) is moved into the
    /// shards when `dev` starts, and the feed reads the same.
    #[tokio::test]
    async fn an_unsharded_store_is_moved_into_shards_at_start() {
        use notes_handlers::domain::feed::{FeedRequest, ShardCount};
        use notes_handlers::domain::note::{Note, NoteId};
        use notes_handlers::ports::NoteStore;
        let root = tempfile::tempdir().unwrap();
        let notes: Vec<Note> = (0..30)
            .map(|i| {
                let id = NoteId::parse(&format!("{}-old{i}", 1_700_000_000_000_i64 + i)).unwrap();
                Note {
                    created_at: id.created_at(),
                    note_id: id,
                    username: "ada".into(),
                    content: format!("note {i}"),
                    is_public: true,
                    status: "saved".into(),
                    saved_at: String::new(),
                    updated_at: None,
                }
            })
            .collect();
        {
            let data = DataDir::open(root.path(), VIS, 3).unwrap();
            for n in &notes {
                data.store.save_unsharded(n, true).await.unwrap();
            }
        }
        let data = DataDir::open(root.path(), VIS, 3).unwrap();
        let store = data.store.with_feed_shards(ShardCount::new(4).unwrap());
        migrate_public_feed(&store).await.unwrap();
        let at = store.public_partitions().await.unwrap();
        assert_eq!(at.len(), 30);
        assert!(
            at.iter().all(|(pk, _)| pk.starts_with("PUBLIC#NOTES#")),
            "{at:?}"
        );
        let page = store
            .list_public_notes(&FeedRequest::new(None, 100))
            .await
            .unwrap();
        assert_eq!(page.items.len(), 30);
        assert_eq!(page.items[0].note_id, notes[29].note_id, "newest first");
        // The next start has nothing to do.
        migrate_public_feed(&store).await.unwrap();
        assert_eq!(store.public_partitions().await.unwrap(), at);
    }
}
