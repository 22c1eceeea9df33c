# Sourced by hack/virt-operator.sh and hack/kubevirt.sh: build commands of
# kubevirt.io/kubevirt at a tag from the Go module proxy (which serves it at
# exact tags only).
#
#   kubevirt_module DIR TAG PKG...   a throwaway module in DIR that requires
#                                    kubevirt.io/kubevirt TAG and imports the
#                                    packages PKG (e.g. cmd/virt-api)
#   kubevirt_build DIR TAG PKG OUT CGO   build PKG with CGO_ENABLED=CGO (in
#                                    the environment kubevirt_module set)
#
# The module repeats the tag's replace lines, except its ./staging ones,
# which become kubevirt.io/api and kubevirt.io/client-go at the same tag;
# plus the extra lines and build environment of hack/virt-operator-tags.tsv.

KUBEVIRT_TAGS_TABLE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/virt-operator-tags.tsv
KUBEVIRT_LIBNBD_STUB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/libnbd-stub

kubevirt_module() {
  local mod=$1 tag=$2
  shift 2
  mkdir -p "$mod"
  local gomod
  gomod=$(go mod download -json "kubevirt.io/kubevirt@$tag" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  [[ -f $gomod ]] || { log "the module proxy does not serve kubevirt.io/kubevirt@$tag"; return 1; }
  {
    printf 'module kvgitops.local/kubevirt\n\ngo 1.26\n\nrequire kubevirt.io/kubevirt %s\n\nreplace (\n' "$tag"
    awk '/^replace \(/{r=1; next} r && /^\)/{r=0} r && /=>/ && !/=> \.\//' "$gomod"
    printf '\tkubevirt.io/api => kubevirt.io/api %s\n\tkubevirt.io/client-go => kubevirt.io/client-go %s\n' "$tag" "$tag"
    # virt-launcher from v1.8 imports libguestfs.org/libnbd at a version
    # the proxy refuses (403); only its NBD backup client uses it.
    if grep -q 'libguestfs.org/libnbd' "$gomod"; then printf '\tlibguestfs.org/libnbd => %s\n' "$KUBEVIRT_LIBNBD_STUB"; fi
    local extra
    extra=$(awk -v t="$tag" '$1 == t && $2 != "-" {print $2}' "$KUBEVIRT_TAGS_TABLE")
    if [[ -n $extra ]]; then tr ';' '\n' <<<"$extra" | sed 's/^/\t/'; echo; fi
    printf ')\n'
  } >"$mod/go.mod"
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    for p in "$@"; do printf '\t_ "kubevirt.io/kubevirt/%s"\n' "$p"; done
    printf ')\n'
  } >"$mod/tools.go"
  kubevirt_env "$tag"
  (cd "$mod" && go mod tidy -e >/dev/null 2>&1 || true)
}

# kubevirt_env exports the tag's build environment (e.g. GONOSUMDB for a
# dependency the checksum database does not know: fetched from the proxy
# all the same).
kubevirt_env() {
  local env
  env=$(awk -v t="$1" '$1 == t && $3 != "-" {print $3}' "$KUBEVIRT_TAGS_TABLE")
  if [[ -n $env ]]; then export "${env?}"; fi
}

kubevirt_build() {
  local mod=$1 tag=$2 pkg=$3 out=$4 cgo=$5
  local v=kubevirt.io/client-go/version major=${tag#v} minor
  minor=${major#*.}; minor=${minor%%.*}; major=${major%%.*}
  local ld="-s -w -X $v.gitVersion=$tag -X $v.gitMajor=$major -X $v.gitMinor=$minor -X $v.gitTreeState=clean -X $v.buildDate=1970-01-01T00:00:00Z"
  (cd "$mod" && CGO_ENABLED=$cgo go build -trimpath -ldflags "$ld" -o "$out.tmp" "kubevirt.io/kubevirt/$pkg")
  mv "$out.tmp" "$out"
}
