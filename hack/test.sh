#!/usr/bin/env bash
# make test: every package. The longest start first, side by side: the real
# virt-operator lane in its own process, the end-to-end package in SHARDS
# processes (each with its own control plane, tests split by name, every
# test in exactly one shard); the other packages run P at a time beside
# them. (Sharding the executor's package too was measured slower: more
# processes on two cores, more CPU in total.) The machine is CPU-bound and the
# real node's package is the longest chain, so everything else runs at a lower
# CPU priority and fills the gaps: niced, and in a cgroup with a small CPU
# weight. (Nice alone is not enough: the node's pods run in their own cgroups
# and the kernel's autogroups weigh whole sessions, so nice only orders
# threads of one session, and the many niced threads together outweighed the
# node's control plane.)
# Output is printed per process when all have ended; the exit status is the
# worst of all.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
SHARDS=${E2E_SHARDS:-2}
P=${TEST_PARALLEL:-3}
# Every Go process of the run (the go command, compilers, test binaries, the
# control planes and nodes they start) collects garbage at 4× the live heap
# instead of 2×: the run is CPU-bound on two cores and memory is plentiful.
export GOGC=${TEST_GOGC:-400}
# TEST_CPU=1 prints each test binary's CPU time (with the servers it ran).
out=$(mktemp -d)
low_cg=""
trap 'rm -rf "$out"; [ -z "$low_cg" ] || rmdir "$low_cg" 2>/dev/null || true' EXIT
exec_flag=()
if [ -n "${TEST_CPU:-}" ]; then exec_flag=(-exec "/usr/bin/time -a -o $out/cpu -f %C:%U:%S:%e"); fi

# One kvgitops binary for every package that runs it, static as make image
# builds it (the deploy conformance test and the real node put it in the
# image instead of building their own).
CGO_ENABLED=0 $GO build -ldflags "-X main.commit=$(git rev-parse --short=12 HEAD)" -o "$out/kvgitops" ./cmd/kvgitops
export KVGITOPS_TEST_BINARY="$out/kvgitops"

# The low-priority cgroup, of CPU weight TEST_WEIGHT (cgroup v1 shares, of
# the default 1024; scaled to v2's default 100), under the v1 cpu hierarchy
# or v2's, when this user may make it; removed at the end.
for root in /sys/fs/cgroup/cpu /sys/fs/cgroup; do
  if [ -f "$root/cpu.shares" ] || grep -qw cpu "$root/cgroup.subtree_control" 2>/dev/null; then
    if mkdir "$root/kvgitops-test-$$" 2>/dev/null; then
      low_cg="$root/kvgitops-test-$$"
      w=${TEST_WEIGHT:-512}
      echo "$w" >"$low_cg/cpu.shares" 2>/dev/null || echo $((w * 100 / 1024 + 1)) >"$low_cg/cpu.weight" 2>/dev/null || true
    fi
    break
  fi
done

# low N CMD...: CMD niced by N, in the low-priority cgroup.
low() {
  local n=$1
  shift
  (
    if [ -n "$low_cg" ]; then echo "$BASHPID" >"$low_cg/cgroup.procs" 2>/dev/null || true; fi
    exec nice -n "$n" "$@"
  )
}

pids=()
# -v: a skipped lane shows (its tests' SKIP lines and TestMain's summary);
# passing, only those lines are printed, failing, everything.
# The lane a little above the other low-priority packages (niced less).
low "${LANE_NICE:-5}" $GO test "${exec_flag[@]}" -v -count=1 -timeout 25m ./test/lane >"$out/lane" 2>&1 &
pids+=($!)

# The real node's package (a real cluster per test, KubeVirt's components
# and VMs on one: the longest chain) in its own process, at normal priority.
# -v: its steps' figures are printed passing too (the lines its tests log,
# each with the time of day it was written).
(
  $GO test "${exec_flag[@]}" -v -tags realnode -count=1 -timeout 25m ./test/cluster 2>&1 |
    perl -MPOSIX -pe '$|=1; print strftime("%T ", localtime)'
) >"$out/cluster" 2>&1 &
pids+=($!)

# shard DIR N: the package in DIR in N processes, its tests (fuzz seeds and
# examples too) split by name, every one in exactly one shard, each process
# with its own servers.
shard() {
  local dir=$1 n=$2 s i names regex tests
  mapfile -t tests < <(grep -hoE '^func (Test[A-Za-z0-9_]*\(t \*testing\.T\)|Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)|Example[A-Za-z0-9_]*\(\))' "$dir"/*_test.go |
    sed 's/^func //; s/(.*//' | sort)
  if [ "${#tests[@]}" -eq 0 ]; then
    echo "test.sh: no tests found in $dir" >&2
    exit 1
  fi
  for ((s = 0; s < n; s++)); do
    names=()
    for ((i = s; i < ${#tests[@]}; i += n)); do names+=("${tests[i]}"); done
    regex="^($(IFS='|'; echo "${names[*]}"))\$"
    low "${TEST_NICE:-10}" $GO test "${exec_flag[@]}" -count=1 -timeout 25m -run "$regex" "./$dir" >"$out/${dir//\//-}-$s" 2>&1 &
    pids+=($!)
  done
}
shard test/e2e "$SHARDS"

# shellcheck disable=SC2046
# The other packages, built with the realnode tag as test/cluster is.
low "${TEST_NICE:-10}" $GO test "${exec_flag[@]}" -tags realnode -count=1 -p "$P" -timeout 25m $($GO list -tags realnode ./... | grep -v -e '/test/e2e$' -e '/test/lane$' -e '/test/cluster$') >"$out/rest" 2>&1 &
pids+=($!)

rc=0
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then rc=1; fi
done
cat "$out/rest"
if grep -qE '^[0-9:]{8} ok' "$out/cluster"; then
  grep -E '^[0-9:]{8} (--- |ok|    [a-z_]+\.go:[0-9]+: )' "$out/cluster"
else
  cat "$out/cluster"
fi
if grep -q '^ok' "$out/lane"; then
  grep -E '^(--- |ok|lane:)' "$out/lane"
else
  cat "$out/lane"
fi
if [ -f "$out/cpu" ]; then
  echo "# CPU seconds per test binary (user+sys, wall)"
  awk -F: '{n=split($1,p,"/"); split(p[n],b," "); printf "%-22s %7.1f %7.1f\n", b[1], $2+$3, $4}' "$out/cpu" | sort -k2 -n -r
fi
for f in "$out"/test-e2e-*; do
  echo "# shard ${f##*/}"
  cat "$f"
done
exit $rc
