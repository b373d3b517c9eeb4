//! `notesctl package`: builds `notes-lambda` for Lambda's `provided.al2023` runtime and writes a
//! reproducible zip — one file, `bootstrap`, mode 0755, fixed timestamps — with its sha256. It refuses
//! a zip that could not start there: a binary for the wrong machine, or one that needs a newer glibc
//! than AL2023's 2.34.
//!
//! x86_64 builds a static musl binary (`x86_64-unknown-linux-musl`); arm64 links against glibc 2.34
//! with zig (`cargo zigbuild --target aarch64-unknown-linux-gnu.2.34`).

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::{Deserialize, Serialize};

use crate::context::Context;
pub use crate::lambda::{Arch, sha256_hex};
use crate::output::Report;

/// AL2023's glibc: the newest symbol version a Lambda binary may require.
pub const MAX_GLIBC: (u32, u32) = (2, 34);

#[derive(Debug, Clone, clap::Args)]
pub struct PackageArgs {
    /// Architectures to build (repeatable).
    #[arg(long = "arch", value_enum, default_values_t = [Arch::Arm64])]
    pub arches: Vec<Arch>,
    /// Where the zips go.
    #[arg(long, default_value = "dist")]
    pub out: PathBuf,
    /// Package this already-built binary instead of building (its machine and glibc are still checked).
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// The workspace to build (default: the current directory).
    #[arg(long, default_value = ".")]
    pub workspace: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Artifact {
    pub path: String,
    pub arch: Arch,
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PackageReport {
    pub artifacts: Vec<Artifact>,
}

impl Report for PackageReport {}

impl fmt::Display for PackageReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.artifacts.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{}  {}  {} ({} bytes)",
                a.sha256,
                a.arch.as_str(),
                a.path,
                a.bytes
            )?;
        }
        Ok(())
    }
}

/// What an ELF binary needs: its machine and the newest `GLIBC_x.y` it references (none if static).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfFacts {
    pub machine: u16,
    pub max_glibc: Option<(u32, u32)>,
}

pub fn inspect_elf(bytes: &[u8]) -> Result<ElfFacts, String> {
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" {
        return Err("not an ELF executable".into());
    }
    if bytes[5] != 1 {
        return Err("not a little-endian ELF file".into());
    }
    let machine = u16::from_le_bytes([bytes[18], bytes[19]]);
    let mut max: Option<(u32, u32)> = None;
    let needle = b"GLIBC_";
    let mut i = 0;
    while let Some(pos) = bytes[i..].windows(needle.len()).position(|w| w == needle) {
        let start = i + pos + needle.len();
        let end = bytes[start..]
            .iter()
            .position(|b| !(b.is_ascii_digit() || *b == b'.'))
            .map_or(bytes.len(), |e| start + e);
        let version = std::str::from_utf8(&bytes[start..end]).unwrap_or("");
        let mut parts = version.split('.').filter_map(|p| p.parse::<u32>().ok());
        if let (Some(major), Some(minor)) = (parts.next(), parts.next()) {
            max = Some(max.map_or((major, minor), |m| m.max((major, minor))));
        }
        i = end.max(start);
    }
    Ok(ElfFacts {
        machine,
        max_glibc: max,
    })
}

/// Refuses a binary Lambda's `provided.al2023` on `arch` could not run.
pub fn check_binary(bytes: &[u8], arch: Arch) -> Result<ElfFacts, String> {
    let facts = inspect_elf(bytes)?;
    if facts.machine != arch.elf_machine() {
        let got = match facts.machine {
            62 => "x86_64",
            183 => "arm64",
            _ => "another machine",
        };
        return Err(format!(
            "the binary is for {got}, not {}: build it for {}",
            arch.as_str(),
            arch.rust_target()
        ));
    }
    if let Some(v) = facts.max_glibc
        && v > MAX_GLIBC
    {
        return Err(format!(
            "the binary needs GLIBC_{}.{}, newer than AL2023's {}.{}: build it static (musl) or against glibc {}.{} (cargo zigbuild --target {}.2.34)",
            v.0,
            v.1,
            MAX_GLIBC.0,
            MAX_GLIBC.1,
            MAX_GLIBC.0,
            MAX_GLIBC.1,
            arch.rust_target()
        ));
    }
    Ok(facts)
}

/// A zip holding one file, `bootstrap` (0755), with fixed timestamps: the same binary always gives
/// the same bytes, so the same sha256 and the same content-addressed key.
pub fn lambda_zip(binary: &[u8]) -> Vec<u8> {
    let mut deflated = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    deflated.write_all(binary).expect("writing to memory");
    let data = deflated.finish().expect("writing to memory");
    let crc = crc32fast::hash(binary);
    let name = b"bootstrap";
    // 1980-01-01 00:00:00 in DOS format.
    let (time, date): (u16, u16) = (0, (1 << 5) | 1);
    let mut z = Vec::with_capacity(data.len() + 128);
    let le16 = |z: &mut Vec<u8>, v: u16| z.extend_from_slice(&v.to_le_bytes());
    let le32 = |z: &mut Vec<u8>, v: u32| z.extend_from_slice(&v.to_le_bytes());
    // The fields the local header and the central directory entry share, in the same order: version
    // needed (2.0), flags, method (deflate), time, date, CRC-32, sizes, name length.
    let shared = |z: &mut Vec<u8>| {
        for v in [20, 0, 8, time, date] {
            le16(z, v);
        }
        le32(z, crc);
        le32(z, data.len() as u32);
        le32(z, binary.len() as u32);
        le16(z, name.len() as u16);
    };
    // Local file header.
    le32(&mut z, 0x0403_4b50);
    shared(&mut z);
    le16(&mut z, 0);
    z.extend_from_slice(name);
    z.extend_from_slice(&data);
    let central = z.len() as u32;
    // Central directory: made by Unix (3), version 2.0, mode 0100755 in the external attributes.
    le32(&mut z, 0x0201_4b50);
    le16(&mut z, (3 << 8) | 20);
    shared(&mut z);
    le16(&mut z, 0);
    le16(&mut z, 0);
    le16(&mut z, 0);
    le16(&mut z, 0);
    le32(&mut z, 0o100_755 << 16);
    le32(&mut z, 0);
    z.extend_from_slice(name);
    let central_len = z.len() as u32 - central;
    // End of central directory.
    le32(&mut z, 0x0605_4b50);
    le16(&mut z, 0);
    le16(&mut z, 0);
    le16(&mut z, 1);
    le16(&mut z, 1);
    le32(&mut z, central_len);
    le32(&mut z, central);
    le16(&mut z, 0);
    z
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// Builds `notes-lambda` for `arch` in release; the binary's path.
async fn build(workspace: &Path, arch: Arch) -> anyhow::Result<PathBuf> {
    let target = arch.rust_target();
    let installed = tokio::process::Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .await;
    if let Ok(out) = installed
        && out.status.success()
        && !String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.trim() == target)
    {
        anyhow::bail!(
            "the Rust target {target} is not installed: run `rustup target add {target}`"
        );
    }
    let mut cmd = tokio::process::Command::new("cargo");
    let release = [
        "--release",
        "--locked",
        "-p",
        "notes-handlers",
        "--bin",
        "notes-lambda",
    ];
    match arch {
        Arch::X86_64 => {
            cmd.arg("build").args(release).args(["--target", target]);
            if !which("musl-gcc") {
                // A static musl binary needs no musl-gcc for this crate graph: gcc assembles the C bits.
                cmd.env("CC_x86_64_unknown_linux_musl", "gcc");
            }
        }
        Arch::Arm64 => {
            if !which("cargo-zigbuild") {
                anyhow::bail!(
                    "arm64 builds link against glibc 2.34 with zig: run `cargo install cargo-zigbuild` and `pip install ziglang` (or build elsewhere and pass --binary)"
                );
            }
            cmd.arg("zigbuild")
                .args(release)
                .args(["--target", &format!("{target}.2.34")]);
        }
    }
    cmd.current_dir(workspace)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    let status = cmd
        .status()
        .await
        .map_err(|e| anyhow::anyhow!("running cargo: {e}"))?;
    if !status.success() {
        anyhow::bail!(
            "building notes-lambda for {target} failed (see the compiler's output above)"
        );
    }
    let meta = tokio::process::Command::new("cargo")
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(workspace)
        .output()
        .await?;
    if !meta.status.success() {
        anyhow::bail!(
            "`cargo metadata` failed in {}: {}",
            workspace.display(),
            String::from_utf8_lossy(&meta.stderr).trim()
        );
    }
    let meta: serde_json::Value = serde_json::from_slice(&meta.stdout)?;
    let target_dir = meta["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    Ok(target_dir.join(target).join("release").join("notes-lambda"))
}

/// Checks a built binary and writes `notes-lambda-{arch}.zip` and its `.sha256` into `out`.
pub fn write_artifact(binary: &[u8], arch: Arch, out: &Path) -> anyhow::Result<Artifact> {
    check_binary(binary, arch).map_err(|e| anyhow::anyhow!("refusing to package: {e}"))?;
    let zip = lambda_zip(binary);
    let sha = sha256_hex(&zip);
    std::fs::create_dir_all(out).map_err(|e| anyhow::anyhow!("creating {}: {e}", out.display()))?;
    let path = crate::lambda::zip_path(out, arch);
    std::fs::write(&path, &zip)?;
    std::fs::write(
        out.join(format!("notes-lambda-{}.zip.sha256", arch.as_str())),
        format!("{sha}  notes-lambda-{}.zip\n", arch.as_str()),
    )?;
    Ok(Artifact {
        path: path.display().to_string(),
        arch,
        sha256: sha,
        bytes: zip.len() as u64,
    })
}

pub async fn run(ctx: &Context, args: PackageArgs) -> anyhow::Result<PackageReport> {
    if args.binary.is_some() && args.arches.len() != 1 {
        anyhow::bail!("--binary packages one binary: give exactly one --arch");
    }
    let mut artifacts = Vec::new();
    for &arch in &args.arches {
        let path = match &args.binary {
            Some(p) => p.clone(),
            None => {
                ctx.say(format!(
                    "building notes-lambda for {} ({})",
                    arch.as_str(),
                    arch.rust_target()
                ));
                build(&args.workspace, arch).await?
            }
        };
        let bytes =
            std::fs::read(&path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        artifacts.push(write_artifact(&bytes, arch, &args.out)?);
    }
    Ok(PackageReport { artifacts })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(machine: u16, extra: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[18..20].copy_from_slice(&machine.to_le_bytes());
        b.extend_from_slice(extra);
        b
    }

    #[test]
    fn machine_and_glibc_checks() {
        assert!(
            check_binary(&elf(62, b""), Arch::X86_64).is_ok(),
            "static x86_64"
        );
        assert!(check_binary(&elf(183, b"\0GLIBC_2.17\0GLIBC_2.34\0"), Arch::Arm64).is_ok());
        let e = check_binary(&elf(62, b"\0GLIBC_2.28\0GLIBC_2.35\0"), Arch::X86_64).unwrap_err();
        assert!(e.contains("GLIBC_2.35"), "{e}");
        let e = check_binary(&elf(62, b""), Arch::Arm64).unwrap_err();
        assert!(e.contains("for x86_64, not arm64"), "{e}");
        assert!(check_binary(b"#!/bin/sh\n", Arch::X86_64).is_err());
        assert_eq!(
            inspect_elf(&elf(183, b"GLIBC_2.3.4 GLIBC_2.10"))
                .unwrap()
                .max_glibc,
            Some((2, 10))
        );
    }

    #[test]
    fn zips_are_reproducible_and_readable() {
        let bin = elf(62, &vec![7u8; 10_000]);
        let a = lambda_zip(&bin);
        assert_eq!(a, lambda_zip(&bin), "same bytes in, same zip out");
        assert_eq!(&a[..4], b"PK\x03\x04");
        // The one entry is `bootstrap`, mode 0755, and inflates back to the binary.
        assert_eq!(&a[30..39], b"bootstrap");
        let compressed = u32::from_le_bytes(a[18..22].try_into().unwrap()) as usize;
        let mut inflated = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::DeflateDecoder::new(&a[39..39 + compressed]),
            &mut inflated,
        )
        .unwrap();
        assert_eq!(inflated, bin);
        let cd = 39 + compressed;
        assert_eq!(&a[cd..cd + 4], b"PK\x01\x02");
        let attrs = u32::from_le_bytes(a[cd + 38..cd + 42].try_into().unwrap());
        assert_eq!(attrs >> 16, 0o100_755);
    }
}
