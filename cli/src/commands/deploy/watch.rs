//! `deploy --hotswap --watch`: the inner loop. It packages and hotswaps once, then again each time
//! the files under `--watch-dir` (the handlers' sources) change — after they have been quiet for a
//! moment, so one save of many files (or an editor's write-rename) is one rebuild. A build that fails
//! is reported and the watch goes on: fix and save again. Ctrl-C stops it. Each round is one result
//! (a JSON line with `--output json`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::{DeployArgs, DeployReport};
use crate::commands::package::{self, PackageArgs};
use crate::context::{Context, interactive};
use crate::output::{Exit, Streamed};

/// How often the folder is looked at.
const POLL: Duration = Duration::from_millis(300);
/// How long it must stay unchanged before a rebuild starts.
const QUIET: Duration = Duration::from_millis(500);

/// Every file under a folder with its size and modification time; `target/` and hidden entries
/// are left out (builds write there).
pub type Snapshot = BTreeMap<PathBuf, (u64, Option<SystemTime>)>;

pub fn snapshot(root: &Path) -> Snapshot {
    let mut out = Snapshot::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name == "target" {
                continue;
            }
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                dirs.push(entry.path());
            } else {
                out.insert(entry.path(), (meta.len(), meta.modified().ok()));
            }
        }
    }
    out
}

/// The files added, removed or modified from `before` to `after`.
pub fn changes(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    let mut out: Vec<String> = after
        .iter()
        .filter(|(path, state)| before.get(*path) != Some(state))
        .map(|(path, _)| path.display().to_string())
        .collect();
    out.extend(
        before
            .keys()
            .filter(|path| !after.contains_key(*path))
            .map(|path| path.display().to_string()),
    );
    out.sort();
    out
}

/// Waits until the files under `root` differ from `seen` and then stay unchanged for `quiet`;
/// what changed, with `seen` brought up to date.
pub async fn next_change(
    root: &Path,
    seen: &mut Snapshot,
    poll: Duration,
    quiet: Duration,
) -> Vec<String> {
    loop {
        tokio::time::sleep(poll).await;
        let mut now = snapshot(root);
        if now == *seen {
            continue;
        }
        loop {
            tokio::time::sleep(quiet).await;
            let later = snapshot(root);
            if later == now {
                break;
            }
            now = later;
        }
        let changed = changes(seen, &now);
        *seen = now;
        if !changed.is_empty() {
            return changed;
        }
    }
}

/// One round: what changed, the build, the hotswap.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Round {
    /// The files that changed (empty for the first round).
    pub changed: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<package::PackageReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<DeployReport>,
    /// Why this round stopped short (a build that failed); the watch goes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    pub seconds: f64,
}

impl fmt::Display for Round {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.changed.as_slice() {
            [] => writeln!(f, "watch: first round")?,
            [one] => writeln!(f, "watch: {one} changed")?,
            [first, rest @ ..] => writeln!(f, "watch: {first} and {} more changed", rest.len())?,
        }
        if let Some(d) = &self.deploy {
            writeln!(f, "{}", d.to_string().trim_end())?;
        }
        if let Some(p) = &self.problem {
            writeln!(f, "{p}")?;
        }
        write!(
            f,
            "watch: round took {:.1} s; waiting for changes (Ctrl-C stops)",
            self.seconds
        )
    }
}

/// Packages the zip `args` deploys and hotswaps it.
async fn round(ctx: &Context, args: &DeployArgs, changed: Vec<String>) -> Round {
    let started = std::time::Instant::now();
    let mut out = Round {
        changed,
        package: None,
        deploy: None,
        problem: None,
        seconds: 0.0,
    };
    let build = PackageArgs {
        arches: vec![args.inputs.arch],
        out: args.inputs.artifacts.clone(),
        binary: None,
        workspace: PathBuf::from("."),
    };
    match package::run(ctx, build).await {
        Ok(p) => out.package = Some(p),
        Err(e) => {
            out.problem = Some(format!(
                "the build failed: {e:#}. Nothing was deployed; fix it and save again"
            ))
        }
    }
    if out.package.is_some() {
        match super::run(ctx, args.clone()).await {
            Ok(d) => out.deploy = Some(d),
            Err(e) => out.problem = Some(format!("the hotswap failed: {e:#}; save again to retry")),
        }
    }
    out.seconds = started.elapsed().as_secs_f64();
    out
}

pub async fn run(ctx: &Context, mut args: DeployArgs) -> anyhow::Result<Streamed> {
    if !args.watch_dir.is_dir() {
        anyhow::bail!(
            "--watch-dir {}: no such folder (run from the repository root, or name the handlers' folder)",
            args.watch_dir.display()
        );
    }
    if !args.yes {
        if !interactive() {
            anyhow::bail!(
                "refusing to watch without confirmation: pass --yes (no terminal to ask on)"
            );
        }
        crate::context::confirm(
            &format!(
                "hotswap {} whenever {} changes",
                ctx.stage(),
                args.watch_dir.display()
            ),
            "nothing changed",
        )
        .await?;
        args.yes = true;
    }
    let lines = ctx.lines();
    let mut seen = snapshot(&args.watch_dir);
    let mut changed = Vec::new();
    // One listener for the whole watch: once SIGINT is handled, one that comes while nobody listens
    // is lost — a Ctrl-C during a round (a build takes a while) went unheard, and the watch went on.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| anyhow::anyhow!("listening for Ctrl-C: {e}"))?;
    loop {
        let done = tokio::select! {
            done = round(ctx, &args, changed) => done,
            _ = interrupt.recv() => return Ok(Streamed(Exit::Ok)),
        };
        if !lines.write(&done) {
            return Ok(Streamed(Exit::Ok));
        }
        changed = tokio::select! {
            c = next_change(&args.watch_dir, &mut seen, POLL, QUIET) => c,
            _ = interrupt.recv() => return Ok(Streamed(Exit::Ok)),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A burst of saves is one change, reported once it has been quiet; nothing happens while the
    /// folder is left alone, and writes under `target/` or hidden folders are not changes.
    #[tokio::test]
    async fn a_burst_of_saves_is_one_change_once_it_is_quiet() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::create_dir_all(root.join("target")).unwrap();
        std::fs::write(root.join("src/lib.rs"), "1").unwrap();
        let mut seen = snapshot(&root);
        let (poll, quiet) = (Duration::from_millis(10), Duration::from_millis(150));

        let idle = tokio::time::timeout(
            Duration::from_millis(300),
            next_change(&root, &mut seen.clone(), poll, quiet),
        )
        .await;
        assert!(idle.is_err(), "no change, no round");

        let writer = {
            let root = root.clone();
            tokio::spawn(async move {
                for i in 0..4 {
                    std::fs::write(root.join("src/lib.rs"), format!("version {i}")).unwrap();
                    std::fs::write(root.join("target/out.o"), format!("{i}")).unwrap();
                    tokio::time::sleep(Duration::from_millis(40)).await;
                }
                std::fs::write(root.join("src/new.rs"), "new").unwrap();
            })
        };
        let started = std::time::Instant::now();
        let changed = next_change(&root, &mut seen, poll, quiet).await;
        writer.await.unwrap();
        assert_eq!(
            changed,
            [
                root.join("src/lib.rs").display().to_string(),
                root.join("src/new.rs").display().to_string()
            ],
            "one change for the whole burst, target/ left out"
        );
        assert!(started.elapsed() >= Duration::from_millis(160 + 150));

        std::fs::write(root.join(".hidden"), "x").unwrap();
        std::fs::remove_file(root.join("src/new.rs")).unwrap();
        let removed = next_change(&root, &mut seen, poll, quiet).await;
        assert_eq!(removed, [root.join("src/new.rs").display().to_string()]);
    }
}
