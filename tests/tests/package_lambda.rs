//! The zips `notesctl package` builds start the way Lambda starts them: `bootstrap` unpacked and run
//! against a local Runtime API — natively for x86_64, under qemu-aarch64 for arm64.
//!
//! Building both is slow (release, cross), so scripts/test.sh packages once before the tests and
//! points NOTESCTL_DIST at the result; without it, this test packages into its own target folder.

use std::path::{Path, PathBuf};

use notesctl_tests::cli::Cli;
use notesctl_tests::lambda::{LambdaProcess, RuntimeApi};
use serde_json::{Value, json};

/// `bootstrap` out of a Lambda zip, read by another zip implementation (Python's `zipfile`), which
/// must see exactly one entry, `bootstrap`, a regular file with mode 0755 — what Lambda executes.
fn unzip_bootstrap(zip: &Path, into: &Path) {
    let script = r#"
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    infos = z.infolist()
    assert [i.filename for i in infos] == ["bootstrap"], [i.filename for i in infos]
    mode = infos[0].external_attr >> 16
    assert mode == 0o100755, oct(mode)
    assert infos[0].compress_type == zipfile.ZIP_DEFLATED, infos[0].compress_type
    open(sys.argv[2], "wb").write(z.read("bootstrap"))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(zip)
        .arg(into)
        .output()
        .expect("python3 (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "{} is not the zip Lambda needs: {}",
        zip.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn dist() -> PathBuf {
    if let Ok(d) = std::env::var("NOTESCTL_DIST") {
        return PathBuf::from(d);
    }
    let out = notesctl_tests::workspace_root().join("target/package-test/dist");
    let run = Cli::new()
        .args([
            "package",
            "--arch",
            "x86_64",
            "--arch",
            "arm64",
            "--out",
            out.to_str().unwrap(),
            "--workspace",
        ])
        .args([notesctl_tests::workspace_root().to_str().unwrap()])
        .env(
            "CARGO_TARGET_DIR",
            notesctl_tests::workspace_root()
                .join("target/package-test")
                .to_str()
                .unwrap(),
        )
        .run()
        .await;
    assert_eq!(run.code, 0, "packaging failed:\n{}", run.stderr);
    out
}

async fn first_response(bootstrap: &Path, runner: Option<&str>) -> Value {
    let api = RuntimeApi::start().await;
    let env = [
        ("TABLE_NAME".to_owned(), "t".to_owned()),
        ("AWS_REGION".to_owned(), "us-east-1".to_owned()),
    ];
    let process = match runner {
        None => LambdaProcess::spawn_binary(bootstrap, "auth-signup", &api, &env),
        Some(qemu) => {
            // qemu-aarch64 runs the arm64 binary with the same environment a Lambda would give it; its
            // glibc and loader come from Debian's libc6-arm64-cross (QEMU_LD_PREFIX to override).
            let sysroot = std::env::var("QEMU_LD_PREFIX")
                .unwrap_or_else(|_| "/usr/aarch64-linux-gnu".to_owned());
            assert!(
                Path::new(&sysroot)
                    .join("lib/ld-linux-aarch64.so.1")
                    .exists(),
                "no arm64 sysroot at {sysroot}: apt-get install libc6-arm64-cross"
            );
            let wrapper = bootstrap.with_extension("sh");
            std::fs::write(
                &wrapper,
                format!(
                    "#!/bin/sh\nexec {qemu} -L {sysroot} {}\n",
                    bootstrap.display()
                ),
            )
            .unwrap();
            set_executable(&wrapper);
            LambdaProcess::spawn_binary(&wrapper, "auth-signup", &api, &env)
        }
    };
    let event = json!({"version": "2.0", "routeKey": "POST /auth/signup", "rawPath": "/auth/signup", "headers": {},
        "requestContext": {"http": {"method": "POST", "path": "/auth/signup"}, "timeEpoch": 0}, "isBase64Encoded": false});
    let mut process = process;
    let resp = tokio::select! {
        r = api.invoke(event) => r.expect("the packaged function answered"),
        status = process.child.wait() => {
            let logs = process.stop().await;
            panic!("{} exited before answering ({status:?}):\n{logs}", bootstrap.display());
        }
    };
    let logs = process.stop().await;
    assert!(!logs.contains("panicked"), "{logs}");
    resp
}

fn set_executable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test]
async fn packaged_zips_start_on_their_architecture() {
    let dist = dist().await;
    let dir = tempfile::tempdir().unwrap();
    for (arch, runner) in [("x86_64", None), ("arm64", Some("qemu-aarch64-static"))] {
        let zip = std::fs::read(dist.join(format!("notes-lambda-{arch}.zip"))).unwrap();
        let sha =
            std::fs::read_to_string(dist.join(format!("notes-lambda-{arch}.zip.sha256"))).unwrap();
        assert!(
            sha.starts_with(&notesctl::commands::package::sha256_hex(&zip)),
            "{sha}"
        );
        let bootstrap = dir.path().join(format!("bootstrap-{arch}"));
        unzip_bootstrap(&dist.join(format!("notes-lambda-{arch}.zip")), &bootstrap);
        set_executable(&bootstrap);
        let facts =
            notesctl::commands::package::inspect_elf(&std::fs::read(&bootstrap).unwrap()).unwrap();
        match arch {
            // Static musl: no loader, no libraries, no glibc.
            "x86_64" => assert_eq!(
                (
                    facts.interpreter.as_deref(),
                    facts.needed.len(),
                    facts.max_glibc()
                ),
                (None, 0, None),
                "{facts:?}"
            ),
            // Against glibc 2.34 with zig: AL2023's loader and libraries, nothing newer.
            _ => {
                assert_eq!(
                    facts.interpreter.as_deref(),
                    Some("/lib/ld-linux-aarch64.so.1"),
                    "{facts:?}"
                );
                assert!(facts.needed.iter().any(|l| l == "libc.so.6"), "{facts:?}");
                assert!(facts.max_glibc().is_some_and(|v| v <= (2, 34)), "{facts:?}");
            }
        }
        // Packaging the same binary again gives the same bytes: the same sha256, the same key.
        let again = dir.path().join(format!("again-{arch}"));
        let run = Cli::new()
            .args(["package", "--arch", arch, "--binary"])
            .args([
                bootstrap.to_str().unwrap(),
                "--out",
                again.to_str().unwrap(),
            ])
            .run()
            .await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(
            std::fs::read(again.join(format!("notes-lambda-{arch}.zip"))).unwrap(),
            zip,
            "{arch}: a second packaging of the same binary differs"
        );
        let resp = first_response(&bootstrap, runner).await;
        assert_eq!(resp["statusCode"], 400, "{arch}: {resp}");
        let body: Value = serde_json::from_str(resp["body"].as_str().unwrap()).unwrap();
        assert!(
            body["message"].as_str().unwrap().contains("required"),
            "{arch}: {body}"
        );
    }
}

/// Reproducible end to end: `notesctl package` run again in a fresh, empty target directory at another
/// path (so no cached artefact and no build path can leak into the binary) gives the zip the other
/// tests run, byte for byte. x86_64 only: it compiles the release binary once more (about six
/// minutes on 2 cores); the arm64 build goes through the same steps with zig as the linker.
#[tokio::test]
async fn the_x86_64_zip_is_the_same_when_built_in_a_fresh_target_directory() {
    let dist = dist().await;
    let fresh = tempfile::tempdir().unwrap();
    let out = fresh.path().join("dist");
    let run = Cli::new()
        .args(["package", "--arch", "x86_64", "--out"])
        .args([out.to_str().unwrap(), "--workspace"])
        .args([notesctl_tests::workspace_root().to_str().unwrap()])
        .env(
            "CARGO_TARGET_DIR",
            fresh.path().join("target").to_str().unwrap(),
        )
        .run()
        .await;
    assert_eq!(run.code, 0, "packaging failed:\n{}", run.stderr);
    let sha = |dir: &Path| {
        notesctl::commands::package::sha256_hex(
            &std::fs::read(dir.join("notes-lambda-x86_64.zip")).unwrap(),
        )
    };
    assert_eq!(
        sha(&out),
        sha(&dist),
        "notes-lambda-x86_64.zip differs when built in {} from the one in {} (if that one comes from \
         another commit, package again: scripts/test.sh does)",
        fresh.path().display(),
        dist.display()
    );
}

/// The newcomer's next step after `scripts/test.sh`: `package --arch arm64` with zig and
/// cargo-zigbuild only in the project's `.venv` (where test.sh put them) and not on `PATH`. It finds
/// them there and builds (from test.sh's release build, so quickly): the zip holds an aarch64
/// `bootstrap` (that such a zip starts under qemu is `packaged_zips_start_on_their_architecture`'s).
#[tokio::test]
async fn package_for_arm64_finds_zig_in_the_projects_venv() {
    let root = notesctl_tests::workspace_root();
    let venv = root.join(".venv/bin");
    assert!(
        venv.join("cargo-zigbuild").is_file(),
        "scripts/test.sh installs cargo-zigbuild into .venv"
    );
    // PATH as a newcomer's shell has it: no .venv, no zig.
    let path: Vec<PathBuf> = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .filter(|d| {
            !d.starts_with(&venv) && !d.join("zig").is_file() && !d.join("cargo-zigbuild").is_file()
        })
        .collect();
    let path = std::env::join_paths(path).unwrap();
    let out = tempfile::tempdir().unwrap();
    let run = Cli::new()
        .args([
            "package",
            "--arch",
            "arm64",
            "--out",
            out.path().to_str().unwrap(),
        ])
        .args(["--workspace", root.to_str().unwrap()])
        .env("PATH", path.to_str().unwrap())
        .env_remove("CARGO_ZIGBUILD_ZIG_PATH")
        .run()
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let zip = out.path().join("notes-lambda-arm64.zip");
    let bootstrap = out.path().join("bootstrap");
    unzip_bootstrap(&zip, &bootstrap);
    let elf = std::fs::read(&bootstrap).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF");
    assert_eq!(u16::from_le_bytes([elf[18], elf[19]]), 183, "EM_AARCH64");
}
