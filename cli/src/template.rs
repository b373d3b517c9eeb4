//! CloudFormation templates as data. The YAML's short-form tags (`!Ref`, `!Sub`, `!GetAtt`, …) are
//! read into the long form CloudFormation itself uses (`{"Ref": …}`, `{"Fn::Sub": …}`), as JSON, so
//! every reader of a template — `deploy`, `validate`, `dev`'s event bus — handles one form.

use serde_json::{Map, Value};

/// The short-form tags CloudFormation knows, and their long form.
const TAGS: &[(&str, &str)] = &[
    ("Ref", "Ref"),
    ("Condition", "Condition"),
    ("GetAtt", "Fn::GetAtt"),
    ("Sub", "Fn::Sub"),
    ("ImportValue", "Fn::ImportValue"),
    ("Join", "Fn::Join"),
    ("Select", "Fn::Select"),
    ("Split", "Fn::Split"),
    ("FindInMap", "Fn::FindInMap"),
    ("If", "Fn::If"),
    ("Equals", "Fn::Equals"),
    ("Not", "Fn::Not"),
    ("And", "Fn::And"),
    ("Or", "Fn::Or"),
    ("Base64", "Fn::Base64"),
    ("Cidr", "Fn::Cidr"),
    ("GetAZs", "Fn::GetAZs"),
    ("Length", "Fn::Length"),
    ("ToJsonString", "Fn::ToJsonString"),
    ("Transform", "Fn::Transform"),
];

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("not valid YAML: {0}")]
    Yaml(#[from] serde_norway::Error),
    #[error("unknown tag !{tag}: CloudFormation has no such intrinsic function")]
    UnknownTag { tag: String },
    #[error("a mapping key is not a string: {0:?}")]
    Key(serde_norway::Value),
    #[error("the template is not a mapping")]
    NotAMapping,
}

/// A template's text as long-form JSON.
pub fn parse(text: &str) -> Result<Value, TemplateError> {
    let doc: serde_norway::Value = serde_norway::from_str(text)?;
    let json = long_form(doc)?;
    if json.is_object() {
        Ok(json)
    } else {
        Err(TemplateError::NotAMapping)
    }
}

fn long_form(v: serde_norway::Value) -> Result<Value, TemplateError> {
    use serde_norway::Value as Y;
    Ok(match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::from(i),
            (_, Some(u), _) => Value::from(u),
            (_, _, Some(f)) => Value::from(f),
            _ => Value::Null,
        },
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => {
            Value::Array(items.into_iter().map(long_form).collect::<Result<_, _>>()?)
        }
        Y::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    other => return Err(TemplateError::Key(other)),
                };
                out.insert(key, long_form(v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(t) => {
            let tag = t.tag.to_string();
            let tag = tag.trim_start_matches('!');
            let Some((_, long)) = TAGS.iter().find(|(short, _)| *short == tag) else {
                return Err(TemplateError::UnknownTag {
                    tag: tag.to_owned(),
                });
            };
            let inner = long_form(t.value)?;
            // `!GetAtt Resource.Attribute` is the one short form with its own syntax.
            let inner = match (*long, inner) {
                ("Fn::GetAtt", Value::String(s)) => match s.split_once('.') {
                    Some((res, attr)) => Value::from(vec![res, attr]),
                    None => Value::String(s),
                },
                (_, inner) => inner,
            };
            Value::Object(Map::from_iter([((*long).to_owned(), inner)]))
        }
    })
}

/// A template's `Parameters`: each name, and its default when it has one.
pub fn declared_parameters(template: &Value) -> Vec<(String, Option<String>)> {
    let Some(params) = template["Parameters"].as_object() else {
        return Vec::new();
    };
    params
        .iter()
        .map(|(k, v)| {
            let default = match &v["Default"] {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            };
            (k.clone(), default)
        })
        .collect()
}

/// A property that may be one value or a list of them, as a list.
pub fn one_or_many(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// The single-key intrinsic function in `v`, if it is one: (`Ref`, its argument).
pub fn intrinsic(v: &Value) -> Option<(&str, &Value)> {
    let m = v.as_object()?;
    if m.len() != 1 {
        return None;
    }
    let (k, arg) = m.iter().next()?;
    (k == "Ref" || k == "Condition" || k.starts_with("Fn::")).then_some((k.as_str(), arg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every tag the templates use reads as its long form.
    #[test]
    fn short_forms_read_as_long_forms() {
        let short = r#"
A: !Ref Stage
B: !GetAtt Queue.Arn
C: !Sub "${Stage}-x"
D: !ImportValue
  Fn::Sub: "${Stage}-X"
E: !FindInMap [Map, !Ref Key, Value]
F: !Join ["", [a, !Ref B]]
G: !If [Cond, a, b]
H: !Equals [a, b]
I: !Select [0, !Split [",", "a,b"]]
J: !Sub
  - "${A}.x"
  - A: !ImportValue y
K: !GetAtt [Api, ApiEndpoint]
"#;
        let long = r#"
A: {Ref: Stage}
B: {"Fn::GetAtt": [Queue, Arn]}
C: {"Fn::Sub": "${Stage}-x"}
D: {"Fn::ImportValue": {"Fn::Sub": "${Stage}-X"}}
E: {"Fn::FindInMap": [Map, {Ref: Key}, Value]}
F: {"Fn::Join": ["", [a, {Ref: B}]]}
G: {"Fn::If": [Cond, a, b]}
H: {"Fn::Equals": [a, b]}
I: {"Fn::Select": [0, {"Fn::Split": [",", "a,b"]}]}
J: {"Fn::Sub": ["${A}.x", {A: {"Fn::ImportValue": y}}]}
K: {"Fn::GetAtt": [Api, ApiEndpoint]}
"#;
        assert_eq!(parse(short).unwrap(), parse(long).unwrap());
        assert_eq!(parse("A: !Ref X").unwrap(), json!({"A": {"Ref": "X"}}));
        assert!(matches!(
            parse("A: !Nope x"),
            Err(TemplateError::UnknownTag { .. })
        ));
        assert_eq!(parse("\"10\": {V: 60}").unwrap(), json!({"10": {"V": 60}}));
    }

    /// The templates of this repository read, and every tag in them is one CloudFormation knows.
    #[test]
    fn the_app_templates_read() {
        for short in crate::aws::stacks::STACKS {
            let path = format!("{}/../templates/{short}.yaml", env!("CARGO_MANIFEST_DIR"));
            let text = std::fs::read_to_string(&path).unwrap();
            let t = parse(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert!(t["Resources"].is_object(), "{path}");
        }
    }
}
