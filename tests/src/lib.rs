//! Test harness shared by the cross-crate tests: a moto server on loopback, AWS SDK configuration
//! pointed at it, resources provisioned with unique names, a local Lambda Runtime API, and the
//! `notes-lambda` binary started as a real process.

pub mod aws_cost;
pub mod bench;
pub mod browser;
pub mod cli;
pub mod dev;
pub mod fake_s3;
pub mod faults;
pub mod lambda;
pub mod moto;
pub mod proxy;
pub mod record;
pub mod s3s_fs;
pub mod stub;

/// A name no other test in this run uses: `{prefix}-{pid}-{counter}-{random}`.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!(
        "{prefix}-{}-{n}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

/// The workspace root (for `target/` and `.venv/`).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}
