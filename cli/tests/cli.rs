//! The binary's own contract: help, version, usage errors and their exit codes.

use std::process::Command;

fn notesctl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_notesctl"))
        .args(args)
        .env_remove("NOTESCTL_OUTPUT")
        .output()
        .unwrap()
}

#[test]
fn help_and_version() {
    let out = notesctl(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("notesctl {}", env!("CARGO_PKG_VERSION"))
    );
    let out = notesctl(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in ["dev", "queue-depth", "redrive-dlq", "tail"] {
        assert!(help.contains(cmd), "{cmd} missing from --help:\n{help}");
    }
    assert!(help.contains("Exit codes"));
}

#[test]
fn completions_for_shells() {
    let out = notesctl(&["completions", "bash"]);
    assert!(out.status.success());
    let script = String::from_utf8_lossy(&out.stdout);
    assert!(
        script.contains("notesctl") && script.contains("redrive-dlq"),
        "{script}"
    );
    assert_eq!(notesctl(&["completions", "tcsh"]).status.code(), Some(2));
}

#[test]
fn usage_errors_exit_2_on_stderr() {
    let out = notesctl(&["no-such-command"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(!out.stderr.is_empty());
    let out = notesctl(&[
        "tail",
        "save",
        "--since",
        "yesterday",
        "--local",
        "http://127.0.0.1:9",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--since"));
}

/// `--local` without the dev server's runbook token stops before sending anything, and says where the
/// token is looked for and how to point there.
#[test]
fn local_without_the_runbook_token_says_where_it_looked() {
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_notesctl"))
        .args(["queue-depth", "--local", "http://127.0.0.1:9"])
        .env_remove("NOTESCTL_OUTPUT")
        .env_remove("NOTESCTL_DEV_TOKEN")
        .env("NOTESCTL_DEV_DATA_DIR", empty.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no runbook token at"), "{err}");
    assert!(err.contains(&empty.path().display().to_string()), "{err}");
    assert!(err.contains("NOTESCTL_DEV_DATA_DIR"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}
