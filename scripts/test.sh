#!/usr/bin/env bash
# The full test suite, as CI runs it. Installs the pinned Python tools it needs (moto server for the
# AWS tests, cfn-lint for the templates, zig and cargo-zigbuild for the arm64 build) into .venv, lints
# the Rust code (clippy) and the templates, then runs every test in the workspace. The tests start
# their own moto servers on 127.0.0.1; nothing reaches real AWS.
#
# On 2 cores the time goes into compiling. The debug build starts first and runs while the tools
# install (which leaves the CPU idle), and clippy lints the workspace inside that build: clippy-driver
# compiles the workspace's crates (cargo's `rustc-workspace-wrapper`, as `cargo clippy` itself sets
# it), so the dependencies are compiled once, not a second time in check mode for a separate clippy
# run. Release builds are not run side by side: measured, three of them two at a time took longer
# (1,291 s) than in series (1,100 s).
set -euo pipefail
cd "$(dirname "$0")/.."

# Each phase is announced before it starts and timed when it ends (scripts/lib/phases.sh).
source scripts/lib/phases.sh
phases_begin "test.sh"

if ! command -v clippy-driver >/dev/null 2>&1; then
  echo "test.sh: clippy-driver is not on PATH: run 'rustup component add clippy'" >&2
  exit 2
fi
# clippy's lints at -D warnings (the argument list `cargo clippy -- -D warnings` passes to
# clippy-driver), for the build and for `cargo test`, which must use the same wrapper or it would
# compile the workspace again. Passed with --config, not the environment, so that the release builds
# the tests start (`notesctl package`) use plain rustc, as a user's do.
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
lint=(--config 'build.rustc-workspace-wrapper="clippy-driver"')

# The cross-crate tests run the real binaries (notesctl, notes-lambda): build them first — with the
# tests, in one go, so that `cargo test` below finds everything built. It needs nothing the tool
# phases install, so it starts now; its output is shown when it is waited for.
mkdir -p target
build_log="target/test-sh-build.log"
cargo build --workspace --all-targets "${lint[@]}" "$@" >"$build_log" 2>&1 &
build_pid=$!

phase "Python tools in .venv and Chromium (the debug build beside it)"

PY_TOOLS=("moto[server]==5.2.5" "cfn-lint==1.58.0" "ziglang==0.17.1" "cargo-zigbuild==0.24.1")
stamp=".venv/.notesctl-tools"
want="${PY_TOOLS[*]}"
if [[ ! -x .venv/bin/python || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  echo "test.sh: installing ${want} into .venv" >&2
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "${PY_TOOLS[@]}"
  echo "$want" > "$stamp"
fi
export MOTO_SERVER="$PWD/.venv/bin/moto_server"

# The browser test drives a real headless Chromium (Debian's package).
if ! command -v chromium >/dev/null 2>&1 && [[ -z "${CHROMIUM:-}" ]]; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing chromium (Debian package)" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes apt-get install -y -qq chromium >/dev/null
  else
    echo "test.sh: the browser test needs Chromium: run 'sudo apt-get install chromium' (or set CHROMIUM=/path)" >&2
    exit 2
  fi
fi

phase "cfn-lint templates/*.yaml"
.venv/bin/cfn-lint templates/*.yaml

phase "Rust targets and cross tools"

# Lambda artifacts: x86_64 (static musl) and arm64 (glibc 2.34, linked with zig), run in the tests
# natively and under qemu-aarch64.
rustup target add x86_64-unknown-linux-musl aarch64-unknown-linux-gnu >/dev/null 2>&1 \
  || rustup target list --installed | grep -q aarch64-unknown-linux-gnu \
  || { echo "test.sh: cannot add the Rust targets x86_64-unknown-linux-musl and aarch64-unknown-linux-gnu" >&2; exit 2; }
if ! command -v qemu-aarch64-static >/dev/null 2>&1 || ! command -v musl-gcc >/dev/null 2>&1 \
  || [[ ! -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ]] \
  || ! command -v zsh >/dev/null 2>&1 || ! command -v fish >/dev/null 2>&1; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing qemu-user-static, libc6-arm64-cross, musl-tools, zsh and fish (Debian packages)" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes apt-get install -y -qq qemu-user-static libc6-arm64-cross musl-tools zsh fish >/dev/null
  else
    echo "test.sh: packaging needs musl-gcc; the arm64 test qemu-aarch64-static and an arm64 glibc; the completion test zsh and fish: run 'sudo apt-get install musl-tools qemu-user-static libc6-arm64-cross zsh fish'" >&2
    exit 2
  fi
fi

phase "cargo build --workspace --all-targets, linted by clippy (started with the tool phases)"
if ! wait "$build_pid"; then
  cat "$build_log" >&2
  echo "test.sh: the debug build failed (above) — a compile error or a clippy lint (-D warnings); see them alone with 'cargo clippy --workspace --all-targets -- -D warnings'" >&2
  exit 1
fi
# A lint clippy-driver reported without failing the build (were -D warnings ever not applied).
if grep -E '^warning: `(notes-handlers|notesctl|notesctl-tests)` .* generated [0-9]+ warning' "$build_log" >&2; then
  cat "$build_log" >&2
  echo "test.sh: the build has warnings (above): fix them; 'cargo clippy --workspace --all-targets -- -D warnings' shows them alone" >&2
  exit 1
fi
tail -n 1 "$build_log" >&2
phase "notesctl validate templates/"
target/debug/notesctl validate --templates templates
phase "notesctl package --arch x86_64 --arch arm64 (two release builds: the longest phase)"
PATH="$PWD/.venv/bin:$PATH" target/debug/notesctl package --arch x86_64 --arch arm64 --out target/dist
export NOTESCTL_DIST="$PWD/target/dist"
phase "cargo test --workspace"
cargo test --workspace --no-fail-fast "${lint[@]}" "$@"
