//! What one note asks of AWS, counted at the SDK on moto (`notesctl_tests::aws_cost`): the handlers
//! on their AWS adapters, the harness playing the event source mapping and the notify rule. The
//! counts are the app's contract with its bill: a change that adds a request per note fails here.
//! `cargo run -p notesctl-tests --example aws_cost` prints the same table for docs/CAPACITY.md.

use notes_handlers::adapters::dynamodb::INDEX_SHARDS;
use notesctl_tests::aws_cost::{Measured, measure};

/// Successful requests per note (moto may refuse a transaction in passing, and the SDK retries it).
fn per_note(m: &Measured, name: &str) -> f64 {
    m.aws.succeeded(name) as f64 / m.notes as f64
}

#[tokio::test]
async fn a_private_note_and_a_public_note_ask_aws_for_what_they_should() {
    let moto = notesctl_tests::moto::shared().await;
    let (notes, sockets, own) = (20, 5, 2);
    for public in [false, true] {
        let m = measure(moto, notes, sockets, own, public).await;
        let what = if public { "public" } else { "private" };
        // publish: one PutEvents (note-created); save: one PutEvents (note-saved) per batch entry.
        assert_eq!(m.aws.event_entries as usize, 2 * notes, "{what}: {m:#?}");
        // save: one conditional PutItem of the owner's copy (a transaction of it and the feed
        // copy when public), then mark_notified, one update; notify: the owner's connections (one
        // Query) or every partition of the connection index (one Query each).
        let (puts, transactions) = if public { (0.0, 1.0) } else { (1.0, 0.0) };
        assert_eq!(per_note(&m, "DynamoDB.PutItem"), puts, "{what}: {m:#?}");
        assert_eq!(
            per_note(&m, "DynamoDB.TransactWriteItems"),
            transactions,
            "{what}: {m:#?}"
        );
        assert_eq!(per_note(&m, "DynamoDB.UpdateItem"), 1.0, "{what}: {m:#?}");
        // One GetItem per container, not per note: the table says it holds no tombstone under the
        // key earlier versions kept them at.
        assert_eq!(m.aws.succeeded("DynamoDB.GetItem"), 1, "{what}: {m:#?}");
        let queries = if public { INDEX_SHARDS as f64 } else { 1.0 };
        assert_eq!(per_note(&m, "DynamoDB.Query"), queries, "{what}: {m:#?}");
        assert_eq!(per_note(&m, "EventBridge.PutEvents"), 2.0, "{what}: {m:#?}");
        // notify: one post per connection reached — the author's (private) or every one (public).
        assert_eq!(
            per_note(&m, "ApiGatewayManagementApi.PostToConnection"),
            if public { sockets } else { own } as f64,
            "{what}: {m:#?}"
        );
        // SQS: at most a receive and a delete per ten notes, plus long polls that came back empty.
        assert!(
            per_note(&m, "SQS.DeleteMessageBatch") <= 1.0,
            "{what}: {m:#?}"
        );
        assert_eq!(m.invocations["notes-publish"] as usize, notes);
        assert_eq!(m.invocations["websocket-notify"] as usize, notes);
        assert!(m.invocations["notes-save"] as usize <= notes);
        // Every item of a short note fits in one write unit (1 KB); a transaction costs two per item.
        assert!(m.aws.largest_item < 1024, "{m:#?}");
        // A private note: its conditional Put (1) and mark_notified's update (1). A public one:
        // the transaction's two Puts at two units each (4) and the update (1).
        let writes_per_note = m.aws.write_units / notes as f64;
        assert_eq!(
            writes_per_note,
            if public { 5.0 } else { 2.0 },
            "{what}: {m:#?}"
        );
        // notify's Queries read connection rows, eventually consistent: half a unit per 4 KB each;
        // and the container's one strongly consistent read of the table's tombstone record.
        assert_eq!(
            m.aws.read_units,
            notes as f64 * queries / 2.0 + 1.0,
            "{what}: {m:#?}"
        );
    }
}

/// A page of the public feed, counted at the SDK: a Query per shard, the unsharded key's Query
/// only until the table is marked emptied (by `migrate public-feed`, or by the deploy that creates
/// it), and one eventually consistent GetItem per store to look for the mark. Between the moment
/// the migration emptied the key and the mark, a reader still reads it and sees every note once.
#[tokio::test]
async fn a_feed_page_queries_the_unsharded_key_only_until_it_is_marked_emptied() {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    use notes_handlers::adapters::dynamodb::DynamoStore;
    use notes_handlers::domain::feed::{DEFAULT_SHARDS, FeedRequest, LEGACY_EMPTIED, LEGACY_PK};
    use notes_handlers::domain::note::{Note, NoteId};
    use notes_handlers::ports::NoteStore;
    use notesctl_tests::aws_cost::Counter;

    let moto = notesctl_tests::moto::shared().await;
    let sdk = moto.sdk_config().await;
    let table = notesctl_tests::unique("feed-cost");
    notesctl_tests::moto::create_table(&sdk, &table).await;
    let raw = aws_sdk_dynamodb::Client::new(&sdk);
    let counter = Counter::default();
    // A store as a new Lambda container has it: nothing known of the mark yet.
    let container = || {
        let conf = aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(counter.clone())
            .build();
        DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(conf), &table, "unused")
    };
    let note = |millis: i64| {
        let note_id = NoteId::parse(&format!("{millis}-abc{}", millis % 1000)).unwrap();
        Note {
            created_at: note_id.created_at(),
            note_id,
            username: "ada".into(),
            content: format!("note {millis}"),
            is_public: true,
            status: "saved".into(),
            saved_at: "2024-03-12T14:22:11.000Z".into(),
            updated_at: None,
        }
    };
    let writer = container();
    let mut expected = Vec::new();
    for i in 0..6 {
        let n = note(1_700_000_000_000 + i * 7);
        writer.save_if_absent(&n, 0).await.unwrap();
        expected.push(n.note_id.as_str().to_owned());
    }
    // Two notes stored before the feed had shards, under the one old key.
    for i in 0..2 {
        let n = note(1_690_000_000_000 + i * 5);
        let item = [
            ("pk", A::S(LEGACY_PK.into())),
            ("sk", A::S(n.note_id.sort_key())),
            ("noteId", A::S(n.note_id.as_str().into())),
            ("username", A::S(n.username.clone())),
            ("content", A::S(n.content.clone())),
            ("isPublic", A::Bool(true)),
            ("status", A::S(n.status.clone())),
            ("createdAt", A::S(n.created_at.clone())),
            ("savedAt", A::S(n.saved_at.clone())),
            ("notified", A::Bool(true)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        raw.put_item()
            .table_name(&table)
            .set_item(Some(item))
            .send()
            .await
            .unwrap();
        expected.push(n.note_id.as_str().to_owned());
    }
    expected.sort_by_key(|id| std::cmp::Reverse(NoteId::parse(id).unwrap().sort_key()));
    let shards = DEFAULT_SHARDS as u64;
    // One page of 50 from `store`: its notes, and the Queries and GetItems it cost.
    let page = async |store: &DynamoStore| {
        let before = counter.snapshot();
        let got = store
            .list_public_notes(&FeedRequest::new(None, 50))
            .await
            .unwrap();
        let cost = counter.snapshot().since(&before);
        let ids: Vec<String> = got
            .items
            .iter()
            .map(|n| n.note_id.as_str().to_owned())
            .collect();
        (
            ids,
            cost.succeeded("DynamoDB.Query"),
            cost.succeeded("DynamoDB.GetItem"),
        )
    };

    // Before the migration: every shard and the old key, and a look for the mark.
    let reader = container();
    assert_eq!(
        page(&reader).await,
        (expected.clone(), shards + 1, 1),
        "unmigrated"
    );
    assert_eq!(
        page(&reader).await,
        (expected.clone(), shards + 1, 0),
        "looked for the mark a moment ago: not again"
    );

    // The migration empties the old key and marks it. The moment in between (emptied, no mark
    // yet) is this table with the mark taken away: a reader still reads the old key, now empty,
    // and sees every note exactly once.
    while writer.migrate_public_feed(100).await.unwrap().remaining {}
    let mark = aws_sdk_dynamodb::types::AttributeValue::S;
    let marked = async || {
        raw.get_item()
            .table_name(&table)
            .key("pk", mark(LEGACY_EMPTIED.0.into()))
            .key("sk", mark(LEGACY_EMPTIED.1.into()))
            .send()
            .await
            .unwrap()
            .item
            .is_some()
    };
    assert!(marked().await, "the migration marked the old key emptied");
    raw.delete_item()
        .table_name(&table)
        .key("pk", mark(LEGACY_EMPTIED.0.into()))
        .key("sk", mark(LEGACY_EMPTIED.1.into()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        page(&container()).await,
        (expected.clone(), shards + 1, 1),
        "emptied, not marked yet"
    );

    // Marked (as a second run of the migration leaves it): a new container looks once, then
    // reads the shards alone — eight Queries a page, not nine.
    assert!(!writer.migrate_public_feed(100).await.unwrap().remaining);
    assert!(marked().await);
    let after = container();
    assert_eq!(
        page(&after).await,
        (expected.clone(), shards, 1),
        "migrated"
    );
    assert_eq!(page(&after).await, (expected.clone(), shards, 0));

    // A new stage: the deploy that creates its table marks it, so its readers never query the
    // old key.
    let fresh = notesctl_tests::unique("feed-new");
    notesctl_tests::moto::create_table(&sdk, &fresh).await;
    DynamoStore::from_sdk_config(&sdk, &fresh, "unused")
        .mark_legacy_feed_emptied()
        .await
        .unwrap();
    let conf = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .interceptor(counter.clone())
        .build();
    let new_stage = DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(conf), &fresh, "unused");
    assert_eq!(page(&new_stage).await, (Vec::new(), shards, 1));
}
