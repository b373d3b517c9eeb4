//! `notesctl`: ship and operate the event-driven serverless notes app.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    notesctl::run(notesctl::Cli::parse())
}
