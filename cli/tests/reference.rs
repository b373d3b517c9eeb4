//! docs/CLI.md is generated from the clap definitions: this test fails when they drift apart, and
//! with NOTESCTL_BLESS=1 writes the file anew. The man pages come from the same definitions.

use std::process::Command;

#[test]
fn docs_cli_md_is_the_generated_reference() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/CLI.md");
    let generated = notesctl::reference::markdown();
    if std::env::var_os("NOTESCTL_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "docs/CLI.md differs from the clap definitions: regenerate it with `NOTESCTL_BLESS=1 cargo test --test reference` and commit it"
    );
    for name in ["deploy", "redrive-dlq", "dev", "tail"] {
        assert!(
            generated.contains(&format!("### notesctl {name}")),
            "{name}"
        );
    }
    assert!(generated.contains("| `--stage <STAGE>` |"));
    assert!(generated.contains("| 2 | The command could not do its job"));
}

#[test]
fn man_pages_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_notesctl"))
        .args(["man", "--out"])
        .arg(dir.path())
        .args(["--output", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: notesctl::reference::ManReport = serde_json::from_slice(&out.stdout).unwrap();
    let commands = notesctl::reference::command().get_subcommands().count();
    assert_eq!(report.pages.len(), commands + 1);
    let deploy = std::fs::read_to_string(dir.path().join("notesctl-deploy.1")).unwrap();
    assert!(
        deploy.starts_with(".ie") || deploy.contains(".TH"),
        "{deploy}"
    );
    assert!(
        deploy.contains("notesctl\\-deploy") && deploy.contains("preview"),
        "{deploy}"
    );
}

/// README.md's table of exit codes is the one `--help` and docs/CLI.md give.
#[test]
fn the_readme_gives_the_same_exit_codes() {
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"),
    )
    .unwrap();
    for (code, meaning) in notesctl::output::EXIT_CODES {
        let row = format!("| {code} | {meaning} |");
        assert!(readme.contains(&row), "README.md lacks the row {row}");
    }
}

/// The README stands alone: nothing it links lies outside the repository, and it says how to get
/// `notesctl` on PATH before its examples use the name.
#[test]
fn the_readme_stands_alone() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        !readme.contains("../"),
        "README.md points outside the repository"
    );
    for link in readme.split("](").skip(1) {
        let target = link.split(')').next().unwrap();
        if target.starts_with("http") || target.starts_with('#') {
            continue;
        }
        let path = target.split('#').next().unwrap();
        assert!(
            root.join(path).exists(),
            "README.md links {target}, which is not in the repository"
        );
    }
    let path_hint = readme
        .find("cargo install --path cli --locked")
        .expect("README says how to install notesctl");
    let first_example = readme
        .find("\nnotesctl ")
        .expect("README has notesctl examples");
    assert!(
        path_hint < first_example,
        "the PATH hint comes before the first `notesctl …` example"
    );
}
