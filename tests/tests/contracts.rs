//! One contract suite per port, run against the embedded implementation and against the AWS
//! adapter on moto, so the twins stay honest.

use std::collections::BTreeSet;

use notes_handlers::adapters::apigw_management::ApiGatewayNotifier;
use notes_handlers::adapters::dynamodb::DynamoStore;
use notes_handlers::adapters::eventbridge::EventBridgeBus;
use notes_handlers::adapters::secrets_manager::SecretsManagerSecret;
use notes_handlers::domain::cursor::{PageRequest, encode_cursor};
use notes_handlers::domain::events::NoteEvent;
use notes_handlers::domain::feed::{FeedCursor, FeedRequest, LEGACY_PK, ShardCount};
use notes_handlers::domain::note::{Note, NoteId};
use notes_handlers::domain::user::UserRecord;
use notes_handlers::embedded::{
    ChannelBus, EmbeddedStore, FileSecret, LocalNotifier, StaticSecret,
};
use notes_handlers::ports::*;
use notesctl_tests::moto::{self, Resources};

async fn moto_store() -> (DynamoStore, Resources, aws_config::SdkConfig) {
    let m = moto::shared().await;
    let sdk = m.sdk_config().await;
    let res = Resources::create(&sdk).await;
    (
        DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            &res.table,
            &res.connections_table,
        ),
        res,
        sdk,
    )
}

// ---- UserStore ----

async fn user_store_contract(store: &dyn UserStore) {
    let user = UserRecord {
        username: "ada".into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        created_at: "2024-03-12T14:22:10.000Z".into(),
    };
    assert_eq!(store.create_user(&user).await.unwrap(), Created::Created);
    let mut other = user.clone();
    other.password_hash = "different".into();
    assert_eq!(
        store.create_user(&other).await.unwrap(),
        Created::AlreadyExists
    );
    assert_eq!(
        store.get_user("ada").await.unwrap(),
        Some(user.clone()),
        "the first one stays"
    );
    assert_eq!(store.get_user("bob").await.unwrap(), None);

    // One account per normalised name (NFKC, case-folded), shown as first typed.
    let jose = UserRecord {
        username: "Jos\u{E9}".into(),
        ..user.clone()
    };
    assert_eq!(store.create_user(&jose).await.unwrap(), Created::Created);
    for spelling in ["jose\u{301}", "JOS\u{C9}", "\u{FF2A}os\u{E9}"] {
        let again = UserRecord {
            username: spelling.into(),
            ..user.clone()
        };
        assert_eq!(
            store.create_user(&again).await.unwrap(),
            Created::AlreadyExists,
            "{spelling:?}"
        );
        assert_eq!(
            store.get_user(spelling).await.unwrap().map(|u| u.username),
            Some("Jos\u{E9}".to_owned()),
            "{spelling:?} reaches the one account"
        );
    }
}

#[tokio::test]
async fn user_store_embedded() {
    user_store_contract(&EmbeddedStore::in_memory()).await;
}

#[tokio::test]
async fn user_store_dynamodb() {
    user_store_contract(&moto_store().await.0).await;
}

// ---- NoteStore ----

fn note(user: &str, millis: i64, public: bool) -> Note {
    let note_id = NoteId::parse(&format!("{millis}-abc{}", millis % 1000)).unwrap();
    Note {
        created_at: note_id.created_at(),
        note_id,
        username: user.into(),
        content: format!("note {millis}"),
        is_public: public,
        status: "saved".into(),
        saved_at: "2024-03-12T14:22:11.000Z".into(),
        updated_at: None,
    }
}

fn page(after: Option<String>, limit: usize) -> PageRequest {
    PageRequest { after, limit }
}

/// A feed page after `next` (a previous page's `next`), as the route decodes its `cursor`.
fn feed(next: Option<String>, limit: usize) -> FeedRequest {
    let after = next.map(|n| FeedCursor::decode(&encode_cursor(&n)).unwrap());
    FeedRequest::new(after, limit)
}

/// A tombstone that outlives the test.
const FOREVER: i64 = i64::MAX / 2;

async fn note_store_contract(store: &dyn NoteStore) {
    let private = note("ada", 1_710_000_000_001, false);
    let public = note("ada", 1_710_000_000_002, true);
    const NOW: i64 = 1_000_000;
    let lease = NOW + 30_000;
    assert_eq!(
        store.save_if_absent(&private, lease).await.unwrap(),
        Saved::Created
    );
    assert_eq!(
        store.save_if_absent(&public, lease).await.unwrap(),
        Saved::Created
    );
    assert_eq!(
        store.save_if_absent(&public, lease).await.unwrap(),
        Saved::AlreadyExists
    );
    // The announcement: leased by the delivery that stored it; free once the lease runs out; taken
    // by one claimant only; never again once notified.
    assert_eq!(
        store
            .claim_announcement("ada", &public.note_id, NOW, NOW + 60_000)
            .await
            .unwrap(),
        None,
        "leased"
    );
    let claimed = store
        .claim_announcement("ada", &public.note_id, lease + 1, lease + 30_000)
        .await
        .unwrap();
    assert_eq!(
        claimed.as_ref().map(|n| &n.note_id),
        Some(&public.note_id),
        "the lease ran out"
    );
    assert_eq!(
        store
            .claim_announcement("ada", &public.note_id, lease + 2, lease + 30_000)
            .await
            .unwrap(),
        None,
        "one claimant"
    );
    store.mark_notified("ada", &public.note_id).await.unwrap();
    assert_eq!(
        store
            .claim_announcement("ada", &public.note_id, i64::MAX - 1, i64::MAX)
            .await
            .unwrap(),
        None,
        "announced"
    );
    store
        .mark_notified("ada", &NoteId::parse("1-gone").unwrap())
        .await
        .unwrap();
    assert_eq!(
        store
            .claim_announcement("ada", &NoteId::parse("1-gone").unwrap(), NOW, lease)
            .await
            .unwrap(),
        None
    );

    assert_eq!(
        store.get_note("ada", &private.note_id).await.unwrap(),
        Some(private.clone())
    );
    assert_eq!(
        store.get_note("eve", &private.note_id).await.unwrap(),
        None,
        "owned by key"
    );

    let mine = store.list_user_notes("ada", &page(None, 10)).await.unwrap();
    assert_eq!(
        mine.items,
        vec![public.clone(), private.clone()],
        "newest first, public included"
    );
    assert_eq!(mine.next, None);
    let everyone = store.list_public_notes(&feed(None, 10)).await.unwrap();
    assert_eq!(everyone.items, vec![public.clone()]);

    assert_eq!(
        store
            .update_content("eve", &public.note_id, "pwned", "t")
            .await
            .unwrap(),
        None
    );
    let updated = store
        .update_content("ada", &public.note_id, "edited", "2024-03-13T00:00:00.000Z")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (updated.content.as_str(), updated.updated_at.as_deref()),
        ("edited", Some("2024-03-13T00:00:00.000Z"))
    );
    assert_eq!(
        store
            .list_public_notes(&feed(None, 10))
            .await
            .unwrap()
            .items[0]
            .content,
        "edited"
    );
    assert_eq!(
        store
            .get_note("ada", &public.note_id)
            .await
            .unwrap()
            .unwrap()
            .content,
        "edited"
    );

    assert_eq!(
        store
            .delete_note("eve", &public.note_id, FOREVER)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .delete_note("ada", &public.note_id, FOREVER)
            .await
            .unwrap()
            .map(|n| n.note_id),
        Some(public.note_id.clone())
    );
    assert_eq!(
        store
            .delete_note("ada", &public.note_id, FOREVER)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.save_if_absent(&public, lease).await.unwrap(),
        Saved::Deleted,
        "a redelivery cannot bring a deleted note back"
    );
    // A tombstone counts until it expires, then for nothing (DynamoDB's TTL removes it, days late
    // at worst; until then the adapter ignores it too).
    let gone = note("ada", 1_710_000_000_003, false);
    store.save_if_absent(&gone, lease).await.unwrap();
    let expired = notes_handlers::domain::clock::now_millis() - 5_000;
    assert!(
        store
            .delete_note("ada", &gone.note_id, expired)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store.save_if_absent(&gone, lease).await.unwrap(),
        Saved::Created,
        "an expired tombstone does not keep a note out"
    );
    assert!(
        store
            .delete_note("ada", &gone.note_id, FOREVER)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .list_public_notes(&feed(None, 10))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(
        store
            .list_user_notes("ada", &page(None, 10))
            .await
            .unwrap()
            .items,
        vec![private]
    );
}

async fn paging_contract(store: &dyn NoteStore) {
    let notes: Vec<Note> = (0..6)
        .map(|i| note("pat", 1_710_000_001_000 + i, i % 2 == 0))
        .collect();
    for n in &notes {
        store.save_if_absent(n, 0).await.unwrap();
    }
    let newest_first: Vec<_> = notes.iter().rev().map(|n| n.note_id.clone()).collect();
    let mut seen = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let p = store
            .list_user_notes("pat", &page(after.clone(), 3))
            .await
            .unwrap();
        pages += 1;
        seen.extend(p.items.iter().map(|n| n.note_id.clone()));
        match p.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, newest_first);
    assert_eq!(pages, 2, "a full last page carries no cursor");
    let p = store.list_public_notes(&feed(None, 2)).await.unwrap();
    assert_eq!(p.items.len(), 2);
    let rest = store
        .list_public_notes(&feed(p.next.clone(), 2))
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.next, None);
}

#[tokio::test]
async fn note_store_embedded() {
    note_store_contract(&EmbeddedStore::in_memory()).await;
    paging_contract(&EmbeddedStore::in_memory()).await;
}

#[tokio::test]
async fn note_store_dynamodb() {
    note_store_contract(&moto_store().await.0).await;
    paging_contract(&moto_store().await.0).await;
}

// ---- The save path, through notes-save ----

/// A bus that can be taken down, and keeps what it accepted.
#[derive(Default)]
struct SwitchBus {
    down: std::sync::atomic::AtomicBool,
    accepted: std::sync::Mutex<Vec<NoteEvent>>,
}

#[async_trait::async_trait]
impl EventBus for SwitchBus {
    async fn publish(&self, events: &[NoteEvent]) -> Result<PublishReport, StoreError> {
        if self.down.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(StoreError::new("publishing", "the bus is down"));
        }
        self.accepted.lock().unwrap().extend_from_slice(events);
        Ok(PublishReport::default())
    }
}

impl SwitchBus {
    fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many `note-saved` went out for this note.
    fn saved(&self, id: &NoteId) -> usize {
        self.accepted
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, NoteEvent::Saved { note_id, .. } if note_id == id))
            .count()
    }
}

/// One delivery of the note's `note-created` to notes-save, as the event source mapping makes it:
/// whether it was left on the queue (a batch item failure).
async fn deliver(deps: &notes_handlers::Deps, note: &Note) -> bool {
    let created = NoteEvent::Created {
        note_id: note.note_id.clone(),
        username: note.username.clone(),
        content: note.content.clone(),
        is_public: note.is_public,
        timestamp: "2024-03-12T14:22:10.000Z".into(),
    };
    let body = serde_json::json!({ "detail-type": "note-created", "detail": created }).to_string();
    let event = notesctl_tests::lambda::sqs_event(&[("m-1", body)]);
    let mut context = lambda_runtime::Context::default();
    context.request_id = "r".into();
    let out = notes_handlers::dispatch::invoke_json(
        notes_handlers::HandlerName::NotesSave,
        deps,
        event,
        context,
    )
    .await
    .unwrap();
    !out["batchItemFailures"].as_array().unwrap().is_empty()
}

/// notes-save on the store: triple delivery stores once and announces once; a redelivery after
/// the owner deleted the note stores nothing; a crash between the store and the announcement is
/// announced by the redelivery once the lease has run out; a note deleted before it was announced
/// is never announced. Private and public notes alike, and the tombstones a delete leaves are
/// invisible to every read.
async fn save_path_contract(store: std::sync::Arc<dyn NoteStore>) {
    let bus = std::sync::Arc::new(SwitchBus::default());
    let local = std::sync::Arc::new(EmbeddedStore::in_memory());
    let settings = notes_handlers::deps::Settings {
        announce_lease_ms: 200,
        ..Default::default()
    };
    let deps = notes_handlers::Deps::new(
        local.clone(),
        store.clone(),
        bus.clone(),
        local,
        std::sync::Arc::new(LocalNotifier::new()),
        std::sync::Arc::new(StaticSecret::new(b"s".to_vec())),
        settings,
    );
    for (i, public) in [false, true].into_iter().enumerate() {
        let what = if public { "public" } else { "private" };
        let base = 1_720_000_000_000 + 100 * i as i64;
        let feed_has = async |id: &NoteId| {
            store
                .list_public_notes(&feed(None, 50))
                .await
                .unwrap()
                .items
                .iter()
                .filter(|n| &n.note_id == id)
                .count()
        };

        // Triple delivery.
        let triple = note("grace", base + 1, public);
        for _ in 0..3 {
            assert!(!deliver(&deps, &triple).await, "{what}");
        }
        assert_eq!(bus.saved(&triple.note_id), 1, "{what}: announced once");
        assert_eq!(
            store
                .get_note("grace", &triple.note_id)
                .await
                .unwrap()
                .map(|n| n.content),
            Some(triple.content.clone())
        );
        assert_eq!(
            feed_has(&triple.note_id).await,
            usize::from(public),
            "{what}"
        );

        // Redelivery after delete.
        assert!(
            store
                .delete_note("grace", &triple.note_id, FOREVER)
                .await
                .unwrap()
                .is_some()
        );
        assert!(!deliver(&deps, &triple).await, "{what}: nothing to retry");
        assert_eq!(
            store.get_note("grace", &triple.note_id).await.unwrap(),
            None
        );
        assert_eq!(feed_has(&triple.note_id).await, 0, "{what}");
        assert_eq!(bus.saved(&triple.note_id), 1, "{what}: not announced again");

        // A crash between store and announce: the bus fails, the message stays; redelivered
        // within the lease it is left again, after the lease it is announced — once.
        let crashed = note("grace", base + 2, public);
        bus.set_down(true);
        assert!(
            deliver(&deps, &crashed).await,
            "{what}: left for redelivery"
        );
        bus.set_down(false);
        assert_eq!(bus.saved(&crashed.note_id), 0);
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        assert!(!deliver(&deps, &crashed).await, "{what}");
        assert_eq!(
            bus.saved(&crashed.note_id),
            1,
            "{what}: the redelivery announced it"
        );
        assert!(!deliver(&deps, &crashed).await);
        assert_eq!(bus.saved(&crashed.note_id), 1, "{what}: and only it");
        assert_eq!(
            feed_has(&crashed.note_id).await,
            usize::from(public),
            "{what}"
        );

        // Deleted between store and announce: the redelivery neither stores nor announces it.
        let unsaid = note("grace", base + 3, public);
        bus.set_down(true);
        assert!(deliver(&deps, &unsaid).await);
        bus.set_down(false);
        store
            .delete_note("grace", &unsaid.note_id, FOREVER)
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        assert!(!deliver(&deps, &unsaid).await);
        assert_eq!(
            bus.saved(&unsaid.note_id),
            0,
            "{what}: a deleted note is not announced"
        );
        assert_eq!(
            store.get_note("grace", &unsaid.note_id).await.unwrap(),
            None
        );
    }
    // Tombstones are no notes: lists skip them, pages stay full, and update, delete and claim
    // find nothing.
    let mut kept = Vec::new();
    for i in 0..9 {
        let n = note("hopper", 1_730_000_000_000 + i, i % 3 == 0);
        assert!(!deliver(&deps, &n).await);
        if i % 2 == 0 {
            kept.push(n.note_id.clone());
        } else {
            store
                .delete_note("hopper", &n.note_id, FOREVER)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                store
                    .update_content("hopper", &n.note_id, "back", "t")
                    .await
                    .unwrap(),
                None
            );
            assert_eq!(
                store
                    .claim_announcement("hopper", &n.note_id, i64::MAX - 1, i64::MAX)
                    .await
                    .unwrap(),
                None
            );
            store.mark_notified("hopper", &n.note_id).await.unwrap();
        }
    }
    kept.reverse();
    let mut listed = Vec::new();
    let mut after = None;
    loop {
        let p = store
            .list_user_notes("hopper", &page(after, 2))
            .await
            .unwrap();
        assert!(p.items.len() == 2 || p.next.is_none(), "a full page: {p:?}");
        listed.extend(p.items.into_iter().map(|n| n.note_id));
        match p.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(listed, kept);
}

#[tokio::test]
async fn save_path_embedded() {
    save_path_contract(std::sync::Arc::new(EmbeddedStore::in_memory())).await;
}

#[tokio::test]
async fn save_path_dynamodb() {
    save_path_contract(std::sync::Arc::new(moto_store().await.0)).await;
}

/// Tables from before tombstones moved into the note's own item keep theirs under `DELETED#` keys:
/// a save honours an unexpired one until the last could have expired (recorded on the table by the
/// first save to run, a tombstone lifetime and a day ahead), and a table the deploy created looks
/// for none.
#[tokio::test]
async fn tombstones_under_their_old_key_count_until_the_last_has_expired() {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    let (store, res, sdk) = moto_store().await;
    let raw = aws_sdk_dynamodb::Client::new(&sdk);
    let now_s = notes_handlers::domain::clock::now_millis() / 1000;
    let old_tombstone = |n: &Note, ttl: i64| {
        raw.put_item()
            .table_name(&res.table)
            .item("pk", A::S(format!("USER#{}", n.username)))
            .item("sk", A::S(format!("DELETED#{}", n.note_id.as_str())))
            .item("ttl", A::N(ttl.to_string()))
            .send()
    };
    let deleted = note("ada", 1_710_000_000_101, true);
    let expired = note("ada", 1_710_000_000_102, false);
    old_tombstone(&deleted, now_s + 3600).await.unwrap();
    old_tombstone(&expired, now_s - 60).await.unwrap();
    assert_eq!(
        store.save_if_absent(&deleted, 0).await.unwrap(),
        Saved::Deleted,
        "an old-key tombstone keeps its note out"
    );
    assert_eq!(
        store.save_if_absent(&expired, 0).await.unwrap(),
        Saved::Created,
        "an expired one does not"
    );
    let until = raw
        .get_item()
        .table_name(&res.table)
        .key("pk", A::S("TOMBSTONES#DELETED".into()))
        .key("sk", A::S("UNTIL".into()))
        .send()
        .await
        .unwrap()
        .item
        .expect("the first save recorded until when old tombstones count");
    let until: i64 = until["until"].as_n().unwrap().parse().unwrap();
    let lifetime = notes_handlers::domain::note::TOMBSTONE_MS + 24 * 3600 * 1000;
    assert!((until - now_s * 1000 - lifetime).abs() < 60_000, "{until}");

    // A table the deploy created: no look for old tombstones (one GetItem a store, for the record).
    let fresh = Resources::create(&sdk).await;
    let counter = notesctl_tests::aws_cost::Counter::default();
    let conf = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .interceptor(counter.clone())
        .build();
    let new_table = DynamoStore::new(
        aws_sdk_dynamodb::Client::from_conf(conf),
        &fresh.table,
        &fresh.connections_table,
    );
    new_table.mark_new_table().await.unwrap();
    let planted = note("ada", 1_710_000_000_103, false);
    let raw_fresh = raw
        .put_item()
        .table_name(&fresh.table)
        .item("pk", A::S("USER#ada".into()))
        .item("sk", A::S(format!("DELETED#{}", planted.note_id.as_str())))
        .item("ttl", A::N((now_s + 3600).to_string()));
    raw_fresh.send().await.unwrap();
    let before = counter.snapshot();
    for i in 0..3 {
        let n = note("ada", 1_710_000_000_110 + i, false);
        assert_eq!(
            new_table.save_if_absent(&n, 0).await.unwrap(),
            Saved::Created
        );
    }
    assert_eq!(
        new_table.save_if_absent(&planted, 0).await.unwrap(),
        Saved::Created,
        "a new table's saves never look under the old key"
    );
    let cost = counter.snapshot().since(&before);
    assert_eq!(cost.succeeded("DynamoDB.GetItem"), 1, "{cost:#?}");
    assert_eq!(cost.succeeded("DynamoDB.PutItem"), 4, "{cost:#?}");
}

// ---- The public feed's shards ----

/// What a feed test needs to see below the port: where feed copies are, and notes stored the way
/// the store did before the feed had shards.
#[async_trait::async_trait]
trait FeedLayout: NoteStore {
    /// `(partition key, note id)` of every feed copy.
    async fn partitions(&self) -> Vec<(String, String)>;
    /// A public note under `PUBLIC#NOTES`, with an owner's copy that records no shard, or (as the
    /// original system stored them) none.
    async fn put_unsharded(&self, note: &Note, owner_copy: bool);
}

#[async_trait::async_trait]
impl FeedLayout for EmbeddedStore {
    async fn partitions(&self) -> Vec<(String, String)> {
        self.public_partitions().await.unwrap()
    }
    async fn put_unsharded(&self, note: &Note, owner_copy: bool) {
        self.save_unsharded(note, owner_copy).await.unwrap()
    }
}

struct MotoFeed {
    store: DynamoStore,
    ddb: aws_sdk_dynamodb::Client,
}

#[async_trait::async_trait]
impl NoteStore for MotoFeed {
    async fn save_if_absent(&self, n: &Note, l: i64) -> Result<Saved, StoreError> {
        self.store.save_if_absent(n, l).await
    }
    async fn claim_announcement(
        &self,
        u: &str,
        id: &NoteId,
        now: i64,
        until: i64,
    ) -> Result<Option<Note>, StoreError> {
        self.store.claim_announcement(u, id, now, until).await
    }
    async fn mark_notified(&self, u: &str, id: &NoteId) -> Result<(), StoreError> {
        self.store.mark_notified(u, id).await
    }
    async fn get_note(&self, u: &str, id: &NoteId) -> Result<Option<Note>, StoreError> {
        self.store.get_note(u, id).await
    }
    async fn update_content(
        &self,
        u: &str,
        id: &NoteId,
        c: &str,
        at: &str,
    ) -> Result<Option<Note>, StoreError> {
        self.store.update_content(u, id, c, at).await
    }
    async fn delete_note(&self, u: &str, id: &NoteId, t: i64) -> Result<Option<Note>, StoreError> {
        self.store.delete_note(u, id, t).await
    }
    async fn list_user_notes(
        &self,
        u: &str,
        p: &PageRequest,
    ) -> Result<notes_handlers::domain::cursor::Page<Note>, StoreError> {
        self.store.list_user_notes(u, p).await
    }
    async fn list_public_notes(
        &self,
        p: &FeedRequest,
    ) -> Result<notes_handlers::domain::cursor::Page<Note>, StoreError> {
        self.store.list_public_notes(p).await
    }
    async fn migrate_public_feed(&self, max: usize) -> Result<Migrated, StoreError> {
        self.store.migrate_public_feed(max).await
    }
}

#[async_trait::async_trait]
impl FeedLayout for MotoFeed {
    async fn partitions(&self) -> Vec<(String, String)> {
        use aws_sdk_dynamodb::types::AttributeValue;
        let mut out = Vec::new();
        let pks = (0..16)
            .map(|n| format!("{LEGACY_PK}#{n}"))
            .chain([LEGACY_PK.to_owned()]);
        for pk in pks {
            let items = self
                .ddb
                .query()
                .table_name(self.store.table())
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", AttributeValue::S(pk.clone()))
                .send()
                .await
                .unwrap()
                .items
                .unwrap_or_default();
            for i in items {
                out.push((pk.clone(), i["noteId"].as_s().unwrap().clone()));
            }
        }
        out
    }
    async fn put_unsharded(&self, note: &Note, owner_copy: bool) {
        use aws_sdk_dynamodb::types::AttributeValue as A;
        let item = |pk: String| {
            [
                ("pk", A::S(pk)),
                ("sk", A::S(note.note_id.sort_key())),
                ("noteId", A::S(note.note_id.as_str().into())),
                ("username", A::S(note.username.clone())),
                ("content", A::S(note.content.clone())),
                ("isPublic", A::Bool(true)),
                ("status", A::S(note.status.clone())),
                ("createdAt", A::S(note.created_at.clone())),
                ("savedAt", A::S(note.saved_at.clone())),
                ("notified", A::Bool(true)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect::<std::collections::HashMap<_, _>>()
        };
        let mut pks = vec![LEGACY_PK.to_owned()];
        if owner_copy {
            pks.push(format!("USER#{}", note.username));
        }
        for pk in pks {
            self.ddb
                .put_item()
                .table_name(self.store.table())
                .set_item(Some(item(pk)))
                .send()
                .await
                .unwrap();
        }
    }
}

async fn moto_feed(shards: u32) -> MotoFeed {
    let (store, _, sdk) = moto_store().await;
    MotoFeed {
        store: store.with_feed_shards(ShardCount::new(shards).unwrap()),
        ddb: aws_sdk_dynamodb::Client::new(&sdk),
    }
}

fn embedded_feed(shards: u32) -> EmbeddedStore {
    EmbeddedStore::in_memory().with_feed_shards(ShardCount::new(shards).unwrap())
}

/// Every page of the feed, following cursors.
async fn whole_feed(store: &dyn NoteStore, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut next = None;
    loop {
        let p = store.list_public_notes(&feed(next, limit)).await.unwrap();
        out.extend(p.items.iter().map(|n| n.note_id.as_str().to_owned()));
        match p.next {
            Some(n) => next = Some(n),
            None => return out,
        }
    }
}

/// Public notes spread over the shards; the feed merges them newest first; update and delete find
/// the copy in its shard.
async fn sharded_feed_contract(store: &dyn FeedLayout) {
    let notes: Vec<Note> = (0..40)
        .map(|i| {
            note(
                ["ada", "bob", "cy"][i % 3],
                1_711_000_000_000 + i as i64 * 7,
                true,
            )
        })
        .collect();
    for n in &notes {
        store.save_if_absent(n, 0).await.unwrap();
    }
    store
        .save_if_absent(&note("ada", 1_711_000_000_999, false), 0)
        .await
        .unwrap();
    let at = store.partitions().await;
    assert_eq!(at.len(), 40, "one feed copy per public note: {at:?}");
    let shards: BTreeSet<&str> = at.iter().map(|(pk, _)| pk.as_str()).collect();
    assert!(
        shards.len() >= 6 && shards.iter().all(|pk| pk.starts_with("PUBLIC#NOTES#")),
        "spread over the shards: {shards:?}"
    );
    let newest_first: Vec<String> = notes
        .iter()
        .rev()
        .map(|n| n.note_id.as_str().to_owned())
        .collect();
    for limit in [1, 3, 7, 50] {
        assert_eq!(
            whole_feed(store, limit).await,
            newest_first,
            "pages of {limit}"
        );
    }
    let target = &notes[17];
    store
        .update_content(
            &target.username,
            &target.note_id,
            "edited",
            "2024-03-12T14:23:00.000Z",
        )
        .await
        .unwrap()
        .expect("updated");
    let first = store.list_public_notes(&feed(None, 50)).await.unwrap();
    let shown = first
        .items
        .iter()
        .find(|n| n.note_id == target.note_id)
        .unwrap();
    assert_eq!(
        shown.content, "edited",
        "the feed copy in its shard changed too"
    );
    store
        .delete_note(&target.username, &target.note_id, FOREVER)
        .await
        .unwrap()
        .expect("deleted");
    assert_eq!(
        store.partitions().await.len(),
        39,
        "its feed copy went with it"
    );
    assert!(
        !whole_feed(store, 10)
            .await
            .contains(&target.note_id.as_str().to_owned())
    );
}

/// Notes stored before shards: read beside the shards until migrated; updated and deleted where
/// they are; moved by the migration (owner's copies made for notes that had none), which is
/// idempotent and goes in steps.
async fn unsharded_feed_contract(store: &dyn FeedLayout) {
    let old: Vec<Note> = (0..9)
        .map(|i| note("ada", 1_700_000_000_000 + i * 11, true))
        .collect();
    for (i, n) in old.iter().enumerate() {
        store.put_unsharded(n, i % 3 != 0).await;
    }
    let new: Vec<Note> = (0..6)
        .map(|i| note("bob", 1_700_000_000_006 + i * 13, true))
        .collect();
    for n in &new {
        store.save_if_absent(n, 0).await.unwrap();
    }
    let mut all: Vec<&Note> = old.iter().chain(&new).collect();
    all.sort_by_key(|n| std::cmp::Reverse(n.note_id.sort_key()));
    let newest_first: Vec<String> = all.iter().map(|n| n.note_id.as_str().to_owned()).collect();
    assert_eq!(
        whole_feed(store, 4).await,
        newest_first,
        "both layouts, merged"
    );

    // An old note with an owner's copy is changed and deleted where it is.
    store
        .update_content(
            "ada",
            &old[1].note_id,
            "edited before migrating",
            "2024-03-12T14:23:00.000Z",
        )
        .await
        .unwrap()
        .expect("updated");
    store
        .delete_note("ada", &old[2].note_id, FOREVER)
        .await
        .unwrap()
        .expect("deleted");
    let legacy = |at: &[(String, String)]| at.iter().filter(|(pk, _)| pk == LEGACY_PK).count();
    assert_eq!(legacy(&store.partitions().await), 8);

    // In steps of three: everything moves, nothing is lost, the owner's copies are made.
    let mut moved = 0;
    let mut made = 0;
    let mut steps = 0;
    loop {
        let step = store.migrate_public_feed(3).await.unwrap();
        assert!(step.moved <= 3, "{step:?}");
        moved += step.moved;
        made += step.owner_copies_made;
        steps += 1;
        if !step.remaining {
            break;
        }
        assert!(steps < 10, "the migration never finished");
    }
    assert_eq!((moved, made), (8, 3), "8 moved, 3 had no owner's copy");
    let at = store.partitions().await;
    assert_eq!(legacy(&at), 0, "{at:?}");
    assert_eq!(at.len(), 14);
    assert_eq!(
        store.migrate_public_feed(3).await.unwrap(),
        Migrated::default(),
        "a second run has nothing to do"
    );
    let expected: Vec<String> = newest_first
        .iter()
        .filter(|id| *id != old[2].note_id.as_str())
        .cloned()
        .collect();
    assert_eq!(
        whole_feed(store, 4).await,
        expected,
        "the same feed, from the shards"
    );
    let edited = store
        .get_note("ada", &old[1].note_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(edited.content, "edited before migrating");
    // A note the original system stored only in the feed now shows in its owner's list, and its
    // owner can change and delete it.
    let orphan = &old[3];
    let mine = store.list_user_notes("ada", &page(None, 50)).await.unwrap();
    assert!(mine.items.iter().any(|n| n.note_id == orphan.note_id));
    store
        .update_content(
            "ada",
            &orphan.note_id,
            "mine after all",
            "2024-03-12T14:24:00.000Z",
        )
        .await
        .unwrap()
        .expect("updated after the migration");
    let first = store.list_public_notes(&feed(None, 50)).await.unwrap();
    assert!(first.items.iter().any(|n| n.content == "mine after all"));
    store
        .delete_note("ada", &orphan.note_id, FOREVER)
        .await
        .unwrap()
        .expect("deleted after the migration");
    assert_eq!(store.partitions().await.len(), 13);
}

/// Lowering the shard count: the migration moves notes out of the shards no longer read.
async fn fewer_shards_contract(wide: &dyn FeedLayout, narrow: &dyn FeedLayout) {
    let notes: Vec<Note> = (0..20)
        .map(|i| note("cy", 1_712_000_000_000 + i * 3, true))
        .collect();
    for n in &notes {
        wide.save_if_absent(n, 0).await.unwrap();
    }
    let mut moved = 0;
    loop {
        let step = narrow.migrate_public_feed(100).await.unwrap();
        moved += step.moved;
        if !step.remaining {
            break;
        }
    }
    assert!(moved > 0, "some notes sat in shards 2..7");
    let at = narrow.partitions().await;
    assert!(
        at.iter()
            .all(|(pk, _)| pk == "PUBLIC#NOTES#0" || pk == "PUBLIC#NOTES#1"),
        "{at:?}"
    );
    assert_eq!(whole_feed(narrow, 6).await.len(), 20);
}

/// Pages with notes stored between them: no note twice, none stored before the first page missed.
async fn feed_paging_under_writes_contract(store: &dyn NoteStore, seed: u64) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let base = 1_713_000_000_000;
    let mut before = BTreeSet::new();
    for i in 0..30 {
        let n = note(
            "dee",
            base + rng.random_range(0..5_000) * 100 + i % 50,
            true,
        );
        if before.insert(n.note_id.as_str().to_owned()) {
            store.save_if_absent(&n, 0).await.unwrap();
        }
    }
    let mut seen = Vec::new();
    let mut next = None;
    for round in 0..100 {
        let p = store.list_public_notes(&feed(next, 4)).await.unwrap();
        seen.extend(p.items.iter().map(|n| n.note_id.as_str().to_owned()));
        for j in 0..rng.random_range(0..4) {
            // Newer than everything, or back in time (a note saved late).
            let millis = if rng.random_bool(0.5) {
                base + 600_000 + round * 100 + j
            } else {
                base + rng.random_range(0..5_000) * 100 + 50 + j
            };
            store
                .save_if_absent(&note("eve", millis, true), 0)
                .await
                .unwrap();
        }
        match p.next {
            Some(n) => next = Some(n),
            None => break,
        }
    }
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "a note came twice");
    let missed: Vec<_> = before.difference(&unique).collect();
    assert!(missed.is_empty(), "skipped: {missed:?}");
}

#[tokio::test]
async fn public_feed_embedded() {
    sharded_feed_contract(&embedded_feed(8)).await;
    unsharded_feed_contract(&embedded_feed(8)).await;
    let store = EmbeddedStore::in_memory();
    fewer_shards_contract(
        &store.clone().with_feed_shards(ShardCount::new(8).unwrap()),
        &store.with_feed_shards(ShardCount::new(2).unwrap()),
    )
    .await;
    for seed in 0..20 {
        feed_paging_under_writes_contract(&embedded_feed(1 + seed as u32 % 9), seed).await;
    }
}

#[tokio::test]
async fn public_feed_dynamodb() {
    sharded_feed_contract(&moto_feed(8).await).await;
    unsharded_feed_contract(&moto_feed(8).await).await;
    let wide = moto_feed(8).await;
    let narrow = MotoFeed {
        store: wide
            .store
            .clone()
            .with_feed_shards(ShardCount::new(2).unwrap()),
        ddb: wide.ddb.clone(),
    };
    fewer_shards_contract(&wide, &narrow).await;
    feed_paging_under_writes_contract(&moto_feed(5).await, 7).await;
}

#[tokio::test]
async fn embedded_store_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let n = note("ada", 1_710_000_000_001, true);
    {
        let store = EmbeddedStore::open(&path).unwrap();
        store.save_if_absent(&n, 0).await.unwrap();
    }
    let store = EmbeddedStore::open(&path).unwrap();
    assert_eq!(store.get_note("ada", &n.note_id).await.unwrap(), Some(n));
}

// ---- ConnectionRegistry ----

fn conn(id: &str, user: &str) -> Connection {
    Connection {
        connection_id: id.into(),
        username: user.into(),
        connected_at: "2024-03-12T14:22:09.000Z".into(),
        ttl: 1_710_260_529,
    }
}

fn ids(conns: Vec<Connection>) -> BTreeSet<String> {
    conns.into_iter().map(|c| c.connection_id).collect()
}

async fn registry_contract(reg: &dyn ConnectionRegistry) {
    for (id, user) in [("a1", "ada"), ("a2", "ada"), ("b1", "bob")] {
        reg.register(&conn(id, user)).await.unwrap();
    }
    assert_eq!(
        ids(reg.connections_of("ada").await.unwrap()),
        ["a1", "a2"].map(String::from).into()
    );
    assert_eq!(
        reg.connections_of("ada").await.unwrap()[0],
        conn("a1", "ada"),
        "every field kept"
    );
    assert_eq!(
        ids(reg.all_connections().await.unwrap()),
        ["a1", "a2", "b1"].map(String::from).into()
    );
    assert_eq!(reg.unregister("a1").await.unwrap(), Some(conn("a1", "ada")));
    assert_eq!(reg.unregister("a1").await.unwrap(), None);
    reg.remove(&conn("b1", "bob")).await.unwrap();
    assert!(reg.connections_of("bob").await.unwrap().is_empty());
    assert_eq!(
        ids(reg.all_connections().await.unwrap()),
        ["a2"].map(String::from).into()
    );
}

#[tokio::test]
async fn connection_registry_embedded() {
    registry_contract(&EmbeddedStore::in_memory()).await;
}

#[tokio::test]
async fn connection_registry_dynamodb() {
    registry_contract(&moto_store().await.0).await;
}

// ---- EventBus ----

fn created(i: usize) -> NoteEvent {
    NoteEvent::Created {
        note_id: NoteId::parse(&format!("1710253330000-ev{i}")).unwrap(),
        username: "ada".into(),
        content: format!("event {i}"),
        is_public: i.is_multiple_of(2),
        timestamp: "2024-03-12T14:22:10.000Z".into(),
    }
}

/// Publishes 12 note-created events (more than one PutEvents call) and checks each arrives intact.
async fn bus_contract(bus: &dyn EventBus, observe: impl AsyncFnOnce(usize) -> Vec<NoteEvent>) {
    let events: Vec<_> = (0..12).map(created).collect();
    let report = bus.publish(&events).await.unwrap();
    assert!(report.all_accepted(), "{report:?}");
    let mut got = observe(events.len()).await;
    got.sort_by(|a, b| a.note_id().as_str().cmp(b.note_id().as_str()));
    let mut want = events;
    want.sort_by(|a, b| a.note_id().as_str().cmp(b.note_id().as_str()));
    assert_eq!(got, want);
}

#[tokio::test]
async fn event_bus_embedded() {
    let (bus, mut rx) = ChannelBus::new();
    bus_contract(&bus, async |n| {
        let mut out = Vec::new();
        while out.len() < n {
            out.push(rx.recv().await.unwrap());
        }
        out
    })
    .await;
}

#[tokio::test]
async fn event_bus_eventbridge_routes_note_created_to_the_queue() {
    let (_, res, sdk) = moto_store().await;
    let bus = EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&sdk), &res.bus);
    bus_contract(&bus, async |n| {
        let messages = res.receive(&sdk, n as i32).await;
        messages
            .iter()
            .map(|m| notes_handlers::notes::save::parse_created(m.body().unwrap()).unwrap())
            .collect()
    })
    .await;
}

// ---- Notifier ----

#[tokio::test]
async fn notifier_embedded() {
    let n = LocalNotifier::new();
    let mut rx = n.attach("c1");
    assert_eq!(n.post("c1", b"{\"a\":1}").await.unwrap(), Posted::Delivered);
    assert_eq!(rx.recv().await.unwrap(), "{\"a\":1}");
    assert_eq!(n.post("nobody", b"{}").await.unwrap(), Posted::Gone);
    drop(rx);
    assert_eq!(
        n.post("c1", b"{}").await.unwrap(),
        Posted::Gone,
        "a closed socket is gone"
    );
}

/// A smoke test only: moto accepts any PostToConnection (it never answers 410 or 403), so this shows
/// the adapter's request is well formed and nothing more. Gone (410), forbidden (403) and throttled
/// connections run on recorded responses in handlers/tests/aws_adapters.rs.
#[tokio::test]
async fn notifier_api_gateway_smoke_on_moto() {
    let m = moto::shared().await;
    let sdk = m.sdk_config().await;
    let conf = aws_sdk_apigatewaymanagement::config::Builder::from(&sdk)
        .endpoint_url(&m.endpoint)
        .build();
    let n = ApiGatewayNotifier::new(aws_sdk_apigatewaymanagement::Client::from_conf(conf));
    assert_eq!(n.post("c1", b"{\"a\":1}").await.unwrap(), Posted::Delivered);
}

// ---- SecretSource ----

async fn secret_contract(source: &dyn SecretSource, expect: Option<&[u8]>) {
    let first = source.jwt_secret().await.unwrap();
    assert!(first.len() >= 32, "{} bytes", first.len());
    assert_eq!(source.jwt_secret().await.unwrap(), first, "stable");
    if let Some(expect) = expect {
        assert_eq!(first, expect);
    }
}

#[tokio::test]
async fn secret_source_embedded() {
    secret_contract(
        &StaticSecret::new(b"0123456789abcdef0123456789abcdef".to_vec()),
        Some(b"0123456789abcdef0123456789abcdef"),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/jwt-secret");
    secret_contract(&FileSecret::new(&path), None).await;
    let again = FileSecret::new(&path).jwt_secret().await.unwrap();
    assert_eq!(
        again,
        FileSecret::new(&path).jwt_secret().await.unwrap(),
        "kept across restarts"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

#[tokio::test]
async fn secret_source_secrets_manager() {
    let (_, res, sdk) = moto_store().await;
    let source =
        SecretsManagerSecret::new(aws_sdk_secretsmanager::Client::new(&sdk), &res.secret_arn);
    secret_contract(
        &source,
        Some(b"moto-jwt-secret-moto-jwt-secret-moto-jwt-secret"),
    )
    .await;
    let missing = SecretsManagerSecret::new(
        aws_sdk_secretsmanager::Client::new(&sdk),
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope",
    );
    let err = missing.jwt_secret().await.unwrap_err().to_string();
    assert!(err.contains("nope"), "{err}");
}

// ---- The adapters are the truth ----

/// Every port's contract, run once more on AWS adapters whose clients record what they send: the
/// actions they call are exactly the actions the handlers declare (`notes_handlers::dispatch`), on
/// the same resources. A new adapter call that no handler declares fails here, before it is an
/// AccessDenied on AWS; a declared action no adapter calls fails too.
#[tokio::test]
async fn adapters_call_exactly_what_the_handlers_declare() {
    use notes_handlers::HandlerName;
    use notes_handlers::spec::{Action, Resource};
    use notesctl_tests::record::{Recorder, Service};
    let m = moto::shared().await;
    let sdk = m.sdk_config().await;
    let res = Resources::create(&sdk).await;
    let dynamo = Recorder::new(Service::DynamoDb(vec![
        (res.table.clone(), Resource::DataTable),
        (res.connections_table.clone(), Resource::ConnectionsTable),
    ]));
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(dynamo.clone())
            .build(),
    );
    let store = DynamoStore::new(client, &res.table, &res.connections_table);
    user_store_contract(&store).await;
    note_store_contract(&store).await;
    paging_contract(&store).await;
    registry_contract(&store).await;

    let events = Recorder::new(Service::EventBridge);
    let bus = EventBridgeBus::new(
        aws_sdk_eventbridge::Client::from_conf(
            aws_sdk_eventbridge::config::Builder::from(&sdk)
                .interceptor(events.clone())
                .build(),
        ),
        &res.bus,
    );
    assert!(bus.publish(&[created(0)]).await.unwrap().all_accepted());

    let secrets = Recorder::new(Service::SecretsManager);
    let source = SecretsManagerSecret::new(
        aws_sdk_secretsmanager::Client::from_conf(
            aws_sdk_secretsmanager::config::Builder::from(&sdk)
                .interceptor(secrets.clone())
                .build(),
        ),
        &res.secret_arn,
    );
    secret_contract(&source, None).await;

    let connections = Recorder::new(Service::Connections);
    let notifier = ApiGatewayNotifier::new(aws_sdk_apigatewaymanagement::Client::from_conf(
        aws_sdk_apigatewaymanagement::config::Builder::from(&sdk)
            .endpoint_url(&m.endpoint)
            .interceptor(connections.clone())
            .build(),
    ));
    assert_eq!(notifier.post("c1", b"{}").await.unwrap(), Posted::Delivered);

    let called: BTreeSet<Action> = [dynamo, events, secrets, connections]
        .iter()
        .flat_map(|r| r.actions())
        .collect();
    let declared: BTreeSet<Action> = HandlerName::ALL
        .iter()
        .flat_map(|h| h.spec().code_actions())
        .collect();
    let show = |s: Vec<&Action>| {
        s.iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    assert!(
        called.is_subset(&declared),
        "the adapters call what no handler declares: {}",
        show(called.difference(&declared).collect())
    );
    assert!(
        declared.is_subset(&called),
        "handlers declare what no adapter calls: {}",
        show(declared.difference(&called).collect())
    );
}
