//! `sync-frontend` and `invalidate` against moto's S3, CloudFront and CloudFormation.

use std::path::Path;
use std::time::{Duration, SystemTime};

use notesctl::aws::s3::CallCounts;
use notesctl::commands::invalidate::InvalidateReport;
use notesctl::commands::sync_frontend::{PlannedAction, PlannedChange, SyncReport};
use notesctl_tests::moto::{self, cli, s3};

fn requests(list: u64, head: u64, put: u64, delete: u64) -> CallCounts {
    CallCounts {
        list,
        head,
        put,
        delete,
    }
}

fn write(dir: &Path, key: &str, content: &[u8]) {
    let p = dir.join(key);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

fn site(dir: &Path) {
    write(dir, "index.html", b"<!doctype html><title>notes</title>");
    write(dir, "app.js", b"console.log('v1');");
    write(dir, "styles.css", b"body{margin:0}");
    write(dir, "assets/app.3f2a1b9c.js", b"export const x = 1;");
    write(
        dir,
        "logo.svg",
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
    );
    write(dir, "fonts/a.woff2", b"wOF2");
    // Three parts that differ, so parts put together out of order would show in the ETag.
    let big: Vec<u8> = (0..17 * 1024 * 1024)
        .map(|i| (i / 4096 % 251) as u8)
        .collect();
    write(dir, "big.bin", &big);
    write(dir, ".DS_Store", b"junk");
}

/// Outputs the commands read, on stacks moto can create (a wait-condition handle and literal outputs).
async fn stacks(stage: &str, bucket: &str, distribution: &str) {
    moto::fake_stack(
        stage,
        "auth",
        &[(
            "ApiUrl",
            format!("https://{stage}.execute-api.us-east-1.amazonaws.com"),
        )],
    )
    .await;
    moto::fake_stack(
        stage,
        "websocket",
        &[(
            "WebSocketUrl",
            format!("wss://{stage}-ws.execute-api.us-east-1.amazonaws.com/{stage}"),
        )],
    )
    .await;
    moto::fake_stack(
        stage,
        "frontend",
        &[
            ("BucketName", bucket.to_owned()),
            ("DistributionId", distribution.to_owned()),
        ],
    )
    .await;
}

#[tokio::test]
async fn sync_decides_by_content_and_writes_config() {
    let stage = notesctl_tests::unique("fe");
    let bucket = stage.clone();
    let s3 = s3().await;
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    stacks(&stage, &bucket, "EDFDVBD6EXAMPLE").await;
    let dir = tempfile::tempdir().unwrap();
    site(dir.path());

    let (code, v) = cli(&stage)
        .await
        .args(["sync-frontend", dir.path().to_str().unwrap()])
        .json::<SyncReport>()
        .await;
    assert_eq!(code, 0, "{v:?}");
    assert_eq!(
        (v.uploaded, v.deleted, v.unchanged),
        (8, 0, 0),
        "7 files + config.json, no .DS_Store: {v:?}"
    );
    assert!(v.bytes > 17 * 1024 * 1024);
    assert_eq!(
        v.requests,
        requests(1, 0, 12, 0),
        "seven single PUTs, and create + three parts + complete for big.bin: {v:?}"
    );

    for (key, ctype, cache) in [
        ("index.html", "text/html; charset=utf-8", "no-cache"),
        ("config.json", "application/json", "no-cache"),
        (
            "assets/app.3f2a1b9c.js",
            "text/javascript; charset=utf-8",
            "public, max-age=31536000, immutable",
        ),
        (
            "app.js",
            "text/javascript; charset=utf-8",
            "public, max-age=300",
        ),
        ("logo.svg", "image/svg+xml", "public, max-age=300"),
        ("fonts/a.woff2", "font/woff2", "public, max-age=300"),
    ] {
        let h = s3
            .head_object()
            .bucket(&bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        assert_eq!(
            (h.content_type(), h.cache_control()),
            (Some(ctype), Some(cache)),
            "{key}"
        );
    }
    let big = s3
        .head_object()
        .bucket(&bucket)
        .key("big.bin")
        .send()
        .await
        .unwrap();
    assert!(
        big.e_tag().unwrap().contains("-3"),
        "multipart: {:?}",
        big.e_tag()
    );
    let config = moto::read_object(&s3, &bucket, "config.json").await;
    let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
    assert_eq!(
        config["apiUrl"],
        format!("https://{stage}.execute-api.us-east-1.amazonaws.com")
    );
    assert_eq!(
        config["wsUrl"],
        format!("wss://{stage}-ws.execute-api.us-east-1.amazonaws.com/{stage}")
    );

    // A rebuild that changed nothing uploads nothing (the multipart file included).
    let (code, v) = cli(&stage)
        .await
        .args(["sync-frontend", dir.path().to_str().unwrap()])
        .json::<SyncReport>()
        .await;
    assert_eq!((code, v.uploaded, v.unchanged), (0, 0, 8), "{v:?}");
    assert_eq!(
        v.requests,
        requests(1, 0, 0, 0),
        "a no-op re-sync makes List calls only, the multipart object included: {v:?}"
    );

    // A same-size edit with an older modification time is uploaded.
    write(dir.path(), "app.js", b"console.log('v2');");
    let old = SystemTime::now() - Duration::from_secs(86_400 * 30);
    std::fs::File::options()
        .write(true)
        .open(dir.path().join("app.js"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let (code, v) = cli(&stage)
        .await
        .args(["sync-frontend", dir.path().to_str().unwrap(), "--dry-run"])
        .json::<SyncReport>()
        .await;
    assert_eq!((code, v.uploaded), (0, 1), "{v:?}");
    assert_eq!(
        v.plan,
        [PlannedChange {
            action: PlannedAction::Update,
            key: "app.js".into()
        }]
    );
    let body = moto::read_object(&s3, &bucket, "app.js").await;
    assert_eq!(
        &body[..],
        b"console.log('v1');",
        "--dry-run changed nothing"
    );
    let (code, v) = cli(&stage)
        .await
        .args(["sync-frontend", dir.path().to_str().unwrap()])
        .json::<SyncReport>()
        .await;
    assert_eq!((code, v.uploaded, v.unchanged), (0, 1, 7), "{v:?}");

    // --delete removes what the plan says, keeps excluded keys, and never more than half without --force.
    s3.put_object()
        .bucket(&bucket)
        .key("uploads/user.png")
        .body(b"png".to_vec().into())
        .send()
        .await
        .unwrap();
    std::fs::remove_file(dir.path().join("logo.svg")).unwrap();
    let (code, v) = cli(&stage)
        .await
        .args([
            "sync-frontend",
            dir.path().to_str().unwrap(),
            "--delete",
            "--exclude",
            "uploads/**",
        ])
        .json::<SyncReport>()
        .await;
    assert_eq!((code, v.deleted), (0, 1), "{v:?}");
    assert!(
        s3.head_object()
            .bucket(&bucket)
            .key("uploads/user.png")
            .send()
            .await
            .is_ok(),
        "excluded keys stay"
    );
    assert!(
        s3.head_object()
            .bucket(&bucket)
            .key("logo.svg")
            .send()
            .await
            .is_err()
    );

    let few = tempfile::tempdir().unwrap();
    write(few.path(), "index.html", b"<p>only</p>");
    let refused = cli(&stage)
        .await
        .args(["sync-frontend", few.path().to_str().unwrap(), "--delete"])
        .run()
        .await;
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("more than half"),
        "{}",
        refused.stderr
    );

    let empty = tempfile::tempdir().unwrap();
    let refused = cli(&stage)
        .await
        .args(["sync-frontend", empty.path().to_str().unwrap(), "--delete"])
        .run()
        .await;
    assert_eq!(refused.code, 2);
    assert!(refused.stderr.contains("no files"), "{}", refused.stderr);
    let missing = cli(&stage)
        .await
        .args(["sync-frontend", "/definitely/not/here"])
        .run()
        .await;
    assert_eq!(missing.code, 2);

    let clash = tempfile::tempdir().unwrap();
    write(clash.path(), "Logo.png", b"a");
    write(clash.path(), "logo.png", b"b");
    let refused = cli(&stage)
        .await
        .args([
            "sync-frontend",
            clash.path().to_str().unwrap(),
            "--bucket",
            &bucket,
            "--no-config",
        ])
        .run()
        .await;
    assert_eq!(refused.code, 2);
    assert!(
        refused.stderr.contains("differ only by case"),
        "{}",
        refused.stderr
    );
}

#[tokio::test]
async fn invalidate_is_idempotent_and_waits() {
    let stage = notesctl_tests::unique("inv");
    let s3 = s3().await;
    s3.create_bucket().bucket(&stage).send().await.unwrap();
    s3.put_object()
        .bucket(&stage)
        .key("index.html")
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap();
    let dist = moto::create_distribution().await;
    stacks(&stage, &stage, &dist).await;
    let (code, v) = cli(&stage)
        .await
        .args(["invalidate", "--wait", "--timeout", "60s"])
        .json::<InvalidateReport>()
        .await;
    assert_eq!(code, 0, "{v:?}");
    assert_eq!(v.status, "Completed");
    assert_eq!(v.distribution_id, dist);
    assert_eq!(v.paths, ["/*"]);
    let first = v.invalidation_id;
    // CloudFront answers a repeated caller reference with the invalidation it already has (moto
    // creates another), so a retry is idempotent exactly when the reference repeats.
    let cf = aws_sdk_cloudfront::Client::new(&moto::shared().await.sdk_config().await);
    let reference = |id: String| {
        let (cf, dist) = (cf.clone(), dist.clone());
        async move {
            let inv = cf
                .get_invalidation()
                .distribution_id(dist)
                .id(id)
                .send()
                .await
                .unwrap()
                .invalidation
                .unwrap();
            inv.invalidation_batch.unwrap().caller_reference
        }
    };
    let (_, again) = cli(&stage)
        .await
        .args(["invalidate"])
        .json::<InvalidateReport>()
        .await;
    let first_ref = reference(first.clone()).await;
    assert_eq!(
        reference(again.invalidation_id).await,
        first_ref,
        "a retry repeats the caller reference"
    );
    s3.put_object()
        .bucket(&stage)
        .key("index.html")
        .body(b"y".to_vec().into())
        .send()
        .await
        .unwrap();
    let (_, changed) = cli(&stage)
        .await
        .args(["invalidate"])
        .json::<InvalidateReport>()
        .await;
    assert_ne!(
        reference(changed.invalidation_id).await,
        first_ref,
        "new content, new invalidation"
    );
    let missing = cli(&stage)
        .await
        .args(["invalidate", "--distribution-id", "ENOSUCHDIST"])
        .run()
        .await;
    assert_eq!(missing.code, 2, "{}", missing.stderr);
}

/// Listing in parallel ranges cut by the local keys returns every object exactly once, in key order —
/// objects that are not local, and local keys that are not in the bucket, included.
#[tokio::test]
async fn range_listing_covers_the_bucket_exactly_once() {
    use notesctl::aws::s3::{Calls, list_bucket, list_in_ranges};
    let s3 = s3().await;
    let bucket = notesctl_tests::unique("ranges");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let remote: Vec<String> = (0..40)
        .map(|i| format!("k/{i:03}"))
        .chain(["a-first", "z-last", "k/015x"].map(str::to_owned))
        .collect();
    for k in &remote {
        s3.put_object()
            .bucket(&bucket)
            .key(k)
            .body(k.as_bytes().to_vec().into())
            .send()
            .await
            .unwrap();
    }
    let mut expected = remote.clone();
    expected.sort();
    // Local keys: most of the bucket, some keys the bucket lacks, none of its first and last.
    let local: Vec<String> = (0..45)
        .filter(|i| i % 7 != 3)
        .map(|i| format!("k/{i:03}"))
        .collect();
    let local_refs: Vec<&str> = local.iter().map(String::as_str).collect();
    for per_range in [1, 2, 3, 5, 999] {
        let calls = Calls::default();
        let got: Vec<String> = list_in_ranges(&s3, &bucket, &local_refs, per_range, &calls)
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(got, expected, "ranges of {per_range}");
        assert_eq!(
            calls.counts().list as usize,
            local.len() / per_range + 1,
            "one List call per range"
        );
    }
    let all = list_bucket(&s3, &bucket).await.unwrap();
    assert_eq!(all.len(), expected.len());
    assert!(all.iter().all(|o| o.size > 0 && !o.etag.is_empty()));
    let none = list_in_ranges(
        &s3,
        &notesctl_tests::unique("missing"),
        &local_refs,
        3,
        &Calls::default(),
    )
    .await
    .unwrap_err();
    assert!(format!("{none:#}").contains("does not exist"), "{none:#}");
}

/// A server that lists no ETag at all (s3s-fs): the first sync needs no HeadObject (nothing is there);
/// a re-sync reads each object's ETag with HeadObject and uploads nothing when nothing changed; an
/// edit that keeps the file's size is still seen, by content.
#[tokio::test]
async fn a_server_that_lists_no_etags_is_synced_by_content() {
    use notesctl_tests::s3s_fs::{KEY, S3sFs};
    let server = S3sFs::start().await;
    server.create_bucket("site");
    let dir = tempfile::tempdir().unwrap();
    let site = [
        (
            "index.html",
            b"<!doctype html><title>notes</title>".as_slice(),
        ),
        ("app.js", b"console.log('v1');"),
        ("assets/app.3f2a1b9c.css", b"body{margin:0}"),
    ];
    for (key, content) in site {
        write(dir.path(), key, content);
    }
    let (files, n) = (site.len(), site.len() as u64);
    let sync = || async {
        notesctl_tests::cli::Cli::new()
            .args(["--region", "us-east-1", "--endpoint-url", &server.endpoint])
            .env("AWS_ACCESS_KEY_ID", KEY)
            .env("AWS_SECRET_ACCESS_KEY", KEY)
            .args(["sync-frontend", dir.path().to_str().unwrap()])
            .args(["--bucket", "site", "--no-config"])
            .json::<SyncReport>()
            .await
    };

    let (code, first) = sync().await;
    assert_eq!((code, first.uploaded), (0, files), "{first:?}");
    assert_eq!(first.requests, requests(1, 0, n, 0), "{first:?}");

    // The premise: this server's listing has the objects but not their ETags.
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&server.endpoint)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            KEY, KEY, None, None, "test",
        ))
        .load()
        .await;
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    let listed = client
        .list_objects_v2()
        .bucket("site")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.contents().len(), files, "{listed:?}");
    assert!(
        listed.contents().iter().all(|o| o.e_tag().is_none()),
        "s3s-fs now lists ETags, so this test no longer shows a listing without them: {listed:?}"
    );

    let (code, again) = sync().await;
    assert_eq!(
        (code, again.uploaded, again.unchanged),
        (0, 0, files),
        "{again:?}"
    );
    assert_eq!(again.requests, requests(1, n, 0, 0), "{again:?}");

    let before = std::fs::read(dir.path().join("app.js")).unwrap();
    let edited = String::from_utf8(before.clone())
        .unwrap()
        .replace("v1", "v2");
    assert_eq!(edited.len(), before.len());
    write(dir.path(), "app.js", edited.as_bytes());
    let (code, edit) = sync().await;
    assert_eq!(
        (code, edit.uploaded, edit.unchanged),
        (0, 1, files - 1),
        "{edit:?}"
    );
    assert_eq!(edit.requests, requests(1, n, 1, 0), "{edit:?}");
    assert_eq!(
        std::fs::read(server.object_path("site", "app.js")).unwrap(),
        edited.as_bytes()
    );
}

/// A listing that mixes objects with and without ETags, and multipart objects uploaded by other tools:
/// the sync reads those objects' ETag and stored MD5 with HeadObject — only those — and still decides
/// by content. Served by the hand-made fake (tests/src/fake_s3.rs): neither moto nor s3s-fs lists
/// some ETags and not others, and the fake logs which objects were HEADed.
#[tokio::test]
async fn objects_the_listing_cannot_decide_are_read_with_head() {
    use md5::{Digest, Md5};
    use notesctl_tests::fake_s3::{FakeObject, FakeS3};
    let md5_hex =
        |b: &[u8]| -> String { Md5::digest(b).iter().map(|x| format!("{x:02x}")).collect() };
    let dir = tempfile::tempdir().unwrap();
    let (same, edited_old, edited_new, listed) = (
        b"export const same = 1;".as_slice(),
        b"export const v = 'a';".as_slice(),
        b"export const v = 'b';".as_slice(),
        b"listed with its ETag".as_slice(),
    );
    write(dir.path(), "same.js", same);
    write(dir.path(), "edited.js", edited_new);
    write(dir.path(), "listed.txt", listed);
    write(dir.path(), "new.css", b"a{}");
    let objects = [
        (
            "same.js",
            FakeObject {
                size: same.len() as u64,
                etag: md5_hex(same),
                ..Default::default()
            },
        ),
        (
            "edited.js",
            FakeObject {
                size: edited_old.len() as u64,
                etag: md5_hex(edited_old),
                ..Default::default()
            },
        ),
        (
            "listed.txt",
            FakeObject {
                size: listed.len() as u64,
                etag: md5_hex(listed),
                listed_etag: true,
            },
        ),
        (
            "remote-only.txt",
            FakeObject {
                size: 1,
                etag: md5_hex(b"x"),
                ..Default::default()
            },
        ),
    ]
    .into_iter()
    .map(|(k, o)| (k.to_owned(), o))
    .collect();
    let s3 = FakeS3::start(objects).await;
    let (code, v) = notesctl_tests::cli::Cli::new()
        .args(["--region", "us-east-1", "--endpoint-url", &s3.endpoint])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .args([
            "sync-frontend",
            dir.path().to_str().unwrap(),
            "--bucket",
            "site",
            "--no-config",
        ])
        .json::<SyncReport>()
        .await;
    assert_eq!(code, 0, "{v:?}");
    assert_eq!(
        (v.uploaded, v.unchanged),
        (2, 2),
        "edited.js and new.css go up; same.js and listed.txt stay: {v:?}"
    );
    assert_eq!(
        v.requests,
        requests(1, 2, 2, 0),
        "HEAD for same.js and edited.js only, not for listed.txt: {v:?}"
    );
    let mut heads: Vec<String> = s3
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("HEAD "))
        .collect();
    heads.sort();
    assert_eq!(
        heads,
        ["HEAD /site/edited.js", "HEAD /site/same.js"],
        "{heads:?}"
    );
    assert_eq!(s3.object("edited.js").unwrap().etag, md5_hex(edited_new));
    assert_eq!(s3.object("new.css").unwrap().etag, md5_hex(b"a{}"));
}

/// `--exclude` leaves local files out of the upload (not only remote keys out of `--delete`).
#[tokio::test]
async fn excluded_local_files_are_not_uploaded() {
    let stage = notesctl_tests::unique("fx");
    let bucket = stage.clone();
    s3().await
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    stacks(&stage, &bucket, "EDFDVBD6EXAMPLE").await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "index.html", b"<p>notes</p>");
    write(dir.path(), "app.js", b"1");
    write(dir.path(), "app.js.map", b"{}");
    write(dir.path(), "drafts/next.html", b"<p>soon</p>");
    write(dir.path(), "assets/drafts.css", b"p{}");
    let (code, v) = cli(&stage)
        .await
        .args([
            "sync-frontend",
            dir.path().to_str().unwrap(),
            "--exclude",
            "*.map",
            "--exclude",
            "drafts/**",
        ])
        .json::<SyncReport>()
        .await;
    assert_eq!((code, v.uploaded), (0, 4), "{v:?}");
    assert_eq!(
        moto::keys(&bucket).await,
        ["app.js", "assets/drafts.css", "config.json", "index.html"],
        "a pattern matches whole paths: assets/drafts.css is not under drafts/"
    );
}

/// A part that cannot be uploaded fails the sync, and its multipart upload is aborted rather than
/// left in the bucket (where S3 charges for its parts until a lifecycle rule removes them).
#[tokio::test]
async fn a_failed_multipart_upload_is_aborted() {
    use notesctl_tests::faults::{Fault, FaultProxy, Plan};
    let stage = notesctl_tests::unique("mp");
    let bucket = stage.clone();
    let s3 = s3().await;
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    stacks(&stage, &bucket, "EDFDVBD6EXAMPLE").await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "index.html", b"<p>notes</p>");
    write(dir.path(), "big.bin", &vec![7u8; 9 * 1024 * 1024]);
    let m = moto::shared().await;
    let plan = Plan {
        ops: vec!["UploadPart".into()],
        rate: 1.0,
        ..Plan::new(Fault::ExpiredToken, 1)
    };
    let proxy = FaultProxy::start(&m.endpoint, plan).await;
    let r = m
        .cli_at(&stage, &proxy.endpoint)
        .args(["sync-frontend", dir.path().to_str().unwrap()])
        .run()
        .await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("big.bin") && r.stderr.contains("ExpiredToken"),
        "{}",
        r.stderr
    );
    assert!(proxy.injected() >= 1, "{:?}", proxy.seen());
    let left = s3
        .list_multipart_uploads()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    assert!(left.uploads().is_empty(), "{:?}", left.uploads());
    assert!(
        !moto::keys(&bucket).await.contains(&"big.bin".to_owned()),
        "no half file"
    );
}

/// An object another tool uploaded in parts of its own size has an ETag (`…-2`) no local digest can
/// match; the MD5 it stored in metadata decides (one HEAD). Without that metadata, or with another
/// MD5, the file goes up again.
#[tokio::test]
async fn an_object_another_tool_uploaded_in_parts_is_judged_by_its_md5_metadata() {
    use md5::{Digest, Md5};
    let md5_hex =
        |b: &[u8]| -> String { Md5::digest(b).iter().map(|x| format!("{x:02x}")).collect() };
    let bucket = notesctl_tests::unique("fm");
    let s3 = s3().await;
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Above S3's 5 MiB minimum part, below notesctl's 8 MiB part: notesctl would send it whole.
    let same: Vec<u8> = (0..6 * 1024 * 1024).map(|i| (i % 253) as u8).collect();
    let mut changed = same.clone();
    changed[0] ^= 1;
    write(dir.path(), "same.bin", &same);
    write(dir.path(), "changed.bin", &changed);
    write(dir.path(), "unmarked.bin", &same);
    // Uploaded by "another tool": 5 MiB parts, with (or without) the MD5 in metadata.
    for (key, content, md5) in [
        ("same.bin", &same, Some(md5_hex(&same))),
        ("changed.bin", &same, Some(md5_hex(&same))),
        ("unmarked.bin", &same, None),
    ] {
        let created = s3
            .create_multipart_upload()
            .bucket(&bucket)
            .key(key)
            .set_metadata(md5.map(|m| [("md5".to_owned(), m)].into()))
            .send()
            .await
            .unwrap();
        let id = created.upload_id().unwrap();
        let mut parts = Vec::new();
        for (n, chunk) in content.chunks(5 * 1024 * 1024).enumerate() {
            let n = n as i32 + 1;
            let part = s3
                .upload_part()
                .bucket(&bucket)
                .key(key)
                .upload_id(id)
                .part_number(n)
                .body(chunk.to_vec().into())
                .send()
                .await
                .unwrap();
            parts.push(
                aws_sdk_s3::types::CompletedPart::builder()
                    .part_number(n)
                    .e_tag(part.e_tag().unwrap())
                    .build(),
            );
        }
        s3.complete_multipart_upload()
            .bucket(&bucket)
            .key(key)
            .upload_id(id)
            .multipart_upload(
                aws_sdk_s3::types::CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let head = s3
            .head_object()
            .bucket(&bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        assert!(head.e_tag().unwrap().ends_with("-2\""), "{head:?}");
    }
    let (code, v) = cli(&bucket)
        .await
        .args([
            "sync-frontend",
            dir.path().to_str().unwrap(),
            "--bucket",
            &bucket,
            "--no-config",
        ])
        .json::<SyncReport>()
        .await;
    assert_eq!(code, 0, "{v:?}");
    assert_eq!(
        (v.uploaded, v.unchanged),
        (2, 1),
        "same.bin stays; changed.bin and unmarked.bin go up: {v:?}"
    );
    assert_eq!(v.requests.head, 3, "one HEAD per undecidable ETag: {v:?}");
}
