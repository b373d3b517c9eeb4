//! The binary's own contract: help, version, usage errors and their exit codes.

use std::process::Command;

fn notesctl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_notesctl"))
        .args(args)
        .env_remove("NOTESCTL_OUTPUT")
        .output()
        .unwrap()
}

/// `notesctl ARGS` on a machine with no AWS configuration at all: no region, profile, credentials or
/// config files (HOME is an empty folder), and instance metadata at a closed loopback port (the SDK's
/// chains try it, fail at once and warn; nothing leaves the machine).
fn bare(args: &[&str], home: &std::path::Path) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_notesctl"));
    cmd.args(args);
    for var in [
        "NOTESCTL_OUTPUT",
        "NOTESCTL_LOG",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_ENDPOINT_URL",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("HOME", home)
        .env("AWS_CONFIG_FILE", home.join("config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("credentials"))
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9")
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

/// A completion script for every shell clap supports: each names every command, and the shells
/// `scripts/test.sh` installs (bash, zsh, fish) read it without a syntax error.
#[test]
fn completions_for_every_shell() {
    use clap::ValueEnum;
    let commands: Vec<String> = notesctl::reference::command()
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .collect();
    for shell in clap_complete::Shell::value_variants() {
        let name = shell.to_possible_value().unwrap().get_name().to_owned();
        let out = notesctl(&["completions", &name]);
        assert!(out.status.success(), "{name}");
        let script = String::from_utf8_lossy(&out.stdout).into_owned();
        for cmd in &commands {
            assert!(script.contains(cmd.as_str()), "{name}: no {cmd}");
        }
        let check: Option<(&str, &[&str])> = match name.as_str() {
            "bash" => Some(("bash", &["-n"])),
            "zsh" => Some(("zsh", &["-n"])),
            "fish" => Some(("fish", &["--no-execute"])),
            // Not packaged for Debian: checked for content above.
            _ => None,
        };
        if let Some((program, args)) = check {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join(format!("notesctl.{name}"));
            std::fs::write(&file, &script).unwrap();
            let status = Command::new(program)
                .args(args)
                .arg(&file)
                .output()
                .unwrap_or_else(|e| {
                    panic!("{program} is needed to check its completions ({e}): scripts/test.sh installs it")
                });
            assert!(
                status.status.success(),
                "{program} rejects the script: {}",
                String::from_utf8_lossy(&status.stderr)
            );
        }
    }
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
    // Something answers there (a dev that is not this folder's): the token is what is missing.
    let listening = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listening.local_addr().unwrap());
    let out = Command::new(env!("CARGO_BIN_EXE_notesctl"))
        .args(["queue-depth", "--local", &url])
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

/// `package` checks every architecture's tools before building anything, and names each missing one
/// with the way to install it (instead of zig's own "Failed to find zig" after an x86_64 build).
#[test]
fn package_names_missing_arm64_tools_before_building() {
    use std::os::unix::fs::PermissionsExt;
    let bin = tempfile::tempdir().unwrap();
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_notesctl"))
            .args(["package", "--arch", "x86_64", "--arch", "arm64"])
            .env("PATH", bin.path())
            .env_remove("CARGO_ZIGBUILD_ZIG_PATH")
            .env_remove("NOTESCTL_OUTPUT")
            .output()
            .unwrap()
    };
    let out = run();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("building for arm64 needs cargo-zigbuild")
            && err.contains("and zig")
            && err.contains("pip install cargo-zigbuild")
            && err.contains("cargo install cargo-zigbuild")
            && err.contains("pip install ziglang"),
        "{err}"
    );
    assert!(
        !err.contains("building notes-lambda"),
        "nothing built: {err}"
    );

    let zigbuild = bin.path().join("cargo-zigbuild");
    std::fs::write(&zigbuild, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&zigbuild, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = run();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("building for arm64 needs zig")
            && err.contains("pip install ziglang")
            && !err.contains("cargo install"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

/// A command's own options come first; the options every command takes are listed apart, under
/// their own heading, and the main commands end their help with examples.
#[test]
fn help_keeps_global_options_apart_and_shows_examples() {
    let out = notesctl(&["deploy", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let (own, rest) = help
        .split_once("Global options:")
        .unwrap_or_else(|| panic!("no Global options heading:\n{help}"));
    for global in ["--stage", "--output", "--verbose", "--quiet", "--region"] {
        assert!(
            !own.contains(global),
            "{global} among deploy's own options:\n{help}"
        );
        assert!(
            rest.contains(global),
            "{global} not under Global options:\n{help}"
        );
    }
    for mine in ["--artifacts", "--arch", "--preview"] {
        assert!(own.contains(mine), "{mine}:\n{help}");
    }
    for cmd in [
        "package",
        "validate",
        "deploy",
        "status",
        "destroy",
        "dev",
        "queue-depth",
        "redrive-dlq",
        "tail",
        "alarms",
        "sync-frontend",
        "invalidate",
    ] {
        let out = notesctl(&[cmd, "--help"]);
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains("Examples:\n  notesctl "),
            "{cmd} --help has no examples:\n{help}"
        );
    }
}

#[test]
fn help_is_a_command_with_its_own_help() {
    let out = notesctl(&["help", "--help"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("Usage: notesctl help [OPTIONS] [COMMAND]"),
        "{help}"
    );
    let out = notesctl(&["help", "redrive-dlq"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("Usage: notesctl redrive-dlq"), "{help}");
    assert!(
        help.contains("--dry-run") && help.contains("Examples:"),
        "{help}"
    );
    let out = notesctl(&["help"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Commands:"));
    let out = notesctl(&["help", "deplyo"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("there is no command \"deplyo\""));
}

/// The AWS SDK's own warnings (its region and credential chains log each source they tried) stay
/// off stderr unless -v; the one that matters is our own message.
#[test]
fn no_sdk_noise_before_our_own_message() {
    let home = tempfile::tempdir().unwrap();
    let out = bare(&["queue-depth"], home.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        "error: no AWS region is configured: pass --region, or set AWS_REGION or a region in your profile"
    );
}

/// No credentials anywhere: the message says so, and what to do, not "could not reach" an endpoint
/// nothing was sent to.
#[test]
fn missing_credentials_are_named_as_such() {
    let home = tempfile::tempdir().unwrap();
    let out = bare(
        &[
            "queue-depth",
            "--region",
            "eu-west-2",
            "--endpoint-url",
            "http://127.0.0.1:9",
        ],
        home.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no AWS credentials were found (nothing was sent)")
            && err.contains("aws sso login"),
        "{err}"
    );
    assert!(!err.contains("could not reach"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

/// Errors in the order a person makes mistakes: a missing folder is named before anything about
/// region, credentials or stacks is looked at (here there is none of them).
#[test]
fn sync_frontend_looks_at_the_folder_first() {
    let home = tempfile::tempdir().unwrap();
    let out = bare(
        &["sync-frontend", "/nonexistent/site", "--stage", "dev"],
        home.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/site") && err.contains("pass the folder of the built frontend"),
        "{err}"
    );
    assert!(
        !err.contains("region") && !err.contains("credentials"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}
