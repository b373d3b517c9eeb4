//! The limits AWS documents and enforces only when a template reaches it — none of the emulators
//! here (moto accepts a template of any size and any setting) and not cfn-lint for most of them.
//! Each rule names its source in its doc comment ([`Rule`](super::Rule)); each finding names the
//! file, the resource, the number it reached and the limit.
//!
//! Values are checked at their worst case ([`worst`]): names with the longest stage `--stage`
//! accepts, spelled with every character its pattern allows; numbers over every value a parameter
//! accepts; assembled documents (environments, policies, patterns) with every reference at its
//! longest.

pub mod cloudformation;
pub mod names;
pub mod services;
pub mod worst;

use serde_json::Value;

use super::model::{App, Res};
use super::{Finding, Rule};
use crate::template::intrinsic;

pub fn check(app: &App, out: &mut Vec<Finding>) {
    let worst = worst::Worst::new(app);
    cloudformation::check(app, &worst, out);
    names::check(app, &worst, out);
    services::check(app, &worst, out);
}

/// The values a numeric property can take, as far as the template decides them.
#[derive(Debug, Clone, PartialEq)]
pub enum Range {
    /// Every value lies in `lo..=hi`.
    Within(f64, f64),
    /// A parameter that accepts numbers without a bound on this side (`MinValue`/`MaxValue`).
    Unbounded {
        parameter: String,
        side: &'static str,
    },
    /// Decided by something the template does not bound (a resource attribute, an import).
    Unknown,
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn span(values: impl Iterator<Item = f64>) -> Option<Range> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    (lo <= hi).then_some(Range::Within(lo, hi))
}

/// The values `expr` (in `stack`) can take when the template lists them: a literal, a parameter's
/// `AllowedValues`, or the entries of a mapping (under any key); `None` when it lists none.
pub fn values(app: &App, stack: usize, expr: &Value) -> Option<Vec<f64>> {
    if let Some(n) = number(expr) {
        return Some(vec![n]);
    }
    match intrinsic(expr) {
        Some(("Ref", Value::String(name))) => {
            let p = app.stacks[stack].doc["Parameters"].get(name.as_str())?;
            let allowed = p["AllowedValues"].as_array()?;
            Some(allowed.iter().filter_map(number).collect())
        }
        Some(("Fn::FindInMap", Value::Array(args))) if args.len() == 3 => {
            let (map, attr) = (args[0].as_str()?, args[2].as_str()?);
            let entries = app.stacks[stack].doc["Mappings"][map].as_object()?;
            Some(
                entries
                    .values()
                    .filter_map(|e| e.get(attr).and_then(number))
                    .collect(),
            )
        }
        _ => None,
    }
}

/// Every value `expr` (in `stack`) can take: a literal, a parameter's `AllowedValues` or
/// `MinValue`..`MaxValue`, or the entries of a mapping.
pub fn range(app: &App, stack: usize, expr: &Value) -> Range {
    if let Some(listed) = values(app, stack, expr) {
        return span(listed.into_iter()).unwrap_or(Range::Unknown);
    }
    let Some(("Ref", Value::String(name))) = intrinsic(expr) else {
        return Range::Unknown;
    };
    let Some(p) = app.stacks[stack].doc["Parameters"].get(name.as_str()) else {
        return Range::Unknown;
    };
    match (number(&p["MinValue"]), number(&p["MaxValue"])) {
        (Some(lo), Some(hi)) => Range::Within(lo, hi),
        (None, _) => Range::Unbounded {
            parameter: name.clone(),
            side: "MinValue",
        },
        (_, None) => Range::Unbounded {
            parameter: name.clone(),
            side: "MaxValue",
        },
    }
}

/// A finding when `expr`'s values can leave `lo..=hi`: `what` names the property, `unit` its unit.
#[allow(clippy::too_many_arguments)]
pub fn check_range(
    app: &App,
    r: Res,
    rule: Rule,
    what: &str,
    expr: &Value,
    (lo, hi): (f64, f64),
    unit: &str,
    out: &mut Vec<Finding>,
) {
    if expr.is_null() {
        return;
    }
    match range(app, r.stack, expr) {
        Range::Within(a, b) if a >= lo && b <= hi => {}
        Range::Within(a, b) => {
            let shown = if a == b {
                format!("is {a}")
            } else {
                format!("can be anything in {a}–{b}")
            };
            out.push(Finding::new(
                rule,
                app,
                r,
                format!("{what} {shown} {unit}, outside the {lo}–{hi} AWS accepts"),
                format!("keep {what} within {lo}–{hi} {unit} (and any parameter it comes from)"),
            ));
        }
        Range::Unbounded { parameter, side } => out.push(Finding::new(
            rule,
            app,
            r,
            format!(
                "{what} comes from the parameter {parameter}, which has no {side}: a value outside {lo}–{hi} {unit} would reach AWS"
            ),
            format!("give {parameter} MinValue {lo} and MaxValue {hi} (or tighter)"),
        )),
        Range::Unknown => {}
    }
}

/// Characters IAM counts in a policy: all but whitespace.
pub fn counted(json: &str) -> usize {
    json.chars().filter(|c| !c.is_whitespace()).count()
}

/// `n` with thousands separators, as findings show numbers.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_shown_with_separators() {
        assert_eq!(thousands(51200), "51,200");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }

    #[test]
    fn iam_does_not_count_whitespace() {
        assert_eq!(counted("{\"a\": [1, 2]}\n"), 11);
    }
}
