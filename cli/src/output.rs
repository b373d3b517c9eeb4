//! What a command prints: one report on stdout (text for people, one JSON document with `--output
//! json`), lines for streams, errors on stderr, and the documented exit codes.

use std::fmt::Display;
use std::io::Write;
use std::process::ExitCode;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// The exit codes, as `--help`, README.md and docs/CLI.md give them.
pub const EXIT_CODES: &[(u8, &str)] = &[
    (
        0,
        "Success — after retrying whatever failed in passing (throttling, 5xx, a dropped connection, a slow answer).",
    ),
    (
        1,
        "The command ran and found a problem: a deploy that failed and rolled back, `diff` finding that a deploy would change something, a queue above `--fail-above`, an alarm firing, a `metrics` row past its threshold, a `doctor` check that failed, `smoke` or `load` finding a failed step, failed notes or a missed `--slo`, `validate` findings, a message the queue kept refusing (`redrive-dlq`, named by id), a function running other code than the zip, or a wait that reached its `--timeout` (`deploy`, `destroy`, `redrive-dlq`, `invalidate --wait`). The report says what is still running.",
    ),
    (
        2,
        "The command could not do its job: a bad flag, a command that writes without `--stage`, a protected stage refused (`--force` or `--confirm-stage` missing), `--local` where no `notesctl dev` answers, no or expired credentials (`aws sso login`), access denied, an endpoint that is not AWS, a resource that is not there, `destroy` refusing queues that hold messages without `--force`, a port in use, a locked data directory, a missing build tool. One line on stderr names the call, the cause and the next step.",
    ),
    (
        3,
        "`smoke` could not set itself up, so it judged nothing about the app: its user could not sign up or log in with the password given (the name exists with another password, or sign-up refused the name or the password). The report says `set_up_failed`. Fix the user or the password; do not roll back.",
    ),
];

/// How a command that ran ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Exit {
    /// 0: success.
    Ok,
    /// 1: the command ran and found a problem.
    Problem,
    /// 3: a check could not set itself up (`smoke`'s user), so it says nothing about the app.
    SetUp,
}

impl Exit {
    pub fn code(self) -> ExitCode {
        match self {
            Exit::Ok => ExitCode::SUCCESS,
            Exit::Problem => ExitCode::from(1),
            Exit::SetUp => ExitCode::from(3),
        }
    }

    /// `Problem` when `problem` holds, else `Ok`.
    pub fn problem_if(problem: bool) -> Exit {
        if problem { Exit::Problem } else { Exit::Ok }
    }
}

/// A command's result: readable (`Display`), machine-readable (`Serialize`), and its own judge of
/// how the run ended.
pub trait Report: Display + Serialize {
    fn exit(&self) -> Exit {
        Exit::Ok
    }
}

/// What a stream (`tail`, `queue-depth --watch`, `dev`) returns: its lines are already out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Streamed(pub Exit);

/// Prints a report once and maps its exit code. A closed stdout (`| head`) is not an error.
pub fn print<R: Report>(format: Output, report: &R) -> Exit {
    Lines::new(format).write(report);
    report.exit()
}

/// The one writer of result lines on stdout: a document per line with `--output json` (JSON Lines),
/// the text otherwise. `write` says whether the reader is still there.
#[derive(Debug, Clone, Copy)]
pub struct Lines {
    format: Output,
}

impl Lines {
    pub fn new(format: Output) -> Lines {
        Lines { format }
    }

    pub fn format(&self) -> Output {
        self.format
    }

    /// Writes one item; `false` once stdout is closed (a stream should then stop quietly).
    pub fn write<T: Display + Serialize + ?Sized>(&self, item: &T) -> bool {
        let text = match self.format {
            Output::Text => item.to_string(),
            Output::Json => serde_json::to_string(item)
                .unwrap_or_else(|e| format!("{{\"error\":\"cannot encode the result: {e}\"}}")),
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", text.trim_end())
            .and_then(|_| out.flush())
            .is_ok()
    }
}

/// 2: usage or environment error. The message and its causes go to stderr.
pub fn fail(err: &anyhow::Error) -> ExitCode {
    // One line: what failed, then each cause after a colon.
    let _ = writeln!(std::io::stderr(), "error: {err:#}");
    ExitCode::from(2)
}
