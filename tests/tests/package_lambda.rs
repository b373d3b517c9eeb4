//! The zips `notesctl package` builds start the way Lambda starts them: `bootstrap` unpacked and run
//! against a local Runtime API — natively for x86_64, under qemu-aarch64 for arm64.
//!
//! Building both is slow (release, cross), so scripts/test.sh packages once before the tests and
//! points NOTESCTL_DIST at the result; without it, this test packages into its own target folder.

use std::io::Read;
use std::path::{Path, PathBuf};

use notesctl_tests::cli::Cli;
use notesctl_tests::lambda::{LambdaProcess, RuntimeApi};
use serde_json::{Value, json};

/// `bootstrap` out of a Lambda zip (one deflated entry, as `package` writes it).
fn unzip_bootstrap(zip: &[u8]) -> Vec<u8> {
    assert_eq!(&zip[..4], b"PK\x03\x04", "a zip");
    let name_len = u16::from_le_bytes([zip[26], zip[27]]) as usize;
    let extra = u16::from_le_bytes([zip[28], zip[29]]) as usize;
    assert_eq!(&zip[30..30 + name_len], b"bootstrap");
    let compressed = u32::from_le_bytes(zip[18..22].try_into().unwrap()) as usize;
    let start = 30 + name_len + extra;
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(&zip[start..start + compressed])
        .read_to_end(&mut out)
        .unwrap();
    out
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
        std::fs::write(&bootstrap, unzip_bootstrap(&zip)).unwrap();
        set_executable(&bootstrap);
        let facts =
            notesctl::commands::package::inspect_elf(&std::fs::read(&bootstrap).unwrap()).unwrap();
        assert!(
            facts.max_glibc.is_none_or(|v| v <= (2, 34)),
            "{arch}: {facts:?}"
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
