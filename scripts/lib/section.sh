#!/usr/bin/env bash
# Replaces (or appends) the section $NOTESCTL_SECTION of BENCHMARKS.md with stdin, between the same
# <!-- name:begin --> / <!-- name:end --> markers the Rust runners write (tests/src/bench.rs), with the
# same provenance line under its heading: commit, dirty or not, date, CPU, and the host's steal since
# $NOTESCTL_STAT_BEFORE (the first line of /proc/stat when the run began).
set -euo pipefail
name="${NOTESCTL_SECTION:?set NOTESCTL_SECTION to the section name}"
body="$(cat)"
NAME="$name" BODY="$body" python3 - <<'PY'
import os, pathlib
path = pathlib.Path("BENCHMARKS.md")
import datetime, subprocess
name, body = os.environ["NAME"], os.environ["BODY"].rstrip()

def git(*args):
    r = subprocess.run(["git", *args], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None

def cpu_line(line):
    n = [int(x) for x in line.split()[1:9]]
    return sum(n), n[7]

commit = git("rev-parse", "--short=12", "HEAD") or "unknown"
# Documents aside: no figure depends on them.
dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!*.md")
steal = "unknown"
before = os.environ.get("NOTESCTL_STAT_BEFORE")
if before:
    t0, s0 = cpu_line(before)
    t1, s1 = cpu_line(open("/proc/stat").readline())
    steal = f"{100 * (s1 - s0) / max(1, t1 - t0):.2f} %"
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
line = (f"Measured at commit `{commit}` ("
        + ("tree dirty: the figures may not be this commit's" if dirty or dirty is None else "clean tree")
        + f"), written {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}, on {os.cpu_count()} cores, {cpu}; "
        + f"CPU time stolen by the host during the run: {steal}.")
heading, _, rest = body.partition("\n")
body = f"{heading}\n\n{line}\n{rest}"
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
