//! `deploy`, `outputs`, `destroy` and `status` against moto's CloudFormation, with the stacks moto can
//! run (event, data). The code stacks use `Fn::ImportValue` with a nested `Fn::Sub`, which moto 5.2
//! cannot parse: the code's way to them (upload, `CodeBucket`/`CodeKey`, the functions' `CodeSha256`)
//! runs here on a template of their shape, and the rest on recorded responses in
//! cli/src/commands/deploy/.

use notesctl::commands::deploy::{DeployReport, StackAction};
use notesctl::commands::destroy::DestroyReport;
use notesctl::commands::outputs::{OutputsReport, WsUrl};
use notesctl::commands::status::StatusReport;
use notesctl_tests::moto::{self, CODE_STACK, cli};

fn templates() -> String {
    notesctl_tests::workspace_root()
        .join("templates")
        .display()
        .to_string()
}

/// The processing queue's visibility timeout, as SQS has it.
async fn visibility_timeout(sdk: &aws_config::SdkConfig, stage: &str) -> u64 {
    use aws_sdk_sqs::types::QueueAttributeName;
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let url = sqs
        .get_queue_url()
        .queue_name(format!("{stage}-note-processing-queue"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::VisibilityTimeout)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&QueueAttributeName::VisibilityTimeout]
        .parse()
        .unwrap()
}

/// Resource types moto 5.2.5's CloudFormation accepts in a template without creating them
/// (templates/README.md names them); everything else must exist once the stack is complete.
const NOT_CREATED_BY_MOTO: &[&str] = &["AWS::SQS::QueuePolicy"];

/// Every resource of the stack's template exists in its service, found by the name it was given
/// (moto can report CREATE_COMPLETE with a resource missing).
async fn every_resource_exists(sdk: &aws_config::SdkConfig, stage: &str, short: &str) {
    let text = std::fs::read_to_string(format!("{}/{short}.yaml", templates())).unwrap();
    let doc = notesctl::template::parse(&text).unwrap();
    let name = |v: &serde_json::Value| {
        v["Fn::Sub"]
            .as_str()
            .unwrap_or_else(|| panic!("{short}: a name by !Sub: {v}"))
            .replace("${Stage}", stage)
    };
    let (sqs, events, ddb) = (
        aws_sdk_sqs::Client::new(sdk),
        aws_sdk_eventbridge::Client::new(sdk),
        aws_sdk_dynamodb::Client::new(sdk),
    );
    for (id, r) in doc["Resources"].as_object().unwrap() {
        let props = &r["Properties"];
        let ty = r["Type"].as_str().unwrap();
        let found = match ty {
            "AWS::SQS::Queue" => sqs
                .get_queue_url()
                .queue_name(name(&props["QueueName"]))
                .send()
                .await
                .is_ok(),
            "AWS::Events::EventBus" => events
                .describe_event_bus()
                .name(name(&props["Name"]))
                .send()
                .await
                .is_ok(),
            "AWS::Events::Rule" => events
                .describe_rule()
                .name(name(&props["Name"]))
                .event_bus_name(format!("{stage}-notes-event-bus"))
                .send()
                .await
                .is_ok_and(|rule| rule.arn().is_some()),
            "AWS::Events::Archive" => events
                .describe_archive()
                .archive_name(name(&props["ArchiveName"]))
                .send()
                .await
                .is_ok(),
            "AWS::DynamoDB::Table" => ddb
                .describe_table()
                .table_name(name(&props["TableName"]))
                .send()
                .await
                .is_ok(),
            t if NOT_CREATED_BY_MOTO.contains(&t) => continue,
            other => panic!("{short}/{id}: no existence check for {other}"),
        };
        assert!(
            found,
            "{short}/{id} ({ty}) does not exist after a complete deploy"
        );
    }
}

/// The parameters a stack was given, by key.
async fn stack_parameters(name: &str) -> std::collections::BTreeMap<String, String> {
    let cfn = aws_sdk_cloudformation::Client::new(&moto::shared().await.sdk_config().await);
    let stack = cfn
        .describe_stacks()
        .stack_name(name)
        .send()
        .await
        .unwrap()
        .stacks
        .unwrap()
        .remove(0);
    stack
        .parameters()
        .iter()
        .map(|p| {
            (
                p.parameter_key().unwrap_or_default().to_owned(),
                p.parameter_value().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn actions(v: &DeployReport) -> Vec<StackAction> {
    v.stacks.iter().map(|s| s.action).collect()
}

#[tokio::test]
async fn create_unchanged_update_outputs_destroy() {
    let stage = notesctl_tests::unique("dp");
    let bucket = moto::code_bucket(&stage).await;
    let deploy = |extra: &'static [&'static str]| {
        let (stage, bucket) = (stage.clone(), bucket.clone());
        async move {
            cli(&stage)
                .await
                .args([
                    "deploy",
                    "--yes",
                    "--artifacts-bucket",
                    &bucket,
                    "--templates",
                    &templates(),
                    "--stack",
                    "event",
                    "--stack",
                    "data",
                ])
                .args(extra.iter().copied())
                .json::<DeployReport>()
                .await
        }
    };
    let (code, v) = deploy(&[]).await;
    assert_eq!(code, 0, "{v:?}");
    let names: Vec<&str> = v.stacks.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            format!("{stage}-event-stack"),
            format!("{stage}-data-stack")
        ]
    );
    assert_eq!(actions(&v), [StackAction::Created, StackAction::Created]);
    assert_eq!(v.stacks[0].status, "CREATE_COMPLETE");
    let sdk = moto::shared().await.sdk_config().await;
    // A table created now never held the unsharded feed: the deploy marks it so, and the app's
    // readers query the feed's shards alone.
    let (pk, sk) = notes_handlers::domain::feed::LEGACY_EMPTIED;
    let mark = aws_sdk_dynamodb::Client::new(&sdk)
        .get_item()
        .table_name(notesctl::names::data_table(&stage))
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(pk.into()))
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S(sk.into()))
        .send()
        .await
        .unwrap();
    assert!(mark.item.is_some(), "the new table is marked");
    for short in ["event", "data"] {
        every_resource_exists(&sdk, &stage, short).await;
    }
    assert_eq!(
        visibility_timeout(&sdk, &stage).await,
        180,
        "6 × save's 30 s"
    );

    // moto's change sets never say "no changes"; deploy compares what is deployed and says unchanged.
    let (code, v) = deploy(&[]).await;
    assert_eq!(code, 0, "{v:?}");
    assert_eq!(
        actions(&v),
        [StackAction::Unchanged, StackAction::Unchanged]
    );

    let (code, v) = deploy(&["--save-timeout", "60"]).await;
    assert_eq!(code, 0, "{v:?}");
    assert_eq!(actions(&v), [StackAction::Updated, StackAction::Unchanged]);
    let parameters = stack_parameters(&format!("{stage}-event-stack")).await;
    assert_eq!(parameters["SaveFunctionTimeout"], "60");
    assert_eq!(
        visibility_timeout(&sdk, &stage).await,
        360,
        "6 × save's 60 s"
    );
    assert!(
        !parameters.contains_key("CodeKey"),
        "only declared parameters are passed"
    );

    let (code, v) = cli(&stage)
        .await
        .args(["outputs"])
        .json::<OutputsReport>()
        .await;
    assert_eq!(code, 0, "{v:?}");
    assert!(v.0.contains_key(&format!("{stage}-data-stack")), "{v:?}");

    let (code, v) = cli(&stage)
        .await
        .args(["status"])
        .json::<StatusReport>()
        .await;
    assert_eq!(code, 0, "{v:?}");
    let states: Vec<&str> = v.stacks.iter().map(|s| s.status.as_str()).collect();
    assert_eq!(
        states,
        [
            "UPDATE_COMPLETE",
            "CREATE_COMPLETE",
            "NOT_DEPLOYED",
            "NOT_DEPLOYED",
            "NOT_DEPLOYED",
            "NOT_DEPLOYED"
        ]
    );
    let queues = v.queues.expect("the deployed queues are measured");
    assert_eq!(queues.queue.name, format!("{stage}-note-processing-queue"));

    let refused = cli(&stage).await.args(["destroy"]).run().await;
    assert_eq!(
        refused.code, 2,
        "no --yes without a terminal: {}",
        refused.stderr
    );
    // A note answered 202 but not saved yet sits in the queue: destroy says so and keeps it.
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue_url = sqs
        .get_queue_url()
        .queue_name(format!("{stage}-note-processing-queue"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    sqs.send_message()
        .queue_url(&queue_url)
        .message_body("a note on its way")
        .send()
        .await
        .unwrap();
    let held = cli(&stage)
        .await
        .args(["destroy", "--yes", "--artifacts-bucket", &bucket])
        .run()
        .await;
    assert_eq!(held.code, 2, "{}", held.stderr);
    assert!(
        held.stderr
            .contains(&format!("{stage}-note-processing-queue holds 1 notes"))
            && held.stderr.contains("--force"),
        "{}",
        held.stderr
    );
    let (code, v) = cli(&stage)
        .await
        .args(["destroy", "--yes", "--force", "--artifacts-bucket", &bucket])
        .json::<DestroyReport>()
        .await;
    assert_eq!(code, 0, "{v:?}");
    assert_eq!(
        v.deleted,
        [
            format!("{stage}-data-stack"),
            format!("{stage}-event-stack")
        ],
        "reverse order"
    );
    assert_eq!(
        v.with_them,
        [
            format!("queue {stage}-note-processing-queue (1 messages)"),
            format!("dead-letter queue {stage}-note-processing-dlq (0 messages)"),
            format!("event archive {stage}-notes-archive"),
        ]
    );
    assert_eq!(v.retained.len(), 2, "{v:?}");
    assert!(v.retained[0].starts_with(&format!(
        "artifacts bucket {bucket} (shared by every stage; this stage's "
    )));
    assert!(v.retained[1].starts_with(&format!("table {stage}-data-table (DeletionPolicy Retain")));
    let missing = cli(&stage).await.args(["outputs"]).run().await;
    assert_eq!(missing.code, 2);
}

#[tokio::test]
async fn a_failing_template_is_reported_and_the_next_deploy_recovers() {
    let stage = notesctl_tests::unique("fl");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("data.yaml"),
        "Parameters:\n  Stage:\n    Type: String\nResources:\n  Table:\n    Type: AWS::DynamoDB::Table\n    Properties:\n      TableName: !ImportValue no-such-export\n      BillingMode: PAY_PER_REQUEST\n      AttributeDefinitions:\n        - AttributeName: pk\n          AttributeType: S\n      KeySchema:\n        - AttributeName: pk\n          KeyType: HASH\n",
    )
    .unwrap();
    let (code, v) = cli(&stage)
        .await
        .args([
            "deploy",
            "--yes",
            "--stack",
            "data",
            "--no-validate",
            "--templates",
            dir.path().to_str().unwrap(),
        ])
        .json::<DeployReport>()
        .await;
    assert_eq!(code, 1, "{v:?}");
    assert_eq!(v.stacks[0].action, StackAction::Failed);
    assert!(
        v.stacks[0].failures[0].reason.contains("no-such-export"),
        "{v:?}"
    );
    let (code, v) = cli(&stage)
        .await
        .args([
            "deploy",
            "--yes",
            "--stack",
            "data",
            "--templates",
            &templates(),
        ])
        .json::<DeployReport>()
        .await;
    assert_eq!(code, 0, "the stack left behind is replaced: {v:?}");
    assert_eq!(v.stacks[0].action, StackAction::Created);
}

#[tokio::test]
async fn preview_changes_nothing_and_ci_needs_yes() {
    let stage = notesctl_tests::unique("pv");
    let run = cli(&stage)
        .await
        .args([
            "deploy",
            "--preview",
            "--stack",
            "event",
            "--templates",
            &templates(),
        ])
        .run()
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("ProcessingQueue") && run.stderr.contains("AWS::SQS::Queue"),
        "the change set summary: {}",
        run.stderr
    );
    let cfn = aws_sdk_cloudformation::Client::new(&moto::shared().await.sdk_config().await);
    let exists = cfn
        .describe_stacks()
        .stack_name(format!("{stage}-event-stack"))
        .send()
        .await;
    assert!(
        exists.is_err() || exists.unwrap().stacks().is_empty(),
        "a preview leaves no stack"
    );

    let refused = cli(&stage)
        .await
        .args(["deploy", "--stack", "event", "--templates", &templates()])
        .run()
        .await;
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("--yes"), "{}", refused.stderr);
}

#[tokio::test]
async fn ws_url_prints_the_url_alone() {
    let stage = notesctl_tests::unique("ws");
    let url = format!("wss://abc123.execute-api.us-east-1.amazonaws.com/{stage}");
    moto::fake_stack(&stage, "websocket", &[("WebSocketUrl", url.clone())]).await;
    let run = cli(&stage).await.args(["ws-url"]).run().await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, format!("{url}\n"), "only the URL, for scripts");
    let run = cli(&stage)
        .await
        .args(["ws-url", "--output", "json"])
        .run()
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&run.stdout).unwrap(),
        serde_json::json!({"webSocketUrl": url}),
        "the documented shape"
    );
    assert_eq!(run.json::<WsUrl>().web_socket_url, url);
    let missing = cli("no-such-stage").await.args(["ws-url"]).run().await;
    assert_eq!(missing.code, 2);
    assert!(
        missing.stderr.contains("does not exist"),
        "{}",
        missing.stderr
    );
}

/// `deploy --frontend DIR`: after the stacks, the site is synced (with config.json) and the CDN
/// invalidated, all in one report.
#[tokio::test]
async fn deploy_ships_the_frontend_after_the_stacks() {
    let stage = notesctl_tests::unique("sh");
    let sdk = moto::shared().await.sdk_config().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket().bucket(&stage).send().await.unwrap();
    let dist = moto::create_distribution().await;
    moto::fake_stack(
        &stage,
        "auth",
        &[("ApiUrl", "https://api.example".to_owned())],
    )
    .await;
    moto::fake_stack(
        &stage,
        "websocket",
        &[("WebSocketUrl", "wss://ws.example/prod".to_owned())],
    )
    .await;
    moto::fake_stack(
        &stage,
        "frontend",
        &[
            ("BucketName", stage.clone()),
            ("DistributionId", dist.clone()),
        ],
    )
    .await;
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "<h1>notes</h1>").unwrap();
    std::fs::write(site.path().join("app.js"), "1").unwrap();
    let (code, v) = cli(&stage)
        .await
        .args([
            "deploy",
            "--yes",
            "--stack",
            "data",
            "--templates",
            &templates(),
            "--frontend",
            site.path().to_str().unwrap(),
        ])
        .json::<DeployReport>()
        .await;
    assert_eq!(code, 0, "{v:?}");
    assert_eq!(v.stacks[0].action, StackAction::Created);
    let shipped = v.frontend.expect("the frontend was shipped");
    assert_eq!(shipped.sync.uploaded, 3, "two files and config.json");
    assert_eq!(shipped.invalidation.status, "Completed");
    assert_eq!(shipped.invalidation.distribution_id, dist);
    let config = moto::read_object(&s3, &stage, "config.json").await;
    let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
    assert_eq!(
        config,
        serde_json::json!({"apiUrl": "https://api.example", "wsUrl": "wss://ws.example/prod"})
    );
}

/// `deploy` runs `validate` first: a template it finds wrong stops the deploy before AWS sees it.
#[tokio::test]
async fn deploy_validates_before_touching_aws() {
    let stage = notesctl_tests::unique("va");
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(templates()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let auth = dir.path().join("auth.yaml");
    let text = std::fs::read_to_string(&auth).unwrap();
    std::fs::write(
        &auth,
        text.replace("RouteKey: GET /auth/user", "RouteKey: GET /auth/me"),
    )
    .unwrap();
    let (code, v) = cli(&stage)
        .await
        .args([
            "deploy",
            "--yes",
            "--stack",
            "event",
            "--templates",
            dir.path().to_str().unwrap(),
        ])
        .json::<DeployReport>()
        .await;
    assert_eq!(code, 1, "{v:?}");
    assert!(v.stacks.is_empty(), "nothing deployed: {v:?}");
    assert!(
        v.findings.iter().any(|f| f.resource == "GetUserRoute"),
        "{v:?}"
    );
    assert!(v.problem.unwrap().contains("--no-validate"));
    let cfn = aws_sdk_cloudformation::Client::new(&moto::shared().await.sdk_config().await);
    let exists = cfn
        .describe_stacks()
        .stack_name(format!("{stage}-event-stack"))
        .send()
        .await;
    assert!(exists.is_err(), "AWS was not touched");
}

/// `destroy` of a stage with a site: the site bucket is emptied before its stack goes (CloudFormation
/// cannot delete a bucket with objects in it), and of the shared artifacts bucket only this stage's
/// code zips are deleted; another stage's stay, and the bucket is kept.
#[tokio::test]
async fn destroy_empties_the_site_bucket_and_deletes_only_this_stages_code_zips() {
    let stage = notesctl_tests::unique("ds");
    let other = format!("{stage}x");
    let (site, artifacts) = (format!("{stage}-site"), format!("{stage}-artifacts"));
    let s3 = moto::s3().await;
    for bucket in [&site, &artifacts] {
        s3.create_bucket().bucket(bucket).send().await.unwrap();
    }
    let put = |bucket: &str, key: String| {
        s3.put_object()
            .bucket(bucket)
            .key(key)
            .body(b"x".to_vec().into())
            .send()
    };
    for key in ["index.html", "app.js", "assets/logo.svg"] {
        put(&site, key.into()).await.unwrap();
    }
    let ours = [
        format!("{stage}/notes-lambda/aaa.zip"),
        format!("{stage}/notes-lambda/bbb.zip"),
    ];
    let theirs = format!("{other}/notes-lambda/ccc.zip");
    for key in ours.iter().chain([&theirs]) {
        put(&artifacts, key.clone()).await.unwrap();
    }
    moto::fake_stack(&stage, "frontend", &[("BucketName", site.clone())]).await;

    let (code, v) = cli(&stage)
        .await
        .args(["destroy", "--yes", "--artifacts-bucket", &artifacts])
        .json::<DestroyReport>()
        .await;
    assert_eq!(code, 0, "{v:?}");
    assert_eq!(v.deleted, [format!("{stage}-frontend-stack")]);
    assert_eq!(v.with_them, [format!("site bucket {site} (3 objects)")]);
    assert_eq!(
        v.retained,
        [format!(
            "artifacts bucket {artifacts} (shared by every stage; this stage's 2 objects deleted: code zips, templates, releases)"
        )]
    );
    assert_eq!(moto::keys(&site).await, Vec::<String>::new(), "emptied");
    assert_eq!(
        moto::keys(&artifacts).await,
        [theirs],
        "another stage's zip stays"
    );
}

/// The audit's case, on a moto that enforces IAM: credentials that may delete the stacks but not
/// read the queues (AccessDenied on GetQueueUrl). Only "no such queue" counts as empty, so destroy
/// refuses — one line naming the queue, the cause and --force — and deletes nothing: not the stack,
/// not the queued note, not the release records. With --force it goes on, and says the messages
/// could not be counted.
#[tokio::test]
async fn destroy_refuses_when_the_queues_cannot_be_read() {
    let moto = moto::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "1000000000")]).await;
    let root = moto.sdk_config().await;
    let stage = notesctl_tests::unique("dq");
    let (queue, dlq) = (
        format!("{stage}-note-processing-queue"),
        format!("{stage}-note-processing-dlq"),
    );
    let sqs = aws_sdk_sqs::Client::new(&root);
    for name in [&queue, &dlq] {
        sqs.create_queue().queue_name(name).send().await.unwrap();
    }
    let url = sqs
        .get_queue_url()
        .queue_name(&queue)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    sqs.send_message()
        .queue_url(&url)
        .message_body("a note on its way")
        .send()
        .await
        .unwrap();
    let cfn = aws_sdk_cloudformation::Client::new(&root);
    cfn.create_stack()
        .stack_name(format!("{stage}-event-stack"))
        .template_body(
            r#"{"Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}}}"#,
        )
        .send()
        .await
        .unwrap();
    let bucket = format!("{stage}-code");
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&root)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let release = format!("{stage}/releases/20261202-010000-000.json");
    s3.put_object()
        .bucket(&bucket)
        .key(&release)
        .body(b"{}".to_vec().into())
        .send()
        .await
        .unwrap();
    // A user that may do everything destroy does but read the queues.
    let iam = aws_sdk_iam::Client::new(&root);
    let user = notesctl_tests::unique("destroyer");
    iam.create_user().user_name(&user).send().await.unwrap();
    let policy = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": ["cloudformation:*", "s3:*", "sts:GetCallerIdentity"], "Resource": "*"}]});
    iam.put_user_policy()
        .user_name(&user)
        .policy_name("no-sqs")
        .policy_document(policy.to_string())
        .send()
        .await
        .unwrap();
    let key = iam
        .create_access_key()
        .user_name(&user)
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap();
    let on = reqwest::Client::new()
        .post(format!("{}/moto-api/reset-auth", moto.endpoint))
        .header("content-type", "text/plain")
        .body("0")
        .send()
        .await
        .unwrap();
    assert!(on.status().is_success(), "IAM enforcement did not start");
    let destroy = |force: bool| {
        moto.cli(&stage)
            .env("AWS_ACCESS_KEY_ID", &key.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &key.secret_access_key)
            .args(["destroy", "--yes", "--artifacts-bucket", &bucket])
            .args(force.then_some("--force"))
    };

    let refused = destroy(false).run().await;
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    let line = refused.stderr.trim();
    assert!(
        !line.contains('\n')
            && line.contains("refusing to destroy")
            && line.contains(&queue)
            && line.contains("looking up queue")
            && line.contains("--force"),
        "{line}"
    );
    // Nothing deleted (read back as that user, who may read stacks and objects).
    let admin = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&moto.endpoint)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            &key.access_key_id,
            &key.secret_access_key,
            None,
            None,
            "destroyer",
        ))
        .load()
        .await;
    let described = aws_sdk_cloudformation::Client::new(&admin)
        .describe_stacks()
        .stack_name(format!("{stage}-event-stack"))
        .send()
        .await
        .expect("the event stack is still there");
    assert_eq!(described.stacks().len(), 1);
    let kept = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&admin)
            .force_path_style(true)
            .build(),
    )
    .head_object()
    .bucket(&bucket)
    .key(&release)
    .send()
    .await;
    assert!(kept.is_ok(), "the release record stays: {kept:?}");

    let (code, v) = destroy(true).json::<DestroyReport>().await;
    assert_eq!(code, 0, "{v:?}");
    assert_eq!(v.deleted, [format!("{stage}-event-stack")]);
    assert!(
        v.with_them.contains(&format!(
            "queue {queue} (its messages could not be counted)"
        )),
        "{v:?}"
    );
}

// A stack with functions: `deploy` uploads the zip under its content address to the artifacts
// bucket once, passes `CodeBucket`/`CodeKey` to the stack, and checks that the function runs that
// zip. (A small template of the same shape as auth.yaml: moto 5.2 cannot parse the real code stacks'
// imports. The bucket is made beforehand: the TLS-only policy `deploy` gives a bucket it creates is
// enforced by moto, which serves plain HTTP; that creation is tested on recorded answers in
// cli/src/aws/artifacts.rs.)

/// A stage of the code stack: a templates folder holding [`CODE_STACK`] as `auth.yaml`, an artifacts
/// folder, and a code bucket made beforehand (moto enforces the TLS-only policy of a bucket notesctl
/// creates, over its plain HTTP).
struct CodeStage {
    stage: String,
    templates: tempfile::TempDir,
    artifacts: tempfile::TempDir,
    bucket: String,
}

impl CodeStage {
    async fn new(prefix: &str) -> CodeStage {
        let stage = notesctl_tests::unique(prefix);
        let templates = tempfile::tempdir().unwrap();
        std::fs::write(templates.path().join("auth.yaml"), CODE_STACK).unwrap();
        let bucket = moto::code_bucket(&stage).await;
        CodeStage {
            stage,
            templates,
            artifacts: tempfile::tempdir().unwrap(),
            bucket,
        }
    }

    /// Zip number `n` of this stage (each differs), written where `deploy` reads it.
    fn ship(&self, n: u32) -> Vec<u8> {
        let zip = self.zip(n);
        std::fs::write(self.artifacts.path().join("notes-lambda-x86_64.zip"), &zip).unwrap();
        zip
    }

    fn zip(&self, n: u32) -> Vec<u8> {
        notesctl::commands::package::lambda_zip(
            format!("#!/bin/sh\n# {} {n}\n", self.stage).as_bytes(),
        )
    }

    fn edit_template(&self, text: &str) {
        std::fs::write(self.templates.path().join("auth.yaml"), text).unwrap();
    }

    /// The flags `deploy` and `diff` take for it.
    fn flags(&self) -> Vec<String> {
        [
            "--stack",
            "auth",
            "--arch",
            "x86_64",
            "--templates",
            self.templates.path().to_str().unwrap(),
            "--artifacts",
            self.artifacts.path().to_str().unwrap(),
            "--artifacts-bucket",
            &self.bucket,
        ]
        .map(str::to_owned)
        .to_vec()
    }
}

#[tokio::test]
async fn a_code_stack_gets_the_zip_uploaded_once_and_its_key_as_parameters() {
    let cs = CodeStage::new("cs").await;
    let (stage, bucket) = (cs.stage.clone(), cs.bucket.clone());
    let zip = cs.ship(1);
    let deploy = async || {
        cli(&stage)
            .await
            .args(["--output", "json", "deploy", "--yes", "--no-validate"])
            .args(cs.flags())
            .run()
            .await
    };
    let first = deploy().await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    let report: DeployReport = serde_json::from_str(&first.stdout).unwrap();
    assert!(report.code_mismatches.is_empty(), "{report:?}");
    let key = notesctl::aws::artifacts::code_key(&stage, &zip);
    assert!(
        first
            .stderr
            .contains(&format!("uploaded the code to s3://{bucket}/{key}")),
        "{}",
        first.stderr
    );

    let s3 = moto::s3().await;
    let stored = s3
        .get_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(stored.body.collect().await.unwrap().to_vec(), zip);
    assert!(!first.stderr.contains("created the artifacts bucket"));

    let sdk = moto::shared().await.sdk_config().await;
    let parameters = stack_parameters(&format!("{stage}-auth-stack")).await;
    assert_eq!(parameters["CodeBucket"], bucket);
    assert_eq!(parameters["CodeKey"], key);
    let function = aws_sdk_lambda::Client::new(&sdk)
        .get_function()
        .function_name(format!("{stage}-auth-signup"))
        .send()
        .await
        .unwrap();
    use base64::Engine;
    use sha2::Digest;
    assert_eq!(
        function.configuration().unwrap().code_sha256(),
        Some(
            base64::engine::general_purpose::STANDARD
                .encode(sha2::Sha256::digest(&zip))
                .as_str()
        ),
        "the function runs the uploaded zip"
    );

    // The same zip again: nothing to upload, nothing to change.
    let again = deploy().await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        !again.stderr.contains("uploaded the code"),
        "{}",
        again.stderr
    );
}

/// `diff` against a deployed code stack: nothing (exit 0); a new zip is the `CodeKey` parameter and
/// the function that uses it; an edited template shows each changed property old → new, the function
/// a new name replaces, and the IAM grant added; `--change-set` asks CloudFormation and leaves no
/// change set behind; a stage never deployed is all added. Exit 1 whenever something differs.
#[tokio::test]
async fn diff_names_what_a_deploy_would_change() {
    use notesctl::commands::deploy::compare::{Action, Replacement};
    use notesctl::commands::diff::DiffReport;
    let cs = CodeStage::new("df").await;
    let stage = cs.stage.clone();
    let v1 = cs.ship(1);
    let diff = async |extra: &[&str]| -> (i32, DiffReport) {
        cli(&stage)
            .await
            .args(["diff"])
            .args(cs.flags())
            .args(extra.iter().copied())
            .json::<DiffReport>()
            .await
    };

    let never = diff(&[]).await;
    assert_eq!(never.0, 1, "{:?}", never.1);
    let s = &never.1.stacks[0];
    assert!(!s.deployed && s.differs, "{s:?}");
    let added: Vec<(&str, Action)> = s
        .resources
        .iter()
        .map(|r| (r.logical_id.as_str(), r.action))
        .collect();
    assert_eq!(added, [("Role", Action::Added), ("Signup", Action::Added)]);

    let deployed = cli(&stage)
        .await
        .args(["deploy", "--yes", "--no-validate"])
        .args(cs.flags())
        .run()
        .await;
    assert_eq!(deployed.code, 0, "{}", deployed.stderr);
    let (code, same) = diff(&[]).await;
    assert_eq!(code, 0, "{same:?}");
    assert!(
        same.stacks[0].deployed && !same.stacks[0].differs,
        "{same:?}"
    );
    assert_eq!(same.code, None, "the zip was compared");

    // No zip packaged: the templates are compared all the same, with the code the stack has, and
    // the report says the code was not; `--change-set` needs the zip.
    let zip = notesctl::lambda::zip_path(cs.artifacts.path(), notesctl::lambda::Arch::X86_64);
    let aside = cs.artifacts.path().join("aside.zip");
    std::fs::rename(&zip, &aside).unwrap();
    let (code, templates_only) = diff(&[]).await;
    assert_eq!(code, 0, "{templates_only:?}");
    assert!(!templates_only.stacks[0].differs, "{templates_only:?}");
    let said = templates_only.code.clone().unwrap_or_default();
    assert!(
        said.starts_with(&format!("not compared: no zip at {}", zip.display()))
            && said.contains("notesctl package --arch x86_64"),
        "{said}"
    );
    cs.edit_template(&CODE_STACK.replace(
        "${Stage}-auth-signup\"",
        "${Stage}-auth-signup\"\n      MemorySize: 512",
    ));
    let (code, edited) = diff(&[]).await;
    assert_eq!(code, 1, "{edited:?}");
    let s = &edited.stacks[0];
    assert!(s.parameters.is_empty(), "CodeKey is the stack's own: {s:?}");
    assert_eq!(s.resources.len(), 1, "{s:?}");
    let refused = cli(&stage)
        .await
        .args(["diff", "--change-set"])
        .args(cs.flags())
        .run()
        .await;
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused.stderr.contains("--change-set needs the code's zip"),
        "{}",
        refused.stderr
    );
    cs.edit_template(CODE_STACK);
    std::fs::rename(&aside, &zip).unwrap();

    // A new zip: only CodeKey, and the function that uses it.
    let v2 = cs.ship(2);
    let (code, code_only) = diff(&[]).await;
    assert_eq!(code, 1, "{code_only:?}");
    let s = &code_only.stacks[0];
    assert!(s.resources.is_empty() && s.iam.is_empty(), "{s:?}");
    assert_eq!(s.parameters.len(), 1, "{s:?}");
    let p = &s.parameters[0];
    assert_eq!(p.name, "CodeKey");
    let key = |zip: &[u8]| {
        Some(serde_json::Value::from(notesctl::aws::artifacts::code_key(
            &stage, zip,
        )))
    };
    assert_eq!((p.old.clone(), p.new.clone()), (key(&v1), key(&v2)));
    assert_eq!(p.used_by, ["Signup"]);
    cs.ship(1);

    // An edited template: a new function name (replacement), more memory, a new grant.
    let edited = CODE_STACK
        .replace("${Stage}-auth-signup\"", "${Stage}-auth-signup-v2\"\n      MemorySize: 512")
        .replace(
            "            Action: sts:AssumeRole\n",
            "            Action: sts:AssumeRole\n      Policies:\n        - PolicyName: read\n          PolicyDocument:\n            Statement:\n              - Effect: Allow\n                Action: dynamodb:GetItem\n                Resource: \"*\"\n",
        );
    assert_ne!(edited, CODE_STACK);
    cs.edit_template(&edited);
    let (code, changed) = diff(&[]).await;
    assert_eq!(code, 1, "{changed:?}");
    let s = &changed.stacks[0];
    assert!(s.parameters.is_empty(), "{s:?}");
    let signup = s
        .resources
        .iter()
        .find(|r| r.logical_id == "Signup")
        .unwrap();
    let paths: Vec<(&str, Replacement)> = signup
        .changes
        .iter()
        .map(|c| (c.path.as_str(), c.replacement))
        .collect();
    assert_eq!(
        paths,
        [
            ("Properties.FunctionName", Replacement::Yes),
            ("Properties.MemorySize", Replacement::No)
        ]
    );
    assert_eq!(signup.changes[1].old, None);
    assert_eq!(signup.changes[1].new, Some(512.into()));
    assert_eq!(s.replaced, ["Signup"]);
    let granted: Vec<String> = s
        .iam
        .granted
        .iter()
        .map(|g| format!("{} {} {} on {}", g.by, g.effect, g.action, g.on))
        .collect();
    assert_eq!(granted, ["Role Allow dynamodb:GetItem on *"]);
    assert!(s.iam.revoked.is_empty());

    let text = cli(&stage)
        .await
        .args(["diff"])
        .args(cs.flags())
        .run()
        .await;
    assert_eq!(text.code, 1, "{}", text.stderr);
    for line in [
        "~ Signup",
        "REPLACED",
        "Properties.MemorySize: (none) → 512",
        "+ Role: Allow dynamodb:GetItem on *",
        "1 of 1 stacks would change",
    ] {
        assert!(text.stdout.contains(line), "{line:?} in:\n{}", text.stdout);
    }

    let (code, asked) = diff(&["--change-set"]).await;
    assert_eq!(code, 1, "{asked:?}");
    let changes = asked.stacks[0]
        .change_set
        .as_ref()
        .expect("the change set's changes");
    assert!(
        changes.iter().any(|c| c.logical_id == "Signup"),
        "{changes:?}"
    );
    let cfn = aws_sdk_cloudformation::Client::new(&moto::shared().await.sdk_config().await);
    let left = cfn
        .list_change_sets()
        .stack_name(format!("{stage}-auth-stack"))
        .send()
        .await
        .unwrap();
    // The deploy's own set stays on moto as executed; diff's, never executed, is gone. (moto lists
    // every stack's sets whatever StackName says: keep this stack's.)
    use aws_sdk_cloudformation::types::ExecutionStatus;
    let ours = format!("{stage}-auth-stack");
    assert!(
        left.summaries()
            .iter()
            .filter(|s| s.stack_name() == Some(ours.as_str()))
            .all(|s| s.execution_status() == Some(&ExecutionStatus::ExecuteComplete)),
        "{left:?}"
    );
}

/// `deploy --hotswap`: a new zip alone updates the function without CloudFormation (its `CodeKey`
/// stays behind) and the same zip again leaves it alone; a template change falls back to a full
/// deploy, saying why, which brings `CodeKey` level and reports the function it reconciled. A
/// function whose update fails is named with its reason (exit 1). The production stage is refused
/// without `--force`, before any call to AWS.
#[tokio::test]
async fn hotswap_updates_code_alone_and_the_next_deploy_reconciles() {
    use notesctl::commands::deploy::hotswap::Outcome;
    let cs = CodeStage::new("hs").await;
    let stage = cs.stage.clone();
    let zip = |n| cs.zip(n);
    let deploy = async |stage: &str, extra: &[&str]| {
        cli(stage)
            .await
            .args(["--output", "json", "deploy", "--yes", "--no-validate"])
            .args(cs.flags())
            .args(extra.iter().copied())
            .run()
            .await
    };
    let sdk = moto::shared().await.sdk_config().await;
    let lambda = aws_sdk_lambda::Client::new(&sdk);
    let function = format!("{stage}-auth-signup");
    let running = async || {
        lambda
            .get_function_configuration()
            .function_name(&function)
            .send()
            .await
            .unwrap()
            .code_sha256()
            .unwrap()
            .to_owned()
    };
    let sha = |zip: &[u8]| {
        use base64::Engine;
        use sha2::Digest;
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(zip))
    };
    let code_key = |zip: &[u8]| notesctl::aws::artifacts::code_key(&stage, zip);
    let stack = format!("{stage}-auth-stack");

    cs.ship(1);
    let first = deploy(&stage, &[]).await;
    assert_eq!(first.code, 0, "{}", first.stderr);

    cs.ship(2);
    let swapped = deploy(&stage, &["--hotswap"]).await;
    assert_eq!(swapped.code, 0, "{}", swapped.stderr);
    let report: DeployReport = serde_json::from_str(&swapped.stdout).unwrap();
    assert_eq!(actions(&report), [StackAction::Hotswapped]);
    let hotswap = report.hotswap.expect("the hotswap's report");
    assert_eq!(hotswap.code_key, code_key(&zip(2)));
    let outcomes: Vec<(&str, Outcome)> = hotswap
        .functions
        .iter()
        .map(|f| (f.function.as_str(), f.outcome))
        .collect();
    assert_eq!(outcomes, [(function.as_str(), Outcome::Updated)]);
    assert_eq!(
        running().await,
        sha(&zip(2)),
        "the function runs the new zip"
    );
    assert_eq!(
        stack_parameters(&stack).await["CodeKey"],
        code_key(&zip(1)),
        "CloudFormation was not asked"
    );

    let again = deploy(&stage, &["--hotswap"]).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    let report: DeployReport = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(
        report.hotswap.unwrap().functions[0].outcome,
        Outcome::Unchanged
    );

    // More memory is a template change: a full deploy, which also catches CodeKey up.
    let edited = CODE_STACK.replace(
        "${Stage}-auth-signup\"",
        "${Stage}-auth-signup\"\n      MemorySize: 512",
    );
    cs.edit_template(&edited);
    let full = deploy(&stage, &["--hotswap"]).await;
    assert_eq!(full.code, 0, "{}", full.stderr);
    assert!(
        full.stderr.contains(&format!(
            "hotswap: not possible, {stack} differs in more than code: resources Signup; deploying through CloudFormation"
        )),
        "{}",
        full.stderr
    );
    let report: DeployReport = serde_json::from_str(&full.stdout).unwrap();
    assert_eq!(actions(&report), [StackAction::Updated]);
    assert!(report.hotswap.is_none());
    assert_eq!(report.reconciled, std::slice::from_ref(&function));
    assert_eq!(stack_parameters(&stack).await["CodeKey"], code_key(&zip(2)));
    assert_eq!(running().await, sha(&zip(2)));

    // Hotswapped away from what CloudFormation names, then a full deploy of the zip it names: the
    // stack is unchanged, so CloudFormation leaves the function alone; deploy says so and what to
    // run, and a hotswap puts it right.
    cs.ship(1);
    assert_eq!(deploy(&stage, &["--hotswap"]).await.code, 0);
    assert_eq!(running().await, sha(&zip(1)));
    cs.ship(2);
    let stuck = deploy(&stage, &[]).await;
    assert_eq!(stuck.code, 1, "{}", stuck.stderr);
    let report: DeployReport = serde_json::from_str(&stuck.stdout).unwrap();
    assert_eq!(actions(&report), [StackAction::Unchanged]);
    assert!(
        report
            .problem
            .as_deref()
            .is_some_and(|p| p.contains("run `notesctl deploy --hotswap`")),
        "{report:?}"
    );
    assert_eq!(deploy(&stage, &["--hotswap"]).await.code, 0);
    assert_eq!(running().await, sha(&zip(2)));

    // A function that cannot take the update (deleted behind CloudFormation's back) is named with
    // Lambda's reason, and the hotswap exits 1.
    lambda
        .delete_function()
        .function_name(&function)
        .send()
        .await
        .unwrap();
    cs.ship(3);
    let failed = deploy(&stage, &["--hotswap"]).await;
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    let report: DeployReport = serde_json::from_str(&failed.stdout).unwrap();
    let problem = report.problem.clone().unwrap_or_default();
    let update = &report.hotswap.expect("the hotswap's report").functions[0];
    assert_eq!(
        (update.function.as_str(), update.outcome),
        (function.as_str(), Outcome::Failed)
    );
    assert!(
        update.reason.as_deref().is_some_and(|r| !r.is_empty()),
        "{update:?}"
    );
    assert!(problem.contains(&function), "{problem}");

    // Protected stages — the default and the help examples' own "prod" among them — refuse before
    // any call; `--force` lets the hotswap through (here to the same failure as above).
    for protected in ["production", "prod", "prod-eu"] {
        let refused = deploy(protected, &["--hotswap"]).await;
        assert_eq!(refused.code, 2, "{}", refused.stderr);
        assert!(
            refused.stderr.contains(&format!(
                "refusing to hotswap \"{protected}\", a protected stage"
            )) && refused.stderr.contains("--force"),
            "{}",
            refused.stderr
        );
    }
}

/// Every deploy records a release in the artifacts bucket; `history` lists them newest first;
/// `rollback` deploys the one before the live one again — its template, parameters and code key are
/// the stack's again (read back from moto) — through change sets when a template differs and as a
/// hotswap when only the code does, and each rollback is a release of its own.
#[tokio::test]
async fn every_deploy_is_a_release_and_rollback_restores_the_one_before() {
    use notesctl::commands::deploy::releases::Release;
    use notesctl::commands::release::{HistoryReport, RollbackReport};
    let cs = CodeStage::new("rb").await;
    let stage = cs.stage.clone();
    let deploy = async || {
        let run = cli(&stage)
            .await
            .args(["--output", "json", "deploy", "--yes", "--no-validate"])
            .args(cs.flags())
            .run()
            .await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        let report: DeployReport = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(report.release_problem, None);
        report.release.expect("a release recorded")
    };
    let history = async || -> Vec<Release> {
        let run = cli(&stage)
            .await
            .args([
                "--output",
                "json",
                "history",
                "--artifacts-bucket",
                &cs.bucket,
            ])
            .run()
            .await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        serde_json::from_str::<HistoryReport>(&run.stdout)
            .unwrap()
            .releases
    };
    // `--no-validate` as the deploys: validate checks the six stacks together, and this stage
    // deploys one.
    let rollback = async || -> RollbackReport {
        let run = cli(&stage)
            .await
            .args([
                "--output",
                "json",
                "rollback",
                "--yes",
                "--no-validate",
                "--artifacts-bucket",
                &cs.bucket,
            ])
            .run()
            .await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        serde_json::from_str(&run.stdout).unwrap()
    };
    let key = |n| notesctl::aws::artifacts::code_key(&stage, &cs.zip(n));
    let stack = format!("{stage}-auth-stack");
    let cfn = aws_sdk_cloudformation::Client::new(&moto::shared().await.sdk_config().await);
    let deployed_template = async || {
        cfn.get_template()
            .stack_name(&stack)
            .send()
            .await
            .unwrap()
            .template_body()
            .unwrap()
            .to_owned()
    };

    cs.ship(1);
    let first = deploy().await;
    assert_eq!(first.code_key, Some(key(1)));
    assert_eq!(first.stacks["auth"].parameters["CodeKey"], key(1));
    assert_eq!(first.stacks["auth"].parameters["Stage"], stage);
    assert_eq!(first.notesctl, env!("CARGO_PKG_VERSION"));

    // A new template and a new zip.
    let edited = CODE_STACK.replace(
        "${Stage}-auth-signup\"",
        "${Stage}-auth-signup\"\n      MemorySize: 512",
    );
    cs.edit_template(&edited);
    cs.ship(2);
    let second = deploy().await;
    assert_ne!(
        second.stacks["auth"].template,
        first.stacks["auth"].template
    );
    assert!(deployed_template().await.contains("MemorySize"));
    let ids: Vec<String> = history().await.into_iter().map(|r| r.id).collect();
    assert_eq!(ids, [second.id.clone(), first.id.clone()], "newest first");

    // Back to the first: its template and code, through CloudFormation.
    let back = rollback().await;
    assert_eq!(
        (back.from.as_str(), back.to.as_str()),
        (second.id.as_str(), first.id.as_str())
    );
    assert!(
        back.deploy.hotswap.is_none(),
        "a template differs: change sets"
    );
    assert_eq!(stack_parameters(&stack).await["CodeKey"], key(1));
    assert!(!deployed_template().await.contains("MemorySize"));
    let recorded = back.deploy.release.expect("the rollback is a release");
    assert_eq!(recorded.rollback_of.as_deref(), Some(first.id.as_str()));
    assert_eq!(
        recorded.stacks, first.stacks,
        "exactly the first release's stacks"
    );

    // From the first's template with a new zip, back again: only the code differs, so a hotswap.
    cs.edit_template(CODE_STACK);
    cs.ship(3);
    let third = deploy().await;
    let again = rollback().await;
    assert_eq!(again.from, third.id);
    assert_eq!(again.to, recorded.id);
    assert!(again.deploy.hotswap.is_some(), "{:?}", again.deploy);
    let sdk = moto::shared().await.sdk_config().await;
    let running = aws_sdk_lambda::Client::new(&sdk)
        .get_function_configuration()
        .function_name(format!("{stage}-auth-signup"))
        .send()
        .await
        .unwrap()
        .code_sha256()
        .unwrap()
        .to_owned();
    assert_eq!(
        Some(running),
        notesctl::aws::artifacts::sha256_of_key(&key(1)),
        "the function runs the first zip again"
    );
    let newest = history().await;
    assert_eq!(newest.len(), 5);
    assert!(newest[0].hotswap);
    assert_eq!(newest[0].rollback_of.as_deref(), Some(recorded.id.as_str()));
}

/// Rollback checks what it downloads: a template or a zip overwritten in the artifacts bucket after
/// it was stored no longer has the SHA-256 its key names, and is refused (exit 2, naming the object)
/// with nothing deployed; put back, the same rollback goes through.
#[tokio::test]
async fn rollback_refuses_a_template_or_zip_changed_in_the_bucket() {
    use notesctl::commands::deploy::releases::Release;
    let cs = CodeStage::new("rt").await;
    let stage = cs.stage.clone();
    let deploy = async || -> Release {
        let run = cli(&stage)
            .await
            .args(["--output", "json", "deploy", "--yes", "--no-validate"])
            .args(cs.flags())
            .run()
            .await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        let report: DeployReport = serde_json::from_str(&run.stdout).unwrap();
        report.release.expect("a release recorded")
    };
    // The refusals come before validate (which needs the six stacks: `--no-validate` once put back).
    let rollback = async |extra: &[&str]| {
        cli(&stage)
            .await
            .args(["--output", "json", "rollback", "--yes"])
            .args(extra.iter().copied())
            .args(["--artifacts-bucket", &cs.bucket])
            .run()
            .await
    };
    cs.ship(1);
    let first = deploy().await;
    cs.edit_template(&CODE_STACK.replace(
        "${Stage}-auth-signup\"",
        "${Stage}-auth-signup\"\n      MemorySize: 512",
    ));
    cs.ship(2);
    let second = deploy().await;
    let s3 = moto::s3().await;
    let put = async |key: &str, body: Vec<u8>| {
        s3.put_object()
            .bucket(&cs.bucket)
            .key(key)
            .body(body.into())
            .send()
            .await
            .unwrap();
    };
    let stack = format!("{stage}-auth-stack");
    let cfn = aws_sdk_cloudformation::Client::new(&moto::shared().await.sdk_config().await);
    let unchanged = async || {
        let template = cfn
            .get_template()
            .stack_name(&stack)
            .send()
            .await
            .unwrap()
            .template_body()
            .unwrap()
            .to_owned();
        assert!(
            template.contains("MemorySize"),
            "the second release stays live"
        );
        assert_eq!(
            stack_parameters(&stack).await["CodeKey"],
            second.code_key.clone().unwrap()
        );
        let releases = moto::keys(&cs.bucket)
            .await
            .into_iter()
            .filter(|k| k.starts_with(&format!("{stage}/releases/")))
            .count();
        assert_eq!(releases, 2, "no release recorded");
    };

    // The first release's template, overwritten (a resource added that was never reviewed).
    let template_key = first.stacks["auth"].template.clone();
    let original = moto::read_object(&s3, &cs.bucket, &template_key).await;
    let mut tampered = original.clone();
    tampered.extend_from_slice(b"\n# pwned\n");
    put(&template_key, tampered.clone()).await;
    let refused = rollback(&[]).await;
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    let said = format!(
        "s3://{}/{template_key} was changed after it was stored: its SHA-256 is {}, its key says {}; do not roll back to it; deploy instead",
        cs.bucket,
        notesctl::lambda::sha256_hex(&tampered),
        notesctl::lambda::sha256_hex(&original),
    );
    assert!(refused.stderr.contains(&said), "{}", refused.stderr);
    assert_eq!(
        refused.stderr.trim().lines().count(),
        1,
        "{}",
        refused.stderr
    );
    unchanged().await;
    put(&template_key, original).await;

    // The first release's zip, overwritten.
    let code_key = first.code_key.clone().unwrap();
    put(&code_key, cs.zip(99)).await;
    let refused = rollback(&[]).await;
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains(&format!(
            "s3://{}/{code_key} was changed after it was stored",
            cs.bucket
        )),
        "{}",
        refused.stderr
    );
    unchanged().await;

    // Put back: the rollback goes through.
    put(&code_key, cs.zip(1)).await;
    let back = rollback(&["--no-validate"]).await;
    assert_eq!(back.code, 0, "{}", back.stderr);
    assert_eq!(stack_parameters(&stack).await["CodeKey"], code_key);
}

/// A release record naming a stack outside the six (`../../x`, which became a file name) is refused
/// before anything is downloaded or written: no file appears outside rollback's temp folder.
#[tokio::test]
async fn rollback_refuses_a_release_naming_a_stack_outside_the_six() {
    let cs = CodeStage::new("rx").await;
    let stage = cs.stage.clone();
    cs.ship(1);
    let run = cli(&stage)
        .await
        .args(["--output", "json", "deploy", "--yes", "--no-validate"])
        .args(cs.flags())
        .run()
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let live: DeployReport = serde_json::from_str(&run.stdout).unwrap();
    let live = live.release.unwrap();
    // An older release, written by someone else, naming the live template under `../../x`.
    let record = serde_json::json!({
        "id": "20000101-000000-000",
        "time": "2000-01-01T00:00:00Z",
        "notesctl": "0.1.0",
        "codeKey": live.code_key,
        "stacks": {"../../x": live.stacks["auth"]},
    });
    moto::s3()
        .await
        .put_object()
        .bucket(&cs.bucket)
        .key(format!("{stage}/releases/20000101-000000-000.json"))
        .body(serde_json::to_vec(&record).unwrap().into())
        .send()
        .await
        .unwrap();
    // rollback's temp folder goes under base/a/b: `../../x.yaml` from it is base/a/x.yaml.
    let base = tempfile::tempdir().unwrap();
    let tmp = base.path().join("a").join("b");
    std::fs::create_dir_all(&tmp).unwrap();
    let refused = cli(&stage)
        .await
        .env("TMPDIR", tmp.to_str().unwrap())
        .args(["rollback", "--yes", "--to", "20000101"])
        .args(["--artifacts-bucket", &cs.bucket])
        .run()
        .await;
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("names a stack \"../../x\""),
        "{}",
        refused.stderr
    );
    assert!(!base.path().join("a").join("x.yaml").exists());
    let mut files = Vec::new();
    let mut dirs = vec![base.path().to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    assert_eq!(files, Vec::<std::path::PathBuf>::new(), "nothing written");
}

/// `deploy --hotswap --watch`: the first round packages the workspace's notes-lambda (in CI a
/// build `scripts/test.sh` already made, so cargo finds it fresh) and hotswaps it; a change under
/// `--watch-dir` is one more round; each round is a JSON line; Ctrl-C ends it with exit 0.
#[tokio::test]
async fn watch_packages_and_hotswaps_again_when_the_watched_folder_changes() {
    use notesctl::commands::deploy::hotswap::Outcome;
    use notesctl::commands::deploy::watch::Round;
    use tokio::io::AsyncBufReadExt;
    let cs = CodeStage::new("wt").await;
    cs.ship(1);
    let first = cli(&cs.stage)
        .await
        .args(["deploy", "--yes", "--no-validate"])
        .args(cs.flags())
        .run()
        .await;
    assert_eq!(first.code, 0, "{}", first.stderr);

    let watched = tempfile::tempdir().unwrap();
    std::fs::write(watched.path().join("lib.rs"), "// one").unwrap();
    let mut child = cli(&cs.stage)
        .await
        .args([
            "--output",
            "json",
            "deploy",
            "--yes",
            "--no-validate",
            "--hotswap",
            "--watch",
        ])
        .args(["--watch-dir", watched.path().to_str().unwrap()])
        .args(cs.flags())
        .spawn_in(&notesctl_tests::workspace_root());
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next_round = async || -> Round {
        // A cold release build of notes-lambda takes minutes on two cores.
        let line = tokio::time::timeout(std::time::Duration::from_secs(900), lines.next_line())
            .await
            .expect("a round within 15 minutes")
            .unwrap()
            .expect("a round, not the end of the stream");
        serde_json::from_str(&line).unwrap()
    };
    let round = next_round().await;
    assert!(round.changed.is_empty());
    assert_eq!(round.problem, None, "{round:?}");
    assert_eq!(round.package.as_ref().unwrap().artifacts.len(), 1);
    let swapped = round.deploy.unwrap().hotswap.expect("a hotswap");
    assert_eq!(
        swapped.functions[0].outcome,
        Outcome::Updated,
        "the real binary replaces zip 1"
    );

    std::fs::write(watched.path().join("lib.rs"), "// two").unwrap();
    let round = next_round().await;
    assert_eq!(
        round.changed,
        [watched.path().join("lib.rs").display().to_string()]
    );
    let again = round.deploy.unwrap().hotswap.expect("a hotswap");
    assert_eq!(
        again.functions[0].outcome,
        Outcome::Unchanged,
        "the same build, the same zip"
    );

    let pid = child.id().unwrap() as i32;
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), child.wait())
        .await
        .expect("Ctrl-C ends the watch")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// `deploy --hotswap --watch`: a round whose packaging fails (the zip's path taken by a folder, so
/// the zip cannot be written) is reported as that round's problem, nothing deployed — and the watch
/// goes on: once it is fixed, the next change is a round that packages and hotswaps again.
#[tokio::test]
async fn a_failed_build_is_reported_and_the_watch_goes_on() {
    use notesctl::commands::deploy::watch::Round;
    use tokio::io::AsyncBufReadExt;
    let cs = CodeStage::new("wf").await;
    cs.ship(1);
    let first = cli(&cs.stage)
        .await
        .args(["deploy", "--yes", "--no-validate"])
        .args(cs.flags())
        .run()
        .await;
    assert_eq!(first.code, 0, "{}", first.stderr);

    let watched = tempfile::tempdir().unwrap();
    std::fs::write(watched.path().join("lib.rs"), "// one").unwrap();
    let mut child = cli(&cs.stage)
        .await
        .args([
            "--output",
            "json",
            "deploy",
            "--yes",
            "--no-validate",
            "--hotswap",
            "--watch",
        ])
        .args(["--watch-dir", watched.path().to_str().unwrap()])
        .args(cs.flags())
        .spawn_in(&notesctl_tests::workspace_root());
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    // Each round starts by saying it builds: counted, to send Ctrl-C while one runs.
    let (builds, mut building) = tokio::sync::mpsc::unbounded_channel();
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            if line.contains("building notes-lambda") {
                let _ = builds.send(());
            }
        }
    });
    let mut next_round = async || -> Round {
        // A cold release build of notes-lambda takes minutes on two cores.
        let line = tokio::time::timeout(std::time::Duration::from_secs(900), lines.next_line())
            .await
            .expect("a round within 15 minutes")
            .unwrap()
            .expect("a round, not the end of the stream");
        serde_json::from_str(&line).unwrap()
    };
    let round = next_round().await;
    assert_eq!(round.problem, None, "{round:?}");
    assert!(round.deploy.is_some(), "{round:?}");

    // The zip's path becomes a folder: packaging cannot write it.
    let zip = cs.artifacts.path().join("notes-lambda-x86_64.zip");
    std::fs::remove_file(&zip).unwrap();
    std::fs::create_dir(&zip).unwrap();
    std::fs::write(watched.path().join("lib.rs"), "// two").unwrap();
    let failed = next_round().await;
    assert_eq!(
        failed.changed,
        [watched.path().join("lib.rs").display().to_string()]
    );
    let problem = failed.problem.as_deref().expect("the failure reported");
    assert!(
        problem.starts_with("the build failed") && problem.contains("Nothing was deployed"),
        "{problem}"
    );
    assert!(
        failed.package.is_none() && failed.deploy.is_none(),
        "{failed:?}"
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "the watch goes on after a failed round"
    );

    // Fixed, and saved again: the next round builds and hotswaps.
    std::fs::remove_dir(&zip).unwrap();
    std::fs::write(watched.path().join("lib.rs"), "// three").unwrap();
    let round = next_round().await;
    assert_eq!(round.problem, None, "{round:?}");
    assert_eq!(round.package.as_ref().unwrap().artifacts.len(), 1);
    assert!(round.deploy.unwrap().hotswap.is_some(), "a hotswap");
    assert!(zip.is_file());

    // Ctrl-C while a round builds stops the watch (it had been lost: no one listened then).
    for _ in 0..3 {
        building.recv().await.expect("each round said it builds");
    }
    std::fs::write(watched.path().join("lib.rs"), "// four").unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(60), building.recv())
        .await
        .expect("a fourth round")
        .expect("it says it builds");
    let pid = child.id().unwrap() as i32;
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), child.wait())
        .await
        .expect("Ctrl-C during a round ends the watch")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// Where the template of `stack` went: the CreateChangeSet requests for it, as sent.
fn change_sets_for(
    log: &notesctl_tests::proxy::RequestLog,
    stack: &str,
) -> Vec<notesctl_tests::proxy::Request> {
    log.actions("CreateChangeSet")
        .into_iter()
        .filter(|r| r.param("StackName").as_deref() == Some(stack))
        .collect()
}

/// The object at `key` in the default artifacts bucket.
async fn stored(key: &str) -> Vec<u8> {
    moto::read_object(&moto::s3().await, moto::DEFAULT_ARTIFACTS_BUCKET, key).await
}

/// Over the 51,200 bytes CloudFormation takes in a request body, a template still deploys — by URL,
/// with `--no-validate` too (the limit is held by the code, not only by `validate`): the change set
/// is made from `TemplateURL` (as moto's request log shows), which names the object holding exactly
/// the file.
#[tokio::test]
async fn a_template_over_the_body_limit_deploys_by_url() {
    let stage = notesctl_tests::unique("big");
    let dir = tempfile::tempdir().unwrap();
    let event = std::fs::read_to_string(format!("{}/event.yaml", templates())).unwrap();
    let padding = "x".repeat(200 * 1024);
    let big = format!("{event}\nMetadata:\n  Padding: {padding}\n");
    assert!(big.len() > 200 * 1024);
    std::fs::write(dir.path().join("event.yaml"), &big).unwrap();
    let m = moto::shared().await;
    let log = notesctl_tests::proxy::RequestLog::start(&m.endpoint).await;
    let run = m
        .cli_at(&stage, &log.endpoint)
        .args([
            "--output",
            "json",
            "deploy",
            "--yes",
            "--no-validate",
            "--stack",
            "event",
        ])
        .args(["--templates", dir.path().to_str().unwrap()])
        .run()
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report: DeployReport = run.json();
    assert_eq!(actions(&report), [StackAction::Created], "{report:?}");

    let key = notesctl::aws::artifacts::template_key(&stage, big.as_bytes());
    assert_eq!(stored(&key).await, big.as_bytes(), "the object is the file");
    let sets = change_sets_for(&log, &format!("{stage}-event-stack"));
    assert_eq!(sets.len(), 1, "one change set");
    let url = sets[0]
        .param("TemplateURL")
        .expect("made from a TemplateURL");
    assert!(url.starts_with("https://") && url.ends_with(&key), "{url}");
    assert_eq!(
        sets[0].param("TemplateBody"),
        None,
        "no template in the body"
    );
    assert_eq!(
        report
            .release
            .as_ref()
            .map(|r| r.stacks["event"].template.clone()),
        Some(key),
        "the release points at the same object"
    );
}

/// `notes.yaml` as it is (over the body limit since the dashboard) goes to CloudFormation by URL.
/// moto cannot run the notes stack (its imports and API Gateway resources), so this holds what reaches
/// CloudFormation: the change set's `TemplateURL` names an object whose digest is the file's.
#[tokio::test]
async fn the_notes_template_as_it_is_goes_by_url() {
    let stage = notesctl_tests::unique("nt");
    let file = std::fs::read(format!("{}/notes.yaml", templates())).unwrap();
    assert!(file.len() > 51_200, "notes.yaml is over the body limit");
    let dist = tempfile::tempdir().unwrap();
    std::fs::write(
        dist.path().join("notes-lambda-x86_64.zip"),
        notesctl::commands::package::lambda_zip(b"#!/bin/sh\n"),
    )
    .unwrap();
    let m = moto::shared().await;
    let log = notesctl_tests::proxy::RequestLog::start(&m.endpoint).await;
    let run = m
        .cli_at(&stage, &log.endpoint)
        .args([
            "deploy",
            "--preview",
            "--stack",
            "notes",
            "--arch",
            "x86_64",
        ])
        .args([
            "--templates",
            &templates(),
            "--artifacts",
            dist.path().to_str().unwrap(),
        ])
        .run()
        .await;
    let sets = change_sets_for(&log, &format!("{stage}-notes-stack"));
    assert_eq!(sets.len(), 1, "{}", run.stderr);
    assert_eq!(sets[0].param("TemplateBody"), None);
    let url = sets[0]
        .param("TemplateURL")
        .expect("made from a TemplateURL");
    let key = url
        .split_once(".amazonaws.com/")
        .map(|(_, k)| k.to_owned())
        .unwrap_or_default();
    assert_eq!(
        key,
        notesctl::aws::artifacts::template_key(&stage, &file),
        "{url}"
    );
    use sha2::Digest;
    assert_eq!(
        sha2::Sha256::digest(stored(&key).await),
        sha2::Sha256::digest(&file),
        "the stored object's digest is the file's"
    );
}

/// A bucket `deploy` made itself is TLS-only; over an emulator's plain HTTP every call to it is
/// refused (403). That is this account's own policy, not a squatter, and deploy says so, with the
/// way out — before any stack is touched.
#[tokio::test]
async fn a_tls_only_bucket_over_plain_http_is_told_from_a_squatters() {
    let moto = moto::start_with(&[]).await;
    let stage = notesctl_tests::unique("tls");
    let run = moto
        .cli(&stage)
        .args([
            "deploy",
            "--yes",
            "--stack",
            "event",
            "--templates",
            &templates(),
        ])
        .run()
        .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("is this account's")
            && run.stderr.contains("not made over TLS")
            && run.stderr.contains("--artifacts-bucket")
            && !run.stderr.contains("not owned"),
        "{}",
        run.stderr
    );
    let cfn = aws_sdk_cloudformation::Client::new(&moto.sdk_config().await);
    let stacks = cfn.describe_stacks().send().await.unwrap();
    assert!(stacks.stacks().is_empty(), "no stack was touched");
}

/// The base64 SHA-256 Lambda reports as a function's `CodeSha256`.
fn code_sha256(zip: &[u8]) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(zip))
}

/// A function whose code was changed outside notesctl (UpdateFunctionCode with another zip) runs
/// other code than the zip deploy uploads: the stack itself is unchanged, so CloudFormation leaves
/// the function alone, and deploy exits 1 naming the function and what it runs — with no release
/// recorded for a stage that does not run what the release would name.
#[tokio::test]
async fn a_function_running_other_code_than_the_zip_fails_the_deploy() {
    let cs = CodeStage::new("oc").await;
    let stage = cs.stage.clone();
    let function = format!("{stage}-auth-signup");
    let deploy = async |output: &[&str]| {
        cli(&stage)
            .await
            .args(output.iter().copied())
            .args(["deploy", "--yes", "--no-validate"])
            .args(cs.flags())
            .run()
            .await
    };
    let zip = cs.ship(1);
    let first = deploy(&["--output", "json"]).await;
    assert_eq!(first.code, 0, "{}", first.stderr);

    let other = cs.zip(2);
    let sdk = moto::shared().await.sdk_config().await;
    aws_sdk_lambda::Client::new(&sdk)
        .update_function_code()
        .function_name(&function)
        .zip_file(aws_sdk_lambda::primitives::Blob::new(other.clone()))
        .send()
        .await
        .unwrap();

    let again = deploy(&["--output", "json"]).await;
    assert_eq!(again.code, 1, "{}\n{}", again.stdout, again.stderr);
    let report: DeployReport = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(actions(&report), [StackAction::Unchanged]);
    let found: Vec<(&str, Option<&str>)> = report
        .code_mismatches
        .iter()
        .map(|m| (m.function.as_str(), m.code_sha256.as_deref()))
        .collect();
    assert_eq!(
        found,
        [(function.as_str(), Some(code_sha256(&other).as_str()))]
    );
    let problem = report.problem.clone().unwrap_or_default();
    assert!(
        problem.contains(&function) && problem.contains(&code_sha256(&zip)),
        "{problem}"
    );
    assert!(report.release.is_none(), "{report:?}");

    // The text report names it too, with the same exit code.
    let text = deploy(&[]).await;
    assert_eq!(text.code, 1, "{}\n{}", text.stdout, text.stderr);
    assert!(
        format!("{}{}", text.stdout, text.stderr).contains(&function),
        "{}\n{}",
        text.stdout,
        text.stderr
    );
}

/// A release records the commit of the git repository `deploy` runs in, and whether tracked files
/// differed from it; run outside a repository, it records no commit.
#[tokio::test]
async fn a_release_records_the_git_commit_and_whether_it_was_dirty() {
    let cs = CodeStage::new("gc").await;
    let stage = cs.stage.clone();
    cs.ship(1);
    let repo = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=notesctl", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(repo.path())
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .output()
            .expect("git is installed");
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    git(&["init", "-q"]);
    std::fs::write(repo.path().join("notes.txt"), "one\n").unwrap();
    git(&["add", "notes.txt"]);
    git(&["commit", "-q", "-m", "one"]);
    let head = git(&["rev-parse", "HEAD"]);
    let deploy_in = async |dir: &std::path::Path| {
        let run = cli(&stage)
            .await
            .current_dir(dir)
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .args(["--output", "json", "deploy", "--yes", "--no-validate"])
            .args(cs.flags())
            .run()
            .await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        let report: DeployReport = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(report.release_problem, None);
        report.release.expect("a release recorded")
    };
    let stored = async |id: &str| -> serde_json::Value {
        let key = format!("{stage}/releases/{id}.json");
        serde_json::from_slice(&moto::read_object(&moto::s3().await, &cs.bucket, &key).await)
            .unwrap()
    };

    let clean = deploy_in(repo.path()).await;
    let git_of = |r: &notesctl::commands::deploy::releases::Release| {
        r.git.as_ref().map(|g| (g.commit.clone(), g.dirty))
    };
    assert_eq!(git_of(&clean), Some((head.clone(), false)));
    let record = stored(&clean.id).await;
    assert_eq!(
        record["git"],
        serde_json::json!({"commit": head, "dirty": false})
    );

    // A tracked file changed: the same commit, dirty.
    std::fs::write(repo.path().join("notes.txt"), "two\n").unwrap();
    let dirty = deploy_in(repo.path()).await;
    assert_eq!(git_of(&dirty), Some((head.clone(), true)));
    assert_eq!(
        stored(&dirty.id).await["git"],
        serde_json::json!({"commit": head, "dirty": true})
    );

    // Only an untracked file beside the commit: not dirty.
    git(&["checkout", "-q", "--", "notes.txt"]);
    std::fs::write(repo.path().join("untracked.txt"), "new\n").unwrap();
    let untracked = deploy_in(repo.path()).await;
    assert_eq!(git_of(&untracked), Some((head.clone(), false)));

    // Outside any repository: no commit.
    let elsewhere = tempfile::tempdir().unwrap();
    let outside = deploy_in(elsewhere.path()).await;
    assert_eq!(git_of(&outside), None);
    assert!(stored(&outside.id).await.get("git").is_none());
}

/// A release that cannot be written does not fail the deploy: the stacks are deployed (exit 0), and
/// the report says the release was not recorded (`release_problem`). The bucket here holds, where the
/// releases are listed, an object that is not a release record, so reading the one before fails.
#[tokio::test]
async fn a_release_that_cannot_be_recorded_is_reported_and_the_deploy_still_succeeds() {
    let cs = CodeStage::new("rp").await;
    let stage = cs.stage.clone();
    let stray = format!("{stage}/releases/99999999-999999-999.json");
    moto::s3()
        .await
        .put_object()
        .bucket(&cs.bucket)
        .key(&stray)
        .body(b"not a release".to_vec().into())
        .send()
        .await
        .unwrap();
    let zip = cs.ship(1);
    let run = cli(&stage)
        .await
        .args(["--output", "json", "deploy", "--yes", "--no-validate"])
        .args(cs.flags())
        .run()
        .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let report: DeployReport = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(actions(&report), [StackAction::Created]);
    assert_eq!(report.problem, None);
    assert!(report.release.is_none(), "{report:?}");
    let problem = report.release_problem.clone().unwrap_or_default();
    assert!(
        problem.contains("the release was not recorded") && problem.contains(&stray),
        "{report:?}"
    );
    // Deployed all the same: the function runs the zip.
    let sdk = moto::shared().await.sdk_config().await;
    let running = aws_sdk_lambda::Client::new(&sdk)
        .get_function_configuration()
        .function_name(format!("{stage}-auth-signup"))
        .send()
        .await
        .unwrap();
    assert_eq!(running.code_sha256(), Some(code_sha256(&zip).as_str()));
    assert_eq!(
        moto::keys(&cs.bucket)
            .await
            .iter()
            .filter(|k| k.starts_with(&format!("{stage}/releases/")))
            .collect::<Vec<_>>(),
        [&stray],
        "no release record written"
    );
    // The text report says so as well.
    let text = cli(&stage)
        .await
        .args(["deploy", "--yes", "--no-validate"])
        .args(cs.flags())
        .run()
        .await;
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(
        format!("{}{}", text.stdout, text.stderr).contains("the release was not recorded"),
        "{}\n{}",
        text.stdout,
        text.stderr
    );
}

/// `outputs` prints the dashboard's URL: the notes stack's `DashboardUrl` output (which notes.yaml
/// declares) is listed under the notes stack, in text and in JSON.
#[tokio::test]
async fn outputs_shows_the_dashboard_url() {
    let notes = std::fs::read_to_string(format!("{}/notes.yaml", templates())).unwrap();
    let doc = notesctl::template::parse(&notes).unwrap();
    assert!(
        doc["Outputs"]["DashboardUrl"]["Value"]["Fn::Sub"]
            .as_str()
            .is_some_and(|v| v.contains("#dashboards:name=${Dashboard}")),
        "notes.yaml outputs the dashboard's URL: {}",
        doc["Outputs"]
    );
    let stage = notesctl_tests::unique("db");
    let url = format!(
        "https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#dashboards:name={stage}-notes"
    );
    moto::fake_stack(&stage, "notes", &[("DashboardUrl", url.clone())]).await;
    let text = cli(&stage).await.args(["outputs"]).run().await;
    assert_eq!(text.code, 0, "{}", text.stderr);
    let notes_stack = format!("{stage}-notes-stack");
    let line = text
        .stdout
        .lines()
        .find(|l| l.contains("DashboardUrl"))
        .unwrap_or_else(|| panic!("no DashboardUrl line:\n{}", text.stdout));
    assert!(line.trim_end().ends_with(&url), "{line}");
    assert!(text.stdout.starts_with(&notes_stack), "{}", text.stdout);
    let (code, json) = cli(&stage)
        .await
        .args(["outputs"])
        .json::<OutputsReport>()
        .await;
    assert_eq!(code, 0);
    assert_eq!(json.0[&notes_stack]["DashboardUrl"], url);
}

/// On a terminal, `deploy` without `--yes` shows the change set and asks: "n" applies nothing (the
/// stack is not created, and the run says so and fails), "y" applies it. Run under a real
/// pseudo-terminal (`script`).
#[tokio::test]
async fn deploy_asks_before_applying_on_a_terminal() {
    use tokio::io::AsyncWriteExt;
    let cs = CodeStage::new("ask").await;
    let stage = cs.stage.clone();
    cs.ship(1);
    let moto = moto::shared().await;
    let bin = notesctl_tests::dev::notesctl_binary();
    let command = format!(
        "'{}' --stage {stage} --region us-east-1 --endpoint-url {} deploy --no-validate {}",
        bin.display(),
        moto.endpoint,
        cs.flags()
            .iter()
            .map(|f| format!("'{f}'"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let answer = async |reply: &str| {
        let mut child = tokio::process::Command::new("script")
            .args(["-q", "-e", "-c", &command, "/dev/null"])
            .envs(moto.env())
            .env("NOTESCTL_LOG", "warn")
            .env("TERM", "dumb")
            .env_remove("CI")
            .env_remove("NOTESCTL_OUTPUT")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("script (util-linux) runs");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(reply.as_bytes()).await.unwrap();
        stdin.flush().await.unwrap();
        let out =
            tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
                .await
                .expect("deploy answered within 60 s")
                .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let cfn = aws_sdk_cloudformation::Client::new(&moto.sdk_config().await);
    let stack = format!("{stage}-auth-stack");
    let status = async || {
        cfn.describe_stacks()
            .stack_name(&stack)
            .send()
            .await
            .ok()
            .and_then(|d| {
                d.stacks?
                    .first()?
                    .stack_status()
                    .map(|s| s.as_str().to_owned())
            })
    };

    let (code, shown) = answer("n\n").await;
    assert!(
        shown.contains(&format!("Apply these changes to {stack}? [y/N]")),
        "{shown}"
    );
    assert!(shown.contains("not confirmed; nothing changed"), "{shown}");
    assert_eq!(code, Some(2), "{shown}");
    assert_ne!(
        status().await.as_deref(),
        Some("CREATE_COMPLETE"),
        "nothing applied"
    );

    let (code, shown) = answer("y\n").await;
    assert_eq!(code, Some(0), "{shown}");
    assert_eq!(
        status().await.as_deref(),
        Some("CREATE_COMPLETE"),
        "{shown}"
    );
}

/// CloudFormation reads whatever the bucket holds at a template's URL: a template object changed
/// after it was stored (by anyone who may write the bucket) is written again from the file before a
/// change set reads it, so the key's digest and what CloudFormation reads always agree.
#[tokio::test]
async fn a_template_changed_in_the_bucket_is_written_again_before_a_change_set_reads_it() {
    let stage = notesctl_tests::unique("tw");
    let preview = async || {
        cli(&stage)
            .await
            .args([
                "deploy",
                "--preview",
                "--stack",
                "event",
                "--templates",
                &templates(),
            ])
            .run()
            .await
    };
    let first = preview().await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    let file = std::fs::read(format!("{}/event.yaml", templates())).unwrap();
    let key = notesctl::aws::artifacts::template_key(&stage, &file);
    assert_eq!(stored(&key).await, file);
    moto::s3()
        .await
        .put_object()
        .bucket(moto::DEFAULT_ARTIFACTS_BUCKET)
        .key(&key)
        .body(
            b"Resources: {Evil: {Type: AWS::SQS::Queue}}"
                .to_vec()
                .into(),
        )
        .send()
        .await
        .unwrap();
    let second = preview().await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(!second.stderr.contains("Evil"), "{}", second.stderr);
    assert_eq!(stored(&key).await, file, "the file, written again");
}
