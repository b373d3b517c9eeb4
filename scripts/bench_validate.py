"""Times `notesctl validate --templates DIR` (whole process, wall clock) and writes the figures to
BENCHMARKS.md between the validate markers. Usage: bench_validate.py NOTESCTL TEMPLATES [RUNS]"""
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

def cpu_times():
    """The machine's CPU time so far (all fields of /proc/stat's cpu line) and the part stolen by
    the host."""
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return sum(fields), fields[7] if len(fields) > 7 else 0


def git(*args):
    return subprocess.run(["git", *args], capture_output=True, text=True).stdout.strip()


def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


binary, templates = sys.argv[1], sys.argv[2]
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 30
cmd = [binary, "validate", "--templates", templates, "--output", "json"]

stacks = len([f for f in os.listdir(templates) if f.endswith((".yaml", ".yml", ".json"))])
times, inside = [], []
total0, steal0 = cpu_times()
for _ in range(runs):
    start = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True).stdout
    times.append((time.perf_counter() - start) * 1000)
    inside.append(json.loads(out)["elapsedMs"])
# The process start alone, for scale: `notesctl --version`.
version = []
for _ in range(runs):
    start = time.perf_counter()
    subprocess.run([binary, "--version"], check=True, capture_output=True)
    version.append((time.perf_counter() - start) * 1000)

total1, steal1 = cpu_times()
steal = 100 * (steal1 - steal0) / max(1, total1 - total0)
commit = git("rev-parse", "--short=12", "HEAD") or "unknown"
# Dirty: the measured code differs from the commit (documents aside: no figure depends on them).
dirty = (
    " (tree dirty)"
    if git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!*.md")
    else ""
)

times.sort()
median = statistics.median(times)
table = f"""<!-- validate:begin -->
## `notesctl validate` on the six templates (target ≤ 50 ms, with every AWS-limit rule)

Measured {datetime.date.today()} at commit `{commit}`{dirty} on {cpu_model()} ({platform.machine()},
{os.cpu_count()} cores, {steal:.1f}% of CPU time stolen by the host during the runs); release build; whole process
wall time over {runs} runs of `notesctl validate --templates {templates} --output json` ({stacks} templates).

| | median | min | max | target |
|---|---|---|---|---|
| `notesctl validate` | {median:.1f} ms | {times[0]:.1f} ms | {times[-1]:.1f} ms | ≤ 50 ms {'met' if median <= 50 else 'NOT met'} |
| the check itself (`elapsedMs` in the report) | {statistics.median(inside):.1f} ms | {min(inside):.1f} ms | {max(inside):.1f} ms | |
| process start only (`notesctl --version`) | {statistics.median(version):.1f} ms | {min(version):.1f} ms | {max(version):.1f} ms | |
<!-- validate:end -->"""

path = "BENCHMARKS.md"
text = open(path).read()
begin, end = "<!-- validate:begin -->", "<!-- validate:end -->"
if begin in text:
    text = text[: text.index(begin)] + table + text[text.index(end) + len(end):]
else:
    text = text.rstrip("\n") + "\n\n" + table + "\n"
open(path, "w").write(text)
print(table)
