//! The worst case of a value before a deploy: what an expression can become when every name is as
//! long as the templates allow — the longest `Stage` (using every character its pattern allows), the
//! longest region, account, partition and URL suffix — and every reference to a resource is replaced
//! by the longest value that resource's `Ref` or attribute can have. Sizes the AWS limits on
//! assembled values are checked against (environments, policies, patterns, dashboards) come from here.

use std::collections::BTreeMap;

use serde_json::Value;

use super::super::model::{App, sub_parts};
use crate::template::intrinsic;

/// A stage name of `len` characters that uses every kind of character the Stage pattern
/// (`^[a-z0-9][a-z0-9-]*$`) allows, so a name built from it is checked for length and characters
/// at once.
pub fn longest_stage(len: usize) -> String {
    "a0-".chars().cycle().take(len).collect()
}

/// The longest values of the pseudo parameters.
pub fn pseudo(name: &str) -> Option<&'static str> {
    Some(match name {
        // Regions: the longest names in the commercial, GovCloud and China partitions.
        "AWS::Region" => "ap-southeast-5",
        "AWS::AccountId" => "123456789012",
        "AWS::Partition" => "aws-us-gov",
        "AWS::URLSuffix" => "amazonaws.com.cn",
        "AWS::NoValue" => "",
        _ => return None,
    })
}

/// How long a value is taken to be when nothing bounds it (a parameter without `MaxLength` or
/// `AllowedValues`, an attribute of a type this file does not know).
pub const UNBOUNDED: usize = 256;

/// Renders expressions of one app with the longest stage its templates accept.
pub struct Worst<'a> {
    pub app: &'a App,
    /// The longest stage, as [`longest_stage`] spells it.
    pub stage: String,
}

impl<'a> Worst<'a> {
    pub fn new(app: &'a App) -> Worst<'a> {
        let max = app
            .stacks
            .iter()
            .filter_map(|s| s.doc["Parameters"]["Stage"]["MaxLength"].as_u64())
            .max()
            .unwrap_or(crate::context::MAX_STAGE_LEN as u64);
        Worst {
            app,
            stage: longest_stage(max as usize),
        }
    }

    /// `expr` in `stack` as a string, at its longest.
    pub fn text(&self, stack: usize, expr: &Value) -> String {
        self.render(stack, expr, &BTreeMap::new(), 0)
    }

    /// `expr` with every intrinsic function replaced by the string it can become at its longest:
    /// the document AWS receives, as far as its size goes.
    pub fn document(&self, stack: usize, expr: &Value) -> Value {
        self.materialize(stack, expr, 0)
    }

    fn materialize(&self, stack: usize, expr: &Value, depth: usize) -> Value {
        if intrinsic(expr).is_some() {
            return Value::String(self.render(stack, expr, &BTreeMap::new(), depth));
        }
        match expr {
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| self.materialize(stack, i, depth))
                    .collect(),
            ),
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), self.materialize(stack, v, depth)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    fn render(
        &self,
        stack: usize,
        expr: &Value,
        vars: &BTreeMap<String, String>,
        depth: usize,
    ) -> String {
        if depth > 12 {
            return "x".repeat(UNBOUNDED);
        }
        let depth = depth + 1;
        match intrinsic(expr) {
            Some(("Ref", Value::String(name))) => self.name(stack, name, None, depth),
            Some(("Fn::GetAtt", Value::Array(parts))) => {
                let name = parts.first().and_then(Value::as_str).unwrap_or_default();
                let attr = parts.get(1).and_then(Value::as_str);
                self.name(stack, name, attr, depth)
            }
            Some(("Fn::ImportValue", name)) => match self.app.exporter(stack, name) {
                Some((from, value)) => self.render(from, value, &BTreeMap::new(), depth),
                None => "x".repeat(UNBOUNDED),
            },
            Some(("Fn::Sub", arg)) => {
                let (text, map) = sub_parts(arg);
                let mut vars = vars.clone();
                for (k, v) in map.into_iter().flatten() {
                    let value = self.render(stack, v, &BTreeMap::new(), depth);
                    vars.insert(k.clone(), value);
                }
                self.substitute(stack, text, &vars, depth)
            }
            Some(("Fn::Join", Value::Array(args))) if args.len() == 2 => {
                let sep = args[0].as_str().unwrap_or_default();
                match &args[1] {
                    Value::Array(items) => items
                        .iter()
                        .map(|i| self.render(stack, i, vars, depth))
                        .collect::<Vec<_>>()
                        .join(sep),
                    other => self.render(stack, other, vars, depth),
                }
            }
            Some(("Fn::If", Value::Array(args))) if args.len() == 3 => {
                let a = self.render(stack, &args[1], vars, depth);
                let b = self.render(stack, &args[2], vars, depth);
                if a.len() >= b.len() { a } else { b }
            }
            Some(("Fn::FindInMap", Value::Array(args))) if args.len() == 3 => {
                self.mapped(stack, args, vars, depth)
            }
            Some(("Fn::ToJsonString", inner)) => {
                serde_json::to_string(&self.materialize(stack, inner, depth)).unwrap_or_default()
            }
            Some(_) => "x".repeat(UNBOUNDED),
            None => match expr {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null => String::new(),
                other => serde_json::to_string(&self.materialize(stack, other, depth))
                    .unwrap_or_default(),
            },
        }
    }

    fn substitute(
        &self,
        stack: usize,
        text: &str,
        vars: &BTreeMap<String, String>,
        depth: usize,
    ) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                return out;
            };
            let var = &after[..end];
            if let Some(literal) = var.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(v) = vars.get(var) {
                out.push_str(v);
            } else {
                let (name, attr) = match var.split_once('.') {
                    Some((n, a)) => (n, Some(a)),
                    None => (var, None),
                };
                out.push_str(&self.name(stack, name, attr, depth));
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }

    /// `Fn::FindInMap`: the entry when both keys are known, else the longest entry the third key
    /// can name under any first key.
    fn mapped(
        &self,
        stack: usize,
        args: &[Value],
        vars: &BTreeMap<String, String>,
        depth: usize,
    ) -> String {
        let map_name = self.render(stack, &args[0], vars, depth);
        let attr = self.render(stack, &args[2], vars, depth);
        let map = &self.app.stacks[stack].doc["Mappings"][&map_name];
        let bind = |_: &str| None;
        if let Some(key) = self.app.eval(stack, &args[1], &bind)
            && let Some(v) = map[&key].get(&attr)
        {
            return self.render(stack, v, vars, depth);
        }
        map.as_object()
            .into_iter()
            .flat_map(|m| m.values())
            .filter_map(|entry| entry.get(&attr))
            .map(|v| self.render(stack, v, vars, depth))
            .max_by_key(String::len)
            .unwrap_or_else(|| "x".repeat(UNBOUNDED))
    }

    /// A parameter's longest value: the longest stage, an allowed value, `MaxLength` characters, or
    /// the default of a number; [`UNBOUNDED`] characters when nothing bounds it.
    pub fn parameter(&self, stack: usize, name: &str) -> Option<String> {
        let p = self.app.stacks[stack].doc["Parameters"].get(name)?;
        if name == "Stage" {
            return Some(self.stage.clone());
        }
        if let Some(allowed) = p["AllowedValues"].as_array() {
            return allowed
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .max_by_key(String::len);
        }
        if let Some(max) = p["MaxLength"].as_u64() {
            return Some("x".repeat(max as usize));
        }
        if p["Type"] == "Number" {
            // The digits of the largest value it accepts.
            let max = p["MaxValue"]
                .as_f64()
                .map(|m| format!("{m}"))
                .unwrap_or_else(|| "9".repeat(20));
            return Some(max);
        }
        Some("x".repeat(UNBOUNDED))
    }

    fn name(&self, stack: usize, name: &str, attr: Option<&str>, depth: usize) -> String {
        if let Some(v) = pseudo(name) {
            return v.to_owned();
        }
        match name {
            "AWS::StackName" => return format!("{}-websocket-stack", self.stage),
            "AWS::StackId" => {
                return format!(
                    "arn:aws-us-gov:cloudformation:ap-southeast-5:123456789012:stack/{}-websocket-stack/{}",
                    self.stage,
                    "0".repeat(36)
                );
            }
            _ => {}
        }
        if let Some(v) = self.parameter(stack, name) {
            return v;
        }
        let Some(r) = self.app.get(stack, name) else {
            return "x".repeat(UNBOUNDED);
        };
        let props = self.app.props(r);
        let own = |key: &str| -> Option<String> {
            props
                .get(key)
                .map(|v| self.render(stack, v, &BTreeMap::new(), depth))
        };
        // CloudFormation's generated names: `{stack}-{logical id}-{13 random}`, cut to the limit.
        let generated = |limit: usize| -> String {
            let full = format!("{}-websocket-stack-{}-{}", self.stage, name, "X".repeat(13));
            full.chars().take(limit).collect()
        };
        let arn = |service: &str, resource: String| {
            format!("arn:aws-us-gov:{service}:ap-southeast-5:123456789012:{resource}")
        };
        let ty = self.app.ty(r);
        match (ty, attr) {
            ("AWS::Lambda::Function", None) => own("FunctionName").unwrap_or_else(|| generated(64)),
            ("AWS::Lambda::Function", Some("Arn")) => arn(
                "lambda",
                format!(
                    "function:{}",
                    own("FunctionName").unwrap_or_else(|| generated(64))
                ),
            ),
            ("AWS::SQS::Queue", None) => format!(
                "https://sqs.ap-southeast-5.amazonaws.com.cn/123456789012/{}",
                own("QueueName").unwrap_or_else(|| generated(80))
            ),
            ("AWS::SQS::Queue", Some("Arn")) => {
                arn("sqs", own("QueueName").unwrap_or_else(|| generated(80)))
            }
            ("AWS::SQS::Queue", Some("QueueName")) => {
                own("QueueName").unwrap_or_else(|| generated(80))
            }
            ("AWS::DynamoDB::Table", None) => own("TableName").unwrap_or_else(|| generated(255)),
            ("AWS::DynamoDB::Table", Some("Arn")) => arn(
                "dynamodb",
                format!(
                    "table/{}",
                    own("TableName").unwrap_or_else(|| generated(255))
                ),
            ),
            ("AWS::Events::EventBus", None | Some("Name")) => {
                own("Name").unwrap_or_else(|| generated(256))
            }
            ("AWS::Events::EventBus", Some("Arn")) => arn(
                "events",
                format!(
                    "event-bus/{}",
                    own("Name").unwrap_or_else(|| generated(256))
                ),
            ),
            ("AWS::Events::Rule", Some("Arn")) => arn(
                "events",
                format!("rule/{}", own("Name").unwrap_or_else(|| generated(64))),
            ),
            ("AWS::SecretsManager::Secret", None | Some("Id")) => arn(
                "secretsmanager",
                format!(
                    "secret:{}-XXXXXX",
                    own("Name").unwrap_or_else(|| generated(512))
                ),
            ),
            ("AWS::IAM::Role", None) => own("RoleName").unwrap_or_else(|| generated(64)),
            ("AWS::IAM::Role", Some("Arn")) => {
                let path = own("Path").unwrap_or_else(|| "/".into());
                format!(
                    "arn:aws-us-gov:iam::123456789012:role{path}{}",
                    own("RoleName").unwrap_or_else(|| generated(64))
                )
            }
            ("AWS::Logs::LogGroup", None) => own("LogGroupName").unwrap_or_else(|| generated(512)),
            ("AWS::Logs::LogGroup", Some("Arn")) => arn(
                "logs",
                format!(
                    "log-group:{}:*",
                    own("LogGroupName").unwrap_or_else(|| generated(512))
                ),
            ),
            // API ids and CloudFront distribution ids are ten and fourteen characters.
            ("AWS::ApiGatewayV2::Api", None | Some("ApiId")) => "a".repeat(10),
            ("AWS::ApiGatewayV2::Api", Some("ApiEndpoint")) => {
                format!(
                    "wss://{}.execute-api.ap-southeast-5.amazonaws.com.cn",
                    "a".repeat(10)
                )
            }
            ("AWS::ApiGatewayV2::Stage", None) => {
                own("StageName").unwrap_or_else(|| generated(128))
            }
            ("AWS::CloudFront::Distribution", None | Some("Id")) => "E".repeat(14),
            ("AWS::CloudFront::Distribution", Some("DomainName")) => {
                format!("{}.cloudfront.net", "d".repeat(14))
            }
            ("AWS::S3::Bucket", None) => own("BucketName").unwrap_or_else(|| generated(63)),
            ("AWS::S3::Bucket", Some("Arn")) => format!(
                "arn:aws-us-gov:s3:::{}",
                own("BucketName").unwrap_or_else(|| generated(63))
            ),
            ("AWS::CloudWatch::Dashboard", None) => {
                own("DashboardName").unwrap_or_else(|| generated(255))
            }
            (_, Some("Arn")) => arn("service", "x".repeat(UNBOUNDED)),
            _ => "x".repeat(UNBOUNDED),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_stage_uses_every_kind_of_character_it_may() {
        let s = longest_stage(30);
        assert_eq!(s.len(), 30);
        assert!(s.starts_with("a0-"));
        assert!(
            s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }
}
