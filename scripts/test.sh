#!/usr/bin/env bash
# The full test suite, as CI runs it. Installs the pinned Python tools it needs (moto server for the
# AWS tests, cfn-lint for the templates) into .venv, lints the templates, then runs every test in
# the workspace. The tests start their own moto servers on 127.0.0.1; nothing reaches real AWS.
set -euo pipefail
cd "$(dirname "$0")/.."

PY_TOOLS=("moto[server]==5.2.5" "cfn-lint==1.58.0")
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
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "test.sh: the browser test needs Chromium: run 'sudo apt-get install chromium' (or set CHROMIUM=/path)" >&2
    exit 2
  fi
fi

echo "test.sh: cfn-lint templates/*.yaml" >&2
.venv/bin/cfn-lint templates/*.yaml

echo "test.sh: cargo test --workspace" >&2
# The cross-crate tests run the real binaries (notesctl, notes-lambda): build them first.
cargo build --workspace --bins "$@"
cargo test --workspace "$@"
