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

binary, templates = sys.argv[1], sys.argv[2]
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 30
cmd = [binary, "validate", "--templates", templates, "--output", "json"]

stacks = len([f for f in os.listdir(templates) if f.endswith((".yaml", ".yml", ".json"))])
times, inside = [], []
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

times.sort()
median = statistics.median(times)
table = f"""<!-- validate:begin -->
## `notesctl validate` on the six templates (issue #11: target ≤ 50 ms)

Measured {datetime.date.today()} on {platform.machine()}, {os.cpu_count()} cores; release build; whole process
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
