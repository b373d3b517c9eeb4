//! `notesctl`: ship and operate the event-driven serverless notes app.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's malloc: `dev` allocates and frees small buffers per request and per
/// WebSocket frame on two threads at once, where glibc's arenas spent about a sixth of its CPU
/// (BENCHMARKS.md, "One writer per database").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    notesctl::run(notesctl::Cli::parse())
}
