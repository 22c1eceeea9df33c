# Sourced by hack/testbin.sh and hack/node.sh: build commands of
# k8s.io/kubernetes from the Go module proxy.
#
#   kube_module DIR VERSION CMD...   a throwaway module in DIR that requires
#                                    k8s.io/kubernetes VERSION, its staging
#                                    modules pinned to the matching v0.x tag
#   kube_build DIR VERSION CMD OUT   build cmd/CMD of that module into OUT

# Staging modules of k8s.io/kubernetes are replaced by ./staging paths in its
# go.mod; a consumer module must pin each of them to the matching v0.x tag.
kube_module() {
  local mod=$1 version=$2
  shift 2
  local staging=0.${version#1.}
  mkdir -p "$mod"
  (
    cd "$mod"
    printf 'module kvgitops.local/kube\n\ngo 1.26\n' >go.mod
    log "resolving k8s.io/kubernetes v$version through the module proxy"
    local gomod
    gomod=$(go mod download -json "k8s.io/kubernetes@v$version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
    [[ -f $gomod ]] || { log "could not download the go.mod of k8s.io/kubernetes v$version"; exit 1; }
    local n=0
    while read -r m; do
      echo "replace $m => $m v$staging" >>go.mod
      n=$((n + 1))
    done < <(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\1#p' "$gomod")
    log "pinned $n staging modules to v$staging"
    {
      printf '//go:build tools\n\npackage tools\n\nimport (\n'
      for c in "$@"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$c"; done
      printf ')\n'
    } >tools.go
    go get "k8s.io/kubernetes@v$version" >/dev/null 2>&1 || go get "k8s.io/kubernetes@v$version"
    # Twice: the first pass can leave a module some command needs (kube-proxy).
    go mod tidy -e >/dev/null 2>&1 || true
    go mod tidy -e >/dev/null 2>&1 || true
  )
}

kube_build() {
  local mod=$1 version=$2 cmd=$3 out=$4
  local pkg=k8s.io/component-base/version
  local major=${version%%.*} minor=${version#*.}
  minor=${minor%%.*}
  (
    cd "$mod"
    CGO_ENABLED=0 go build -trimpath -o "$out.tmp" \
      -ldflags "-s -w -X $pkg.gitVersion=v$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z" \
      "k8s.io/kubernetes/cmd/$cmd"
  )
  mv "$out.tmp" "$out"
}
