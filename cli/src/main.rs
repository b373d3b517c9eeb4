//! `notesctl`: ship and operate the event-driven serverless notes app.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: `notesctl dev` under load allocates per request and per
/// push from many threads, where glibc's malloc and free took a fifth of its CPU (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    notesctl::run(notesctl::Cli::parse())
}
