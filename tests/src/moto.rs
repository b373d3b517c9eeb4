//! One moto server per test binary, started on 127.0.0.1 at a free port, and stopped when the test
//! process exits (a watchdog shell kills it). Set `MOTO_ENDPOINT` to use a server you started.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

pub struct Moto {
    pub endpoint: String,
    /// The watchdog shell; it outlives this process only long enough to stop moto.
    _watchdog: Option<std::process::Child>,
}

fn moto_server_command() -> String {
    if let Ok(p) = std::env::var("MOTO_SERVER") {
        return p;
    }
    let venv = crate::workspace_root().join(".venv/bin/moto_server");
    if venv.exists() {
        return venv.display().to_string();
    }
    "moto_server".to_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

async fn start() -> Moto {
    if let Ok(endpoint) = std::env::var("MOTO_ENDPOINT") {
        return Moto {
            endpoint,
            _watchdog: None,
        };
    }
    start_with(&[]).await
}

/// A moto server of its own, started with these environment variables (for the IAM tests, which
/// switch enforcement on for the whole server).
pub async fn start_with(env: &[(&str, &str)]) -> Moto {
    let port = free_port();
    let server = moto_server_command();
    // The watchdog ends moto when this test process is gone, however it ends.
    let script = format!(
        "'{server}' -H 127.0.0.1 -p {port} >/dev/null 2>&1 & m=$!; \
         while kill -0 {pid} 2>/dev/null && kill -0 $m 2>/dev/null; do sleep 0.5; done; kill $m 2>/dev/null",
        pid = std::process::id()
    );
    let watchdog = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start moto ({server}): {e}. Run scripts/test.sh, which installs it into .venv"));
    let mut watchdog = watchdog;
    let endpoint = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Moto {
                endpoint,
                _watchdog: Some(watchdog),
            };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = watchdog.kill();
    let _ = watchdog.wait();
    panic!(
        "moto_server ({server}) did not listen on 127.0.0.1:{port} within 60 s; is moto[server] installed? Run scripts/test.sh"
    );
}

/// The moto server of this test binary, started on first use, with the account's default
/// artifacts bucket made beforehand (as `notesctl deploy` needs it for every template): a bucket
/// `deploy` creates itself gets a TLS-only policy, which moto enforces over its plain HTTP.
pub async fn shared() -> &'static Moto {
    static MOTO: OnceCell<Moto> = OnceCell::const_new();
    MOTO.get_or_init(|| async {
        let moto = start().await;
        let bucket = DEFAULT_ARTIFACTS_BUCKET;
        let s3 = path_style_s3(&moto.sdk_config().await);
        match s3.create_bucket().bucket(bucket).send().await {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_bucket_already_owned_by_you()) => {}
            Err(e) => panic!("creating {bucket} on moto: {e:?}"),
        }
        moto
    })
    .await
}

/// `notesctl-artifacts-{account}-{region}` of moto's account in the tests' region.
pub const DEFAULT_ARTIFACTS_BUCKET: &str = "notesctl-artifacts-123456789012-us-east-1";

fn path_style_s3(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build(),
    )
}

impl Moto {
    /// SDK configuration for moto: dummy credentials, a fixed region, every client at `endpoint`.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "testing", "testing", None, None, "moto",
            ))
            .load()
            .await
    }

    /// Environment for a child process that should talk to this moto.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }
}

/// The app's AWS resources on moto, with unique names: tables, bus, rule → queue (with DLQ), secret.
pub struct Resources {
    pub table: String,
    pub connections_table: String,
    pub bus: String,
    pub queue_url: String,
    pub dlq_url: String,
    pub secret_arn: String,
}

/// A table keyed as the app's tables are (`pk`, `sk`), on moto.
pub async fn create_table(sdk: &aws_config::SdkConfig, name: &str) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    ddb.create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("sk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("sk")
                .key_type(KeyType::Range)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("create table on moto");
}

impl Resources {
    pub async fn create(sdk: &aws_config::SdkConfig) -> Resources {
        let table = crate::unique("data-table");
        let connections_table = crate::unique("websocket-connections");
        for name in [&table, &connections_table] {
            create_table(sdk, name).await;
        }
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let dlq_url = sqs
            .create_queue()
            .queue_name(crate::unique("note-processing-dlq"))
            .send()
            .await
            .expect("create DLQ")
            .queue_url
            .unwrap();
        let dlq_arn = queue_arn(&sqs, &dlq_url).await;
        let queue_url = sqs
            .create_queue()
            .queue_name(crate::unique("note-processing-queue"))
            .attributes(
                aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
                "1",
            )
            .attributes(
                aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
                serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3})
                    .to_string(),
            )
            .send()
            .await
            .expect("create queue")
            .queue_url
            .unwrap();
        let queue_arn = queue_arn(&sqs, &queue_url).await;
        let events = aws_sdk_eventbridge::Client::new(sdk);
        let bus = crate::unique("notes-event-bus");
        events
            .create_event_bus()
            .name(&bus)
            .send()
            .await
            .expect("create bus");
        let rule = crate::unique("note-created-to-queue");
        events
            .put_rule()
            .name(&rule)
            .event_bus_name(&bus)
            .event_pattern(r#"{"source":["notes.service"],"detail-type":["note-created"]}"#)
            .send()
            .await
            .expect("put rule");
        events
            .put_targets()
            .rule(&rule)
            .event_bus_name(&bus)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("queue")
                    .arn(&queue_arn)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("put targets");
        let secrets = aws_sdk_secretsmanager::Client::new(sdk);
        let secret_arn = secrets
            .create_secret()
            .name(crate::unique("jwt-secret"))
            .secret_string("moto-jwt-secret-moto-jwt-secret-moto-jwt-secret")
            .send()
            .await
            .expect("create secret")
            .arn
            .unwrap();
        Resources {
            table,
            connections_table,
            bus,
            queue_url,
            dlq_url,
            secret_arn,
        }
    }

    /// The handlers' environment contract for these resources.
    pub fn handler_env(&self, moto: &Moto) -> Vec<(String, String)> {
        let mut env = moto.env();
        env.extend(
            [
                ("TABLE_NAME", self.table.as_str()),
                ("CONNECTIONS_TABLE_NAME", self.connections_table.as_str()),
                ("EVENT_BUS_NAME", self.bus.as_str()),
                ("SECRET_ARN", self.secret_arn.as_str()),
                ("ALLOWED_ORIGIN", "https://notes.example.com"),
                ("WEBSOCKET_API_ENDPOINT", moto.endpoint.as_str()),
                ("WEBSOCKET_STAGE", ""),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        env
    }

    /// Receives what is on the processing queue now (long-polling briefly), deleting nothing.
    pub async fn receive(
        &self,
        sdk: &aws_config::SdkConfig,
        max: i32,
    ) -> Vec<aws_sdk_sqs::types::Message> {
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let mut out = Vec::new();
        for _ in 0..10 {
            let got = sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(max.min(10))
                .wait_time_seconds(1)
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
                .send()
                .await
                .expect("receive");
            out.extend(got.messages.unwrap_or_default());
            if out.len() as i32 >= max {
                break;
            }
        }
        out
    }
}

/// A second rule on the app's bus sending the notes service's events of `detail_types` to a new
/// queue, so a test can see what was published; the queue's URL.
pub async fn observe(
    sdk: &aws_config::SdkConfig,
    res: &Resources,
    detail_types: &[&str],
) -> String {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let url = sqs
        .create_queue()
        .queue_name(crate::unique("observed"))
        .send()
        .await
        .expect("create the observing queue")
        .queue_url
        .unwrap();
    let arn = queue_arn(&sqs, &url).await;
    let events = aws_sdk_eventbridge::Client::new(sdk);
    let rule = crate::unique("observe");
    events
        .put_rule()
        .name(&rule)
        .event_bus_name(&res.bus)
        .event_pattern(
            serde_json::json!({"source": ["notes.service"], "detail-type": detail_types})
                .to_string(),
        )
        .send()
        .await
        .expect("put the observing rule");
    events
        .put_targets()
        .rule(&rule)
        .event_bus_name(&res.bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("observed")
                .arn(arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("put the observing target");
    url
}

/// The events (whole EventBridge envelopes) on an observing queue, each deleted once read: until
/// `want` have come (or 20 s passed), then whatever else comes within another second.
pub async fn drain_observed(
    sdk: &aws_config::SdkConfig,
    url: &str,
    want: usize,
) -> Vec<serde_json::Value> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut extra_round = true;
    loop {
        if out.len() >= want || std::time::Instant::now() >= deadline {
            if !extra_round {
                return out;
            }
            extra_round = false;
        }
        let got = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive from the observing queue");
        for m in got.messages.unwrap_or_default() {
            out.push(serde_json::from_str(m.body().unwrap()).expect("an event envelope"));
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .expect("delete the observed event");
        }
    }
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .expect("QueueArn")
}

impl Moto {
    /// `notesctl` aimed at this moto server, for a stage.
    pub fn cli(&self, stage: &str) -> crate::cli::Cli {
        self.cli_at(stage, &self.endpoint)
    }

    /// `notesctl` with this server's credentials, aimed at `endpoint` (a proxy in front of it).
    pub fn cli_at(&self, stage: &str, endpoint: &str) -> crate::cli::Cli {
        let mut c = crate::cli::Cli::new().args(aimed(stage, endpoint));
        for (k, v) in self.env() {
            c = c.env(&k, &v);
        }
        c
    }

    /// As [`Moto::cli_at`], as a process to spawn and read while it runs (`tail --follow`) or to
    /// time (benchmarks); warnings only on stderr.
    pub fn process_at(&self, stage: &str, endpoint: &str) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(crate::dev::notesctl_binary());
        c.args(aimed(stage, endpoint))
            .envs(self.env())
            .env("NOTESCTL_LOG", "warn");
        c
    }
}

/// The global options that aim `notesctl` at a stage behind `endpoint`.
fn aimed<'a>(stage: &'a str, endpoint: &'a str) -> [&'a str; 6] {
    [
        "--stage",
        stage,
        "--region",
        "us-east-1",
        "--endpoint-url",
        endpoint,
    ]
}

/// `notesctl` aimed at this test binary's moto, for a stage.
pub async fn cli(stage: &str) -> crate::cli::Cli {
    shared().await.cli(stage)
}

/// A stack with literal outputs, for commands that read outputs of stacks moto cannot run.
pub async fn fake_stack(stage: &str, short: &str, outputs: &[(&str, String)]) {
    fake_stack_with(stage, short, outputs, &[]).await
}

/// A stack with literal outputs and parameter values, for commands that read either.
pub async fn fake_stack_with(
    stage: &str,
    short: &str,
    outputs: &[(&str, String)],
    parameters: &[(&str, &str)],
) {
    let outs: serde_json::Map<String, serde_json::Value> = outputs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), serde_json::json!({"Value": v})))
        .collect();
    let params: serde_json::Map<String, serde_json::Value> = parameters
        .iter()
        .map(|(k, _)| ((*k).to_owned(), serde_json::json!({"Type": "String"})))
        .collect();
    let template = serde_json::json!({"Parameters": params, "Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}}, "Outputs": outs});
    let cfn = aws_sdk_cloudformation::Client::new(&shared().await.sdk_config().await);
    cfn.create_stack()
        .stack_name(format!("{stage}-{short}-stack"))
        .template_body(template.to_string())
        .set_parameters(Some(
            parameters
                .iter()
                .map(|(k, v)| {
                    aws_sdk_cloudformation::types::Parameter::builder()
                        .parameter_key(*k)
                        .parameter_value(*v)
                        .build()
                })
                .collect(),
        ))
        .send()
        .await
        .expect("create a stack on moto");
}

/// An S3 client for moto (paths, not bucket subdomains).
pub async fn s3() -> aws_sdk_s3::Client {
    path_style_s3(&shared().await.sdk_config().await)
}

/// The keys in `bucket`, sorted.
pub async fn keys(bucket: &str) -> Vec<String> {
    let listed = s3()
        .await
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .expect("list a bucket on moto");
    let mut keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    keys.sort();
    keys
}

/// A CloudFront distribution on moto; its id.
pub async fn create_distribution() -> String {
    use aws_sdk_cloudfront::types::*;
    let cf = aws_sdk_cloudfront::Client::new(&shared().await.sdk_config().await);
    let origin = Origin::builder()
        .id("s3")
        .domain_name("bucket.s3.amazonaws.com")
        .s3_origin_config(S3OriginConfig::builder().origin_access_identity("").build())
        .build()
        .unwrap();
    let config = DistributionConfig::builder()
        .caller_reference(crate::unique("dist"))
        .comment("test")
        .enabled(true)
        .origins(
            Origins::builder()
                .quantity(1)
                .items(origin)
                .build()
                .unwrap(),
        )
        .default_cache_behavior(
            DefaultCacheBehavior::builder()
                .target_origin_id("s3")
                .viewer_protocol_policy(ViewerProtocolPolicy::RedirectToHttps)
                .cache_policy_id("658327ea-f89d-4fab-a63d-7e88639e58f6")
                .trusted_signers(
                    TrustedSigners::builder()
                        .enabled(false)
                        .quantity(0)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    cf.create_distribution()
        .distribution_config(config)
        .send()
        .await
        .expect("create a distribution on moto")
        .distribution
        .unwrap()
        .id
}

/// Sends `n` messages to a queue, ten per call; `message` fills in the i-th (the id is set).
pub async fn fill_queue(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    n: usize,
    message: impl Fn(
        usize,
        aws_sdk_sqs::types::builders::SendMessageBatchRequestEntryBuilder,
    ) -> aws_sdk_sqs::types::builders::SendMessageBatchRequestEntryBuilder,
) {
    use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
    for chunk in (0..n).collect::<Vec<_>>().chunks(10) {
        let entries = chunk
            .iter()
            .map(|&i| {
                message(
                    i,
                    SendMessageBatchRequestEntry::builder().id(format!("e{i}")),
                )
                .build()
                .unwrap()
            })
            .collect();
        sqs.send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .unwrap();
    }
}

/// The bytes of an S3 object.
pub async fn read_object(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    s3.get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("reading s3://{bucket}/{key}: {e:?}"))
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes()
        .to_vec()
}

/// A stage's note-processing queue and its DLQ (by the naming convention, without the redrive
/// policy): the client, the queue URL and the DLQ URL.
pub async fn stage_queues(stage: &str) -> (aws_sdk_sqs::Client, String, String) {
    let sqs = aws_sdk_sqs::Client::new(&shared().await.sdk_config().await);
    let mut urls = Vec::new();
    for name in ["note-processing-queue", "note-processing-dlq"] {
        urls.push(
            sqs.create_queue()
                .queue_name(format!("{stage}-{name}"))
                .send()
                .await
                .unwrap()
                .queue_url
                .unwrap(),
        );
    }
    let dlq = urls.pop().unwrap();
    let queue = urls.pop().unwrap();
    (sqs, queue, dlq)
}

/// A code stack of the app's shape that moto runs: a role and a function whose code is the zip
/// `deploy` uploads (`CodeBucket`/`CodeKey`).
pub const CODE_STACK: &str = r#"Parameters:
  Stage:
    Type: String
  CodeBucket:
    Type: String
  CodeKey:
    Type: String
Resources:
  Role:
    Type: AWS::IAM::Role
    Properties:
      RoleName: !Sub "${Stage}-signup-role"
      AssumeRolePolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Effect: Allow
            Principal:
              Service: lambda.amazonaws.com
            Action: sts:AssumeRole
  Signup:
    Type: AWS::Lambda::Function
    Properties:
      FunctionName: !Sub "${Stage}-auth-signup"
      Handler: auth-signup
      Runtime: provided.al2023
      Role: !GetAtt Role.Arn
      Code:
        S3Bucket: !Ref CodeBucket
        S3Key: !Ref CodeKey
"#;

/// One more function for [`CODE_STACK`], of the same shape (its role, the zip): `handler` is the
/// `_HANDLER` name (`auth-login`), which is also the function's name after the stage.
pub fn code_stack_function(logical: &str, handler: &str) -> String {
    format!(
        r#"  {logical}:
    Type: AWS::Lambda::Function
    Properties:
      FunctionName: !Sub "${{Stage}}-{handler}"
      Handler: {handler}
      Runtime: provided.al2023
      Role: !GetAtt Role.Arn
      Code:
        S3Bucket: !Ref CodeBucket
        S3Key: !Ref CodeKey
"#
    )
}

/// A code bucket for `stage` (`{stage}-code`), made directly on moto. Tests that deploy pass it as
/// `--artifacts-bucket`: a bucket deploy makes itself is TLS-only, a policy moto enforces over its
/// plain HTTP, so neither code zips nor release records could be written to or deleted from it.
pub async fn code_bucket(stage: &str) -> String {
    let bucket = format!("{stage}-code");
    s3().await
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    bucket
}
