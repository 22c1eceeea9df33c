#!/usr/bin/env bash
# Builds KubeVirt's virt-operator and resource-generator for the tags of
# hack/virt-operator-tags.tsv from the Go module proxy, into a cache folder
# next to the test control plane. Idempotent: a tag whose binaries exist
# with a matching stamp is skipped.
#
#   hack/virt-operator.sh          build what is missing, print the folder
#   OPERATOR_TAGS="v1.7.0"         build only these tags
#
# How: a throwaway module per tag (hack/kubevirt-mod.sh).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}
DIR=${OPERATOR_DIR:-$CACHE/kvgitops/virt-operator}
TABLE=$here/virt-operator-tags.tsv

log() { printf 'virt-operator: %s\n' "$*" >&2; }
# shellcheck source=hack/kubevirt-mod.sh
. "$here/kubevirt-mod.sh"

tags=${OPERATOR_TAGS:-$(awk '!/^#/ && NF {print $1}' "$TABLE")}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

build() {
  local tag=$1 out=$DIR/$1
  local stamp="virt-operator $tag, $(go env GOVERSION)"
  if [[ -x $out/virt-operator && -x $out/resource-generator && "$(cat "$out/.stamp" 2>/dev/null)" == "$stamp" ]]; then
    return
  fi
  local start=$SECONDS mod=$work/$tag
  mkdir -p "$out"
  log "resolving kubevirt.io/kubevirt $tag through the module proxy"
  kubevirt_module "$mod" "$tag" cmd/virt-operator tools/resource-generator
  log "building virt-operator and resource-generator $tag (about 3-4 minutes cold on 2 cores)"
  kubevirt_build "$mod" "$tag" cmd/virt-operator "$out/virt-operator" 0
  kubevirt_build "$mod" "$tag" tools/resource-generator "$out/resource-generator" 0
  echo "$stamp" >"$out/.stamp"
  log "$tag ready in $((SECONDS - start))s"
}

for t in $tags; do build "$t"; done
echo "$DIR"
