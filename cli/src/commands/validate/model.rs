//! The six templates as one app: their resources, and what a CloudFormation expression refers to —
//! across stacks too, following `Fn::ImportValue` to the output that exports it.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::aws::stacks::STACKS;
use crate::template::{self, intrinsic};

/// One template, as the stack it becomes.
pub struct Stack {
    /// `event`, `data`, …: its place in the deploy order is its index.
    pub short: &'static str,
    /// The file, as findings name it.
    pub file: String,
    /// Its size in bytes, as CloudFormation would receive it.
    pub bytes: usize,
    pub doc: Value,
}

/// A resource of a stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Res<'a> {
    pub stack: usize,
    pub id: &'a str,
}

/// What an expression refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<'a> {
    /// A resource, by `Ref` (`attr: None`) or `Fn::GetAtt`.
    Resource(Res<'a>, Option<String>),
    /// A template parameter.
    Param(usize, String),
    /// `AWS::Region`, `AWS::AccountId`, …
    Pseudo(String),
    /// An import no earlier stack exports.
    Unexported(String),
}

pub struct App {
    pub stacks: Vec<Stack>,
}

impl App {
    /// Reads `{event,data,auth,websocket,notes,frontend}.yaml` from `dir`.
    pub fn load(dir: &Path) -> anyhow::Result<App> {
        let mut stacks = Vec::new();
        for short in STACKS {
            let path = dir.join(format!("{short}.yaml"));
            let text = std::fs::read_to_string(&path).map_err(|e| {
                anyhow::anyhow!(
                    "reading {}: {e}; pass --templates DIR with the six templates",
                    path.display()
                )
            })?;
            let doc =
                template::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            stacks.push(Stack {
                short,
                file: format!("{short}.yaml"),
                bytes: text.len(),
                doc,
            });
        }
        Ok(App { stacks })
    }

    pub fn stack_index(&self, short: &str) -> Option<usize> {
        self.stacks.iter().position(|s| s.short == short)
    }

    /// Every resource of every stack, in deploy order.
    pub fn resources(&self) -> impl Iterator<Item = Res<'_>> {
        self.stacks.iter().enumerate().flat_map(|(i, s)| {
            s.doc["Resources"]
                .as_object()
                .into_iter()
                .flat_map(move |m| m.keys().map(move |id| Res { stack: i, id }))
        })
    }

    pub fn of_type<'a>(&'a self, ty: &'a str) -> impl Iterator<Item = Res<'a>> + 'a {
        self.resources().filter(move |r| self.ty(*r) == ty)
    }

    pub fn get(&self, stack: usize, id: &str) -> Option<Res<'_>> {
        let (id, _) = self.stacks[stack].doc["Resources"]
            .as_object()?
            .get_key_value(id)?;
        Some(Res { stack, id })
    }

    pub fn ty(&self, r: Res) -> &str {
        self.stacks[r.stack].doc["Resources"][r.id]["Type"]
            .as_str()
            .unwrap_or_default()
    }

    pub fn props(&self, r: Res) -> &Value {
        &self.stacks[r.stack].doc["Resources"][r.id]["Properties"]
    }

    pub fn file(&self, r: Res) -> &str {
        &self.stacks[r.stack].file
    }

    fn has_param(&self, stack: usize, name: &str) -> bool {
        self.stacks[stack].doc["Parameters"].get(name).is_some()
    }

    /// The outputs that a stack exports: the export's name expression → the output's value.
    pub fn exports(&self, stack: usize) -> Vec<(&Value, &Value)> {
        self.stacks[stack].doc["Outputs"]
            .as_object()
            .into_iter()
            .flat_map(|m| m.values())
            .filter_map(|o| Some((o.get("Export")?.get("Name")?, o.get("Value")?)))
            .collect()
    }

    /// The stack (before `stack`) that exports `name`, and the exported value.
    pub fn exporter(&self, stack: usize, name: &Value) -> Option<(usize, &Value)> {
        (0..stack).find_map(|i| {
            self.exports(i)
                .into_iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (i, v))
        })
    }

    /// Everything `expr` (in `stack`) refers to, following imports to what the exporter's output
    /// refers to.
    pub fn targets<'a>(&'a self, stack: usize, expr: &'a Value) -> Vec<Target<'a>> {
        let mut out = Vec::new();
        self.collect(stack, expr, &BTreeMap::new(), &mut out);
        out
    }

    fn name_target<'a>(&'a self, stack: usize, name: &str, attr: Option<&str>) -> Target<'a> {
        if name.starts_with("AWS::") {
            return Target::Pseudo(name.to_owned());
        }
        if self.has_param(stack, name) {
            return Target::Param(stack, name.to_owned());
        }
        match self.get(stack, name) {
            Some(r) => Target::Resource(r, attr.map(str::to_owned)),
            None => Target::Unexported(format!("{name} (nothing of that name in the template)")),
        }
    }

    fn collect<'a>(
        &'a self,
        stack: usize,
        expr: &'a Value,
        vars: &BTreeMap<String, &'a Value>,
        out: &mut Vec<Target<'a>>,
    ) {
        match intrinsic(expr) {
            Some(("Ref", Value::String(name))) => out.push(self.name_target(stack, name, None)),
            Some(("Fn::GetAtt", Value::Array(parts))) => {
                let name = parts.first().and_then(Value::as_str).unwrap_or_default();
                let attr = parts.get(1).and_then(Value::as_str);
                out.push(self.name_target(stack, name, attr));
            }
            Some(("Fn::ImportValue", name)) => match self.exporter(stack, name) {
                Some((from, value)) => self.collect(from, value, &BTreeMap::new(), out),
                None => out.push(Target::Unexported(
                    sub_text(name).unwrap_or_else(|| name.to_string()),
                )),
            },
            Some(("Fn::Sub", arg)) => {
                let (text, map) = sub_parts(arg);
                let mut vars = vars.clone();
                if let Some(m) = map {
                    for (k, v) in m {
                        vars.insert(k.clone(), v);
                    }
                }
                for var in sub_vars(text) {
                    match vars.get(&var) {
                        Some(v) => self.collect(stack, v, &BTreeMap::new(), out),
                        None => {
                            let (name, attr) = match var.split_once('.') {
                                Some((n, a)) => (n, Some(a)),
                                None => (var.as_str(), None),
                            };
                            out.push(self.name_target(stack, name, attr));
                        }
                    }
                }
            }
            _ => match expr {
                Value::Array(items) => items.iter().for_each(|i| self.collect(stack, i, vars, out)),
                Value::Object(m) => m.values().for_each(|v| self.collect(stack, v, vars, out)),
                _ => {}
            },
        }
    }

    /// The one resource `expr` refers to, if it refers to exactly one.
    pub fn resource_of<'a>(&'a self, stack: usize, expr: &'a Value) -> Option<Res<'a>> {
        let mut found = self
            .targets(stack, expr)
            .into_iter()
            .filter_map(|t| match t {
                Target::Resource(r, _) => Some(r),
                _ => None,
            });
        let first = found.next()?;
        found.all(|r| r == first).then_some(first)
    }

    /// `expr`'s value where it can be known before a deploy: literals, `Sub` and `Ref` of parameters
    /// and pseudo parameters from `bind` (else their defaults), and `FindInMap`. `None` where it
    /// depends on a resource.
    pub fn eval(
        &self,
        stack: usize,
        expr: &Value,
        bind: &dyn Fn(&str) -> Option<String>,
    ) -> Option<String> {
        let value_of = |name: &str| -> Option<String> {
            bind(name).or_else(|| {
                self.stacks[stack].doc["Parameters"][name]["Default"]
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| {
                        self.stacks[stack].doc["Parameters"][name]["Default"]
                            .as_number()
                            .map(|n| n.to_string())
                    })
            })
        };
        match intrinsic(expr) {
            Some(("Ref", Value::String(name))) => value_of(name),
            Some(("Fn::Sub", Value::String(text))) => {
                let mut out = String::new();
                let mut rest = text.as_str();
                while let Some(start) = rest.find("${") {
                    out.push_str(&rest[..start]);
                    let after = &rest[start + 2..];
                    let end = after.find('}')?;
                    let var = &after[..end];
                    if let Some(literal) = var.strip_prefix('!') {
                        out.push_str("${");
                        out.push_str(literal);
                        out.push('}');
                    } else {
                        out.push_str(&value_of(var)?);
                    }
                    rest = &after[end + 1..];
                }
                out.push_str(rest);
                Some(out)
            }
            Some(("Fn::FindInMap", Value::Array(args))) if args.len() == 3 => {
                let keys: Vec<String> = args
                    .iter()
                    .map(|a| self.eval(stack, a, bind))
                    .collect::<Option<_>>()?;
                let v = &self.stacks[stack].doc["Mappings"][&keys[0]][&keys[1]][&keys[2]];
                scalar(v)
            }
            Some(_) => None,
            None => scalar(expr),
        }
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A `Fn::Sub`'s argument: its text, and its map of variables when it has one.
pub fn sub_parts(arg: &Value) -> (&str, Option<&serde_json::Map<String, Value>>) {
    match arg {
        Value::String(s) => (s.as_str(), None),
        Value::Array(a) => (
            a.first().and_then(Value::as_str).unwrap_or_default(),
            a.get(1).and_then(Value::as_object),
        ),
        _ => ("", None),
    }
}

/// `${Var}` and `${Res.Attr}` names in a `Fn::Sub` string (not `${!Literal}`).
pub fn sub_vars(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let var = &after[..end];
        if !var.starts_with('!') {
            out.push(var.to_owned());
        }
        rest = &after[end + 1..];
    }
    out
}

/// The text of a `Fn::Sub` (its string form) — how findings show an export's name.
pub fn sub_text(expr: &Value) -> Option<String> {
    match intrinsic(expr) {
        Some(("Fn::Sub", Value::String(s))) => Some(s.clone()),
        _ => expr.as_str().map(str::to_owned),
    }
}

pub use crate::template::one_or_many;
