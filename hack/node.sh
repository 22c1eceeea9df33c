#!/usr/bin/env bash
# Builds what a real Kubernetes node needs beside the test control plane
# (issue 23; docs/development.md, "A real node"): kubelet,
# kube-controller-manager, kube-scheduler and kube-proxy from the Go module
# proxy, like hack/testbin.sh builds kube-apiserver, into a cache folder;
# and Debian's containerd, runc, CNI plugins, iptables and conntrack.
# Idempotent: with every binary there and a matching stamp it returns at once.
#
#   hack/node.sh               build if missing, print the folder
#   KUBE_VERSION overrides the version.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-1.37.2}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}
DIR=${NODE_DIR:-$CACHE/kvgitops/node/$KUBE_VERSION}
CMDS=(kubelet kube-controller-manager kube-scheduler kube-proxy)
PACKAGES=(containerd runc containernetworking-plugins iptables conntrack)
STAMP="${CMDS[*]} v$KUBE_VERSION"

log() { printf 'node: %s\n' "$*" >&2; }
# shellcheck source=hack/apt.sh
. "$(dirname "$0")/apt.sh"


built() {
  [[ "$(cat "$DIR/.stamp" 2>/dev/null)" == "$STAMP" ]] || return 1
  for c in "${CMDS[@]}"; do [[ -x $DIR/$c ]] || return 1; done
}

apt_install "${PACKAGES[@]}"
if built; then
  echo "$DIR"
  exit 0
fi

# shellcheck source=hack/kube.sh
. "$(dirname "$0")/kube.sh"
mkdir -p "$DIR"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
kube_module "$work/node" "$KUBE_VERSION" "${CMDS[@]}"
for c in "${CMDS[@]}"; do
  [[ -x $DIR/$c ]] && continue
  log "building $c v$KUBE_VERSION"
  kube_build "$work/node" "$KUBE_VERSION" "$c" "$DIR/$c"
done
echo "$STAMP" >"$DIR/.stamp"
log "ready in $DIR ($(( $(date +%s) - start ))s)"
echo "$DIR"
