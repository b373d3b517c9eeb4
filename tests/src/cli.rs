//! `notesctl` run from outside, as scripts run it: a small builder, with `--output json` parsed back.

use std::process::Stdio;

use serde::de::DeserializeOwned;

#[derive(Default)]
pub struct Cli {
    args: Vec<String>,
    env: Vec<(String, String)>,
    removed: Vec<String>,
    dir: Option<std::path::PathBuf>,
}

#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout as one JSON document of the report type the command serialises.
    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not one {} ({e}):\n{}\nstderr:\n{}",
                std::any::type_name::<T>(),
                self.stdout,
                self.stderr
            )
        })
    }

    /// stdout as JSON Lines (a stream: `tail`, `queue-depth --watch`), one item per line.
    pub fn json_lines<T: DeserializeOwned>(&self) -> Vec<T> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| {
                    panic!(
                        "a line is not one {} ({e}): {l}\nstderr:\n{}",
                        std::any::type_name::<T>(),
                        self.stderr
                    )
                })
            })
            .collect()
    }
}

impl Cli {
    pub fn new() -> Cli {
        Cli::default()
    }

    pub fn args<I, S>(mut self, args: I) -> Cli
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Cli {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Without this variable of the test's own environment.
    pub fn env_remove(mut self, key: &str) -> Cli {
        self.removed.push(key.to_owned());
        self
    }

    /// Run in `dir` (for what `notesctl` reads from its working directory: `.notesctl/dev`, git).
    pub fn current_dir(mut self, dir: &std::path::Path) -> Cli {
        self.dir = Some(dir.to_path_buf());
        self
    }

    fn command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(crate::dev::notesctl_binary());
        cmd.args(&self.args)
            .env_remove("NOTESCTL_OUTPUT")
            .env_remove("NOTESCTL_STAGE")
            .env("NOTESCTL_LOG", "warn");
        for key in &self.removed {
            cmd.env_remove(key);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null());
        if let Some(dir) = &self.dir {
            cmd.current_dir(dir);
        }
        cmd
    }

    fn ran(out: std::process::Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub async fn run(self) -> Run {
        Cli::ran(self.command().output().await.expect("run notesctl"))
    }

    /// Runs, but kills it at `limit`: `None` when it had to be killed (it hung).
    pub async fn run_within(self, limit: std::time::Duration) -> Option<Run> {
        let child = self
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run notesctl");
        match tokio::time::timeout(limit, child.wait_with_output()).await {
            Ok(out) => Some(Cli::ran(out.expect("notesctl's output"))),
            Err(_) => None,
        }
    }

    /// Starts it in `dir` for a test that reads its output as it comes (stdout and stderr piped;
    /// killed when dropped).
    pub fn spawn_in(self, dir: &std::path::Path) -> tokio::process::Child {
        self.command()
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run notesctl")
    }

    /// Runs with `--output json` and returns the exit code and the report, read as its type.
    pub async fn json<T: DeserializeOwned>(self) -> (i32, T) {
        let run = self.args(["--output", "json"]).run().await;
        let v = run.json();
        (run.code, v)
    }
}
