#!/usr/bin/env bash
# Builds the test control plane (kube-apiserver and etcd) from source fetched
# through the Go module proxy, into a cache folder outside the source tree.
# Idempotent: when both binaries exist with a matching stamp it returns at once.
#
#   hack/testbin.sh            build if missing, print the folder
#   KUBE_VERSION / ETCD_VERSION override the versions.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-1.37.2}
ETCD_VERSION=${ETCD_VERSION:-3.6.13}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}
DIR=${TESTBIN_DIR:-$CACHE/kvgitops/testbin/$KUBE_VERSION}
STAMP="kube-apiserver v$KUBE_VERSION, etcd v$ETCD_VERSION"

log() { printf 'testbin: %s\n' "$*" >&2; }

if [[ -x $DIR/kube-apiserver && -x $DIR/etcd && "$(cat "$DIR/.stamp" 2>/dev/null)" == "$STAMP" ]]; then
  echo "$DIR"
  exit 0
fi

mkdir -p "$DIR"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# shellcheck source=hack/kube.sh
. "$(dirname "$0")/kube.sh"

build_apiserver() {
  kube_module "$work/apiserver" "$KUBE_VERSION" kube-apiserver
  log "building kube-apiserver v$KUBE_VERSION (about 5 minutes cold on 2 cores)"
  kube_build "$work/apiserver" "$KUBE_VERSION" kube-apiserver "$DIR/kube-apiserver"
}

build_etcd() {
  local mod=$work/etcd
  mkdir -p "$mod"
  cd "$mod"
  cat >go.mod <<MOD
module kvgitops.local/testbin/etcd

go 1.26
MOD
  cat >tools.go <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
  log "resolving go.etcd.io/etcd/server/v3 v$ETCD_VERSION through the module proxy"
  go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" >/dev/null 2>&1 || go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
  go mod tidy -e >/dev/null 2>&1 || true
  log "building etcd v$ETCD_VERSION (under a minute cold)"
  CGO_ENABLED=0 go build -trimpath -o "$DIR/etcd.tmp" \
    -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=v$ETCD_VERSION" \
    go.etcd.io/etcd/server/v3
  mv "$DIR/etcd.tmp" "$DIR/etcd"
}

start=$(date +%s)
[[ -x $DIR/etcd ]] || build_etcd
[[ -x $DIR/kube-apiserver ]] || build_apiserver
echo "$STAMP" >"$DIR/.stamp"
log "ready in $DIR ($(( $(date +%s) - start ))s)"
echo "$DIR"
