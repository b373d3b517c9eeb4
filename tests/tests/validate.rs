//! `notesctl validate` on the app's templates, and one mutation test per rule: a copy of the templates
//! broken in exactly one way, which validate must name — the file, the resource and the rule. A rule
//! no test can make fail would not count.

use notesctl::commands::validate::{Finding, Rule, check};

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

/// Validate names `rule` at `file`/`resource`, with a message that contains `says`.
#[track_caller]
fn names(findings: &[Finding], rule: Rule, file: &str, resource: &str, says: &str) {
    assert!(
        findings.iter().any(|f| f.rule == rule
            && f.file == file
            && f.resource == resource
            && f.problem.contains(says)
            && !f.fix.is_empty()),
        "expected {rule:?} at {file} {resource} saying {says:?}; got:\n{}",
        findings
            .iter()
            .map(|f| format!("  {:?} {} {}: {}", f.rule, f.file, f.resource, f.problem))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_app_templates_pass() {
    let report = check(&templates()).unwrap();
    assert!(
        report.findings.is_empty(),
        "{}",
        report
            .findings
            .iter()
            .map(|f| format!(
                "{:?} {} {}: {} — {}",
                f.rule, f.file, f.resource, f.problem, f.fix
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );
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

/// The command: a report with the findings, exit 1 when there are any, 0 when there are none.
#[tokio::test]
async fn the_command_reports_and_exits_by_its_findings() {
    use notesctl::commands::validate::ValidateReport;
    use notesctl_tests::cli::Cli;
    let (code, report) = Cli::new()
        .args(["validate", "--templates", templates().to_str().unwrap()])
        .json::<ValidateReport>()
        .await;
    assert_eq!((code, report.findings.len()), (0, 0), "{report:?}");
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
