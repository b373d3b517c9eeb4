//! Names: every name a template gives a resource fits its service's length and characters with the
//! longest stage `--stage` accepts, spelled with every character the Stage pattern allows, and its
//! service's minimum with the shortest (one character); and each template's `Stage` accepts exactly
//! what `--stage` accepts, so that this check covers every stage a deploy can be given.

use serde_json::Value;

use super::super::model::{App, Res};
use super::super::stacks::stack_finding;
use super::super::{Finding, Rule};
use super::worst::{Worst, longest_stage};
use crate::context::{MAX_STAGE_LEN, STAGE_PATTERN};

/// The shortest stage `--stage` accepts (`context::parse_stage` refuses only the empty one).
pub const MIN_STAGE_LEN: usize = 1;

/// The property that makes a resource FIFO, for the types whose FIFO names must end in `.fifo`.
fn fifo_property(ty: &str) -> Option<&'static str> {
    match ty {
        "AWS::SQS::Queue" => Some("FifoQueue"),
        "AWS::SNS::Topic" => Some("FifoTopic"),
        _ => None,
    }
}

/// Which characters a service allows in a name.
#[derive(Debug, Clone, Copy)]
pub enum Chars {
    /// Whatever the service accepts: it documents no pattern.
    Any,
    /// Letters, digits and these.
    AlnumAnd(&'static str),
    /// S3's bucket rules: lowercase letters, digits, `.` and `-`, starting and ending with a letter
    /// or digit, no `..`, not an IP address, none of the reserved prefixes and suffixes.
    Bucket,
    /// API Gateway stage names: `$default`, or letters, digits, `-` and `_`.
    Stage,
}

/// One name property: the resource type, the property (a `/`-path into lists: `GlobalSecondaryIndexes/IndexName`),
/// its length limits, its characters, and the documented source.
pub struct NameLimit {
    pub ty: &'static str,
    pub property: &'static str,
    pub min: usize,
    pub max: usize,
    pub chars: Chars,
    pub source: &'static str,
}

const fn name(
    ty: &'static str,
    property: &'static str,
    (min, max): (usize, usize),
    chars: Chars,
    source: &'static str,
) -> NameLimit {
    NameLimit {
        ty,
        property,
        min,
        max,
        chars,
        source,
    }
}

use Chars::AlnumAnd;

/// Every name the templates may give, with its service's documented limits.
pub const NAMES: &[NameLimit] = &[
    name(
        "AWS::Lambda::Function",
        "FunctionName",
        (1, 64),
        AlnumAnd("-_"),
        "https://docs.aws.amazon.com/lambda/latest/api/API_CreateFunction.html",
    ),
    name(
        "AWS::SQS::Queue",
        "QueueName",
        (1, 80),
        AlnumAnd("-_"),
        "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_CreateQueue.html",
    ),
    name(
        "AWS::DynamoDB::Table",
        "TableName",
        (3, 255),
        AlnumAnd("_.-"),
        "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.NamingRulesDataTypes.html",
    ),
    name(
        "AWS::DynamoDB::Table",
        "GlobalSecondaryIndexes/IndexName",
        (3, 255),
        AlnumAnd("_.-"),
        "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.NamingRulesDataTypes.html",
    ),
    name(
        "AWS::DynamoDB::Table",
        "LocalSecondaryIndexes/IndexName",
        (3, 255),
        AlnumAnd("_.-"),
        "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.NamingRulesDataTypes.html",
    ),
    name(
        "AWS::Events::EventBus",
        "Name",
        (1, 256),
        AlnumAnd("._-"),
        "https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_CreateEventBus.html",
    ),
    name(
        "AWS::Events::Rule",
        "Name",
        (1, 64),
        AlnumAnd("._-"),
        "https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutRule.html",
    ),
    name(
        "AWS::Events::Archive",
        "ArchiveName",
        (1, 48),
        AlnumAnd("._-"),
        "https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_CreateArchive.html",
    ),
    name(
        "AWS::Logs::LogGroup",
        "LogGroupName",
        (1, 512),
        AlnumAnd("._-/#"),
        "https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_CreateLogGroup.html",
    ),
    name(
        "AWS::SecretsManager::Secret",
        "Name",
        (1, 512),
        AlnumAnd("/_+=.@-"),
        "https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_CreateSecret.html",
    ),
    name(
        "AWS::ApiGatewayV2::Api",
        "Name",
        (1, 128),
        Chars::Any,
        "https://docs.aws.amazon.com/apigatewayv2/latest/api-reference/apis.html",
    ),
    name(
        "AWS::ApiGatewayV2::Stage",
        "StageName",
        (1, 128),
        Chars::Stage,
        "https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-apigatewayv2-stage.html",
    ),
    name(
        "AWS::IAM::Role",
        "RoleName",
        (1, 64),
        AlnumAnd("+=,.@-_"),
        "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html",
    ),
    name(
        "AWS::S3::Bucket",
        "BucketName",
        (3, 63),
        Chars::Bucket,
        "https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html",
    ),
    name(
        "AWS::CloudFront::OriginAccessControl",
        "OriginAccessControlConfig/Name",
        (1, 64),
        Chars::Any,
        "https://docs.aws.amazon.com/cloudfront/latest/APIReference/API_OriginAccessControlConfig.html",
    ),
    name(
        "AWS::SNS::Topic",
        "TopicName",
        (1, 256),
        AlnumAnd("-_"),
        "https://docs.aws.amazon.com/sns/latest/api/API_CreateTopic.html",
    ),
    name(
        "AWS::CloudWatch::Alarm",
        "AlarmName",
        (1, 255),
        Chars::Any,
        "https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html",
    ),
    name(
        "AWS::CloudWatch::Dashboard",
        "DashboardName",
        (1, 255),
        AlnumAnd("-_"),
        "https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutDashboard.html",
    ),
];

pub fn check(app: &App, worst: &Worst, out: &mut Vec<Finding>) {
    stage_parameters(app, out);
    // Minimums are met, or not, with the shortest stage (other references stay at their longest).
    let shortest = Worst {
        app,
        stage: longest_stage(MIN_STAGE_LEN),
    };
    let worsts = (worst, &shortest);
    for r in app.resources() {
        for limit in NAMES.iter().filter(|l| l.ty == app.ty(r)) {
            for value in values(app.props(r), limit.property) {
                one(app, worsts, r, limit, value, out);
            }
        }
    }
}

/// The values at a `/`-path of properties, through lists.
fn values<'a>(props: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut at = vec![props];
    for key in path.split('/') {
        at = at
            .into_iter()
            .flat_map(|v| match v {
                Value::Array(items) => items.iter().map(|i| &i[key]).collect::<Vec<_>>(),
                other => vec![&other[key]],
            })
            .filter(|v| !v.is_null())
            .collect();
    }
    at
}

fn one(
    app: &App,
    (worst, shortest): (&Worst, &Worst),
    r: Res,
    limit: &NameLimit,
    expr: &Value,
    out: &mut Vec<Finding>,
) {
    let value = worst.text(r.stack, expr);
    let prop = limit.property.rsplit('/').next().unwrap_or(limit.property);
    let stage_len = worst.stage.len();
    let len = value.chars().count();
    let short = shortest.text(r.stack, expr);
    let short_len = short.chars().count();
    if len > limit.max {
        out.push(Finding::new(
            Rule::NameLength,
            app,
            r,
            format!(
                "{prop} is {len} characters with a {stage_len}-character Stage, over the limit of {} ({})",
                limit.max, limit.source
            ),
            format!(
                "shorten the name, or lower Stage's MaxLength (and --stage's) to {}",
                stage_len.saturating_sub(len - limit.max)
            ),
        ));
    } else if short_len < limit.min {
        out.push(Finding::new(
            Rule::NameLength,
            app,
            r,
            format!(
                "{prop} {short:?} is {short_len} characters with a {}-character Stage, under the minimum of {} ({})",
                shortest.stage.len(),
                limit.min,
                limit.source
            ),
            "lengthen the fixed part of the name".to_owned(),
        ));
    }
    // A FIFO queue's or topic's name ends in `.fifo`, which the service's characters otherwise exclude.
    let fifo = fifo_property(limit.ty).is_some_and(|p| {
        let v = &app.props(r)[p];
        v == true || v == "true"
    });
    let spelled = match (fifo, value.strip_suffix(".fifo")) {
        (true, Some(stem)) => stem,
        (true, None) => {
            out.push(Finding::new(
                Rule::NameCharacters,
                app,
                r,
                format!(
                    "{prop} {value:?} does not end in .fifo, as a FIFO's name must ({})",
                    limit.source
                ),
                "end the name in .fifo".to_owned(),
            ));
            &value
        }
        (false, _) => &value,
    };
    if let Some(why) = bad_chars(limit.chars, spelled) {
        out.push(Finding::new(
            Rule::NameCharacters,
            app,
            r,
            format!(
                "{prop} {value:?} (with the stage {:?}) {why} ({})",
                worst.stage, limit.source
            ),
            "spell the name with the characters the service allows".to_owned(),
        ));
    }
}

/// Why `name` is not a name of this kind, if it is not.
pub fn bad_chars(chars: Chars, name: &str) -> Option<String> {
    match chars {
        Chars::Any => None,
        AlnumAnd(extra) => name
            .chars()
            .find(|c| !c.is_ascii_alphanumeric() && !extra.contains(*c))
            .map(|c| format!("has {c:?}, which is not a letter, a digit or one of {extra:?}")),
        Chars::Stage if name == "$default" => None,
        Chars::Stage => bad_chars(AlnumAnd("-_"), name),
        Chars::Bucket => bucket_problem(name),
    }
}

fn bucket_problem(name: &str) -> Option<String> {
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.' || *c == '-'))
    {
        return Some(format!(
            "has {c:?}: only lowercase letters, digits, '.' and '-' are allowed"
        ));
    }
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !edge(name.chars().next()) || !edge(name.chars().last()) {
        return Some("must begin and end with a letter or a digit".into());
    }
    if name.contains("..") {
        return Some("has two adjacent periods".into());
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Some("is formatted as an IP address".into());
    }
    for prefix in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if name.starts_with(prefix) {
            return Some(format!("begins with the reserved prefix {prefix:?}"));
        }
    }
    for suffix in ["-s3alias", "--ol-s3", ".mrap", "--x-s3"] {
        if name.ends_with(suffix) {
            return Some(format!("ends with the reserved suffix {suffix:?}"));
        }
    }
    None
}

/// Every template's `Stage` takes what `--stage` takes: the same pattern and a `MaxLength` of at
/// least the CLI's, so the names above were checked for every stage a deploy can be given.
fn stage_parameters(app: &App, out: &mut Vec<Finding>) {
    for (i, stack) in app.stacks.iter().enumerate() {
        let stage = &stack.doc["Parameters"]["Stage"];
        if stage.is_null() {
            continue;
        }
        match stage["MaxLength"].as_u64() {
            None => out.push(stack_finding(
                app,
                i,
                "Stage",
                Rule::NameLength,
                "the Stage parameter has no MaxLength, so no name is sure to fit its service's limit".into(),
                format!("give Stage a MaxLength of {MAX_STAGE_LEN}, as --stage accepts"),
            )),
            Some(max) if (max as usize) < MAX_STAGE_LEN => out.push(stack_finding(
                app,
                i,
                "Stage",
                Rule::NameLength,
                format!("Stage's MaxLength is {max}, but --stage accepts up to {MAX_STAGE_LEN} characters: CloudFormation would refuse a longer stage only once the deploy has started"),
                format!("give Stage a MaxLength of {MAX_STAGE_LEN} (and check the names for it), or lower notesctl's MAX_STAGE_LEN"),
            )),
            Some(_) => {}
        }
        if let Some(min) = stage["MinLength"]
            .as_u64()
            .filter(|m| *m as usize > MIN_STAGE_LEN)
        {
            out.push(stack_finding(
                app,
                i,
                "Stage",
                Rule::NameLength,
                format!("Stage's MinLength is {min}, but --stage accepts a stage of {MIN_STAGE_LEN} character: CloudFormation would refuse a shorter stage only once the deploy has started"),
                format!("give Stage a MinLength of {MIN_STAGE_LEN}, as --stage accepts"),
            ));
        }
        if stage["AllowedPattern"].as_str() != Some(STAGE_PATTERN) {
            out.push(stack_finding(
                app,
                i,
                "Stage",
                Rule::NameCharacters,
                format!(
                    "Stage's AllowedPattern is {}, not {STAGE_PATTERN:?} as --stage checks",
                    stage["AllowedPattern"]
                ),
                format!("set AllowedPattern: \"{STAGE_PATTERN}\""),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_s3s_rules() {
        assert_eq!(
            bucket_problem("notesctl-artifacts-123456789012-eu-west-2"),
            None
        );
        for bad in [
            "Upper",
            "-edge",
            "a..b",
            "192.168.1.1",
            "xn--a",
            "a-s3alias",
            "a_b",
        ] {
            assert!(bucket_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn stage_names_allow_default() {
        assert_eq!(bad_chars(Chars::Stage, "$default"), None);
        assert!(bad_chars(Chars::Stage, "$prod").is_some());
        assert_eq!(bad_chars(Chars::Stage, "a0-_b"), None);
    }

    /// The artifacts bucket notesctl names itself fits S3's rules in the longest region.
    #[test]
    fn the_default_artifacts_bucket_fits_s3() {
        let name = crate::aws::artifacts::default_bucket("123456789012", "ap-southeast-5");
        assert!(name.len() <= 63, "{name}");
        assert_eq!(bucket_problem(&name), None);
    }
}
