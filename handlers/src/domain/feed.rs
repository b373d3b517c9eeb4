//! The public feed, spread over shards so it is not capped by one partition's throughput.
//!
//! A public note's feed copy lives under `PUBLIC#NOTES#{shard}` (shard: a stable hash of its id
//! modulo the shard count, recorded on the owner's copy so later updates find it whatever the count
//! is then). Notes stored before sharding sit under the legacy key `PUBLIC#NOTES`, which is read as
//! one more partition until `notesctl migrate public-feed` has emptied it.
//!
//! `migrate public-feed` marks the legacy partition emptied for good once nothing is left in it (and a
//! stage created with shards is marked from the start, by the deploy that creates its table); a
//! reader that has seen the mark stops querying it ([`FeedRequest::without_legacy`]).
//!
//! Reading a page asks every partition for one page after its own position and merges them newest
//! first. The cursor carries each partition's position (the oldest note taken from it, or "done"),
//! so a page neither repeats a note nor skips one that was stored before the first page was read —
//! and a note saved late, with a time older than a page already read, still turns up as long as its
//! partition has not been passed. Everything here is pure: the adapters fetch, this plans and merges.

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::cursor::{MAX_PAGE_SIZE, Page};
use super::error::AppError;
use super::note::{Note, NoteId};

/// Shards when the deploy does not say (the notes stack's `PublicFeedShards`).
pub const DEFAULT_SHARDS: u32 = 8;
/// The most shards a feed may have: each page reads every one.
pub const MAX_SHARDS: u32 = 64;
/// Where every public note lived before sharding.
pub const LEGACY_PK: &str = "PUBLIC#NOTES";
/// The key (`pk`, `sk`) of the item that says the legacy partition holds no note and never will
/// again: an item of its own, so that nothing reading a partition of the feed meets it.
pub const LEGACY_EMPTIED: (&str, &str) = ("FEED#LEGACY", "EMPTIED");

/// One partition of the feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Partition {
    Shard(u32),
    /// `PUBLIC#NOTES`: notes stored before sharding, until they are migrated.
    Legacy,
}

impl Partition {
    /// Its partition key: `PUBLIC#NOTES#{n}` or `PUBLIC#NOTES`.
    pub fn pk(self) -> String {
        match self {
            Partition::Shard(n) => format!("{LEGACY_PK}#{n}"),
            Partition::Legacy => LEGACY_PK.to_owned(),
        }
    }

    /// The partition a recorded shard names: none recorded means the note predates sharding.
    pub fn recorded(shard: Option<u32>) -> Self {
        shard.map_or(Partition::Legacy, Partition::Shard)
    }
}

/// FNV-1a (32 bits): a stable hash of a key, the same on every machine and version, for keys
/// whose storage partition follows from it.
pub fn fnv1a(key: &str) -> u32 {
    key.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The shard of a note: FNV-1a of its id, mixed (MurmurHash3's finaliser: FNV's low bits alone
/// follow the ids' last characters, which would use half of eight shards), modulo the count.
/// Stable across versions and machines: stored notes are found by it.
pub fn shard_of(note_id: &NoteId, shards: ShardCount) -> u32 {
    let mut h = fnv1a(note_id.as_str());
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h % shards.get()
}

/// A shard count from 1 to [`MAX_SHARDS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardCount(u32);

impl ShardCount {
    pub fn new(n: u32) -> Result<Self, String> {
        if (1..=MAX_SHARDS).contains(&n) {
            Ok(Self(n))
        } else {
            Err(format!(
                "{n} shards: the public feed takes 1 to {MAX_SHARDS}"
            ))
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        let n = s
            .trim()
            .parse::<u32>()
            .map_err(|_| format!("{s:?} is not a whole number of shards (1 to {MAX_SHARDS})"))?;
        Self::new(n)
    }

    pub fn get(self) -> u32 {
        self.0
    }

    /// Every partition a reader must look at: the shards, then the legacy key.
    pub fn partitions(self) -> impl Iterator<Item = Partition> {
        (0..self.0)
            .map(Partition::Shard)
            .chain(std::iter::once(Partition::Legacy))
    }

    /// Partitions a migration empties: the legacy key and shards at or past the count (left by a
    /// deploy with more shards).
    pub fn migration_sources(self) -> impl Iterator<Item = Partition> {
        std::iter::once(Partition::Legacy).chain((self.0..MAX_SHARDS).map(Partition::Shard))
    }
}

impl Default for ShardCount {
    fn default() -> Self {
        Self(DEFAULT_SHARDS)
    }
}

/// Where the next page of one partition starts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Position {
    /// Notes older than this one (exclusive).
    Before(NoteId),
    /// Nothing left to read.
    Done,
}

/// The feed's cursor: a position per shard, then the legacy partition's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedCursor {
    positions: Vec<Position>,
}

const CURSOR_TAG: &str = "f1";
const MAX_CURSOR_CHARS: usize = 4096;

impl FeedCursor {
    /// Text for [`Page::next`] (which the route base64-encodes): `f1,{n},{pos}…`, a position being
    /// a note id, or empty when done.
    fn to_text(&self) -> String {
        let mut out = format!("{CURSOR_TAG},{}", self.positions.len() - 1);
        for p in &self.positions {
            out.push(',');
            if let Position::Before(id) = p {
                out.push_str(id.as_str());
            }
        }
        out
    }

    /// From the `cursor` query parameter. A cursor of the unsharded feed (one sort key) is taken as
    /// that position in every partition, so a client paging across the upgrade goes on.
    pub fn decode(cursor: &str) -> Result<Self, AppError> {
        let invalid = || {
            AppError::bad_request(
                "Invalid cursor: pass back the cursor value of a previous page unchanged",
            )
        };
        if cursor.len() > MAX_CURSOR_CHARS {
            return Err(invalid());
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(cursor.trim_end_matches('='))
            .map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        if let Some(rest) = text.strip_prefix("NOTE#") {
            let id = rest
                .rsplit_once('#')
                .and_then(|(_, id)| NoteId::parse(id).ok())
                .ok_or_else(invalid)?;
            return Ok(Self {
                positions: vec![Position::Before(id); 2],
            });
        }
        let mut parts = text.split(',');
        if parts.next() != Some(CURSOR_TAG) {
            return Err(invalid());
        }
        let shards: u32 = parts
            .next()
            .and_then(|n| n.parse().ok())
            .filter(|n| (1..=MAX_SHARDS).contains(n))
            .ok_or_else(invalid)?;
        let positions = parts
            .map(|p| {
                if p.is_empty() {
                    Ok(Position::Done)
                } else {
                    NoteId::parse(p)
                        .map(Position::Before)
                        .map_err(|_| invalid())
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        if positions.len() != shards as usize + 1 {
            return Err(invalid());
        }
        Ok(Self { positions })
    }

    /// The positions for `shards` partitions (and the legacy one). A cursor made under another
    /// shard count keeps the positions of shards both know; a shard it did not know starts at the
    /// oldest position it has (so nothing is repeated; a note moved between shards by a migration
    /// in between may be missed).
    fn positions_for(&self, shards: ShardCount) -> Vec<Position> {
        let (legacy, known) = self
            .positions
            .split_last()
            .expect("a cursor has a legacy position");
        let n = shards.get() as usize;
        if known.len() == n {
            return self.positions.clone();
        }
        let oldest = known
            .iter()
            .filter_map(|p| match p {
                Position::Before(id) => Some(id),
                Position::Done => None,
            })
            .min_by_key(|id| id.sort_key())
            .map_or(Position::Done, |id| Position::Before(id.clone()));
        (0..n)
            .map(|i| known.get(i).cloned().unwrap_or_else(|| oldest.clone()))
            .chain(std::iter::once(legacy.clone()))
            .collect()
    }
}

/// A page of the feed: its size and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedRequest {
    pub after: Option<FeedCursor>,
    pub limit: usize,
    /// Whether the legacy partition may still hold notes (false once it is marked emptied).
    legacy: bool,
}

/// One partition read that a page needs: notes older than `before` (a sort key; `None`: the
/// newest), newest first, at most `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    pub partition: Partition,
    pub before: Option<String>,
    pub limit: usize,
}

/// What a partition returned: notes newest first, and whether it may hold more past the last one
/// (it returned `limit` notes, or stopped early as DynamoDB does at 1 MB).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fetched {
    pub notes: Vec<Note>,
    pub more: bool,
}

impl FeedRequest {
    pub fn new(after: Option<FeedCursor>, limit: usize) -> Self {
        Self {
            after,
            limit: limit.clamp(1, MAX_PAGE_SIZE),
            legacy: true,
        }
    }

    /// The same page, without the legacy partition: it is marked emptied for good, so it is not
    /// read (and the cursor records it done).
    pub fn without_legacy(mut self) -> Self {
        self.legacy = false;
        self
    }

    fn positions(&self, shards: ShardCount) -> Vec<Option<Position>> {
        let mut positions: Vec<Option<Position>> = match &self.after {
            None => vec![None; shards.get() as usize + 1],
            Some(c) => c.positions_for(shards).into_iter().map(Some).collect(),
        };
        if !self.legacy
            && let Some(last) = positions.last_mut()
        {
            *last = Some(Position::Done);
        }
        positions
    }

    /// The reads this page needs, one per partition not yet done. Each asks for one note more than
    /// the page, so a partition that has more says so.
    pub fn fetches(&self, shards: ShardCount) -> Vec<Fetch> {
        shards
            .partitions()
            .zip(self.positions(shards))
            .filter_map(|(partition, position)| {
                let before = match position {
                    None => None,
                    Some(Position::Before(id)) => Some(id.sort_key()),
                    Some(Position::Done) => return None,
                };
                Some(Fetch {
                    partition,
                    before,
                    limit: self.limit + 1,
                })
            })
            .collect()
    }

    /// Merges what the [`fetches`](Self::fetches) returned (in their order) into the page and the
    /// cursor of the next one.
    pub fn merge(&self, shards: ShardCount, fetched: Vec<(Fetch, Fetched)>) -> Page<Note> {
        // A partition that may hold more is known only down to its last note: take nothing older
        // than the newest such horizon, or a note it has not returned yet could belong before it.
        let horizon = fetched
            .iter()
            .filter(|(_, f)| f.more)
            .filter_map(|(_, f)| f.notes.last().map(|n| n.note_id.sort_key()))
            .max();
        let mut candidates: Vec<(String, usize, &Note)> = fetched
            .iter()
            .enumerate()
            .flat_map(|(i, (_, f))| f.notes.iter().map(move |n| (n.note_id.sort_key(), i, n)))
            .filter(|(sk, _, _)| horizon.as_ref().is_none_or(|h| sk >= h))
            .collect();
        candidates.sort_by(|a, b| b.0.cmp(&a.0));
        // A note read in two partitions (moved by a migration between the reads) is shown once,
        // and counts as taken from both, so neither serves it again.
        let mut seen = HashSet::new();
        let mut page: Vec<&Note> = Vec::new();
        let mut oldest_taken: Vec<Option<&NoteId>> = vec![None; fetched.len()];
        let mut taken = vec![0usize; fetched.len()];
        for (_, i, n) in &candidates {
            let again = seen.contains(&n.note_id);
            if !again && page.len() == self.limit {
                break;
            }
            oldest_taken[*i] = Some(&n.note_id);
            taken[*i] += 1;
            if !again {
                seen.insert(n.note_id.clone());
                page.push(n);
            }
        }
        let newest = page.first().map(|n| n.note_id.clone());
        let by_partition: std::collections::HashMap<Partition, usize> = fetched
            .iter()
            .enumerate()
            .map(|(i, (f, _))| (f.partition, i))
            .collect();
        let previous = self.positions(shards);
        let next: Vec<Position> = shards
            .partitions()
            .zip(previous)
            .map(|(partition, prev)| {
                let Some(&i) = by_partition.get(&partition) else {
                    return Position::Done;
                };
                let got = &fetched[i].1;
                if let Some(id) = oldest_taken[i] {
                    if !got.more && taken[i] == got.notes.len() {
                        return Position::Done;
                    }
                    return Position::Before(id.clone());
                }
                if got.notes.is_empty() && !got.more {
                    return Position::Done;
                }
                // Nothing taken: it holds nothing between the page and where it stood, so it
                // stays there (a note saved late into that gap still turns up), or, on the first
                // page, starts below the page's newest note.
                match (prev, &newest) {
                    (Some(Position::Before(id)), _) => Position::Before(id),
                    (_, Some(newest)) => Position::Before(newest.clone()),
                    (_, None) => Position::Done,
                }
            })
            .collect();
        let items: Vec<Note> = page.into_iter().cloned().collect();
        let next = next
            .iter()
            .any(|p| *p != Position::Done)
            .then(|| FeedCursor { positions: next }.to_text());
        Page { items, next }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    fn note(millis: i64, suffix: &str) -> Note {
        let id = NoteId::parse(&format!("{millis}-{suffix}")).unwrap();
        Note {
            created_at: id.created_at(),
            note_id: id,
            username: "ada".into(),
            content: "c".into(),
            is_public: true,
            status: "saved".into(),
            saved_at: String::new(),
            updated_at: None,
        }
    }

    /// Partitions as sorted maps; `cap` makes a partition stop early, as DynamoDB does at 1 MB.
    #[derive(Default)]
    struct Feed {
        partitions: BTreeMap<Partition, BTreeMap<String, Note>>,
    }

    impl Feed {
        fn insert(&mut self, p: Partition, n: Note) {
            self.partitions
                .entry(p)
                .or_default()
                .insert(n.note_id.sort_key(), n);
        }

        fn page(&self, shards: ShardCount, req: &FeedRequest, cap: usize) -> Page<Note> {
            let fetched = req
                .fetches(shards)
                .into_iter()
                .map(|f| {
                    let empty = BTreeMap::new();
                    let part = self.partitions.get(&f.partition).unwrap_or(&empty);
                    let all: Vec<&Note> = part
                        .iter()
                        .rev()
                        .filter(|(sk, _)| f.before.as_ref().is_none_or(|b| *sk < b))
                        .map(|(_, n)| n)
                        .collect();
                    let n = f.limit.min(cap.max(1));
                    let notes: Vec<Note> = all.iter().take(n).map(|n| (*n).clone()).collect();
                    let more = all.len() > notes.len();
                    (f, Fetched { notes, more })
                })
                .collect();
            req.merge(shards, fetched)
        }
    }

    fn decode_next(next: &str) -> FeedCursor {
        FeedCursor::decode(&URL_SAFE_NO_PAD.encode(next)).unwrap()
    }

    #[test]
    fn the_shard_of_a_note_is_stable_and_spread() {
        let shards = ShardCount::default();
        let id = NoteId::parse("1700000000000-abc1234").unwrap();
        assert_eq!(shard_of(&id, shards), shard_of(&id.clone(), shards));
        let used: BTreeSet<u32> = (0..200)
            .map(|i| {
                shard_of(
                    &NoteId::parse(&format!("17000000{i:05}-x{i}")).unwrap(),
                    shards,
                )
            })
            .collect();
        assert_eq!(used.len(), 8, "200 notes reach every shard");
        assert_eq!(Partition::Shard(3).pk(), "PUBLIC#NOTES#3");
        assert_eq!(Partition::recorded(None).pk(), "PUBLIC#NOTES");
        assert!(ShardCount::new(0).is_err() && ShardCount::new(65).is_err());
        assert!(ShardCount::parse("eight").unwrap_err().contains("1 to 64"));
    }

    #[test]
    fn cursors_round_trip_and_junk_is_refused() {
        let shards = ShardCount::new(2).unwrap();
        let mut feed = Feed::default();
        for i in 0..5 {
            feed.insert(
                Partition::Shard(i % 2),
                note(1_700_000_000_000 + i64::from(i), "a"),
            );
        }
        let first = feed.page(shards, &FeedRequest::new(None, 2), usize::MAX);
        let text = first.next.unwrap();
        let cursor = decode_next(&text);
        assert_eq!(cursor.to_text(), text);
        for junk in ["", "%%%", "Zm9v", &URL_SAFE_NO_PAD.encode("f1,2,x,y,z")] {
            assert!(FeedCursor::decode(junk).is_err(), "{junk:?}");
        }
        assert!(FeedCursor::decode(&"A".repeat(5000)).is_err());
        // A cursor of the unsharded feed still pages on.
        let old = URL_SAFE_NO_PAD.encode(note(1_700_000_000_003, "a").note_id.sort_key());
        let req = FeedRequest::new(Some(FeedCursor::decode(&old).unwrap()), 10);
        let page = feed.page(shards, &req, usize::MAX);
        let ids: Vec<_> = page
            .items
            .iter()
            .map(|n| n.note_id.as_str().to_owned())
            .collect();
        assert_eq!(
            ids,
            ["1700000000002-a", "1700000000001-a", "1700000000000-a"]
        );
    }

    #[test]
    fn a_cursor_from_another_shard_count_repeats_nothing() {
        let mut feed = Feed::default();
        let notes: Vec<Note> = (0..12).map(|i| note(1_700_000_000_000 + i, "a")).collect();
        let two = ShardCount::new(2).unwrap();
        for n in &notes {
            feed.insert(Partition::Shard(shard_of(&n.note_id, two)), n.clone());
        }
        let first = feed.page(two, &FeedRequest::new(None, 4), usize::MAX);
        let four = ShardCount::new(4).unwrap();
        let req = FeedRequest::new(Some(decode_next(first.next.as_ref().unwrap())), 100);
        let rest = feed.page(four, &req, usize::MAX);
        let mut all: Vec<_> = first.items.iter().chain(&rest.items).collect();
        let total = all.len();
        all.dedup_by_key(|n| n.note_id.clone());
        assert_eq!(all.len(), total);
        assert_eq!(total, 12);
    }

    #[test]
    fn a_note_read_in_two_partitions_comes_once() {
        // A migration moved it between the reads of the legacy partition and of its shard.
        let shards = ShardCount::new(1).unwrap();
        let mut feed = Feed::default();
        let notes: Vec<Note> = (0..4).map(|i| note(1_700_000_000_000 + i, "a")).collect();
        for n in &notes {
            feed.insert(Partition::Shard(0), n.clone());
        }
        feed.insert(Partition::Legacy, notes[2].clone());
        feed.insert(Partition::Legacy, notes[0].clone());
        let mut ids = Vec::new();
        let mut req = FeedRequest::new(None, 2);
        loop {
            let page = feed.page(shards, &req, usize::MAX);
            ids.extend(page.items.iter().map(|n| n.note_id.as_str().to_owned()));
            match page.next {
                Some(next) => req = FeedRequest::new(Some(decode_next(&next)), 2),
                None => break,
            }
        }
        assert_eq!(
            ids,
            [
                "1700000000003-a",
                "1700000000002-a",
                "1700000000001-a",
                "1700000000000-a"
            ]
        );
    }

    #[derive(Debug, Clone)]
    enum Step {
        /// A note stored in shard (or legacy when None), at this offset from "now".
        Insert {
            offset: i64,
            legacy: bool,
            suffix: u16,
        },
        Page,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            2 => (-2_000i64..2_000, prop::bool::weighted(0.2), any::<u16>())
                .prop_map(|(offset, legacy, suffix)| Step::Insert { offset, legacy, suffix }),
            1 => Just(Step::Page),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Pages with notes stored between them: no note twice, every note stored before the first
        /// page read exactly once, each page newest first, and paging ends.
        #[test]
        fn merged_pages_neither_skip_nor_repeat(
            shards in 1u32..10,
            limit in 1usize..7,
            cap in 1usize..9,
            before in prop::collection::vec((0i64..2_000, prop::bool::weighted(0.2), any::<u16>()), 0..40),
            steps in prop::collection::vec(step(), 0..60),
        ) {
            let shards = ShardCount::new(shards).unwrap();
            let mut feed = Feed::default();
            let place = |n: &Note, legacy: bool| if legacy {
                Partition::Legacy
            } else {
                Partition::Shard(shard_of(&n.note_id, shards))
            };
            let mut initial = BTreeSet::new();
            for (t, legacy, s) in before {
                let n = note(1_700_000_000_000 + t, &format!("b{s}"));
                initial.insert(n.note_id.as_str().to_owned());
                feed.insert(place(&n, legacy), n);
            }
            let mut returned: Vec<String> = Vec::new();
            let mut req = FeedRequest::new(None, limit);
            let mut steps = steps.into_iter();
            let mut pages = 0;
            loop {
                // Writes between pages, if the script has any left before its next page.
                for s in steps.by_ref() {
                    match s {
                        Step::Insert { offset, legacy, suffix } => {
                            let n = note(1_700_000_001_000 + offset, &format!("w{suffix}"));
                            feed.insert(place(&n, legacy), n);
                        }
                        Step::Page => break,
                    }
                }
                let page = feed.page(shards, &req, cap);
                pages += 1;
                prop_assert!(pages < 1_000, "paging never ended");
                let sks: Vec<String> = page.items.iter().map(|n| n.note_id.sort_key()).collect();
                prop_assert!(sks.windows(2).all(|w| w[0] > w[1]), "a page is newest first: {sks:?}");
                returned.extend(page.items.iter().map(|n| n.note_id.as_str().to_owned()));
                match page.next {
                    Some(next) => req = FeedRequest::new(Some(decode_next(&next)), limit),
                    None => break,
                }
            }
            let unique: BTreeSet<_> = returned.iter().cloned().collect();
            prop_assert_eq!(unique.len(), returned.len(), "a note came twice");
            let missed: Vec<_> = initial.difference(&unique).collect();
            prop_assert!(missed.is_empty(), "notes stored before paging were skipped: {missed:?}");
        }
    }
}
