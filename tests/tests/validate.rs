//! `notesctl validate` on the app's templates, and one mutation test per rule: a copy of the templates
//! broken in exactly one way, which validate must name — the file, the resource and the rule. A rule
//! no test can make fail would not count.

use notesctl::commands::validate::{Finding, Rule, Severity, check};

fn templates() -> std::path::PathBuf {
    notesctl_tests::workspace_root().join("templates")
}

/// The findings for the templates with `edits` applied: `(file, from, to)`, each `from` present.
fn findings_after(edits: &[(&str, &str, &str)]) -> Vec<Finding> {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(templates()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    for (file, from, to) in edits {
        let path = dir.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} has no {from:?} to break");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    }
    check(dir.path()).unwrap().findings
}

fn listing(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|f| {
            format!(
                "  {:?} {:?} {} {}: {}",
                f.severity, f.rule, f.file, f.resource, f.problem
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Validate names `rule` at `file`/`resource`, as an error, with a message that contains `says`.
#[track_caller]
fn names(findings: &[Finding], rule: Rule, file: &str, resource: &str, says: &str) {
    assert!(
        findings.iter().any(|f| f.rule == rule
            && f.severity == Severity::Error
            && f.file == file
            && f.resource == resource
            && f.problem.contains(says)
            && !f.fix.is_empty()),
        "expected {rule:?} at {file} {resource} saying {says:?}; got:\n{}",
        listing(findings)
    );
}

/// Validate names nothing under `rule` at `file`/`resource`.
#[track_caller]
fn clean(findings: &[Finding], rule: Rule, file: &str, resource: &str) {
    let found: Vec<Finding> = findings
        .iter()
        .filter(|f| f.rule == rule && f.file == file && f.resource == resource)
        .cloned()
        .collect();
    assert!(
        found.is_empty(),
        "expected no {rule:?} at {file} {resource}; got:\n{}",
        listing(&found)
    );
}

/// The one warning the app's templates carry: notes.yaml is over the 51,200 bytes of a request
/// body (notesctl deploys by URL, so it deploys anyway).
#[track_caller]
fn only_warning(findings: &[Finding]) {
    let warnings: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.severity == Severity::Warning)
        .collect();
    assert!(
        matches!(warnings.as_slice(), [w] if w.rule == Rule::TemplateSize
            && w.file == "notes.yaml"
            && w.resource.is_empty()
            && w.problem.contains("over the 51,200 bytes")
            && !w.fix.is_empty()),
        "expected exactly one warning, TemplateSize on notes.yaml; got:\n{}",
        listing(findings)
    );
}

/// The findings that stop a deploy.
fn errors(findings: &[Finding]) -> Vec<Finding> {
    findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .cloned()
        .collect()
}

/// `n` lines made by `line(i)`, concatenated.
fn lines(n: usize, line: impl Fn(usize) -> String) -> String {
    (0..n).map(line).collect()
}

#[test]
fn the_app_templates_pass() {
    let report = check(&templates()).unwrap();
    let errors = errors(&report.findings);
    assert!(
        errors.is_empty(),
        "{}",
        errors
            .iter()
            .map(|f| format!(
                "{:?} {} {}: {} — {}",
                f.rule, f.file, f.resource, f.problem, f.fix
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );
    only_warning(&report.findings);
    assert_eq!(report.functions, 12);
    assert_eq!(report.routes, 10);
}

#[test]
fn a_handler_that_does_not_exist() {
    let f = findings_after(&[("auth.yaml", "Handler: auth-login", "Handler: auth-logon")]);
    names(
        &f,
        Rule::Handler,
        "auth.yaml",
        "LoginFunction",
        "auth-logon",
    );
    names(&f, Rule::Handler, "notes.yaml", "", "auth-login");
}

#[test]
fn a_function_off_the_naming_convention() {
    let f = findings_after(&[(
        "notes.yaml",
        r#"FunctionName: !Sub "${Stage}-notes-get""#,
        r#"FunctionName: !Sub "${Stage}-notes-list""#,
    )]);
    names(
        &f,
        Rule::Handler,
        "notes.yaml",
        "GetFunction",
        "FunctionName",
    );
}

#[test]
fn a_variable_renamed_on_one_side() {
    let f = findings_after(&[(
        "notes.yaml",
        "          EVENT_BUS_NAME:\n            Fn::ImportValue: !Sub \"${Stage}-EventBusName\"\n          SECRET_ARN",
        "          EVENTBUS_NAME:\n            Fn::ImportValue: !Sub \"${Stage}-EventBusName\"\n          SECRET_ARN",
    )]);
    names(
        &f,
        Rule::Environment,
        "notes.yaml",
        "PublishFunction",
        "sets EVENTBUS_NAME",
    );
    names(
        &f,
        Rule::Environment,
        "notes.yaml",
        "PublishFunction",
        "does not set EVENT_BUS_NAME",
    );
}

#[test]
fn a_variable_naming_the_wrong_resource() {
    let f = findings_after(&[(
        "websocket.yaml",
        "CONNECTIONS_TABLE_NAME: !Ref ConnectionsTable\n          WEBSOCKET_API_ENDPOINT",
        "CONNECTIONS_TABLE_NAME: !Ref NotifyDeadLetterQueue\n          WEBSOCKET_API_ENDPOINT",
    )]);
    names(
        &f,
        Rule::Environment,
        "websocket.yaml",
        "NotifyFunction",
        "CONNECTIONS_TABLE_NAME",
    );
}

#[test]
fn a_receive_count_out_of_step_with_the_queue() {
    let f = findings_after(&[(
        "notes.yaml",
        r#"MAX_RECEIVE_COUNT: "3""#,
        r#"MAX_RECEIVE_COUNT: "5""#,
    )]);
    names(
        &f,
        Rule::Environment,
        "notes.yaml",
        "SaveFunction",
        "MAX_RECEIVE_COUNT",
    );
}

#[test]
fn a_role_missing_one_action() {
    let f = findings_after(&[(
        "auth.yaml",
        "                Action:\n                  - dynamodb:PutItem\n",
        "                Action:\n                  - dynamodb:GetItem\n",
    )]);
    names(
        &f,
        Rule::Permissions,
        "auth.yaml",
        "SignupRole",
        "does not grant dynamodb:PutItem",
    );
    names(
        &f,
        Rule::Permissions,
        "auth.yaml",
        "SignupRole",
        "grants dynamodb:GetItem",
    );
}

#[test]
fn a_role_granting_an_undeclared_action() {
    let f = findings_after(&[(
        "notes.yaml",
        "                Action:\n                  - dynamodb:Query\n",
        "                Action:\n                  - dynamodb:Query\n                  - dynamodb:Scan\n",
    )]);
    names(
        &f,
        Rule::Permissions,
        "notes.yaml",
        "GetRole",
        "grants dynamodb:Scan",
    );
}

#[test]
fn a_wildcard_action() {
    let f = findings_after(&[(
        "notes.yaml",
        "                Action:\n                  - dynamodb:Query\n",
        "                Action:\n                  - dynamodb:*\n",
    )]);
    names(
        &f,
        Rule::Permissions,
        "notes.yaml",
        "GetRole",
        "wildcard action dynamodb:*",
    );
}

#[test]
fn a_wildcard_resource() {
    let f = findings_after(&[(
        "auth.yaml",
        "                  - secretsmanager:GetSecretValue\n                Resource: !Ref JwtSecret",
        "                  - secretsmanager:GetSecretValue\n                Resource: \"*\"",
    )]);
    names(
        &f,
        Rule::Permissions,
        "auth.yaml",
        "LoginRole",
        "every resource",
    );
}

#[test]
fn an_action_on_the_wrong_resource() {
    let f = findings_after(&[(
        "notes.yaml",
        "                  - events:PutEvents\n                Resource:\n                  Fn::ImportValue: !Sub \"${Stage}-EventBusArn\"",
        "                  - events:PutEvents\n                Resource:\n                  Fn::ImportValue: !Sub \"${Stage}-DataTableArn\"",
    )]);
    names(
        &f,
        Rule::Permissions,
        "notes.yaml",
        "PublishRole",
        "does not grant events:PutEvents on EventBus",
    );
}

#[test]
fn logging_to_another_functions_log_group() {
    let f = findings_after(&[(
        "auth.yaml",
        "Resource: !GetAtt SignupLogGroup.Arn",
        "Resource: !GetAtt LoginLogGroup.Arn",
    )]);
    names(
        &f,
        Rule::Permissions,
        "auth.yaml",
        "SignupRole",
        "LoginLogGroup",
    );
}

#[test]
fn a_route_without_its_lambda_permission() {
    let f = findings_after(&[(
        "auth.yaml",
        "/*/POST/auth/signup\"",
        "/*/POST/auth/signin\"",
    )]);
    names(
        &f,
        Rule::Route,
        "auth.yaml",
        "SignupFunction",
        "POST /auth/signup",
    );
}

#[test]
fn a_route_to_the_wrong_function() {
    let f = findings_after(&[(
        "auth.yaml",
        "IntegrationUri: !GetAtt LoginFunction.Arn",
        "IntegrationUri: !GetAtt SignupFunction.Arn",
    )]);
    names(
        &f,
        Rule::Route,
        "auth.yaml",
        "LoginRoute",
        "reaches auth-signup",
    );
    names(
        &f,
        Rule::Route,
        "auth.yaml",
        "LoginFunction",
        "no route POST /auth/login",
    );
}

#[test]
fn a_route_key_that_no_handler_declares() {
    let f = findings_after(&[(
        "auth.yaml",
        "RouteKey: GET /auth/user",
        "RouteKey: GET /auth/me",
    )]);
    names(&f, Rule::Route, "auth.yaml", "GetUserRoute", "GET /auth/me");
    names(
        &f,
        Rule::Route,
        "auth.yaml",
        "GetUserFunction",
        "no route GET /auth/user",
    );
}

#[test]
fn a_websocket_route_without_its_permission() {
    let f = findings_after(&[("websocket.yaml", "/*/$connect\"", "/*/$default\"")]);
    names(
        &f,
        Rule::Route,
        "websocket.yaml",
        "ConnectFunction",
        "$connect",
    );
}

#[test]
fn an_event_rule_missing_a_detail_type() {
    let f = findings_after(&[(
        "websocket.yaml",
        "          - note-updated\n          - note-deleted\n",
        "          - note-updated\n",
    )]);
    names(
        &f,
        Rule::EventRule,
        "websocket.yaml",
        "NotifyRule",
        "note-deleted",
    );
}

#[test]
fn an_event_rule_aimed_at_the_wrong_function() {
    let f = findings_after(&[(
        "websocket.yaml",
        "Arn: !GetAtt NotifyFunction.Arn",
        "Arn: !GetAtt ConnectFunction.Arn",
    )]);
    names(
        &f,
        Rule::EventRule,
        "websocket.yaml",
        "NotifyRule",
        "ConnectFunction",
    );
    names(
        &f,
        Rule::EventRule,
        "websocket.yaml",
        "NotifyFunction",
        "no EventBridge rule",
    );
}

#[test]
fn an_event_rule_without_a_dead_letter_queue() {
    let f = findings_after(&[(
        "websocket.yaml",
        "          DeadLetterConfig:\n            Arn: !GetAtt NotifyDeadLetterQueue.Arn\n",
        "",
    )]);
    names(
        &f,
        Rule::EventRule,
        "websocket.yaml",
        "NotifyRule",
        "no dead-letter queue",
    );
}

/// websocket-notify is invoked asynchronously by its rule, so what still fails after Lambda's
/// retries must be kept: its EventInvokeConfig (retries and event age chosen, the notify DLQ as its
/// on-failure destination) and its role's sqs:SendMessage there, and nothing more. Each broken.
#[test]
fn an_asynchronous_function_keeps_what_fails() {
    let ws = "websocket.yaml";
    let clean_templates = findings_after(&[]);
    for at in ["NotifyFunction", "NotifyEventInvokeConfig"] {
        clean(&clean_templates, Rule::FailureDestination, ws, at);
    }
    clean(&clean_templates, Rule::Permissions, ws, "NotifyRole");
    let config = "    Type: AWS::Lambda::EventInvokeConfig\n";
    let destination = "      DestinationConfig:\n        OnFailure:\n          Destination: !GetAtt NotifyDeadLetterQueue.Arn\n";
    let grant = "              - Sid: FailedInvocationsToDeadLetters\n                # Lambda sends an event whose invocation failed past its retries here, as the\n                # function (NotifyEventInvokeConfig's on-failure destination).\n                Effect: Allow\n                Action:\n                  - sqs:SendMessage\n                Resource: !GetAtt NotifyDeadLetterQueue.Arn\n";
    type Edits<'a> = &'a [(&'a str, &'a str, &'a str)];
    let cases: [(Edits, Rule, &str, &str); 8] = [
        (
            &[(ws, config, "    Type: AWS::SQS::Queue\n")],
            Rule::FailureDestination,
            "NotifyFunction",
            "nothing catches an invocation that still fails",
        ),
        (
            &[(ws, destination, "")],
            Rule::FailureDestination,
            "NotifyEventInvokeConfig",
            "failed invocations go nowhere",
        ),
        (
            &[(ws, "      MaximumRetryAttempts: 2\n", "")],
            Rule::FailureDestination,
            "NotifyEventInvokeConfig",
            "MaximumRetryAttempts is not set",
        ),
        (
            &[(
                ws,
                "      MaximumRetryAttempts: 2\n      MaximumEventAgeInSeconds: 3600\n",
                "      MaximumRetryAttempts: 2\n      MaximumEventAgeInSeconds: 30\n",
            )],
            Rule::FailureDestination,
            "NotifyEventInvokeConfig",
            "Lambda takes 60 to 21600",
        ),
        (
            &[(
                ws,
                "      MaximumRetryAttempts: 2\n      MaximumEventAgeInSeconds: 3600\n",
                "      MaximumRetryAttempts: 2\n",
            )],
            Rule::FailureDestination,
            "NotifyEventInvokeConfig",
            "MaximumEventAgeInSeconds is not set",
        ),
        (
            &[(ws, "      Qualifier: $LATEST\n", "      Qualifier: live\n")],
            Rule::FailureDestination,
            "NotifyEventInvokeConfig",
            "Qualifier is",
        ),
        (
            &[(ws, grant, "")],
            Rule::Permissions,
            "NotifyRole",
            "does not grant sqs:SendMessage on NotifyDeadLetterQueue",
        ),
        (
            &[(
                ws,
                "                  - sqs:SendMessage\n                Resource: !GetAtt NotifyDeadLetterQueue.Arn\n",
                "                  - sqs:SendMessage\n                  - sqs:ReceiveMessage\n                Resource: !GetAtt NotifyDeadLetterQueue.Arn\n",
            )],
            Rule::Permissions,
            "NotifyRole",
            "where Lambda needs only sqs:SendMessage",
        ),
    ];
    for (edits, rule, resource, says) in cases {
        names(&findings_after(edits), rule, ws, resource, says);
    }
}

#[test]
fn an_event_rule_without_permission_to_invoke() {
    let f = findings_after(&[(
        "websocket.yaml",
        "      Principal: events.amazonaws.com\n      SourceArn: !GetAtt NotifyRule.Arn",
        "      Principal: sns.amazonaws.com\n      SourceArn: !GetAtt NotifyRule.Arn",
    )]);
    names(
        &f,
        Rule::EventRule,
        "websocket.yaml",
        "NotifyRule",
        "no permission",
    );
}

#[test]
fn a_queue_mapping_without_partial_failures() {
    let f = findings_after(&[(
        "notes.yaml",
        "      FunctionResponseTypes:\n        - ReportBatchItemFailures\n",
        "",
    )]);
    names(
        &f,
        Rule::QueueTrigger,
        "notes.yaml",
        "SaveEventSourceMapping",
        "batch item failures",
    );
}

#[test]
fn a_visibility_timeout_below_six_save_timeouts() {
    let f = findings_after(&[(
        "event.yaml",
        "VisibilityTimeout: 180",
        "VisibilityTimeout: 170",
    )]);
    names(
        &f,
        Rule::Visibility,
        "event.yaml",
        "ProcessingQueue",
        "below 6 × 30s",
    );
}

#[test]
fn an_import_nobody_exports() {
    let f = findings_after(&[(
        "notes.yaml",
        "${Stage}-EventBusArn",
        "${Stage}-EventBusArrn",
    )]);
    names(
        &f,
        Rule::Import,
        "notes.yaml",
        "PublishRole",
        "${Stage}-EventBusArrn",
    );
}

#[test]
fn an_import_from_a_later_stack() {
    let f = findings_after(&[(
        "data.yaml",
        "Outputs:\n",
        "Outputs:\n  Api:\n    Value: !ImportValue\n      Fn::Sub: \"${Stage}-HttpApiId\"\n",
    )]);
    names(&f, Rule::Import, "data.yaml", "Api", "deployed after");
}

#[test]
fn a_parameter_deploy_does_not_pass() {
    let f = findings_after(&[(
        "event.yaml",
        "Parameters:\n",
        "Parameters:\n  Retention:\n    Type: Number\n",
    )]);
    names(&f, Rule::Parameter, "event.yaml", "Retention", "no default");
}

#[test]
fn a_name_too_long_for_the_longest_stage() {
    let f = findings_after(&[(
        "event.yaml",
        r#"ArchiveName: !Sub "${Stage}-notes-archive""#,
        r#"ArchiveName: !Sub "${Stage}-notes-archive-for-replay""#,
    )]);
    names(
        &f,
        Rule::NameLength,
        "event.yaml",
        "EventArchive",
        "over the limit of 48",
    );
}

/// The command: a report with the findings, exit 1 when there are errors, 0 when there are none
/// (warnings shown, but no reason to stop).
#[tokio::test]
async fn the_command_reports_and_exits_by_its_findings() {
    use notesctl::commands::validate::ValidateReport;
    use notesctl_tests::cli::Cli;
    let (code, report) = Cli::new()
        .args(["validate", "--templates", templates().to_str().unwrap()])
        .json::<ValidateReport>()
        .await;
    assert_eq!((code, report.errors().count()), (0, 0), "{report:?}");
    only_warning(&report.findings);
    let text = Cli::new()
        .args(["validate", "--templates", templates().to_str().unwrap()])
        .run()
        .await;
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(
        text.stdout.contains("! notes.yaml: the template is")
            && text.stdout.contains("(1 warning above)"),
        "{}",
        text.stdout
    );
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(templates()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    let notes = dir.path().join("notes.yaml");
    let text = std::fs::read_to_string(&notes).unwrap();
    std::fs::write(&notes, text.replace("- dynamodb:Query", "- dynamodb:Scan")).unwrap();
    let run = Cli::new()
        .args(["validate", "--templates", dir.path().to_str().unwrap()])
        .run()
        .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stdout.contains("notes.yaml GetRole") && run.stdout.contains("fix:"),
        "{}",
        run.stdout
    );
    let missing = Cli::new()
        .args(["validate", "--templates", "/nonexistent"])
        .run()
        .await;
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("--templates"), "{}", missing.stderr);
}

#[test]
fn a_function_that_does_not_trace() {
    let f = findings_after(&[(
        "notes.yaml",
        "      Role: !GetAtt SaveRole.Arn\n      TracingConfig:\n        Mode: Active\n",
        "      Role: !GetAtt SaveRole.Arn\n",
    )]);
    names(
        &f,
        Rule::Tracing,
        "notes.yaml",
        "SaveFunction",
        "does not trace",
    );
    names(
        &f,
        Rule::Tracing,
        "notes.yaml",
        "SaveRole",
        "grants X-Ray writes to a function that does not trace",
    );
}

#[test]
fn active_tracing_without_the_grant_to_write_traces() {
    let f = findings_after(&[(
        "websocket.yaml",
        "                  - xray:PutTraceSegments\n                  - xray:PutTelemetryRecords\n                Resource: \"*\"\n              - Sid: FindAndPruneConnections",
        "                  - xray:PutTelemetryRecords\n                Resource: \"*\"\n              - Sid: FindAndPruneConnections",
    )]);
    names(
        &f,
        Rule::Tracing,
        "websocket.yaml",
        "NotifyRole",
        "does not grant xray:PutTraceSegments, which active tracing needs",
    );
    assert!(
        !f.iter().any(|x| x.rule == Rule::Permissions),
        "X-Ray's grant on * is not a wildcard finding: {f:?}"
    );
}

// ---------------------------------------------------------------- AWS limits: CloudFormation

/// The data stack's template description, which the size tests replace.
const DATA_DESCRIPTION: &str = "Description: >-\n  notesctl data stack ({Stage}-data-stack): the single DynamoDB table holding users and notes.\n";

/// A `Metadata` section holding a string of `bytes` bytes, in place of a template's description.
fn metadata_of(bytes: usize) -> String {
    format!("Metadata:\n  Padding: \"{}\"\n", "x".repeat(bytes))
}

#[test]
fn a_template_over_the_request_body_limit_is_only_a_warning() {
    // notes.yaml as it is: over 51,200 bytes, under 1,000,000.
    let f = findings_after(&[]);
    only_warning(&f);
    assert!(errors(&f).is_empty(), "{}", listing(&f));
    // The data stack made as large: a second warning, and still no error.
    let padding = metadata_of(60_000);
    let f = findings_after(&[("data.yaml", DATA_DESCRIPTION, &padding)]);
    assert!(
        f.iter().any(|x| x.rule == Rule::TemplateSize
            && x.severity == Severity::Warning
            && x.file == "data.yaml"
            && x.resource.is_empty()
            && x.problem.contains("over the 51,200 bytes")),
        "{}",
        listing(&f)
    );
    assert!(errors(&f).is_empty(), "{}", listing(&f));
}

#[test]
fn a_template_over_the_url_limit() {
    let padding = metadata_of(1_100_000);
    let f = findings_after(&[("data.yaml", DATA_DESCRIPTION, &padding)]);
    names(
        &f,
        Rule::TemplateSize,
        "data.yaml",
        "",
        "over the 1,000,000 bytes CloudFormation reads from S3",
    );
    assert!(
        !f.iter().any(|x| x.rule == Rule::TemplateSize
            && x.file == "data.yaml"
            && x.severity == Severity::Warning),
        "the error replaces the warning: {}",
        listing(&f)
    );
}

/// `n` wait-condition handles: the smallest resources there are.
fn handles(n: usize) -> String {
    lines(n, |i| {
        format!("  Handle{i}:\n    Type: AWS::CloudFormation::WaitConditionHandle\n")
    })
}

#[test]
fn too_many_resources() {
    // The table and 500 handles: 501.
    let extra = format!("Resources:\n{}", handles(500));
    let f = findings_after(&[("data.yaml", "Resources:\n", &extra)]);
    names(
        &f,
        Rule::ResourceCount,
        "data.yaml",
        "",
        "501 resources in the template, over CloudFormation's 500",
    );
    // 500 is allowed.
    let extra = format!("Resources:\n{}", handles(499));
    let f = findings_after(&[("data.yaml", "Resources:\n", &extra)]);
    clean(&f, Rule::ResourceCount, "data.yaml", "");
}

#[test]
fn too_many_parameters() {
    // Stage and 200 more.
    let extra = format!(
        "Parameters:\n{}",
        lines(200, |i| format!(
            "  Pad{i}:\n    Type: String\n    Default: x\n"
        ))
    );
    let f = findings_after(&[("data.yaml", "Parameters:\n", &extra)]);
    names(
        &f,
        Rule::ParameterCount,
        "data.yaml",
        "",
        "201 parameters in the template, over CloudFormation's 200",
    );
}

#[test]
fn too_many_outputs() {
    // The two exports and 199 more.
    let extra = format!(
        "Outputs:\n{}",
        lines(199, |i| format!("  Pad{i}:\n    Value: x\n"))
    );
    let f = findings_after(&[("data.yaml", "Outputs:\n", &extra)]);
    names(
        &f,
        Rule::OutputCount,
        "data.yaml",
        "",
        "201 outputs in the template, over CloudFormation's 200",
    );
}

#[test]
fn too_many_mappings_and_mapping_attributes() {
    let mappings = format!(
        "Mappings:\n{}\nResources:\n",
        lines(201, |i| format!("  Map{i}:\n    Key:\n      Attr: x\n"))
    );
    let f = findings_after(&[("data.yaml", "Resources:\n", &mappings)]);
    names(
        &f,
        Rule::MappingCount,
        "data.yaml",
        "",
        "201 mappings in the template, over CloudFormation's 200",
    );

    // One key of the visibility mapping with 201 attributes.
    let key = format!(
        "    \"30\":\n      VisibilityTimeout: 180\n{}",
        lines(200, |i| format!("      Pad{i}: 0\n"))
    );
    let f = findings_after(&[(
        "event.yaml",
        "    \"30\":\n      VisibilityTimeout: 180\n",
        &key,
    )]);
    names(
        &f,
        Rule::MappingCount,
        "event.yaml",
        "SaveTimeoutToVisibility",
        "the mapping's key 30 has 201 attributes, over CloudFormation's 200",
    );
    clean(&f, Rule::Visibility, "event.yaml", "ProcessingQueue");

    // A mapping of 201 keys.
    let keys = format!(
        "Mappings:\n  Wide:\n{}\nResources:\n",
        lines(201, |i| format!("    Key{i}:\n      Attr: x\n"))
    );
    let f = findings_after(&[("data.yaml", "Resources:\n", &keys)]);
    names(
        &f,
        Rule::MappingCount,
        "data.yaml",
        "Wide",
        "the mapping has 201 keys, over CloudFormation's 200",
    );
}

#[test]
fn a_logical_id_too_long_and_an_output_name_not_alphanumeric() {
    let (long, longest) = ("L".repeat(256), "M".repeat(255));
    let resources = format!(
        "Resources:\n  {long}:\n    Type: AWS::CloudFormation::WaitConditionHandle\n  {longest}:\n    Type: AWS::CloudFormation::WaitConditionHandle\n"
    );
    let f = findings_after(&[
        ("data.yaml", "Resources:\n", &resources),
        (
            "data.yaml",
            "Outputs:\n",
            "Outputs:\n  Table_Name:\n    Value: !Ref DataTable\n",
        ),
    ]);
    names(
        &f,
        Rule::IdLength,
        "data.yaml",
        &long,
        "the logical id is 256 characters, over CloudFormation's 255",
    );
    clean(&f, Rule::IdLength, "data.yaml", &longest);
    names(
        &f,
        Rule::IdLength,
        "data.yaml",
        "Table_Name",
        "the output name \"Table_Name\" is not alphanumeric",
    );
}

#[test]
fn a_description_too_long() {
    // The description's one line (92 bytes), a space and 932 more: 1,025 bytes.
    let template = format!("{} {}\n", DATA_DESCRIPTION.trim_end(), "x".repeat(932));
    let output = format!("    Description: {}\n", "y".repeat(1_025));
    let f = findings_after(&[
        ("data.yaml", DATA_DESCRIPTION, &template),
        (
            "data.yaml",
            "    Description: Name of the data table (users and notes).\n",
            &output,
        ),
        (
            "data.yaml",
            "    Description: ARN of the data table.\n",
            "    Description: !Sub \"ARN of the ${Stage} data table.\"\n",
        ),
    ]);
    names(
        &f,
        Rule::DescriptionLength,
        "data.yaml",
        "",
        "the template's Description is 1,025 bytes, over CloudFormation's 1,024",
    );
    names(
        &f,
        Rule::DescriptionLength,
        "data.yaml",
        "DataTableName",
        "the output's Description is 1,025 bytes, over CloudFormation's 1,024",
    );
    names(
        &f,
        Rule::DescriptionLength,
        "data.yaml",
        "DataTableArn",
        "not a literal string",
    );
}

#[test]
fn an_export_name_taken_by_an_earlier_stack() {
    let f = findings_after(&[(
        "data.yaml",
        "Outputs:\n",
        "Outputs:\n  BusName:\n    Value: !Ref DataTable\n    Export:\n      Name: !Sub \"${Stage}-EventBusName\"\n",
    )]);
    names(
        &f,
        Rule::ExportName,
        "data.yaml",
        "BusName",
        "exports the same name as event.yaml EventBusName",
    );
    clean(&f, Rule::ExportName, "event.yaml", "EventBusName");
}

#[test]
fn an_export_name_two_stages_could_share() {
    let f = findings_after(&[(
        "data.yaml",
        "Outputs:\n",
        "Outputs:\n  TableAgain:\n    Value: !Ref DataTable\n    Export:\n      Name: !Sub \"${Stage}-Data-Table\"\n  TableNamed:\n    Value: !Ref DataTable\n    Export:\n      Name: !Sub \"${DataTable}-Name\"\n",
    )]);
    names(
        &f,
        Rule::ExportName,
        "data.yaml",
        "TableAgain",
        "${Stage}-Data-Table is not `${Stage}-Key` with a key free of hyphens",
    );
    names(
        &f,
        Rule::ExportName,
        "data.yaml",
        "TableNamed",
        "refers to a resource",
    );
}

// ---------------------------------------------------------------- AWS limits: names

#[test]
fn a_function_name_too_long_for_the_longest_stage() {
    // 30 (the longest stage) + "-notes-get-" (11) + 23 = 64, the limit; one more is over it.
    let at_limit = format!(
        "FunctionName: !Sub \"${{Stage}}-notes-get-{}\"",
        "x".repeat(23)
    );
    let f = findings_after(&[(
        "notes.yaml",
        r#"FunctionName: !Sub "${Stage}-notes-get""#,
        &at_limit,
    )]);
    clean(&f, Rule::NameLength, "notes.yaml", "GetFunction");
    let over = format!(
        "FunctionName: !Sub \"${{Stage}}-notes-get-{}\"",
        "x".repeat(24)
    );
    let f = findings_after(&[(
        "notes.yaml",
        r#"FunctionName: !Sub "${Stage}-notes-get""#,
        &over,
    )]);
    names(
        &f,
        Rule::NameLength,
        "notes.yaml",
        "GetFunction",
        "FunctionName is 65 characters with a 30-character Stage, over the limit of 64",
    );
}

#[test]
fn a_queue_name_too_long_for_the_longest_stage() {
    // 30 (the longest stage) + 50 = 80, the limit; one more is over it.
    let from = r#"QueueName: !Sub "${Stage}-note-processing-dlq""#;
    let at_limit =
        r#"QueueName: !Sub "${Stage}-note-processing-dead-letter-queue-kept-14-days-xy""#;
    let f = findings_after(&[("event.yaml", from, at_limit)]);
    clean(&f, Rule::NameLength, "event.yaml", "DeadLetterQueue");
    let over = r#"QueueName: !Sub "${Stage}-note-processing-dead-letter-queue-kept-14-days-xyz""#;
    let f = findings_after(&[("event.yaml", from, over)]);
    names(
        &f,
        Rule::NameLength,
        "event.yaml",
        "DeadLetterQueue",
        "QueueName is 81 characters with a 30-character Stage, over the limit of 80",
    );
}

#[test]
fn a_nested_name_too_long_for_the_longest_stage() {
    // OriginAccessControlConfig/Name: at most 64.
    let f = findings_after(&[(
        "frontend.yaml",
        r#"Name: !Sub "${Stage}-notes-frontend-oac""#,
        r#"Name: !Sub "${Stage}-notes-frontend-origin-access-control-sigv4""#,
    )]);
    names(
        &f,
        Rule::NameLength,
        "frontend.yaml",
        "OriginAccessControl",
        "Name is 73 characters with a 30-character Stage, over the limit of 64",
    );
}

#[test]
fn a_stage_parameter_narrower_than_the_cli() {
    let f = findings_after(&[
        ("event.yaml", "    MaxLength: 30\n", "    MaxLength: 20\n"),
        (
            "data.yaml",
            "    MinLength: 1\n    MaxLength: 30\n",
            "    MinLength: 1\n",
        ),
    ]);
    names(
        &f,
        Rule::NameLength,
        "event.yaml",
        "Stage",
        "Stage's MaxLength is 20, but --stage accepts up to 30",
    );
    names(
        &f,
        Rule::NameLength,
        "data.yaml",
        "Stage",
        "has no MaxLength",
    );
    clean(&f, Rule::NameLength, "auth.yaml", "Stage");
}

#[test]
fn a_name_with_a_character_its_service_refuses() {
    let f = findings_after(&[(
        "event.yaml",
        r#"QueueName: !Sub "${Stage}-note-processing-queue""#,
        r#"QueueName: !Sub "${Stage}.note-processing-queue""#,
    )]);
    names(
        &f,
        Rule::NameCharacters,
        "event.yaml",
        "ProcessingQueue",
        "has '.', which is not a letter, a digit or one of \"-_\"",
    );
    clean(&f, Rule::NameCharacters, "event.yaml", "DeadLetterQueue");
}

#[test]
fn a_bucket_name_s3_refuses() {
    let name = |name: &str| {
        format!("    Properties:\n      BucketName: {name}\n      PublicAccessBlockConfiguration:")
    };
    let from = "    Properties:\n      PublicAccessBlockConfiguration:";
    let f = findings_after(&[("frontend.yaml", from, &name(r#"!Sub "${Stage}_site""#))]);
    names(
        &f,
        Rule::NameCharacters,
        "frontend.yaml",
        "Bucket",
        "has '_': only lowercase letters, digits, '.' and '-' are allowed",
    );
    // The stage alone: the longest stage may end with a hyphen, which S3 refuses.
    let f = findings_after(&[("frontend.yaml", from, &name("!Ref Stage"))]);
    names(
        &f,
        Rule::NameCharacters,
        "frontend.yaml",
        "Bucket",
        "must begin and end with a letter or a digit",
    );
    let f = findings_after(&[("frontend.yaml", from, &name(r#"!Sub "${Stage}-site""#))]);
    clean(&f, Rule::NameCharacters, "frontend.yaml", "Bucket");
    clean(&f, Rule::NameLength, "frontend.yaml", "Bucket");
}

#[test]
fn a_stage_pattern_other_than_the_clis() {
    let f = findings_after(&[(
        "frontend.yaml",
        r#"AllowedPattern: "^[a-z0-9][a-z0-9-]*$""#,
        r#"AllowedPattern: "^[a-zA-Z0-9_-]*$""#,
    )]);
    names(
        &f,
        Rule::NameCharacters,
        "frontend.yaml",
        "Stage",
        "Stage's AllowedPattern is \"^[a-zA-Z0-9_-]*$\"",
    );
    clean(&f, Rule::NameCharacters, "notes.yaml", "Stage");
}

// ---------------------------------------------------------------- AWS limits: IAM

/// `n` table ARNs, as a YAML list at `indent` spaces.
fn table_arns(n: usize, indent: usize) -> String {
    lines(n, |i| {
        format!(
            "{:indent$}- !Sub \"arn:${{AWS::Partition}}:dynamodb:${{AWS::Region}}:${{AWS::AccountId}}:table/${{Stage}}-table-{i}\"\n",
            ""
        )
    })
}

#[test]
fn inline_policies_too_large() {
    // A statement of 120 table ARNs: about 100 characters each at their longest.
    let statement = format!(
        "              - Sid: Padding\n                Effect: Allow\n                Action:\n                  - dynamodb:Query\n                Resource:\n{}              - Sid: ListOwnNotes\n",
        table_arns(120, 18)
    );
    let f = findings_after(&[(
        "notes.yaml",
        "              - Sid: ListOwnNotes\n",
        &statement,
    )]);
    names(
        &f,
        Rule::InlinePolicySize,
        "notes.yaml",
        "GetRole",
        "the role's 1 inline policies are",
    );
    names(
        &f,
        Rule::InlinePolicySize,
        "notes.yaml",
        "GetRole",
        "over IAM's 10,240",
    );
    clean(&f, Rule::InlinePolicySize, "notes.yaml", "PublishRole");
}

#[test]
fn inline_policies_too_large_together() {
    // A policy attached to GetRole, under the limit alone, over it with the role's own.
    let policy = format!(
        "  GetExtraPolicy:\n    Type: AWS::IAM::Policy\n    Properties:\n      PolicyName: notes-get-extra\n      Roles:\n        - !Ref GetRole\n      PolicyDocument:\n        Version: \"2012-10-17\"\n        Statement:\n          - Effect: Allow\n            Action: dynamodb:Query\n            Resource:\n{}\n  GetFunction:\n",
        table_arns(97, 14)
    );
    let f = findings_after(&[("notes.yaml", "  GetFunction:\n", &policy)]);
    names(
        &f,
        Rule::InlinePolicySize,
        "notes.yaml",
        "GetRole",
        "the role's 2 inline policies are",
    );
}

/// GetRole's trust policy, up to the end of its one statement.
const GET_TRUST: &str = "Description: !Sub \"Execution role of ${Stage}-notes-get\"\n      AssumeRolePolicyDocument:\n        Version: \"2012-10-17\"\n        Statement:\n          - Effect: Allow\n            Principal:\n              Service: lambda.amazonaws.com\n            Action: sts:AssumeRole\n";

#[test]
fn a_trust_policy_too_large() {
    let trust = format!(
        "{GET_TRUST}            Condition:\n              ArnLike:\n                aws:SourceArn:\n{}",
        lines(25, |i| format!(
            "                  - !Sub \"arn:${{AWS::Partition}}:lambda:${{AWS::Region}}:${{AWS::AccountId}}:function:${{Stage}}-notes-get-{i}\"\n"
        ))
    );
    let f = findings_after(&[("notes.yaml", GET_TRUST, &trust)]);
    names(
        &f,
        Rule::PolicyDocumentSize,
        "notes.yaml",
        "GetRole",
        "the trust policy is",
    );
    names(
        &f,
        Rule::PolicyDocumentSize,
        "notes.yaml",
        "GetRole",
        "over IAM's 2,048",
    );
    clean(&f, Rule::InlinePolicySize, "notes.yaml", "GetRole");
}

#[test]
fn a_managed_policy_too_large() {
    let policy = format!(
        "  GetManagedPolicy:\n    Type: AWS::IAM::ManagedPolicy\n    Properties:\n      Roles:\n        - !Ref GetRole\n      PolicyDocument:\n        Version: \"2012-10-17\"\n        Statement:\n          - Effect: Allow\n            Action: dynamodb:Query\n            Resource:\n{}\n  GetFunction:\n",
        table_arns(70, 14)
    );
    let f = findings_after(&[("notes.yaml", "  GetFunction:\n", &policy)]);
    names(
        &f,
        Rule::PolicyDocumentSize,
        "notes.yaml",
        "GetManagedPolicy",
        "the managed policy is",
    );
    names(
        &f,
        Rule::PolicyDocumentSize,
        "notes.yaml",
        "GetManagedPolicy",
        "over IAM's 6,144",
    );
}

// ---------------------------------------------------------------- AWS limits: Lambda

/// The end of GetFunction's environment.
const GET_ENV_END: &str = "          ALLOWED_ORIGIN: !Ref AllowedOrigin\n\n  GetIntegration:";

#[test]
fn an_environment_too_large() {
    let env = format!(
        "          PADDING: \"{}\"\n{GET_ENV_END}",
        "x".repeat(4_100)
    );
    let f = findings_after(&[("notes.yaml", GET_ENV_END, &env)]);
    names(
        &f,
        Rule::EnvironmentSize,
        "notes.yaml",
        "GetFunction",
        "over Lambda's 4 KB (4,096 bytes)",
    );
    clean(&f, Rule::EnvironmentSize, "notes.yaml", "PublishFunction");
}

#[test]
fn an_environment_variable_lambda_refuses() {
    let env = format!(
        "          AWS_REGION: !Ref AWS::Region\n          2ND_ORIGIN: !Ref AllowedOrigin\n{GET_ENV_END}"
    );
    let f = findings_after(&[("notes.yaml", GET_ENV_END, &env)]);
    names(
        &f,
        Rule::EnvironmentSize,
        "notes.yaml",
        "GetFunction",
        "the variable AWS_REGION is one Lambda sets itself (reserved)",
    );
    names(
        &f,
        Rule::EnvironmentSize,
        "notes.yaml",
        "GetFunction",
        "the variable 2ND_ORIGIN is not a name Lambda accepts",
    );
}

#[test]
fn a_function_description_too_long() {
    let f = findings_after(&[
        (
            "notes.yaml",
            "Description: GET /notes (the caller's notes, newest first, paged)",
            &format!("Description: {}", "d".repeat(257)),
        ),
        (
            "notes.yaml",
            "Description: POST /notes (publishes note-created; 202)",
            &format!("Description: {}", "d".repeat(256)),
        ),
    ]);
    names(
        &f,
        Rule::FunctionDescription,
        "notes.yaml",
        "GetFunction",
        "its Description is 257 characters, over Lambda's 256",
    );
    clean(
        &f,
        Rule::FunctionDescription,
        "notes.yaml",
        "PublishFunction",
    );
}

#[test]
fn a_memory_size_parameter_that_accepts_too_much() {
    let f = findings_after(&[(
        "auth.yaml",
        "    Default: 512\n    MinValue: 128\n    MaxValue: 10240\n",
        "    Default: 512\n    MinValue: 128\n    MaxValue: 20000\n",
    )]);
    for function in ["SignupFunction", "LoginFunction", "GetUserFunction"] {
        names(
            &f,
            Rule::FunctionMemory,
            "auth.yaml",
            function,
            "MemorySize can be anything in 128–20000 MB, outside the 128–10240 AWS accepts",
        );
    }
    clean(&f, Rule::FunctionMemory, "notes.yaml", "GetFunction");
}

#[test]
fn a_memory_size_parameter_without_a_minimum() {
    let f = findings_after(&[(
        "websocket.yaml",
        "    Default: 256\n    MinValue: 128\n    MaxValue: 10240\n",
        "    Default: 256\n    MaxValue: 10240\n",
    )]);
    for function in ["ConnectFunction", "DisconnectFunction"] {
        names(
            &f,
            Rule::FunctionMemory,
            "websocket.yaml",
            function,
            "MemorySize comes from the parameter MemorySize, which has no MinValue",
        );
    }
    clean(&f, Rule::FunctionMemory, "websocket.yaml", "NotifyFunction");
}

#[test]
fn ephemeral_storage_out_of_range() {
    let f = findings_after(&[(
        "notes.yaml",
        "      Role: !GetAtt GetRole.Arn\n",
        "      Role: !GetAtt GetRole.Arn\n      EphemeralStorage:\n        Size: 20480\n",
    )]);
    names(
        &f,
        Rule::FunctionMemory,
        "notes.yaml",
        "GetFunction",
        "EphemeralStorage is 20480 MB, outside the 512–10240 AWS accepts",
    );
}

#[test]
fn a_timeout_over_fifteen_minutes() {
    let f = findings_after(&[
        (
            "notes.yaml",
            "Timeout: !Ref SaveFunctionTimeout",
            "Timeout: 901",
        ),
        (
            "websocket.yaml",
            "    MinValue: 1\n    MaxValue: 900\n",
            "    MinValue: 1\n    MaxValue: 1000\n",
        ),
    ]);
    names(
        &f,
        Rule::FunctionTimeout,
        "notes.yaml",
        "SaveFunction",
        "Timeout is 901 seconds, outside the 1–900 AWS accepts",
    );
    names(
        &f,
        Rule::FunctionTimeout,
        "websocket.yaml",
        "NotifyFunction",
        "Timeout can be anything in 1–1000 seconds, outside the 1–900 AWS accepts",
    );
    clean(
        &f,
        Rule::FunctionTimeout,
        "websocket.yaml",
        "ConnectFunction",
    );
}

// ---------------------------------------------------------------- AWS limits: SQS, EventBridge

#[test]
fn a_retention_period_over_fourteen_days() {
    let f = findings_after(&[(
        "event.yaml",
        "      MessageRetentionPeriod: 1209600\n",
        "      MessageRetentionPeriod: 1209601\n",
    )]);
    names(
        &f,
        Rule::QueueSettings,
        "event.yaml",
        "DeadLetterQueue",
        "MessageRetentionPeriod is 1209601 seconds, outside the 60–1209600 AWS accepts",
    );
    clean(&f, Rule::QueueSettings, "event.yaml", "ProcessingQueue");
}

#[test]
fn a_receive_count_over_a_thousand() {
    let f = findings_after(&[("event.yaml", "maxReceiveCount: 3", "maxReceiveCount: 1001")]);
    names(
        &f,
        Rule::ReceiveCount,
        "event.yaml",
        "ProcessingQueue",
        "RedrivePolicy.maxReceiveCount is 1001 receives, outside the 1–1000 AWS accepts",
    );
}

#[test]
fn an_event_pattern_too_large() {
    let pattern = format!(
        "        detail-type:\n          - note-created\n{}",
        lines(100, |i| format!(
            "          - note-created-padding-{i:03}\n"
        ))
    );
    let f = findings_after(&[(
        "event.yaml",
        "        detail-type:\n          - note-created\n",
        &pattern,
    )]);
    names(
        &f,
        Rule::EventPatternSize,
        "event.yaml",
        "NoteCreatedRule",
        "over EventBridge's default quota of 2,048",
    );
    clean(&f, Rule::EventPatternSize, "websocket.yaml", "NotifyRule");
}

// ---------------------------------------------------------------- AWS limits: API Gateway

#[test]
fn route_keys_api_gateway_refuses() {
    let f = findings_after(&[
        (
            "notes.yaml",
            "RouteKey: POST /notes",
            "RouteKey: POST notes",
        ),
        (
            "notes.yaml",
            "RouteKey: GET /notes\n",
            "RouteKey: FETCH /notes\n",
        ),
        (
            "notes.yaml",
            "RouteKey: PUT /notes/{noteId}",
            "RouteKey: PUT /notes/{noteId+}/x",
        ),
        (
            "auth.yaml",
            "RouteKey: GET /auth/user",
            "RouteKey: $connect",
        ),
    ]);
    names(
        &f,
        Rule::RouteKey,
        "notes.yaml",
        "PublishRoute",
        "the route key \"POST notes\" the path does not start with '/'",
    );
    names(
        &f,
        Rule::RouteKey,
        "notes.yaml",
        "GetRoute",
        "has the method \"FETCH\"",
    );
    names(
        &f,
        Rule::RouteKey,
        "notes.yaml",
        "UpdateRoute",
        "the greedy variable \"{noteId+}\" is not the last segment",
    );
    names(
        &f,
        Rule::RouteKey,
        "auth.yaml",
        "GetUserRoute",
        "an HTTP API knows only $default",
    );
    clean(&f, Rule::RouteKey, "notes.yaml", "DeleteRoute");
    clean(&f, Rule::RouteKey, "websocket.yaml", "ConnectRoute");
}

#[test]
fn a_websocket_stage_named_default() {
    let f = findings_after(&[(
        "websocket.yaml",
        "      StageName: !Ref Stage\n",
        "      StageName: $default\n",
    )]);
    names(
        &f,
        Rule::StageName,
        "websocket.yaml",
        "WebSocketStage",
        "a WebSocket API's stage cannot be $default",
    );
    clean(&f, Rule::StageName, "auth.yaml", "HttpApiStage");
}

// ---------------------------------------------------------------- AWS limits: CloudWatch

#[test]
fn a_dashboard_body_that_is_not_json() {
    let f = findings_after(&[(
        "notes.yaml",
        r#""title": "Lambda invocations","#,
        r#""title": "Lambda invocations""#,
    )]);
    names(
        &f,
        Rule::Dashboard,
        "notes.yaml",
        "Dashboard",
        "its DashboardBody is not JSON once substituted",
    );
}

#[test]
fn a_dashboard_of_too_many_widgets() {
    let widgets = format!(
        "\"widgets\": [\n{}",
        lines(501, |i| format!(
            "            {{\"type\": \"text\", \"x\": 0, \"y\": {i}, \"width\": 1, \"height\": 1, \"properties\": {{\"markdown\": \"{i}\"}}}},\n"
        ))
    );
    let f = findings_after(&[("notes.yaml", "\"widgets\": [\n", &widgets)]);
    names(
        &f,
        Rule::Dashboard,
        "notes.yaml",
        "Dashboard",
        "over CloudWatch's 500",
    );
}

#[test]
fn a_log_retention_cloudwatch_refuses() {
    let f = findings_after(&[("auth.yaml", "RetentionInDays: 7", "RetentionInDays: 8")]);
    names(
        &f,
        Rule::LogRetention,
        "auth.yaml",
        "HttpApiAccessLogGroup",
        "RetentionInDays 8 is not one CloudWatch Logs accepts",
    );
    clean(&f, Rule::LogRetention, "auth.yaml", "SignupLogGroup");
}

#[test]
fn a_log_retention_parameter() {
    let parameters = "Parameters:\n  LogDays:\n    Type: Number\n    Default: 7\n    AllowedValues: [7, 8]\n  AnyDays:\n    Type: Number\n    Default: 7\n    MinValue: 1\n    MaxValue: 3653\n";
    let f = findings_after(&[
        ("auth.yaml", "Parameters:\n", parameters),
        (
            "auth.yaml",
            "RetentionInDays: 7",
            "RetentionInDays: !Ref LogDays",
        ),
        (
            "auth.yaml",
            "RetentionInDays: 7",
            "RetentionInDays: !Ref AnyDays",
        ),
    ]);
    names(
        &f,
        Rule::LogRetention,
        "auth.yaml",
        "HttpApiAccessLogGroup",
        "RetentionInDays 8 is not one CloudWatch Logs accepts",
    );
    names(
        &f,
        Rule::LogRetention,
        "auth.yaml",
        "SignupLogGroup",
        "RetentionInDays can be any number",
    );
}

// ---------------------------------------------------------------- AWS limits together

/// One template breaking several limits: each is reported, in the same run.
#[test]
fn a_template_breaking_several_limits_reports_each() {
    let description = format!(
        "Description: >-\n  {}\n  notesctl event stack",
        "x".repeat(1_100)
    );
    let pattern = format!(
        "        detail-type:\n          - note-created\n{}",
        lines(100, |i| format!(
            "          - note-created-padding-{i:03}\n"
        ))
    );
    let f = findings_after(&[
        (
            "event.yaml",
            "Description: >-\n  notesctl event stack",
            &description,
        ),
        (
            "event.yaml",
            "      MessageRetentionPeriod: 1209600\n",
            "      MessageRetentionPeriod: 1209601\n",
        ),
        ("event.yaml", "maxReceiveCount: 3", "maxReceiveCount: 1001"),
        (
            "event.yaml",
            r#"QueueName: !Sub "${Stage}-note-processing-queue""#,
            r#"QueueName: !Sub "${Stage}.note-processing-queue""#,
        ),
        (
            "event.yaml",
            "        detail-type:\n          - note-created\n",
            &pattern,
        ),
        (
            "event.yaml",
            "  ProcessingQueueUrl:\n",
            "  Processing_Queue_Url:\n",
        ),
    ]);
    names(
        &f,
        Rule::DescriptionLength,
        "event.yaml",
        "",
        "over CloudFormation's 1,024",
    );
    names(
        &f,
        Rule::QueueSettings,
        "event.yaml",
        "DeadLetterQueue",
        "1209601",
    );
    names(
        &f,
        Rule::ReceiveCount,
        "event.yaml",
        "ProcessingQueue",
        "1001",
    );
    names(
        &f,
        Rule::NameCharacters,
        "event.yaml",
        "ProcessingQueue",
        "has '.'",
    );
    names(
        &f,
        Rule::EventPatternSize,
        "event.yaml",
        "NoteCreatedRule",
        "2,048",
    );
    names(
        &f,
        Rule::IdLength,
        "event.yaml",
        "Processing_Queue_Url",
        "not alphanumeric",
    );
    // Each once.
    let limits = [
        Rule::DescriptionLength,
        Rule::QueueSettings,
        Rule::ReceiveCount,
        Rule::NameCharacters,
        Rule::EventPatternSize,
        Rule::IdLength,
    ];
    for rule in limits {
        let n = f
            .iter()
            .filter(|x| x.rule == rule && x.file == "event.yaml")
            .count();
        assert_eq!(n, 1, "{rule:?} reported {n} times:\n{}", listing(&f));
    }
}

#[test]
fn a_name_too_short_for_the_shortest_stage() {
    // --stage accepts one character: "${Stage}x" can be 2, under DynamoDB's 3.
    let f = findings_after(&[(
        "data.yaml",
        r#"TableName: !Sub "${Stage}-data-table""#,
        r#"TableName: !Sub "${Stage}x""#,
    )]);
    names(
        &f,
        Rule::NameLength,
        "data.yaml",
        "DataTable",
        "is 2 characters with a 1-character Stage, under the minimum of 3",
    );
    let f = findings_after(&[(
        "data.yaml",
        r#"TableName: !Sub "${Stage}-data-table""#,
        r#"TableName: !Sub "${Stage}xy""#,
    )]);
    clean(&f, Rule::NameLength, "data.yaml", "DataTable");
}

#[test]
fn a_stage_parameter_with_a_longer_minimum_than_the_cli() {
    let f = findings_after(&[("event.yaml", "    MinLength: 1\n", "    MinLength: 3\n")]);
    names(
        &f,
        Rule::NameLength,
        "event.yaml",
        "Stage",
        "Stage's MinLength is 3, but --stage accepts a stage of 1 character",
    );
    clean(&f, Rule::NameLength, "data.yaml", "Stage");
}

#[test]
fn a_fifo_queue_name_may_end_in_dot_fifo() {
    let fifo = "QueueName: !Sub \"${Stage}-note-processing-dlq.fifo\"\n      FifoQueue: true";
    let f = findings_after(&[(
        "event.yaml",
        r#"QueueName: !Sub "${Stage}-note-processing-dlq""#,
        fifo,
    )]);
    clean(&f, Rule::NameCharacters, "event.yaml", "DeadLetterQueue");
    // Not a FIFO queue: the '.' is refused.
    let f = findings_after(&[(
        "event.yaml",
        r#"QueueName: !Sub "${Stage}-note-processing-dlq""#,
        r#"QueueName: !Sub "${Stage}-note-processing-dlq.fifo""#,
    )]);
    names(
        &f,
        Rule::NameCharacters,
        "event.yaml",
        "DeadLetterQueue",
        "has '.'",
    );
    // A FIFO queue: its name must end in .fifo.
    let f = findings_after(&[(
        "event.yaml",
        r#"QueueName: !Sub "${Stage}-note-processing-dlq""#,
        "QueueName: !Sub \"${Stage}-note-processing-dlq\"\n      FifoQueue: true",
    )]);
    names(
        &f,
        Rule::NameCharacters,
        "event.yaml",
        "DeadLetterQueue",
        "does not end in .fifo",
    );
}

#[test]
fn a_log_retention_from_a_mapping() {
    let mapping = |short: u32, long: u32| {
        format!(
            "Mappings:\n  Retention:\n    short:\n      Days: {short}\n    long:\n      Days: {long}\n\nResources:\n"
        )
    };
    let find = "RetentionInDays: !FindInMap [Retention, short, Days]";
    let f = findings_after(&[
        ("auth.yaml", "Resources:\n", &mapping(7, 14)),
        ("auth.yaml", "RetentionInDays: 7", find),
    ]);
    clean(&f, Rule::LogRetention, "auth.yaml", "HttpApiAccessLogGroup");
    let f = findings_after(&[
        ("auth.yaml", "Resources:\n", &mapping(7, 8)),
        ("auth.yaml", "RetentionInDays: 7", find),
    ]);
    names(
        &f,
        Rule::LogRetention,
        "auth.yaml",
        "HttpApiAccessLogGroup",
        "RetentionInDays 8 is not one CloudWatch Logs accepts",
    );
}

/// Every name limit in `limits::names::NAMES` can fail: for each, a resource of its type is added
/// with a name one character over the limit with the longest stage, and (where the service
/// restricts characters) another with a character it refuses. validate must name both.
#[test]
fn every_name_limit_can_be_broken() {
    use notesctl::commands::validate::limits::names::{Chars, NAMES};
    let mut resources = String::new();
    let mut expected = Vec::new();
    for (i, limit) in NAMES.iter().enumerate() {
        // The longest stage is 30 characters; the name is one over the limit.
        let long = format!("${{Stage}}{}", "x".repeat(limit.max - 30 + 1));
        let nested = |value: &str| -> String {
            let mut parts: Vec<&str> = limit.property.split('/').collect();
            let last = parts.pop().unwrap();
            let mut yaml = String::new();
            let mut indent = 6;
            for p in &parts {
                yaml.push_str(&format!("{}{p}:\n", " ".repeat(indent)));
                indent += 2;
                if p.ends_with("Indexes") {
                    yaml.push_str(&format!(
                        "{}- {last}: !Sub \"{value}\"\n",
                        " ".repeat(indent)
                    ));
                    return yaml;
                }
            }
            yaml.push_str(&format!("{}{last}: !Sub \"{value}\"\n", " ".repeat(indent)));
            yaml
        };
        let id = format!("LongName{i}");
        resources.push_str(&format!(
            "  {id}:\n    Type: {}\n    Properties:\n{}",
            limit.ty,
            nested(&long)
        ));
        expected.push((Rule::NameLength, id));
        if !matches!(limit.chars, Chars::Any) {
            let id = format!("BadChars{i}");
            resources.push_str(&format!(
                "  {id}:\n    Type: {}\n    Properties:\n{}",
                limit.ty,
                nested("${Stage}!x")
            ));
            expected.push((Rule::NameCharacters, id));
        }
    }
    let f = findings_after(&[(
        "data.yaml",
        "Resources:\n",
        &format!("Resources:\n{resources}"),
    )]);
    for (rule, id) in &expected {
        assert!(
            f.iter()
                .any(|x| x.rule == *rule && x.file == "data.yaml" && &x.resource == id),
            "expected {rule:?} at data.yaml {id}; got:\n{}",
            f.iter()
                .filter(|x| x.file == "data.yaml")
                .map(|x| format!("  {:?} {}: {}", x.rule, x.resource, x.problem))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert!(expected.len() >= NAMES.len(), "one per name limit at least");
}
