#!/usr/bin/env bash
# Lists the sections of BENCHMARKS.md whose figures no longer describe the code: the files a runner
# measures changed since the commit its section records, the section was measured on a dirty tree,
# or it records no commit. Prints nothing when every section is current; exit 1 when one is not.
set -euo pipefail
cd "$(dirname "$0")/../.."

# What each section measures: the runner and the code under it. A change to any of these paths
# after the recorded commit makes the section stale.
declare -A inputs=(
  [cold-start]="handlers Cargo.toml Cargo.lock cli/src/commands/package.rs tests/examples/cold_start.rs tests/src/lambda.rs"
  [dev-load]="cli/src/commands/dev cli/src/commands/load cli/src/local handlers/src Cargo.toml Cargo.lock tests/examples/dev_load.rs"
  [feed-scale]="cli/src/commands/dev cli/src/commands/load cli/src/local handlers/src Cargo.toml Cargo.lock tests/examples/feed_scale.rs"
  [cost]="cli/src/commands/dev cli/src/commands/load cli/src/local handlers/src Cargo.lock tests/examples/aws_cost.rs tests/src/aws_cost.rs"
  [fanout]="handlers/src/websocket handlers/src/adapters/apigw_management.rs handlers/examples/fanout.rs Cargo.lock"
  [ops-vs-awscli]="cli/src/commands/queue_depth.rs cli/src/commands/tail.rs cli/src/commands/outputs.rs cli/src/aws Cargo.lock tests/examples/ops_vs_awscli.rs"
  [sync-vs-awscli-moto]="cli/src/commands/sync_frontend Cargo.lock tests/examples/sync_vs_awscli.rs"
  [sync-vs-awscli-garage]="cli/src/commands/sync_frontend Cargo.lock tests/examples/sync_vs_awscli.rs"
  [sync-vs-awscli-s3s-fs]="cli/src/commands/sync_frontend Cargo.lock tests/examples/sync_vs_awscli.rs"
  [inner-loop]="cli/src/commands/deploy cli/src/commands/diff templates Cargo.lock tests/examples/inner_loop.rs"
  [faults]="cli/src tests/tests/faults.rs tests/src/faults.rs tests/src/proxy.rs Cargo.lock"
  [validate]="cli/src/commands/validate templates Cargo.lock scripts/bench_validate.py"
)

status=0
sections=$(grep -o '<!-- [a-z0-9-]*:begin -->' BENCHMARKS.md | sed 's/<!-- \(.*\):begin -->/\1/')
for name in $sections; do
  body=$(sed -n "/<!-- $name:begin -->/,/<!-- $name:end -->/p" BENCHMARKS.md)
  if [[ -z ${inputs[$name]+set} ]]; then
    echo "$name: no runner inputs known to scripts/lib/stale.sh (add them)"
    status=1
    continue
  fi
  commit=$(grep -o -m1 'commit `[0-9a-f]\{7,40\}`' <<<"$body" | tr -d '`' | cut -d' ' -f2 || true)
  if [[ -z $commit ]]; then
    echo "$name: records no commit (measured before runners wrote one): run scripts/bench.sh for it"
    status=1
  elif ! git cat-file -e "$commit^{commit}" 2>/dev/null; then
    echo "$name: its commit $commit is not in this repository's history"
    status=1
  elif grep -q 'tree dirty' <<<"$body"; then
    echo "$name: measured on a tree that differed from $commit"
    status=1
  else
    # shellcheck disable=SC2086
    changed=$(git log -n 3 --format='%h %s' "$commit..HEAD" -- ${inputs[$name]})
    if [[ -n $changed ]]; then
      echo "$name: measured at $commit; its inputs changed since:"
      sed 's/^/  /' <<<"$changed"
      status=1
    fi
  fi
done
exit $status
