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
fi
