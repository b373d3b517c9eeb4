//! Printing results: text or one JSON document on stdout, errors on stderr, documented exit codes.

use std::fmt::Display;
use std::io::Write;
use std::process::ExitCode;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// How a command that ran ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: success.
    Ok,
    /// 1: the command ran and found a problem.
    Problem,
}

impl Exit {
    pub fn code(self) -> ExitCode {
        match self {
            Exit::Ok => ExitCode::SUCCESS,
            Exit::Problem => ExitCode::from(1),
        }
    }
}

/// Prints a result once, as text or as one JSON line. A closed stdout (`| head`) is not an error.
pub fn print<R: Display + Serialize>(format: Output, report: &R) {
    let text = match format {
        Output::Text => report.to_string(),
        Output::Json => {
            serde_json::to_string(report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", text.trim_end()).and_then(|_| out.flush());
}

/// 2: usage or environment error. The message and its causes go to stderr.
pub fn fail(err: &anyhow::Error) -> ExitCode {
    let mut msg = format!("error: {err}");
    for cause in err.chain().skip(1) {
        msg.push_str(&format!("\n  caused by: {cause}"));
    }
    let _ = writeln!(std::io::stderr(), "{msg}");
    ExitCode::from(2)
}
