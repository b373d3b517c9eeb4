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
        // save: one transaction (tombstone check, owner's copy, feed copy when public), then
        // mark_notified, one update; notify: the owner's connections (one Query) or every
        // partition of the connection index (one Query each).
        assert_eq!(
            per_note(&m, "DynamoDB.TransactWriteItems"),
            1.0,
            "{what}: {m:#?}"
        );
        assert_eq!(per_note(&m, "DynamoDB.UpdateItem"), 1.0, "{what}: {m:#?}");
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
        // Transactions cost two units per item: the check and the owner's copy (4), the feed copy
        // when public (2), and mark_notified's update (1).
        let writes_per_note = m.aws.write_units / notes as f64;
        assert_eq!(
            writes_per_note,
            if public { 7.0 } else { 5.0 },
            "{what}: {m:#?}"
        );
        // notify's Queries read connection rows, eventually consistent: half a unit per 4 KB each.
        assert_eq!(
            m.aws.read_units / notes as f64,
            queries / 2.0,
            "{what}: {m:#?}"
        );
    }
}
