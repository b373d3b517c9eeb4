//! The command-line reference, generated from the clap definitions so it cannot drift from them:
//! `docs/CLI.md` (checked against [`markdown`] by a test) and man pages (`notesctl man`).

use std::fmt::{self, Write as _};
use std::path::Path;

use clap::{Arg, ArgAction, Command};
use serde::{Deserialize, Serialize};

use crate::output::{EXIT_CODES, Report};

/// The whole command tree, built (global options propagated, names resolved).
pub fn command() -> Command {
    let mut cmd = <crate::Cli as clap::CommandFactory>::command();
    cmd.build();
    cmd
}

/// Arguments clap adds to every command by itself.
fn builtin(arg: &Arg) -> bool {
    matches!(arg.get_id().as_str(), "help" | "version")
}

/// `--name <VALUE>`, `-y, --yes`, or `<FUNCTIONS>...` for a positional.
fn flag(arg: &Arg) -> String {
    let value = || {
        arg.get_value_names()
            .and_then(|v| v.first())
            .map(|v| v.to_string())
            .unwrap_or_else(|| arg.get_id().as_str().to_uppercase())
    };
    if arg.is_positional() {
        let more = matches!(arg.get_num_args(), Some(r) if r.max_values() > 1);
        return format!("<{}>{}", value(), if more { "..." } else { "" });
    }
    let mut s = String::new();
    if let Some(short) = arg.get_short() {
        s.push_str(&format!("-{short}, "));
    }
    if let Some(long) = arg.get_long() {
        s.push_str(&format!("--{long}"));
    }
    let takes_value = matches!(arg.get_action(), ArgAction::Set | ArgAction::Append);
    if takes_value {
        let optional = matches!(arg.get_num_args(), Some(r) if r.min_values() == 0);
        if optional {
            s.push_str(&format!(" [{}]", value()));
        } else {
            s.push_str(&format!(" <{}>", value()));
        }
    }
    s
}

/// The description with its default, environment variable and accepted values.
fn describe(arg: &Arg) -> String {
    let help = arg
        .get_long_help()
        .or(arg.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default();
    let mut s = help
        .replace('\n', " ")
        .replace('|', "\\|")
        .replace('<', "&lt;");
    if !s.is_empty() && !s.ends_with('.') {
        s.push('.');
    }
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| match v.get_help() {
            Some(h) => format!(
                "`{}` ({})",
                v.get_name(),
                h.to_string().trim_end_matches('.')
            ),
            None => format!("`{}`", v.get_name()),
        })
        .collect();
    if !values.is_empty() && !matches!(arg.get_action(), ArgAction::SetTrue) {
        s.push_str(&format!(" One of {}.", values.join(", ")));
    }
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    if !defaults.is_empty() && !matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::Count) {
        s.push_str(&format!(" Default: `{}`.", defaults.join(", ")));
    }
    if let Some(env) = arg.get_env() {
        s.push_str(&format!(" Env: `{}`.", env.to_string_lossy()));
    }
    if arg.is_required_set() {
        s.push_str(" Required.");
    }
    s.trim().to_owned()
}

fn table(out: &mut String, args: &[&Arg]) {
    out.push_str("| Option | Description |\n|---|---|\n");
    for arg in args {
        let _ = writeln!(out, "| `{}` | {} |", flag(arg), describe(arg));
    }
}

fn is_global(arg: &Arg) -> bool {
    arg.get_help_heading() == Some(crate::context::GLOBAL)
}

/// The naming convention the operational commands rely on, from the functions that apply it.
fn resource_names(out: &mut String) {
    use crate::aws::stacks::{STACKS, stack_name};
    use crate::names;
    let stage = "{stage}";
    out.push_str(
        "\n## Resource names\n\nThe original system's convention, `--stage` first. Operational commands \
         find queues and log groups by these names, so they work without the stacks' outputs; the \
         frontend bucket and distribution come from the frontend stack's outputs unless given by flag.\n\n\
         | Resource | Name |\n|---|---|\n",
    );
    let stacks: Vec<String> = STACKS
        .iter()
        .map(|s| format!("`{}`", stack_name(stage, s)))
        .collect();
    let _ = writeln!(out, "| Stacks, in deploy order | {} |", stacks.join(", "));
    let _ = writeln!(out, "| Processing queue | `{}` |", names::queue(stage));
    let _ = writeln!(out, "| Dead-letter queue | `{}` |", names::dlq(stage));
    let _ = writeln!(out, "| Data table | `{}` |", names::data_table(stage));
    let _ = writeln!(
        out,
        "| Connections table | `{}` |",
        names::connections_table(stage)
    );
    for h in notes_handlers::HandlerName::ALL {
        let function = h.spec().function_name(stage);
        let _ = writeln!(
            out,
            "| Function `{}` (`tail {}`) | `{function}`, logs in `{}` |",
            h.spec().name,
            h.spec().short,
            names::log_group(&function)
        );
    }
}

/// `docs/CLI.md`.
pub fn markdown() -> String {
    let root = command();
    let mut out = String::new();
    out.push_str(
        "# notesctl command-line reference\n\n\
         <!-- Generated from the clap definitions by `notesctl::reference::markdown()`; a test \
         compares it with this file. Regenerate: NOTESCTL_BLESS=1 cargo test --test reference -->\n\n",
    );
    if let Some(about) = root.get_about() {
        let _ = writeln!(out, "{about}\n");
    }
    let _ = writeln!(out, "```text\n{}\n```\n", root.clone().render_usage());
    out.push_str(
        "Results go to stdout: text for people, or with `--output json` one JSON document (JSON Lines \
         for the streams `tail`, `queue-depth --watch` and `dev`). Progress and logs go to stderr.\n\n",
    );
    out.push_str(
        "Users script against this, in shells and CI pipelines: command names, options and JSON fields \
         are a public interface. Additions are free; a change to what is here comes with a CHANGELOG \
         entry that says so.\n\n",
    );
    out.push_str("## Exit codes\n\n| Code | Meaning |\n|---|---|\n");
    for (code, meaning) in EXIT_CODES {
        let _ = writeln!(out, "| {code} | {meaning} |");
    }
    out.push_str("\n## Global options\n\nAccepted by every command, before or after its name.\n\n");
    let globals: Vec<&Arg> = root
        .get_arguments()
        .filter(|a| !builtin(a) && is_global(a))
        .collect();
    table(&mut out, &globals);
    resource_names(&mut out);
    out.push_str("\n## Commands\n\n");
    for sub in root.get_subcommands() {
        let _ = writeln!(
            out,
            "- [`{}`](#notesctl-{}) — {}",
            sub.get_name(),
            sub.get_name(),
            sub.get_about().map(|a| a.to_string()).unwrap_or_default()
        );
    }
    for sub in root.get_subcommands() {
        let _ = writeln!(out, "\n### notesctl {}\n", sub.get_name());
        if let Some(about) = sub.get_long_about().or(sub.get_about()) {
            let _ = writeln!(out, "{about}\n");
        }
        let _ = writeln!(out, "```text\n{}\n```\n", sub.clone().render_usage());
        let own: Vec<&Arg> = sub
            .get_arguments()
            .filter(|a| !builtin(a) && !is_global(a))
            .collect();
        if own.is_empty() {
            out.push_str("No options of its own.\n");
        } else {
            table(&mut out, &own);
        }
        if let Some(after) = sub.get_after_help() {
            let _ = writeln!(out, "\n```text\n{}\n```", after.to_string().trim_end());
        }
        if let Some((schema, how)) = json_output(sub.get_name()) {
            let _ = writeln!(
                out,
                "\nWith `--output json`, {how} (`?` marks a field that may be absent):\n\n```text\n{}\n```",
                shape(&schema)
            );
        }
    }
    out
}

/// The JSON each command prints with `--output json`: the type of its report, and whether it is one
/// document or a stream of JSON Lines.
pub fn json_output(command: &str) -> Option<(schemars::Schema, &'static str)> {
    use crate::commands::*;
    use schemars::schema_for;
    let one = "one JSON document";
    Some(match command {
        "package" => (schema_for!(package::PackageReport), one),
        "validate" => (schema_for!(validate::ValidateReport), one),
        "deploy" => (schema_for!(deploy::DeployReport), one),
        "diff" => (schema_for!(diff::DiffReport), one),
        "history" => (schema_for!(release::HistoryReport), one),
        "rollback" => (schema_for!(release::RollbackReport), one),
        "smoke" => (schema_for!(smoke::SmokeReport), one),
        "load" => (schema_for!(load::LoadReport), one),
        "outputs" => (
            schema_for!(outputs::OutputsReport),
            "one JSON document, stack → output → value",
        ),
        "ws-url" => (schema_for!(outputs::WsUrl), one),
        "status" => (schema_for!(status::StatusReport), one),
        "doctor" => (schema_for!(doctor::DoctorReport), one),
        "metrics" => (
            schema_for!(metrics::MetricsReport),
            "one JSON document; with `--watch`, one such line per refresh (JSON Lines)",
        ),
        "destroy" => (schema_for!(destroy::DestroyReport), one),
        "dev" => (
            schema_for!(dev::Listening),
            "one JSON line once it listens (the functions' logs go to stderr)",
        ),
        "queue-depth" => (
            schema_for!(crate::aws::queues::QueueDepth),
            "one JSON document; with `--watch`, one such line per refresh (JSON Lines)",
        ),
        "redrive-dlq" => (schema_for!(redrive::RedriveReport), one),
        "migrate" => (schema_for!(migrate::MigrateReport), one),
        "tail" => (
            schema_for!(tail::Line),
            "one JSON line per log event (JSON Lines)",
        ),
        "alarms" => (schema_for!(alarms::AlarmsReport), one),
        "sync-frontend" => (schema_for!(sync_frontend::SyncReport), one),
        "invalidate" => (schema_for!(invalidate::InvalidateReport), one),
        "man" => (schema_for!(ManReport), one),
        _ => return None,
    })
}

/// A JSON Schema as a shape a person reads: `{ "field": type, "optional"?: type }`, enums as
/// `"a" | "b"`, maps as `{ [key]: type }`.
pub fn shape(schema: &schemars::Schema) -> String {
    let root = schema.as_value();
    let mut out = String::new();
    render(root, root, 0, &mut out);
    out
}

fn render(v: &serde_json::Value, root: &serde_json::Value, depth: usize, out: &mut String) {
    use serde_json::Value;
    let pad = |n: usize| "  ".repeat(n);
    if depth > 12 {
        out.push('…');
        return;
    }
    if let Some(r) = v.get("$ref").and_then(Value::as_str) {
        let target = r
            .strip_prefix("#/$defs/")
            .and_then(|name| root.get("$defs").and_then(|d| d.get(name)));
        match target {
            Some(t) => render(t, root, depth, out),
            None => out.push_str("any"),
        }
        return;
    }
    if let Some(c) = v.get("const") {
        out.push_str(&c.to_string());
        return;
    }
    if let Some(values) = v.get("enum").and_then(Value::as_array) {
        let all: Vec<String> = values.iter().map(Value::to_string).collect();
        out.push_str(&all.join(" | "));
        return;
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(alts) = v.get(key).and_then(Value::as_array) {
            let parts: Vec<String> = alts
                .iter()
                .map(|a| {
                    let mut s = String::new();
                    render(a, root, depth, &mut s);
                    s
                })
                .collect();
            out.push_str(&parts.join(" | "));
            return;
        }
    }
    let types: Vec<&str> = match v.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if types.is_empty() {
        out.push_str("any");
        return;
    }
    let mut parts = Vec::new();
    for t in types {
        let mut s = String::new();
        match t {
            "object" => {
                let props = v.get("properties").and_then(Value::as_object);
                let required: Vec<&str> = v
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                match (props, v.get("additionalProperties")) {
                    (Some(props), _) if !props.is_empty() => {
                        s.push_str("{\n");
                        for (name, p) in props {
                            let optional = if required.contains(&name.as_str()) {
                                ""
                            } else {
                                "?"
                            };
                            s.push_str(&format!("{}\"{name}\"{optional}: ", pad(depth + 1)));
                            render(p, root, depth + 1, &mut s);
                            s.push_str(",\n");
                        }
                        s.push_str(&pad(depth));
                        s.push('}');
                    }
                    (_, Some(extra)) if extra.is_object() => {
                        s.push_str("{ [key: string]: ");
                        render(extra, root, depth, &mut s);
                        s.push_str(" }");
                    }
                    _ => s.push_str("{}"),
                }
            }
            "array" => {
                let mut inner = String::new();
                match v.get("items") {
                    Some(items) => render(items, root, depth, &mut inner),
                    None => inner.push_str("any"),
                }
                s.push_str(&format!("[{inner}]"));
            }
            other => s.push_str(other),
        }
        parts.push(s);
    }
    out.push_str(&parts.join(" | "));
}

/// What `notesctl man` wrote.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ManReport {
    pub pages: Vec<String>,
}

impl Report for ManReport {}

impl fmt::Display for ManReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.pages.join("\n"))
    }
}

/// `notesctl.1` and one `notesctl-COMMAND.1` per command, in `dir`.
pub fn write_man_pages(dir: &Path) -> anyhow::Result<ManReport> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    let root = command();
    let mut pages = Vec::new();
    let mut write = |name: String, cmd: Command| -> anyhow::Result<()> {
        let path = dir.join(format!("{name}.1"));
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd).title(name).render(&mut buf)?;
        std::fs::write(&path, buf)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        pages.push(path.display().to_string());
        Ok(())
    };
    write("notesctl".to_owned(), root.clone())?;
    for sub in root.get_subcommands() {
        // clap names are `&'static str`; a few page names for a one-shot command are fine to keep.
        let name: &'static str = Box::leak(format!("notesctl-{}", sub.get_name()).into_boxed_str());
        write(name.to_owned(), sub.clone().name(name))?;
    }
    Ok(ManReport { pages })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every option of every command says what it does.
    #[test]
    fn every_option_has_a_description() {
        let root = command();
        let mut missing = Vec::new();
        let mut check = |cmd: &Command, path: &str| {
            for arg in cmd.get_arguments().filter(|a| !builtin(a)) {
                let help = arg
                    .get_help()
                    .or(arg.get_long_help())
                    .map(|h| h.to_string());
                if help.is_none_or(|h| h.trim().is_empty()) {
                    missing.push(format!("{path} {}", flag(arg)));
                }
            }
        };
        check(&root, "notesctl");
        for sub in root.get_subcommands() {
            check(sub, &format!("notesctl {}", sub.get_name()));
        }
        assert!(missing.is_empty(), "no description: {missing:?}");
    }

    #[test]
    fn json_shapes_read_as_the_reports_serialise() {
        let (schema, _) = json_output("redrive-dlq").unwrap();
        let text = shape(&schema);
        assert!(text.starts_with("{\n  \""), "{text}");
        assert!(text.contains("\"moved\": integer"), "{text}");
        assert!(text.contains("\"problem\"?: string | null"), "{text}");
        assert!(
            text.contains("\"method\": \"move-task\" | \"manual\""),
            "{text}"
        );
        let (schema, _) = json_output("outputs").unwrap();
        assert!(
            shape(&schema).contains("[key: string]"),
            "{}",
            shape(&schema)
        );
        // Every command that prints a report has its shape; completions, help print text.
        for sub in command().get_subcommands() {
            let name = sub.get_name();
            assert_eq!(
                json_output(name).is_some(),
                !matches!(name, "completions" | "help"),
                "{name}"
            );
        }
    }

    #[test]
    fn flags_read_as_typed() {
        let root = command();
        let deploy = root.find_subcommand("deploy").unwrap();
        let arg = |name: &str| deploy.get_arguments().find(|a| a.get_id() == name).unwrap();
        assert_eq!(flag(arg("yes")), "-y, --yes");
        assert_eq!(flag(arg("timeout")), "--timeout <TIMEOUT>");
        let tail = root.find_subcommand("tail").unwrap();
        let functions = tail
            .get_arguments()
            .find(|a| a.get_id() == "functions")
            .unwrap();
        assert_eq!(flag(functions), "<FUNCTIONS>...");
        let local = tail
            .get_arguments()
            .find(|a| a.get_id() == "local")
            .unwrap();
        assert_eq!(flag(local), "--local [URL]");
    }
}
