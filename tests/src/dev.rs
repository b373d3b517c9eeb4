//! `notesctl dev` as a user runs it: a real process on a free port, with its own data directory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

pub fn notesctl_binary() -> PathBuf {
    if let Ok(p) = std::env::var("NOTESCTL_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test binary path");
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>/deps")
        .join("notesctl");
    assert!(
        bin.exists(),
        "{} does not exist: build the workspace first",
        bin.display()
    );
    bin
}

/// A running `notesctl dev`. Its log (stderr) is kept, not shown: a test that fails prints it as the
/// server is dropped, so a passing run's output holds only the tests' own lines.
pub struct DevServer {
    pub child: tokio::process::Child,
    pub api_url: String,
    pub ws_url: String,
    pub frontend_url: String,
    pub data_dir: PathBuf,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Drop for DevServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log.lock().map(|l| l.clone()).unwrap_or_default();
            eprintln!(
                "--- notesctl dev ({}) log ---\n{log}--- end of log ---",
                self.api_url
            );
        }
    }
}

impl DevServer {
    /// Starts `notesctl dev --port 0 --output json` and waits for its one JSON line.
    pub async fn start(data_dir: &Path, extra: &[&str]) -> DevServer {
        Self::spawn(data_dir, extra, "warn").await
    }

    /// As [`DevServer::start`], with the server's log (stderr) readable by the test as it grows.
    pub async fn start_with_log(
        data_dir: &Path,
        extra: &[&str],
    ) -> (DevServer, std::sync::Arc<std::sync::Mutex<String>>) {
        Self::start_with_log_at(data_dir, extra, "warn").await
    }

    /// As [`DevServer::start_with_log`], logging at `level` (`NOTESCTL_LOG`).
    pub async fn start_with_log_at(
        data_dir: &Path,
        extra: &[&str],
        level: &str,
    ) -> (DevServer, std::sync::Arc<std::sync::Mutex<String>>) {
        let dev = Self::spawn(data_dir, extra, level).await;
        let log = dev.log.clone();
        (dev, log)
    }

    async fn spawn(data_dir: &Path, extra: &[&str], level: &str) -> DevServer {
        let mut child = tokio::process::Command::new(notesctl_binary())
            .args(["dev", "--port", "0", "--output", "json", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("NOTESCTL_LOG", level)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start notesctl dev");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut err_lines = BufReader::new(child.stderr.take().expect("piped")).lines();
        let sink = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = err_lines.next_line().await {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = match tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await {
            Ok(Ok(Some(line))) => line,
            other => panic!(
                "dev did not print its URLs within 30 s ({other:?}); its log:\n{}",
                log.lock().unwrap()
            ),
        };
        let v: notesctl::commands::dev::Listening = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not the listening line: {line}: {e}"));
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        DevServer {
            child,
            api_url: v.api_url,
            ws_url: v.ws_url,
            frontend_url: v.frontend_url,
            data_dir: data_dir.to_path_buf(),
            log,
        }
    }

    /// `notesctl` for `--local` commands against this server: it finds the runbook token in the
    /// server's data directory, as it does for a user running both in one folder.
    pub fn cli(&self) -> crate::cli::Cli {
        crate::cli::Cli::new().env("NOTESCTL_DEV_DATA_DIR", &self.data_dir.to_string_lossy())
    }

    /// dev's counters (what each port did, and the app's metrics), read as `load --cost` reads them.
    pub async fn counters(&self) -> notes_handlers::metering::Counts {
        let tls = notesctl::app_client::tls_config(false).expect("TLS configuration");
        notesctl::app_client::Api::new(&self.api_url, &tls)
            .dev_counters_with(&self.runbook_token())
            .await
            .expect("dev's counters")
    }

    /// This run's runbook token (the secret key `--local` signs with).
    pub fn runbook_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("runbook-token"))
            .expect("dev wrote its runbook token")
            .trim()
            .to_owned()
    }

    /// An SQS client for this server's runbook API, signing with `secret` (the runbook token, or a
    /// wrong one); no retries, so a refusal is seen as it is.
    pub async fn sqs(&self, secret: &str) -> aws_sdk_sqs::Client {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.api_url)
            .region(aws_config::Region::new("local"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "notesctl-dev",
                secret.to_owned(),
                None,
                None,
                "test",
            ))
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .load()
            .await;
        aws_sdk_sqs::Client::new(&config)
    }

    /// POSTs a note as the holder of `token`; the 202's body.
    pub async fn post_note(&self, token: &str, note: serde_json::Value) -> serde_json::Value {
        reqwest::Client::new()
            .post(format!("{}/notes", self.api_url))
            .bearer_auth(token)
            .json(&note)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Signs a user up and logs in; the token.
    pub async fn sign_up(&self, username: &str, password: &str) -> String {
        let http = reqwest::Client::new();
        let creds = serde_json::json!({"username": username, "password": password});
        let signup = http
            .post(format!("{}/auth/signup", self.api_url))
            .json(&creds)
            .send()
            .await
            .unwrap();
        assert!(signup.status().is_success(), "signup: {}", signup.status());
        let login: serde_json::Value = http
            .post(format!("{}/auth/login", self.api_url))
            .json(&creds)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        login["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token in {login}"))
            .to_owned()
    }

    /// SIGKILL: no chance to clean up.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGTERM, then the exit status and how long it took.
    pub async fn terminate(self) -> (std::process::ExitStatus, Duration) {
        self.stop_with("TERM").await
    }

    /// SIGINT (Ctrl-C), then the exit status and how long it took.
    pub async fn interrupt(self) -> (std::process::ExitStatus, Duration) {
        self.stop_with("INT").await
    }

    async fn stop_with(mut self, signal: &str) -> (std::process::ExitStatus, Duration) {
        let pid = self.child.id().expect("running") as i32;
        let started = std::time::Instant::now();
        let _ = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status();
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("dev stops within 20 s of SIG{signal}"))
            .unwrap();
        (status, started.elapsed())
    }
}
