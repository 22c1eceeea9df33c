#!/usr/bin/env bash
# Builds the linters `make lint` runs and Prometheus's promtool (the alert
# rules' tests), at pinned versions, from the Go module proxy into the
# cache (idempotent: a built version is reused).
# Prints the directory holding them.
set -euo pipefail
GO=${GO:-go}
dir=${TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kvgitops/tools}
pins=(
  "staticcheck honnef.co/go/tools/cmd/staticcheck@v0.8.2"
  "exhaustive github.com/nishanths/exhaustive/cmd/exhaustive@v0.17.1"
  "gocyclo github.com/fzipp/gocyclo/cmd/gocyclo@v0.6.0"
  "promtool github.com/prometheus/prometheus/cmd/promtool@v0.316.0"
)
mkdir -p "$dir"
for pin in "${pins[@]}"; do
  name=${pin%% *}
  pkg=${pin#* }
  want=${pkg##*@}
  have=$( [ -x "$dir/$name" ] && "$GO" version -m "$dir/$name" 2>/dev/null | awk '$1 == "mod" {print $3; exit}' || true)
  if [ "$have" != "$want" ]; then
    echo "tools: building $pkg" >&2
    GOBIN=$dir timeout 1200 "$GO" install "$pkg"
  fi
done
echo "$dir"
