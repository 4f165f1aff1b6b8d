#!/usr/bin/env bash
# vm-kernel.sh [CACHE]: what the fs-verity VM test (tests/vm) needs.
#
# - Debian packages: qemu-system-x86, busybox-static, e2fsprogs, xz-utils
#   (installed by install-deps.sh when missing).
# - A Linux 6.12 kernel with fs-verity, EROFS file-backed mounts and
#   overlayfs data-only lowers: Debian's linux-image-6.12.*-cloud-amd64-
#   unsigned from bookworm-backports. The suite is added to apt's sources
#   (/etc/apt/sources.list.d/cfs-storage-backports.sources, once; backports
#   are never installed from unless asked for by name), the package is
#   fetched with `apt-get download` and unpacked with `dpkg -x` under
#   CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/cfs-storage/vm): it is
#   never installed as this machine's kernel. A kernel unpacked before is
#   used as it is, with no network.
#
# The last line printed is "kernel: DIR", DIR holding boot/vmlinuz-* and
# lib/modules/*.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/cfs-storage/vm}
mkdir -p "$cache"

"$here/install-deps.sh" qemu-system-x86 busybox-static e2fsprogs xz-utils

# A kernel unpacked before (the newest, if several).
cached=$(ls -d "$cache"/linux-image-6.12.*/.complete 2>/dev/null | sort -V | tail -1 || true)
if [ -n "$cached" ]; then
	echo "kernel: $(dirname "$cached")"
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "vm-kernel: must run as root to add bookworm-backports to apt's sources" >&2
	exit 1
fi
src=/etc/apt/sources.list.d/cfs-storage-backports.sources
if [ ! -f "$src" ]; then
	cat >"$src.tmp" <<'EOF'
# Added by cfs-storage's scripts/vm-kernel.sh: the fs-verity VM test
# downloads (never installs) a Linux 6.12 kernel package from here.
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
	mv "$src.tmp" "$src"
fi
# Refresh only this source's lists.
apt-get update -qq -o Dir::Etc::sourcelist="$src" -o Dir::Etc::sourceparts=- \
	-o APT::Get::List-Cleanup=0
pkg=$(apt-cache search --names-only '^linux-image-6\.12\.[0-9.]+\+[a-z0-9~+.]+-cloud-amd64-unsigned$' |
	awk '{print $1}' | sort -V | tail -1)
if [ -z "$pkg" ]; then
	echo "vm-kernel: no linux-image-6.12.*-cloud-amd64-unsigned package in bookworm-backports" >&2
	exit 1
fi
dir="$cache/$pkg"
rm -rf "$dir" "$cache/download"
mkdir -p "$cache/download"
# (apt warns that _apt cannot reach root's cache and downloads as root.)
(cd "$cache/download" && apt-get download -qq "$pkg" 2>&1 | grep -v 'unsandboxed' >&2 || true)
dpkg -x "$cache/download/${pkg}"_*.deb "$dir"
rm -rf "$cache/download"
touch "$dir/.complete"
echo "kernel: $dir"
