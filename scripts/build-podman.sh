#!/usr/bin/env bash
# build-podman.sh: builds bin/podman from a podman source tree with the cfs
# driver vendored in, the way a packager would:
#
#   1. unpack (or copy) the podman source into a build directory,
#   2. copy this repository's non-test Go packages the driver needs into
#      podman's vendor/github.com/cfs-storage/cfs-storage/…, list them in
#      vendor/modules.txt and add a require line to podman's go.mod,
#   3. add cmd/podman/zz_cfs_driver.go importing
#      github.com/cfs-storage/cfs-storage/driver (which registers "cfs"),
#   4. go build -mod=vendor -trimpath ./cmd/podman.
#
# Our packages compile against podman's vendored dependency versions
# (go.podman.io/storage, golang.org/x/sys, …), not against our go.mod's.
# A third-party package ours need that podman does not vendor is copied
# from the Go module cache, at the version our go.mod selects, the same way
# (and reported on stderr).
#
# Environment:
#   PODMAN_SRC        podman source: a directory or a .tar.xz/.tar.gz tarball
#                     (default ../shared/podman/podman-src.tar.xz next to
#                     this repository)
#   PODMAN_OUT        the binary to write (default bin/podman)
#   PODMAN_BUILD_DIR  the build directory (default .cache/podman-build,
#                     gitignored; wiped for every build)
#   PODMAN_TAGS       build tags (default below)
#   PODMAN_CACHE      where built binaries are kept by input hash, so that
#                     another clone on this machine (CI's) copies instead of
#                     building (default ~/.cache/cfs-storage/podman; "" for
#                     none; the three newest are kept)
#
# Nothing is rebuilt when the binary exists and a hash of the inputs (the
# source, our packages, go.mod/go.sum, this script, the Go version and the
# tags) equals the one recorded beside it in PODMAN_OUT.inputs, or when
# PODMAN_CACHE has a binary of that hash.
# Exit status: 0 built or up to date, 2 no podman source, 1 anything else.
set -euo pipefail

self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
repo=$(dirname "$(dirname "$self")")
src=${PODMAN_SRC:-$repo/../shared/podman/podman-src.tar.xz}
out=${PODMAN_OUT:-$repo/bin/podman}
build=${PODMAN_BUILD_DIR:-$repo/.cache/podman-build}
tags=${PODMAN_TAGS:-exclude_graphdriver_btrfs containers_image_openpgp libsqlite3 seccomp}
cache=${PODMAN_CACHE-${XDG_CACHE_HOME:-$HOME/.cache}/cfs-storage/podman}
module=github.com/cfs-storage/cfs-storage
# The packages the driver needs, in import order (checked below against
# `go list -deps`, so a new internal import cannot be forgotten).
pkgs=(driver layers layers/tree layers/erofs dedup dedup/fsverity hostlink hostlink/gvariant internal/atomicfile)

export PATH=/usr/local/go/bin:$PATH
# The repository's GOFLAGS (its own tags) must not leak into podman's build.
export GOFLAGS= GOWORK=off GOTOOLCHAIN=local
go=${GO:-go}

if [ ! -e "$src" ]; then
	echo "build-podman: no podman source at $src (set PODMAN_SRC to a podman source directory or tarball)" >&2
	exit 2
fi
src=$(cd "$(dirname "$src")" && pwd)/$(basename "$src")
[[ "$out" = /* ]] || out=$PWD/$out

cd "$repo"
# The non-test files of our packages, as copied (testdata stays out).
pkgfiles() {
	local p
	for p in "${pkgs[@]}"; do
		find "$p" -maxdepth 1 -type f \( -name '*.go' ! -name '*_test.go' -o -name '*.s' -o -name '*.c' -o -name '*.h' \) | LC_ALL=C sort
	done
}

# Hash of everything the binary depends on.
inputs_hash() {
	{
		echo "tags=$tags"
		"$go" version
		sha256sum "$self"
		sha256sum go.mod go.sum
		pkgfiles | xargs -r sha256sum
		if [ -d "$src" ]; then
			(cd "$src" && find . -path ./.git -prune -o -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
		else
			sha256sum <"$src"
		fi
	} | sha256sum | cut -d' ' -f1
}
# Our module's pseudo-version, v0.0.0-<UTC commit time>-<12 hex>, of the
# last commit that changed the copied packages (uncommitted changes are
# copied as they are; the input hash covers them).
version=v0.0.0-00010101000000-000000000000
if rev=$(TZ=UTC git log -1 --format='%cd %H' --date=format-local:%Y%m%d%H%M%S -- "${pkgs[@]}" 2>/dev/null) && [ -n "$rev" ]; then
	version="v0.0.0-${rev%% *}-$(echo "${rev##* }" | cut -c1-12)"
fi
hash=$( (echo "$version"; inputs_hash) | sha256sum | cut -d' ' -f1)
if [ -x "$out" ] && [ "$(cat "$out.inputs" 2>/dev/null)" = "$hash" ]; then
	echo "build-podman: $out is up to date (inputs $hash)"
	exit 0
fi
# Binaries built from the same inputs by another clone on this machine.
if [ -n "$cache" ] && [ -x "$cache/$hash" ]; then
	mkdir -p "$(dirname "$out")"
	cp "$cache/$hash" "$out.tmp" && mv "$out.tmp" "$out"
	echo "$hash" >"$out.inputs"
	echo "build-podman: $out taken from the cache $cache (inputs $hash)"
	exit 0
fi

# Check that pkgs is exactly the set of our packages the driver imports.
need=$("$go" list -tags "${tags// /,}" -deps -f '{{if .Module}}{{if eq .Module.Path "'$module'"}}{{.ImportPath}}{{end}}{{end}}' ./driver | sed "s|^$module/||" | LC_ALL=C sort)
have=$(printf '%s\n' "${pkgs[@]}" | LC_ALL=C sort)
if [ "$need" != "$have" ]; then
	echo "build-podman: the driver's packages changed; update pkgs in $self" >&2
	diff <(echo "$have") <(echo "$need") >&2 || true
	exit 1
fi

start=$(date +%s)
echo "build-podman: building $out from $src"
rm -rf "$build"
mkdir -p "$build"
if [ -d "$src" ]; then
	mkdir "$build/podman"
	(cd "$src" && tar -c --exclude=./.git --exclude=./bin .) | tar -x -C "$build/podman"
	top=$build/podman
else
	tar -x -f "$src" -C "$build"
	top=$(find "$build" -mindepth 2 -maxdepth 2 -name go.mod -printf '%h\n' | head -n1)
	[ -n "$top" ] || { echo "build-podman: no go.mod at the top of $src" >&2; exit 1; }
fi
[ -f "$top/vendor/modules.txt" ] && [ -d "$top/cmd/podman" ] || {
	echo "build-podman: $src is not a vendored podman source tree" >&2
	exit 1
}

gover=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$repo/go.mod")

# Copy our packages.
vend=$top/vendor/$module
for p in "${pkgs[@]}"; do
	mkdir -p "$vend/$p"
done
pkgfiles | while read -r f; do cp "$f" "$vend/$f"; done
cp LICENSE "$vend/" 2>/dev/null || true
{
	echo "# $module $version"
	echo "## explicit; go $gover"
	for p in "${pkgs[@]}"; do echo "$module/$p"; done
} >>"$top/vendor/modules.txt"
(cd "$top" && "$go" mod edit -require="$module@$version")

cat >"$top/cmd/podman/zz_cfs_driver.go" <<'EOF'
package main

// Registers the cfs graph driver (driver = "cfs" in storage.conf).
import _ "github.com/cfs-storage/cfs-storage/driver"
EOF

# Third-party packages ours import that podman does not vendor: copy them
# from the module cache at our go.mod's version (repeat: they may import
# more). A package of a module podman vendors is added to that module's
# block; a new module gets a block and a require line of its own.
cd "$top"
for round in 1 2 3 4 5 6 7 8; do
	missing=$("$go" list -mod=vendor -e -tags "${tags// /,}" -deps -f '{{if .Error}}{{.ImportPath}}{{end}}' ./cmd/podman 2>/dev/null | grep -v "^$module" || true)
	[ -z "$missing" ] && break
	for p in $missing; do
		info=$(cd "$repo" && "$go" list -f '{{.Module.Path}} {{.Module.Version}} {{.Dir}} {{.Module.GoVersion}}' "$p" 2>/dev/null) || {
			echo "build-podman: $p is needed but neither vendored by podman nor in our module graph" >&2
			"$go" list -mod=vendor -e -tags "${tags// /,}" -deps -f '{{if .Error}}{{.Error}}{{end}}' ./cmd/podman >&2 || true
			exit 1
		}
		read -r mpath mver pdir mgo <<<"$info"
		echo "build-podman: podman does not vendor $p; copying it from the module cache ($mpath $mver)" >&2
		mkdir -p "vendor/$p"
		find "$pdir" -maxdepth 1 -type f \( -name '*.go' ! -name '*_test.go' -o -name '*.s' -o -name '*.c' -o -name '*.h' \) -exec cp {} "vendor/$p/" \;
		if grep -q "^# $mpath " vendor/modules.txt; then
			awk -v m="# $mpath " -v p="$p" '
				index($0, m) == 1 { inmod = 1; print; next }
				inmod && /^# / { print p; inmod = 0 }
				{ print }
				END { if (inmod) print p }' vendor/modules.txt >vendor/modules.txt.new
			mv vendor/modules.txt.new vendor/modules.txt
		else
			printf '# %s %s\n## explicit%s\n%s\n' "$mpath" "$mver" "${mgo:+; go $mgo}" "$p" >>vendor/modules.txt
			"$go" mod edit -require="$mpath@$mver"
		fi
	done
done

mkdir -p "$(dirname "$out")"
"$go" build -mod=vendor -trimpath -buildvcs=false -tags "$tags" -o "$out.tmp" ./cmd/podman
mv "$out.tmp" "$out"
echo "$hash" >"$out.inputs"
if [ -n "$cache" ] && mkdir -p "$cache" 2>/dev/null; then
	cp "$out" "$cache/$hash.tmp" && mv "$cache/$hash.tmp" "$cache/$hash"
	# Keep the three newest.
	ls -t "$cache" | tail -n +4 | while read -r old; do rm -f "$cache/$old"; done
fi
echo "build-podman: built $out in $(($(date +%s) - start))s ($("$out" --version))"
