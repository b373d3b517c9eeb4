//! What the bucket holds, as far as the plan needs it: the listing, completed where it cannot decide
//! by itself, and the content the bucket will hold once the plan is carried out.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_s3::Client;
use futures::StreamExt;

use super::local::LocalFile;
use crate::aws::s3::{Calls, RemoteObject, content_hash};

/// Reads with HeadObject what a listing leaves open for a file of the same size: the ETag where the
/// server lists none, and the MD5 we keep in metadata for a multipart object whose ETag is not the
/// one our part size gives (another tool uploaded it). Objects a listing decides are not touched.
pub async fn read_undecided(
    s3: &Client,
    bucket: &str,
    remote: &mut [RemoteObject],
    local: &HashMap<&str, &LocalFile>,
    concurrency: usize,
    calls: &Calls,
) {
    let undecided = remote.iter_mut().filter(|r| {
        local.get(r.key.as_str()).is_some_and(|f| {
            f.size == r.size && (r.etag.is_empty() || (r.etag.contains('-') && r.etag != f.etag))
        })
    });
    futures::stream::iter(undecided)
        .map(|r| async move {
            Calls::count(&calls.head);
            if let Ok(h) = s3.head_object().bucket(bucket).key(&r.key).send().await {
                r.md5_meta = h.metadata().and_then(|m| m.get("md5").cloned());
                if r.etag.is_empty() {
                    r.etag = h.e_tag().unwrap_or_default().trim_matches('"').to_owned();
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<()>>()
        .await;
}

/// The content hash of the bucket after the sync: what it held, less what was deleted, with every
/// local file at its new ETag.
pub fn content_after(remote: Vec<RemoteObject>, local: &[LocalFile], deleted: &[String]) -> String {
    let mut after: BTreeMap<String, String> = remote.into_iter().map(|r| (r.key, r.etag)).collect();
    for k in deleted {
        after.remove(k);
    }
    for f in local {
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
    content_hash(&objects)
}
