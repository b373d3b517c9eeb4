#!/usr/bin/env bash
# Benchmark runners; each writes its figures to BENCHMARKS.md.
# Usage: scripts/bench.sh [cold-start|dev-load|ops|sync|all]
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"

if [[ ! -x .venv/bin/moto_server || ! -x .venv/bin/aws ]]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "moto[server]==5.2.5" awscli
fi
export MOTO_SERVER="$PWD/.venv/bin/moto_server"

if [[ $what == cold-start || $what == all ]]; then
  # The artifact Lambda would run: a release build of the one binary.
  cargo build --release --locked -p notes-handlers --bin notes-lambda
  cargo build --locked --workspace --examples
  NOTES_LAMBDA_BIN="$PWD/target/release/notes-lambda" target/debug/examples/cold_start
fi
if [[ $what == dev-load || $what == all ]]; then
  # The server as users run it (release); the load generator needs no optimisation (debug).
  cargo build --release --locked -p notesctl --bin notesctl
  cargo build --locked --workspace --examples
  NOTESCTL_BIN="$PWD/target/release/notesctl" target/debug/examples/dev_load
fi
if [[ $what == ops || $what == all ]]; then
  # notesctl as users run it (release) against the AWS CLI, on one moto server.
  cargo build --release --locked -p notesctl --bin notesctl
  cargo build --locked --workspace --examples
  NOTESCTL_BIN="$PWD/target/release/notesctl" target/debug/examples/ops_vs_awscli
fi
if [[ $what == sync || $what == all ]]; then
  cargo build --release --locked -p notesctl --bin notesctl
  cargo build --locked --workspace --examples
  NOTESCTL_BIN="$PWD/target/release/notesctl" target/debug/examples/sync_vs_awscli
  # And on a faster S3-compatible server (s3s-fs 0.14.1 is the newest that builds with rustc 1.95).
  command -v s3s-fs >/dev/null || cargo install s3s-fs --version 0.14.1 --features binary --locked
  root=$(mktemp -d)
  s3s-fs --host 127.0.0.1 --port 8014 --access-key testing --secret-key testing "$root" >/dev/null 2>&1 &
  s3s=$!
  trap 'kill $s3s 2>/dev/null; rm -rf "$root"' EXIT
  sleep 1
  S3_ENDPOINT=http://127.0.0.1:8014 S3_SERVER="s3s-fs 0.14.1" NOTESCTL_BIN="$PWD/target/release/notesctl" \
    target/debug/examples/sync_vs_awscli
fi
