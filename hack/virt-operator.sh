#!/usr/bin/env bash
# Builds KubeVirt's virt-operator and resource-generator for the tags of
# hack/virt-operator-tags.tsv from the Go module proxy, into a cache folder
# next to the test control plane. Idempotent: a tag whose binaries exist
# with a matching stamp is skipped.
#
#   hack/virt-operator.sh          build what is missing, print the folder
#   OPERATOR_TAGS="v1.7.0"         build only these tags
#
# How: a throwaway module requires kubevirt.io/kubevirt at the tag and
# repeats its replace lines, except the ./staging ones, which become
# kubevirt.io/api and kubevirt.io/client-go at the same tag from the proxy.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}
DIR=${OPERATOR_DIR:-$CACHE/kvgitops/virt-operator}
TABLE=$here/virt-operator-tags.tsv

log() { printf 'virt-operator: %s\n' "$*" >&2; }

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
  mkdir -p "$mod" "$out"
  log "resolving kubevirt.io/kubevirt $tag through the module proxy"
  local gomod
  gomod=$(go mod download -json "kubevirt.io/kubevirt@$tag" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  [[ -f $gomod ]] || { log "the module proxy does not serve kubevirt.io/kubevirt@$tag"; exit 1; }
  {
    printf 'module kvgitops.local/virt-operator\n\ngo 1.26\n\nrequire kubevirt.io/kubevirt %s\n\nreplace (\n' "$tag"
    # The tag's own replace lines, but for its ./staging folders.
    awk '/^replace \(/{r=1; next} r && /^\)/{r=0} r && /=>/ && !/=> \.\//' "$gomod"
    printf '\tkubevirt.io/api => kubevirt.io/api %s\n\tkubevirt.io/client-go => kubevirt.io/client-go %s\n' "$tag" "$tag"
    local extra
    extra=$(awk -v t="$tag" '$1 == t && $2 != "-" {print $2}' "$TABLE")
    if [[ -n $extra ]]; then tr ';' '\n' <<<"$extra" | sed 's/^/\t/'; echo; fi
    printf ')\n'
  } >"$mod/go.mod"
  cat >"$mod/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "kubevirt.io/kubevirt/cmd/virt-operator"
	_ "kubevirt.io/kubevirt/tools/resource-generator"
)
GO
  # Per-tag build environment, e.g. a dependency the checksum database
  # does not know (GONOSUMDB): fetched from the proxy all the same.
  local env
  env=$(awk -v t="$tag" '$1 == t && $3 != "-" {print $3}' "$TABLE")
  if [[ -n $env ]]; then export $env; fi
  (cd "$mod" && go mod tidy -e >/dev/null 2>&1 || true)
  local v=kubevirt.io/client-go/version major=${tag#v} minor
  minor=${major#*.}; minor=${minor%%.*}; major=${major%%.*}
  local ld="-s -w -X $v.gitVersion=$tag -X $v.gitMajor=$major -X $v.gitMinor=$minor -X $v.gitTreeState=clean -X $v.buildDate=1970-01-01T00:00:00Z"
  log "building virt-operator and resource-generator $tag (about 3-4 minutes cold on 2 cores)"
  (cd "$mod" && CGO_ENABLED=0 go build -trimpath -ldflags "$ld" -o "$out/virt-operator.tmp" kubevirt.io/kubevirt/cmd/virt-operator \
    && CGO_ENABLED=0 go build -trimpath -ldflags "$ld" -o "$out/resource-generator.tmp" kubevirt.io/kubevirt/tools/resource-generator)
  mv "$out/virt-operator.tmp" "$out/virt-operator"
  mv "$out/resource-generator.tmp" "$out/resource-generator"
  echo "$stamp" >"$out/.stamp"
  log "$tag ready in $((SECONDS - start))s"
}

for t in $tags; do build "$t"; done
echo "$DIR"
