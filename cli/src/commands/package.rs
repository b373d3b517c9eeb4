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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Artifact {
    pub path: String,
    pub arch: Arch,
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
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

/// The shared libraries `provided.al2023`'s base image ships that a Rust binary may link: glibc's
/// and the loader, and libgcc_s for unwinding. Anything else must be linked statically or shipped
/// in a layer.
pub const BASE_LIBRARIES: &[&str] = &[
    "libc.so.6",
    "libm.so.6",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "libutil.so.1",
    "libresolv.so.2",
    "libgcc_s.so.1",
    "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1",
];

/// What the dynamic loader will need to start an ELF binary, read from its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfFacts {
    pub machine: u16,
    /// `PT_INTERP`: the dynamic loader it names; none for a static binary.
    pub interpreter: Option<String>,
    /// `DT_NEEDED`: the shared libraries it loads.
    pub needed: Vec<String>,
    /// `.gnu.version_r`: each `GLIBC_x.y` it requires, with the library that must provide it.
    pub glibc: Vec<(String, (u32, u32))>,
}

impl ElfFacts {
    /// The newest `GLIBC_x.y` it requires (none for a static binary).
    pub fn max_glibc(&self) -> Option<(u32, u32)> {
        self.glibc.iter().map(|(_, v)| *v).max()
    }
}

/// `2.17` → (2, 17); `2.3.4` → (2, 3); `PRIVATE` → none.
fn glibc_version(v: &[u8]) -> Option<(u32, u32)> {
    let v = std::str::from_utf8(v).ok()?;
    let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??))
}

/// Reads the machine, the interpreter, the needed libraries and the required glibc versions from
/// the ELF headers and the dynamic and version sections — never from strings in the data.
pub fn inspect_elf(bytes: &[u8]) -> Result<ElfFacts, String> {
    use object::elf;
    use object::read::elf::{FileHeader, ProgramHeader};

    match object::FileKind::parse(bytes) {
        Ok(object::FileKind::Elf64) => {}
        Ok(object::FileKind::Elf32) => {
            return Err("a 32-bit ELF file: Lambda runs 64-bit binaries".into());
        }
        _ => return Err("not an ELF executable".into()),
    }
    let bad = |e: object::read::Error| format!("not a readable ELF executable ({e})");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let header = elf::FileHeader64::<object::Endianness>::parse(bytes).map_err(bad)?;
    let endian = header.endian().map_err(bad)?;
    let mut interpreter = None;
    for ph in header.program_headers(endian, bytes).map_err(bad)? {
        if let Some(path) = ph.interpreter(endian, bytes).map_err(bad)? {
            interpreter = Some(text(path));
        }
    }
    let sections = header.sections(endian, bytes).map_err(bad)?;
    let dynamic = sections.dynamic_table(endian, bytes).map_err(bad)?;
    let mut needed = Vec::new();
    for entry in &dynamic {
        if entry.tag == elf::DT_NEEDED {
            needed.push(text(dynamic.string(entry).map_err(bad)?));
        }
    }
    let mut glibc = Vec::new();
    if let Some((mut needs, link)) = sections.gnu_verneed(endian, bytes).map_err(bad)? {
        let strings = sections.strings(endian, bytes, link).map_err(bad)?;
        while let Some((need, mut versions)) = needs.next().map_err(bad)? {
            let library = text(need.file(endian, strings).map_err(bad)?);
            while let Some(version) = versions.next().map_err(bad)? {
                let name = version.name(endian, strings).map_err(bad)?;
                if let Some(v) = name.strip_prefix(b"GLIBC_").and_then(glibc_version) {
                    glibc.push((library.clone(), v));
                }
            }
        }
    }
    glibc.sort();
    glibc.dedup();
    Ok(ElfFacts {
        machine: header.e_machine(endian).0,
        interpreter,
        needed,
        glibc,
    })
}

/// Refuses a binary Lambda's `provided.al2023` on `arch` could not start: another machine, another
/// loader, a library the base image does not ship, or a glibc newer than its 2.34.
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
    let loader = match arch {
        Arch::X86_64 => "/lib64/ld-linux-x86-64.so.2",
        Arch::Arm64 => "/lib/ld-linux-aarch64.so.1",
    };
    if let Some(interpreter) = &facts.interpreter
        && interpreter != loader
    {
        return Err(format!(
            "the binary asks for the loader {interpreter}, which provided.al2023 does not have ({loader} is there): build it static (musl) or against glibc"
        ));
    }
    if let Some(missing) = facts
        .needed
        .iter()
        .find(|lib| !BASE_LIBRARIES.contains(&lib.as_str()))
    {
        return Err(format!(
            "the binary needs {missing}, which provided.al2023 does not ship: link it statically (for TLS, rustls rather than OpenSSL) or ship it in a layer"
        ));
    }
    if let Some(v) = facts.max_glibc()
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

/// A zip holding one file, `bootstrap` (0755), with a fixed timestamp and nothing else that varies:
/// the same binary always gives the same bytes, so the same sha256 and the same content-addressed
/// key.
pub fn lambda_zip(binary: &[u8]) -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(9))
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o755)
        .large_file(false);
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file("bootstrap", options)
        .and_then(|()| zip.write_all(binary).map_err(Into::into))
        .and_then(|()| zip.finish())
        .map(std::io::Cursor::into_inner)
        .expect("writing a zip to memory")
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// The project's own tool folder: `scripts/test.sh` installs zig (`ziglang`) and cargo-zigbuild into
/// `{workspace}/.venv`, so a newcomer who ran the tests can package for arm64 without installing them
/// again or changing `PATH`.
fn venv_bin(workspace: &Path) -> PathBuf {
    workspace.join(".venv").join("bin")
}

/// `PATH` with the project's `.venv/bin` first, when it holds cargo-zigbuild.
fn path_with_venv(workspace: &Path) -> Option<std::ffi::OsString> {
    let venv = venv_bin(workspace);
    if !venv.join("cargo-zigbuild").is_file() {
        return None;
    }
    let rest = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(std::iter::once(venv).chain(std::env::split_paths(&rest))).ok()
}

/// Whether `python` can import `ziglang` (cargo-zigbuild's zig from PyPI).
async fn imports_ziglang(python: &Path) -> bool {
    tokio::process::Command::new(python)
        .args(["-c", "import ziglang"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

/// Where cargo-zigbuild finds zig: `CARGO_ZIGBUILD_ZIG_PATH`, `zig` on PATH, Python's `ziglang` —
/// the project's `.venv` first.
async fn zig_found(workspace: &Path) -> bool {
    if std::env::var_os("CARGO_ZIGBUILD_ZIG_PATH").is_some_and(|p| !p.is_empty()) || which("zig") {
        return true;
    }
    let venv_python = venv_bin(workspace).join("python3");
    if venv_python.is_file() && imports_ziglang(&venv_python).await {
        return true;
    }
    for python in ["python3", "python"] {
        if which(python) && imports_ziglang(Path::new(python)).await {
            return true;
        }
    }
    false
}

/// What building for one architecture needs, as found on this machine.
#[derive(Debug, Clone, Copy)]
struct Tools {
    target_installed: bool,
    zigbuild: bool,
    zig: bool,
}

/// Every missing piece for `arch`, each with the step that brings it: all of them, so one message
/// says everything (not the Rust target first and zig on the next try).
fn missing(arch: Arch, tools: Tools) -> Vec<String> {
    let target = arch.rust_target();
    let mut out = Vec::new();
    if !tools.target_installed {
        out.push(format!(
            "the Rust target {target} (`rustup target add {target}`)"
        ));
    }
    if arch == Arch::Arm64 {
        if !tools.zigbuild {
            out.push("cargo-zigbuild (`pip install cargo-zigbuild`, a prebuilt wheel; or `cargo install cargo-zigbuild --locked`)".to_owned());
        }
        if !tools.zig {
            out.push("zig (`pip install ziglang`, or zig on PATH)".to_owned());
        }
    }
    out
}

/// What building for `arch` needs that this machine lacks, said before anything is built. Tools in
/// the project's `.venv` (where `scripts/test.sh` puts them) count.
async fn preflight(workspace: &Path, arch: Arch) -> anyhow::Result<()> {
    let target = arch.rust_target();
    let installed = tokio::process::Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .await;
    let target_installed = match installed {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.trim() == target),
        // No rustup (a distribution's Rust): cargo says it if the target is missing.
        _ => true,
    };
    let arm = arch == Arch::Arm64;
    let tools = Tools {
        target_installed,
        zigbuild: !arm
            || which("cargo-zigbuild")
            || venv_bin(workspace).join("cargo-zigbuild").is_file(),
        zig: !arm || zig_found(workspace).await,
    };
    let missing = missing(arch, tools);
    if missing.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "building for {} needs {} — or build elsewhere and pass --binary",
        arch.as_str(),
        missing.join(", and ")
    )
}

/// Builds `notes-lambda` for `arch` in release; the binary's path. On a terminal, cargo's lines
/// become one spinner line (what it compiles, how long it has run); its full output is shown if
/// the build fails. Elsewhere cargo writes to stderr as usual.
async fn build(ctx: &Context, workspace: &Path, arch: Arch) -> anyhow::Result<PathBuf> {
    use tokio::io::AsyncBufReadExt;
    let target = arch.rust_target();
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
            cmd.arg("zigbuild")
                .args(release)
                .args(["--target", &format!("{target}.2.34")]);
            // cargo finds `cargo-zigbuild`, and it finds zig (`python3 -m ziglang`), on PATH: the
            // project's .venv first, where scripts/test.sh installed both.
            if !which("cargo-zigbuild")
                && let Some(path) = path_with_venv(workspace)
            {
                cmd.env("PATH", path);
            }
        }
    }
    let spinner = ctx.spinner();
    cmd.current_dir(workspace)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(if spinner.is_some() {
            Stdio::piped()
        } else {
            Stdio::inherit()
        });
    let mut child = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("running cargo: {e}"))?;
    let mut seen = Vec::new();
    if let (Some(bar), Some(err)) = (&spinner, child.stderr.take()) {
        let started = std::time::Instant::now();
        let mut lines = tokio::io::BufReader::new(err).lines();
        let mut compiled = 0;
        while let Ok(Some(line)) = lines.next_line().await {
            let step = line.trim_start();
            if step.starts_with("Compiling") {
                compiled += 1;
            }
            if let Some(word) = step.split_whitespace().next()
                && word.chars().all(|c| c.is_ascii_alphabetic())
                && !step.starts_with("warning")
            {
                bar.set_message(format!(
                    "building notes-lambda for {} — {compiled} crates, {}s — {step}",
                    arch.as_str(),
                    started.elapsed().as_secs()
                ));
            }
            seen.push(line);
        }
    }
    let status = child
        .wait()
        .await
        .map_err(|e| anyhow::anyhow!("running cargo: {e}"))?;
    if let Some(bar) = spinner {
        bar.finish_and_clear();
    }
    if !status.success() {
        for line in &seen {
            eprintln!("{line}");
        }
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
    if args.binary.is_none() {
        // Every architecture's tools before any build: a missing zig should not wait for the
        // x86_64 build to finish.
        for &arch in &args.arches {
            preflight(&args.workspace, arch).await?;
        }
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
                build(ctx, &args.workspace, arch).await?
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
    use object::build::elf::{Builder, Dynamic, SectionData, VersionData, VersionNeed};
    use object::elf;

    /// What a test binary is made of.
    #[derive(Default)]
    struct Binary<'a> {
        interpreter: Option<&'a str>,
        needed: &'a [&'a str],
        /// (library, version) pairs for `.gnu.version_r`.
        versions: &'a [(&'a str, &'a str)],
        /// Bytes in a read-only data section.
        data: &'a [u8],
    }

    /// A 64-bit little-endian ELF executable for `machine`, as a linker would lay it out.
    fn elf(machine: u16, bin: Binary) -> Vec<u8> {
        let mut b = Builder::new(object::Endianness::Little, true);
        b.header.e_type = elf::ET_DYN;
        b.header.e_machine = elf::Machine(machine);
        b.header.e_phoff = 0x40;
        let s = b.sections.add();
        s.name = b".shstrtab"[..].into();
        s.sh_type = elf::SHT_STRTAB;
        s.data = SectionData::SectionString;
        let mut loaded = Vec::new();
        let interp = bin.interpreter.map(|path| {
            let s = b.sections.add();
            s.name = b".interp"[..].into();
            s.sh_type = elf::SHT_PROGBITS;
            s.sh_flags = elf::SHF_ALLOC;
            s.sh_addralign = 1;
            s.data = SectionData::Data(format!("{path}\0").into_bytes().into());
            s.id()
        });
        loaded.extend(interp);
        let s = b.sections.add();
        s.name = b".dynstr"[..].into();
        s.sh_type = elf::SHT_STRTAB;
        s.sh_flags = elf::SHF_ALLOC;
        s.sh_addralign = 1;
        s.data = SectionData::DynamicString;
        let dynstr = s.id();
        loaded.push(dynstr);
        if !bin.versions.is_empty() {
            // Versions are written only as far as symbols use them: one undefined symbol each,
            // as a linked program has.
            let s = b.sections.add();
            s.name = b".dynsym"[..].into();
            s.sh_type = elf::SHT_DYNSYM;
            s.sh_flags = elf::SHF_ALLOC;
            s.sh_addralign = 8;
            s.data = SectionData::DynamicSymbol;
            loaded.push(s.id());
            let s = b.sections.add();
            s.name = b".gnu.version"[..].into();
            s.sh_type = elf::SHT_GNU_VERSYM;
            s.sh_flags = elf::SHF_ALLOC;
            s.sh_addralign = 2;
            s.data = SectionData::GnuVersym;
            loaded.push(s.id());
            let s = b.sections.add();
            s.name = b".gnu.version_r"[..].into();
            s.sh_type = elf::SHT_GNU_VERNEED;
            s.sh_flags = elf::SHF_ALLOC;
            s.sh_addralign = 8;
            s.data = SectionData::GnuVerneed;
            loaded.push(s.id());
            for (library, version) in bin.versions {
                let file = b
                    .version_files
                    .iter()
                    .find(|f| f.name.as_slice() == library.as_bytes())
                    .map(|f| f.id())
                    .unwrap_or_else(|| b.version_files.add(library.as_bytes().into()));
                let id = b.versions.add(VersionData::Need(VersionNeed {
                    file,
                    name: version.as_bytes().into(),
                    flags: elf::VersionFlags(0),
                }));
                let sym = b.dynamic_symbols.add();
                sym.name = format!("symbol_of_{version}").into_bytes().into();
                sym.st_info = elf::SymbolInfo::new(elf::STB_GLOBAL, elf::STT_FUNC);
                sym.version = id;
            }
        }
        let mut entries: Vec<Dynamic> = bin
            .needed
            .iter()
            .map(|lib| Dynamic::String {
                tag: elf::DT_NEEDED,
                val: lib.as_bytes().into(),
            })
            .collect();
        entries.push(Dynamic::Auto {
            tag: elf::DT_STRTAB,
        });
        entries.push(Dynamic::Auto { tag: elf::DT_STRSZ });
        if !bin.versions.is_empty() {
            entries.push(Dynamic::Auto {
                tag: elf::DT_SYMTAB,
            });
            entries.push(Dynamic::Auto {
                tag: elf::DT_VERSYM,
            });
            entries.push(Dynamic::Auto {
                tag: elf::DT_VERNEED,
            });
            entries.push(Dynamic::Auto {
                tag: elf::DT_VERNEEDNUM,
            });
        }
        entries.push(Dynamic::Integer {
            tag: elf::DT_NULL,
            val: 0,
        });
        let s = b.sections.add();
        s.name = b".dynamic"[..].into();
        s.sh_type = elf::SHT_DYNAMIC;
        s.sh_flags = elf::SHF_ALLOC | elf::SHF_WRITE;
        s.sh_addralign = 8;
        s.sh_link_section = Some(dynstr);
        s.data = SectionData::Dynamic(entries);
        let dynamic = s.id();
        loaded.push(dynamic);
        let s = b.sections.add();
        s.name = b".rodata"[..].into();
        s.sh_type = elf::SHT_PROGBITS;
        s.sh_flags = elf::SHF_ALLOC;
        s.sh_addralign = 1;
        s.data = SectionData::Data(bin.data.to_vec().into());
        loaded.push(s.id());
        b.set_section_sizes();

        // One loadable segment from the first page holds every section; the interpreter and the
        // dynamic segments point into it.
        let load = b.segments.add();
        load.p_type = elf::PT_LOAD;
        load.p_flags = elf::PF_R;
        load.p_align = 0x1000;
        load.p_offset = 0x1000;
        load.p_vaddr = 0x1000;
        load.p_paddr = 0x1000;
        let load = load.id();
        for id in &loaded {
            let (segments, sections) = (&mut b.segments, &mut b.sections);
            segments.get_mut(load).append_section(sections.get_mut(*id));
        }
        for (p_type, id) in interp
            .map(|i| (elf::PT_INTERP, i))
            .into_iter()
            .chain([(elf::PT_DYNAMIC, dynamic)])
        {
            let seg = b.segments.add();
            seg.p_type = p_type;
            seg.p_flags = elf::PF_R;
            seg.p_align = 8;
            seg.append_section(b.sections.get_mut(id));
        }
        let mut out = Vec::new();
        b.write(&mut out).expect("a test ELF");
        out
    }

    const X86_LOADER: &str = "/lib64/ld-linux-x86-64.so.2";
    const ARM_LOADER: &str = "/lib/ld-linux-aarch64.so.1";

    fn glibc_binary(machine: u16, loader: &str, versions: &[(&str, &str)]) -> Vec<u8> {
        elf(
            machine,
            Binary {
                interpreter: Some(loader),
                needed: &["libc.so.6", "libgcc_s.so.1"],
                versions,
                ..Binary::default()
            },
        )
    }

    #[test]
    fn the_headers_are_read_not_the_bytes() {
        let bin = elf(
            183,
            Binary {
                interpreter: Some(ARM_LOADER),
                needed: &["libc.so.6"],
                versions: &[("libc.so.6", "GLIBC_2.17"), ("libc.so.6", "GLIBC_PRIVATE")],
                data: b"log line: built against GLIBC_2.99 headers\0",
            },
        );
        let facts = check_binary(&bin, Arch::Arm64).expect("needs only 2.17");
        assert_eq!(facts.interpreter.as_deref(), Some(ARM_LOADER));
        assert_eq!(facts.needed, ["libc.so.6"]);
        assert_eq!(facts.glibc, [("libc.so.6".to_owned(), (2, 17))]);
        assert_eq!(facts.max_glibc(), Some((2, 17)));
    }

    #[test]
    fn a_newer_glibc_than_al2023s_is_refused() {
        let ok = glibc_binary(
            62,
            X86_LOADER,
            &[("libc.so.6", "GLIBC_2.2.5"), ("libc.so.6", "GLIBC_2.34")],
        );
        assert_eq!(
            check_binary(&ok, Arch::X86_64).unwrap().max_glibc(),
            Some((2, 34))
        );
        let new = glibc_binary(
            62,
            X86_LOADER,
            &[("libc.so.6", "GLIBC_2.28"), ("libm.so.6", "GLIBC_2.35")],
        );
        let e = check_binary(&new, Arch::X86_64).unwrap_err();
        assert!(e.contains("GLIBC_2.35") && e.contains("2.34"), "{e}");
    }

    #[test]
    fn a_library_outside_the_base_image_is_refused_by_name() {
        let bin = elf(
            62,
            Binary {
                interpreter: Some(X86_LOADER),
                needed: &["libc.so.6", "libssl.so.3"],
                ..Binary::default()
            },
        );
        let e = check_binary(&bin, Arch::X86_64).unwrap_err();
        assert!(
            e.contains("libssl.so.3") && e.contains("does not ship"),
            "{e}"
        );
    }

    #[test]
    fn machine_loader_and_format_are_checked() {
        let x86 = glibc_binary(62, X86_LOADER, &[("libc.so.6", "GLIBC_2.17")]);
        let e = check_binary(&x86, Arch::Arm64).unwrap_err();
        assert!(e.contains("for x86_64, not arm64"), "{e}");
        let musl_loader = glibc_binary(62, "/lib/ld-musl-x86_64.so.1", &[]);
        let e = check_binary(&musl_loader, Arch::X86_64).unwrap_err();
        assert!(e.contains("/lib/ld-musl-x86_64.so.1"), "{e}");
        let static_bin = elf(62, Binary::default());
        let facts = check_binary(&static_bin, Arch::X86_64).expect("a static binary");
        assert_eq!(
            (facts.interpreter.as_deref(), facts.max_glibc()),
            (None, None)
        );
        assert!(check_binary(b"#!/bin/sh\n", Arch::X86_64).is_err());
    }

    #[test]
    fn zips_are_reproducible_and_hold_bootstrap_0755() {
        let bin = glibc_binary(62, X86_LOADER, &[("libc.so.6", "GLIBC_2.17")]);
        let a = lambda_zip(&bin);
        assert_eq!(a, lambda_zip(&bin), "same bytes in, same zip out");
        assert_ne!(a, lambda_zip(&[bin.as_slice(), b"x"].concat()));
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&a)).unwrap();
        assert_eq!(archive.len(), 1);
        let mut entry = archive.by_index(0).unwrap();
        assert_eq!(entry.name().unwrap(), "bootstrap");
        assert_eq!(entry.unix_mode(), Some(0o100_755));
        let mut inflated = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut inflated).unwrap();
        assert_eq!(inflated, bin);
    }

    /// Everything missing for an architecture is said at once, each with its step.
    #[test]
    fn every_missing_piece_is_named_at_once() {
        let none = Tools {
            target_installed: false,
            zigbuild: false,
            zig: false,
        };
        let all = missing(Arch::Arm64, none);
        assert_eq!(all.len(), 3, "{all:?}");
        assert!(all[0].contains("rustup target add aarch64-unknown-linux-gnu"));
        assert!(all[1].contains("pip install cargo-zigbuild"));
        assert!(all[2].contains("pip install ziglang"));
        assert_eq!(missing(Arch::X86_64, none).len(), 1, "x86_64 needs no zig");
        let ready = Tools {
            target_installed: true,
            zigbuild: true,
            zig: true,
        };
        assert!(missing(Arch::Arm64, ready).is_empty());
    }

    /// The project's .venv (where scripts/test.sh installs cargo-zigbuild) goes first on PATH.
    #[test]
    fn the_projects_venv_goes_first_on_path() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(path_with_venv(dir.path()), None, "no .venv: PATH unchanged");
        let bin = dir.path().join(".venv/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("cargo-zigbuild"), "").unwrap();
        let path = path_with_venv(dir.path()).expect("a PATH");
        assert_eq!(std::env::split_paths(&path).next(), Some(bin));
    }
}
