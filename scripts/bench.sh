#!/usr/bin/env bash
# Benchmark runners; each writes its figures to BENCHMARKS.md.
# Each section names the commit it measured (and whether the tree was dirty), the date, the CPU and
# the host's steal during the run; `scripts/bench.sh stale` lists sections whose measured files
# changed since (and prints nothing when all are current). Commit the code, then measure.
# Usage: scripts/bench.sh [cold-start|dev-load|feed-scale|cost|fanout|ops|sync|inner-loop|faults|validate|all|stale]
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"
if [[ $what == stale ]]; then
  exec scripts/lib/stale.sh
fi

# The AWS CLI is pinned: its version is recorded with the figures it is compared in.
AWSCLI_VERSION=1.46.3
if [[ ! -x .venv/bin/moto_server || ! -x .venv/bin/aws ]] ||
  ! .venv/bin/aws --version 2>&1 | grep -q "aws-cli/$AWSCLI_VERSION "; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "moto[server]==5.2.5" "awscli==$AWSCLI_VERSION"
fi
export MOTO_SERVER="$PWD/.venv/bin/moto_server"

if [[ $what == cold-start || $what == all ]]; then
  # What users deploy: the bootstraps of the zips `notesctl package` builds (x86_64 static musl; arm64
  # glibc, run under qemu with the arm64 glibc of libc6-arm64-cross).
  cargo build --locked --workspace --examples --bins
  dist="$PWD/target/bench/cold-start"
  for arch in x86_64 arm64; do
    target/debug/notesctl package --arch "$arch" --out "$dist"
    mkdir -p "$dist/$arch"
    unzip -q -o "$dist/notes-lambda-$arch.zip" bootstrap -d "$dist/$arch"
  done
  NOTES_LAMBDA_BIN="$dist/x86_64/bootstrap" NOTES_LAMBDA_ARM64_BIN="$dist/arm64/bootstrap" \
    target/debug/examples/cold_start
fi
if [[ $what == dev-load || $what == all ]]; then
  # The server as users run it (release), and `notesctl load` from the same binary as the generator
  # (optimised too: on two cores a debug generator takes a large share from the server it measures);
  # the runner only starts them, reads load's JSON and measures the machine.
  cargo build --release --locked -p notesctl --bin notesctl
  cargo build --locked --workspace --examples
  NOTESCTL_BIN="$PWD/target/release/notesctl" target/debug/examples/dev_load
fi
if [[ $what == feed-scale || $what == all ]]; then
  # notesctl load --ramp against dev, both the release build; the runner only starts them and reads
  # their JSON (and times the DynamoDB adapter's pages on moto, where moto's own time dominates).
  cargo build --release --locked -p notesctl --bin notesctl
  cargo build --locked --workspace --examples
  NOTESCTL_BIN="$PWD/target/release/notesctl" target/debug/examples/feed_scale
fi
if [[ $what == cost || $what == all ]]; then
  # notesctl load --cost against dev (release), and the handlers' AWS requests per note on moto.
  cargo build --release --locked -p notesctl --bin notesctl
  cargo build --locked --workspace --examples
  NOTESCTL_BIN="$PWD/target/release/notesctl" target/debug/examples/aws_cost
fi
if [[ $what == fanout || $what == all ]]; then
  # One websocket-notify invocation's reach: the handler's notify on the real SDK adapter, optimised
  # as Lambda runs it, against a loopback endpoint of a given post latency.
  NOTESCTL_STAT_BEFORE="$(head -1 /proc/stat)" &&
    cargo run --release --locked -p notes-handlers --example fanout | tee /dev/stderr |
    NOTESCTL_STAT_BEFORE="$NOTESCTL_STAT_BEFORE" NOTESCTL_SECTION=fanout scripts/lib/section.sh
fi
if [[ $what == ops || $what == all ]]; then
  # notesctl as users run it (release) against the AWS CLI, on one moto server.
  cargo build --release --locked -p notesctl --bin notesctl
  cargo build --locked --workspace --examples
  NOTESCTL_BIN="$PWD/target/release/notesctl" target/debug/examples/ops_vs_awscli
fi
if [[ $what == inner-loop || $what == all ]]; then
  # deploy --hotswap against a full deploy of the same code change, and diff of six stacks, on moto.
  cargo build --release --locked -p notesctl --bin notesctl
  cargo build --locked --workspace --examples
  NOTESCTL_BIN="$PWD/target/release/notesctl" target/debug/examples/inner_loop
fi
if [[ $what == sync || $what == all ]]; then
  cargo build --release --locked -p notesctl --bin notesctl
  cargo build --locked --workspace --examples
  NOTESCTL_BIN="$PWD/target/release/notesctl" target/debug/examples/sync_vs_awscli
  # And on two faster S3-compatible servers from crates.io. Garage keeps ETags in its listings, as S3
  # does; s3s-fs (0.14.1 is the newest that builds with rustc 1.95) does not, so notesctl reads them
  # with a HEAD per object there.
  command -v garage >/dev/null ||
    cargo install garage --version 2.5.0 --locked --no-default-features --features bundled-libs,lmdb
  command -v s3s-fs >/dev/null || cargo install s3s-fs --version 0.14.1 --features binary --locked
  root=$(mktemp -d)
  pids=()
  trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$root"' EXIT
  g=(garage -c "$root/garage.toml")
  cat >"$root/garage.toml" <<EOF
metadata_dir = "$root/garage/meta"
data_dir = "$root/garage/data"
db_engine = "lmdb"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:39001"
rpc_public_addr = "127.0.0.1:39001"
rpc_secret = "$(python3 -c 'import secrets; print(secrets.token_hex(32))')"

[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:39000"
root_domain = ".s3.garage.localhost"
EOF
  "${g[@]}" server >"$root/garage.log" 2>&1 &
  pids+=($!)
  for i in $(seq 150); do
    "${g[@]}" status >/dev/null 2>&1 && break
    [[ $i == 150 ]] && { echo "Garage did not start; its log: $root/garage.log" >&2; exit 1; }
    sleep 0.2
  done
  node=$("${g[@]}" node id -q | cut -d@ -f1)
  "${g[@]}" layout assign -z dc1 -c 1G "$node" >/dev/null
  "${g[@]}" layout apply --version 1 >/dev/null
  key_id=GK$(python3 -c 'import secrets; print(secrets.token_hex(12))')
  key_secret=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
  "${g[@]}" key import --yes -n bench "$key_id" "$key_secret" >/dev/null
  "${g[@]}" key allow --create-bucket bench >/dev/null
  S3_ENDPOINT=http://127.0.0.1:39000 S3_SERVER="Garage 2.5.0" S3_ACCESS_KEY_ID="$key_id" \
    S3_SECRET_ACCESS_KEY="$key_secret" NOTESCTL_BIN="$PWD/target/release/notesctl" \
    target/debug/examples/sync_vs_awscli

  mkdir -p "$root/s3s"
  s3s-fs --host 127.0.0.1 --port 8014 --access-key testing --secret-key testing "$root/s3s" >/dev/null 2>&1 &
  pids+=($!)
  sleep 1
  S3_ENDPOINT=http://127.0.0.1:8014 S3_SERVER="s3s-fs 0.14.1" NOTESCTL_BIN="$PWD/target/release/notesctl" \
    target/debug/examples/sync_vs_awscli
fi
if [[ $what == faults || $what == all ]]; then
  # Every AWS-facing command through the fault-injecting proxy (tests/tests/faults.rs); the test
  # itself checks every cell, and with BENCHMARKS set writes the matrix here.
  cargo build --locked --workspace --all-targets
  BENCHMARKS=1 cargo test --locked --workspace --test faults
fi
if [[ $what == validate || $what == all ]]; then
  # `notesctl validate` on the six templates, as users run it (release), whole process wall time.
  cargo build --release --locked -p notesctl --bin notesctl
  python3 scripts/bench_validate.py target/release/notesctl templates
fi
