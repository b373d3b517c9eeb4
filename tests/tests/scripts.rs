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
