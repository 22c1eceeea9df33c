#!/usr/bin/env bash
# Builds KubeVirt's own components for the real node (issue 23;
# docs/development.md, "KubeVirt on the real node") from the Go module
# proxy, per tag of NODE_TAGS: virt-api, virt-controller, virt-handler,
# virt-launcher and their helpers (virt-operator comes from
# hack/virt-operator.sh); and the launcher's root filesystem from Debian's
# libvirt and qemu, as one layer tar shared by every image. Idempotent: a
# tag with every binary and a matching stamp is skipped.
#
#   hack/kubevirt.sh             build what is missing, print the folder
#   NODE_TAGS="v1.7.0"           build only these tags
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}
DIR=${KUBEVIRT_DIR:-$CACHE/kvgitops/kubevirt}
NODE_TAGS=${NODE_TAGS:-v1.7.0 v1.8.4}
# name:CGO_ENABLED. virt-handler and virt-launcher need cgo (libvirt's Go
# bindings against Debian's libvirt-dev; the handler's node labeller).
CMDS=(virt-api:0 virt-controller:0 virt-chroot:0 virt-probe:0 virt-tail:0 virt-freezer:0 virt-launcher-monitor:0 virt-handler:1 virt-launcher:1)
PACKAGES=(gcc libc6-dev libvirt-dev libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-system-data procps util-linux libcap2-bin)

log() { printf 'kubevirt: %s\n' "$*" >&2; }
# shellcheck source=hack/kubevirt-mod.sh
. "$here/kubevirt-mod.sh"
# shellcheck source=hack/apt.sh
. "$here/apt.sh"


build_tag() {
  local tag=$1 out=$DIR/$1
  local stamp="${CMDS[*]} container-disk $tag, $(go env GOVERSION)" fresh=0 ok=1
  [[ "$(cat "$out/.stamp" 2>/dev/null)" == "$stamp" ]] && fresh=1
  for c in "${CMDS[@]}" container-disk:0; do [[ -x $out/${c%:*} ]] || ok=0; done
  [[ $fresh == 1 && $ok == 1 ]] && return
  local start=$SECONDS mod=$work/$tag pkgs=()
  mkdir -p "$out"
  for c in "${CMDS[@]}"; do pkgs+=("cmd/${c%:*}"); done
  log "resolving kubevirt.io/kubevirt $tag through the module proxy"
  kubevirt_module "$mod" "$tag" "${pkgs[@]}"
  for c in "${CMDS[@]}"; do
    [[ $fresh == 1 && -x $out/${c%:*} ]] && continue
    log "building ${c%:*} $tag"
    kubevirt_build "$mod" "$tag" "cmd/${c%:*}" "$out/${c%:*}" "${c#*:}"
  done
  local src
  src=$(go env GOMODCACHE)/kubevirt.io/kubevirt@$tag
  gcc -static -O2 -o "$out/container-disk" "$src/cmd/container-disk-v2alpha/main.c"
  # The launcher's configuration of the tag (its image's /etc/libvirt).
  mkdir -p "$out/etc/libvirt/hooks"
  install -m 0644 "$src/cmd/virt-launcher/qemu.conf" "$src/cmd/virt-launcher/virtqemud.conf" "$out/etc/libvirt/"
  install -m 0755 "$src/cmd/virt-launcher/qemu" "$out/etc/libvirt/hooks/qemu"
  install -m 0755 "$src/cmd/virt-launcher/node-labeller/node-labeller.sh" "$out/node-labeller.sh"
  echo "$stamp" >"$out/.stamp"
  log "$tag ready in $((SECONDS - start))s"
}

# closure is the Depends/Pre-Depends closure of the installed packages $@.
closure() {
  local -A seen=()
  local todo=("$@") p
  while ((${#todo[@]})); do
    p=${todo[0]}; todo=("${todo[@]:1}")
    [[ -n ${seen[$p]:-} ]] && continue
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || continue
    seen[$p]=1
    # shellcheck disable=SC2207
    todo+=($(dpkg-query -W -f '${Depends}, ${Pre-Depends}' "$p" | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/:any//' | awk 'NF {print $1}'))
  done
  printf '%s\n' "${!seen[@]}" | sort
}

# rootfs writes the launcher's root filesystem (every KubeVirt image here
# shares it) as a layer tar with extended attributes: Debian's libvirt 9.0
# and qemu 7.2 with what they depend on, qemu:107 and libvirt-qemu in
# passwd, and a virtqemud that runs libvirtd (Debian 12 has no modular
# daemons).
rootfs() {
  local out=$DIR/rootfs.tar stamp
  stamp="rootfs $(dpkg-query -W -f '${Version}' libvirt-daemon qemu-system-x86)"
  [[ -f $out && "$(cat "$DIR/rootfs.stamp" 2>/dev/null)" == "$stamp" ]] && return
  log "writing the launcher's root filesystem from Debian's packages"
  local r=$work/root pkgs
  pkgs=$(closure bash coreutils libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-system-data procps util-linux grep sed base-files base-passwd libc-bin)
  mkdir -p "$r"
  # usrmerge: dpkg lists /bin/x; the files live under /usr.
  # shellcheck disable=SC2086
  for p in $pkgs; do dpkg -L "$p"; done | sed -E 's#^/(bin|sbin|lib|lib64)/#/usr/\1/#' | sort -u |
    while read -r f; do if [[ -f $f || -L $f ]]; then echo "${f#/}"; fi; done >"$work/files"
  tar -C / -cf - --no-recursion -T "$work/files" 2>/dev/null | tar -C "$r" -xf -
  for l in bin sbin lib lib64; do ln -s "usr/$l" "$r/$l"; done
  [[ -e $r/usr/bin/sh ]] || ln -s bash "$r/usr/bin/sh" # node-labeller runs /bin/sh
  mkdir -p "$r"/{etc/libvirt/hooks,run,tmp,proc,sys,dev,var/log/libvirt,var/lib/libvirt,var/cache/libvirt,home/qemu,root,usr/lib64/qemu-kvm,var/lib/kubevirt-node-labeller}
  chmod 1777 "$r/tmp"
  rm -rf "$r/var/run"; ln -s ../run "$r/var/run"
  printf 'root:x:0:0:root:/root:/bin/bash\nqemu:x:107:107::/home/qemu:/bin/bash\nlibvirt-qemu:x:64055:108::/var/lib/libvirt:/usr/sbin/nologin\nnonroot:x:1001:1001::/home/qemu:/usr/sbin/nologin\n' >"$r/etc/passwd"
  printf 'root:x:0:\nqemu:x:107:\nkvm:x:108:\nlibvirt-qemu:x:64055:\nnonroot:x:1001:\n' >"$r/etc/group"
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$r/etc/nsswitch.conf"
  chown 107:107 "$r/home/qemu"
  [[ -f /etc/libvirt/virtlogd.conf ]] && cp /etc/libvirt/virtlogd.conf "$r/etc/libvirt/" || touch "$r/etc/libvirt/virtlogd.conf"
  cat >"$r/usr/sbin/virtqemud" <<'SH'
#!/bin/bash
# Debian 12 has no virtqemud: libvirtd with the qemu driver takes its
# arguments and configuration; its sockets get virtqemud's names.
dir=/run/libvirt
[[ $(id -u) == 0 ]] || dir=${XDG_RUNTIME_DIR:-/run}/libvirt
(for _ in $(seq 100); do
  if [[ -S $dir/libvirt-sock ]]; then ln -sf libvirt-sock "$dir/virtqemud-sock"; ln -sf libvirt-sock-ro "$dir/virtqemud-sock-ro"; break; fi
  sleep 0.1
done) &
exec /usr/sbin/libvirtd "$@"
SH
  chmod 755 "$r/usr/sbin/virtqemud"
  tar -C "$r" --xattrs --xattrs-include='*' --numeric-owner -cf "$out.tmp" .
  mv "$out.tmp" "$out"
  echo "$stamp" >"$DIR/rootfs.stamp"
  log "root filesystem: $(du -h "$out" | cut -f1)"
}

apt_install "${PACKAGES[@]}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$DIR"
for t in $NODE_TAGS; do build_tag "$t"; done
rootfs
echo "$DIR"
