#!/usr/bin/env bash
# Replaces (or appends) the section $NOTESCTL_SECTION of BENCHMARKS.md with stdin, between the same
# <!-- name:begin --> / <!-- name:end --> markers the Rust runners write (tests/src/bench.rs).
set -euo pipefail
name="${NOTESCTL_SECTION:?set NOTESCTL_SECTION to the section name}"
body="$(cat)"
NAME="$name" BODY="$body" python3 - <<'PY'
import os, pathlib
path = pathlib.Path("BENCHMARKS.md")
name, body = os.environ["NAME"], os.environ["BODY"].rstrip()
begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
text = path.read_text() if path.exists() else "# Benchmarks\n"
section = f"{begin}\n{body}\n{end}"
b, e = text.find(begin), text.find(end)
if b >= 0 and e > b:
    text = text[:b] + section + text[e + len(end):]
else:
    text = text.rstrip("\n") + "\n\n" + section + "\n"
path.write_text(text)
print(f"wrote the {name} section of BENCHMARKS.md", file=__import__("sys").stderr)
PY
