//! The `notesctl` command line. `main` parses arguments and calls [`run`]; each command returns a
//! report that is printed once, as text for people or JSON for scripts.

use std::process::ExitCode;

use clap::{Parser, ValueEnum};

/// Output format of results on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// Ship and operate the event-driven serverless notes app on AWS.
///
/// Exit codes: 0 success; 1 the command ran and found a problem; 2 usage or environment error.
#[derive(Debug, Parser)]
#[command(name = "notesctl", version, about, long_about = None)]
pub struct Cli {
    /// Prefix of every resource name.
    #[arg(
        long,
        global = true,
        env = "NOTESCTL_STAGE",
        default_value = "production"
    )]
    pub stage: String,
    /// Result format on stdout: text for people, json for scripts.
    #[arg(long, global = true, env = "NOTESCTL_OUTPUT", value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

pub fn run(cli: Cli) -> ExitCode {
    let _ = cli;
    ExitCode::SUCCESS
}
