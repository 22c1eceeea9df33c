#!/usr/bin/env bash
# make bench: run every benchmark and write the figures to
# docs/benchmarks.md (how to read them: docs/development.md, "Benchmarks").
# The file is replaced only when every benchmark ran.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
SIZES=${BENCH_SIZES:-small,medium,large,refs100k}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
section() { printf '\n## %s\n\n```\n' "$1" >>"$out"; }
endsection() { printf '```\n' >>"$out"; }
{
  echo "# Benchmarks"
  echo
  echo "Written by \`make bench\` on $(date -u +%Y-%m-%d) ($(nproc) cores, $($GO env GOVERSION), $(uname -m)); how to read them: [development.md](development.md#benchmarks)."
} >"$out"
section "planner"
$GO test -run '^$' -bench . -benchmem ./planner/... | grep -E '^(Benchmark|ok|goos|goarch|cpu)' | tee -a "$out"
endsection
section "executor: a ten-hop plan on the simulator"
$GO test -run '^$' -bench TenHopPlan -benchtime 1x -timeout 30m ./executor/... | grep -E '^(Benchmark|ok)' | tee -a "$out"
endsection
section "release: vetting every genuine kubevirt-operator.yaml"
$GO test -run '^$' -bench VetGenuine -benchmem ./release/... | grep -E '^(Benchmark|ok)' | tee -a "$out"
endsection
$GO run ./test/bench -sizes "$SIZES" | tee -a "$out"
cat "$out" >docs/benchmarks.md
trap - EXIT
echo "bench: wrote docs/benchmarks.md"
