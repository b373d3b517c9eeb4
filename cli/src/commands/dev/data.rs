//! The data directory of `notesctl dev`: users, notes and connections (`store.redb`), the queue and
//! its DLQ (`queue.redb`), the JWT secret and the runbook token. Only its owner may enter it (0700)
//! or read its files (0600). Opening it tells apart the three ways it goes wrong: another `dev` holds
//! it, a file is not ours to read, a file is damaged.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use notes_handlers::domain::error::Chain;
use notes_handlers::embedded::EmbeddedStore;
use notes_handlers::embedded::files::{private_dir, private_file};
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
        private_dir(dir)
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
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
