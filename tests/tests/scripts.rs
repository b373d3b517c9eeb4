//! The shell side of the suite: `scripts/test.sh` announces each phase before it starts and says how
//! long it took, and a failure names itself with the exit code (scripts/lib/phases.sh).

use std::process::Command;

fn run(body: &str) -> (i32, String) {
    let root = notesctl_tests::workspace_root();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -euo pipefail; source scripts/lib/phases.sh; phases_begin demo; {body}"
        ))
        .current_dir(root)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn phases_are_announced_and_timed() {
    let (code, err) = run(r#"phase "building"; sleep 1; phase "testing"; true"#);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 5, "{err}");
    assert_eq!(lines[0], "demo: building…");
    assert!(
        lines[1].starts_with("demo: building: ") && lines[1].ends_with(" s"),
        "{err}"
    );
    let secs: u64 = lines[1]["demo: building: ".len()..lines[1].len() - 2]
        .parse()
        .unwrap();
    assert!(secs >= 1, "{err}");
    assert_eq!(lines[2], "demo: testing…");
    assert!(lines[3].starts_with("demo: testing: "), "{err}");
    assert!(lines[4].starts_with("demo: all passed in "), "{err}");
}

#[test]
fn a_failing_phase_says_so_with_its_exit_code() {
    let (code, err) = run(r#"phase "testing"; exit 101"#);
    assert_eq!(code, 101, "the script's own exit code: {err}");
    assert!(err.contains("demo: testing: "), "{err}");
    assert!(err.contains("demo: FAILED (exit 101) after "), "{err}");
}

#[test]
fn test_sh_uses_the_phases() {
    let script =
        std::fs::read_to_string(notesctl_tests::workspace_root().join("scripts/test.sh")).unwrap();
    for phase in [
        "phase \"cargo build --workspace --all-targets",
        "phase \"notesctl package --arch x86_64 --arch arm64",
        "phase \"cargo test --workspace\"",
    ] {
        assert!(script.contains(phase), "{phase}");
    }
}

/// `scripts/bench.sh stale`, run on a repository of its own: a section is listed when the files
/// its runner measures changed after the commit it records, when it was measured on a dirty tree,
/// or when it records no commit; a current section is not, and all current prints nothing.
#[test]
fn stale_lists_the_sections_whose_measured_files_changed() {
    use std::process::Command;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .current_dir(root)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    std::fs::create_dir_all(root.join("scripts/lib")).unwrap();
    std::fs::copy(
        notesctl_tests::workspace_root().join("scripts/lib/stale.sh"),
        root.join("scripts/lib/stale.sh"),
    )
    .unwrap();
    std::fs::create_dir_all(root.join("cli/src/commands/validate")).unwrap();
    std::fs::create_dir_all(root.join("handlers/src")).unwrap();
    std::fs::write(root.join("cli/src/commands/validate/mod.rs"), "// v1").unwrap();
    std::fs::write(root.join("handlers/src/lib.rs"), "// v1").unwrap();
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-qm", "code"]);
    let measured = git(&["rev-parse", "--short=12", "HEAD"]);
    let section = |name: &str, line: &str| {
        format!("<!-- {name}:begin -->\n## {name}\n\n{line}\n\n| a |\n<!-- {name}:end -->\n")
    };
    let write = |sections: &[String]| {
        std::fs::write(
            root.join("BENCHMARKS.md"),
            format!("# Benchmarks\n\n{}", sections.join("\n")),
        )
        .unwrap();
    };
    let at = |commit: &str, tree: &str| {
        format!("Measured at commit `{commit}` ({tree}), started 2026-12-07.")
    };
    let stale = || {
        let out = Command::new("bash")
            .arg(root.join("scripts/lib/stale.sh"))
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8(out.stdout).unwrap(),
        )
    };

    write(&[
        section("validate", &at(&measured, "clean tree")),
        section("cold-start", &at(&measured, "clean tree")),
    ]);
    assert_eq!(stale(), (0, String::new()), "all current: nothing printed");

    // The validator changes: validate's figures are stale, cold-start's (handlers/) are not.
    std::fs::write(root.join("cli/src/commands/validate/mod.rs"), "// v2").unwrap();
    git(&["commit", "-qam", "a faster validate"]);
    let (code, out) = stale();
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("validate: measured at") && out.contains("a faster validate"),
        "{out}"
    );
    assert!(!out.contains("cold-start"), "{out}");

    write(&[
        section(
            "cold-start",
            &at(
                &measured,
                "tree dirty: the figures may not be this commit's",
            ),
        ),
        section("dev-load", "Measured 2026-12-01 on 2 cores."),
    ]);
    let (code, out) = stale();
    assert_eq!(code, 1);
    assert!(
        out.contains("cold-start: measured on a tree that differed"),
        "{out}"
    );
    assert!(out.contains("dev-load: records no commit"), "{out}");
}
