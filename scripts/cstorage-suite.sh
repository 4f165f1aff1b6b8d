#!/usr/bin/env bash
# cstorage-suite.sh [--driver NAME] [FILE.bats...]: runs containers/storage's
# own integration suite (tests/*.bats of the go.podman.io/storage module in
# go.mod) against a graph driver, cfs by default.
#
# At run time, with nothing fetched but Go modules, it
#   - builds c/storage's `containers-storage` CLI (cmd/containers-storage
#     of the module cache copy) with the cfs driver linked in, against this
#     repository's go.mod: the sources are copied into a generated package
#     _cstorage-build-XXXXXX/ at the repository root (a name starting with
#     `_`, which `./...` ignores; removed afterwards, ignored by git), with
#     its internal/opts package copied beside it and its import rewritten;
#   - copies tests/*.bats and their helpers into a scratch directory and
#     admits cfs wherever a `case "$STORAGE_DRIVER" in` gate admits overlay
#     (failing loudly when the gates are not the ones it expects);
#   - runs each file with `bats --tap` as root (STORAGE_DRIVER, STORAGE_BINARY,
#     TMPDIR on a local disk), and judges the results against
#     tests/cstorage-expected-failures.txt (features not implemented yet,
#     each naming its issue) and tests/cstorage-allowed-skips.txt (skips
#     that overlay has too). The lists apply to cfs only; for any other
#     driver (overlay, vfs: for comparison) every failure is unexpected and
#     every skip is reported but allowed.
#
# It exits non-zero on any failure not listed, on a listed failure that
# passes (so the list shrinks as features land), on a skip not allowed, and
# on a test that did not run. The last line it prints is
#   c/storage suite (DRIVER): N passed, N failed, N skipped, N expected failures
# (scripts/run-tests.sh parses it). Not root: it skips with a message,
# unless CI=true, when it fails.
#
# Environment: CSTORAGE_TMPDIR (default /var/tmp) holds the scratch
# directory; CSTORAGE_KEEP=1 keeps the scratch stores; CSTORAGE_TIMEOUT is
# the limit for one .bats file (default 30m). After a failing run the TAP
# logs and failure details stay in the scratch directory's logs/ (its path
# is printed); a passing run leaves nothing.
set -uo pipefail
# The whole script is one compound command, read before any of it runs, so
# that editing this file does not disturb a run in progress.
{

driver=cfs
files=()
while [ $# -gt 0 ]; do
	case "$1" in
	--driver) driver=${2:?--driver needs a name}; shift 2 ;;
	--driver=*) driver=${1#--driver=}; shift ;;
	-h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	-*) echo "cstorage-suite: unknown option $1" >&2; exit 2 ;;
	*) files+=("${1##*/}"); shift ;;
	esac
done

repo=$(cd "$(dirname "$0")/.." && pwd)
expected_list=$repo/tests/cstorage-expected-failures.txt
skips_list=$repo/tests/cstorage-allowed-skips.txt
# The gates of v1.65.1: 28 `case "$STORAGE_DRIVER" in` statements, each
# admitting overlay (apply-diff 1, check 10, dedup 1, delete-layer 1,
# idmaps 10, names 2, split-store 1, stale-tmpdir 1, stores 1), and two
# places that name overlay outright: ${TESTDIR}/root/overlay
# (stale-tmpdir.bats) and driver="overlay" in a storage.conf
# (apply-diff.bats). A new c/storage version that changes them must be
# looked at, and these numbers updated.
expected_gates=28
expected_patched=27 # all but stale-tmpdir's MakePrivate gate (see below)
expected_hardcoded=2

ci=false
[ "${CI:-}" = true ] && ci=true
# cannot_run MESSAGE: outside CI a missing prerequisite skips the suite;
# in CI it is a failure.
cannot_run() {
	if $ci; then
		echo "c/storage suite ($driver): FAILED: $1 (CI=true)" >&2
		exit 1
	fi
	echo "c/storage suite ($driver): skipped: $1 (CI=true makes this a failure)"
	exit 0
}
die() {
	echo "cstorage-suite: $*" >&2
	echo "c/storage suite ($driver): FAILED: $*"
	exit 1
}

[ "$(id -u)" -eq 0 ] || cannot_run "needs root (mounts, chown)"
command -v bats >/dev/null || cannot_run "bats is not installed (make deps installs it)"
# An expected failure must name the missing feature's issue (18 or 20).
bad=$(grep -vE '^[[:space:]]*(#|$)' "$expected_list" 2>/dev/null | grep -vE '#.*issue (18|20)\b')
[ -z "$bad" ] || die "entries of $expected_list without a comment naming issue 18 or 20: $bad"
export PATH=/usr/local/go/bin:$PATH
export GOFLAGS=${GOFLAGS:--tags=containers_image_openpgp,exclude_graphdriver_btrfs}
cd "$repo" || exit 1

# --- scratch directory, cleaned on exit ---
tmpbase=${CSTORAGE_TMPDIR:-/var/tmp}
mkdir -p "$tmpbase" || die "cannot create $tmpbase"
work=$(mktemp -d "$tmpbase/cstorage-suite.XXXXXX") || die "mktemp in $tmpbase failed"
build=""
# unmount_under DIR: lazily unmounts whatever a test left mounted under DIR,
# deepest first, so that removing DIR cannot reach into a mount.
unmount_under() {
	awk -v d="$1/" 'index($5 "/", d) == 1 { print $5 }' /proc/self/mountinfo |
		sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
}
cleanup() {
	local rc=$?
	[ -n "$build" ] && rm -rf "$build"
	unmount_under "$work"
	if [ "${CSTORAGE_KEEP:-0}" = 1 ]; then
		echo "cstorage-suite: scratch kept in $work"
	elif [ "$rc" -eq 0 ]; then
		rm -rf --one-file-system "$work"
	else
		rm -rf --one-file-system "$work/tmp" "$work/tests" "$work/bin" 2>/dev/null
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$work/bin" "$work/tests" "$work/tmp" "$work/logs"

# --- build containers-storage with the cfs driver ---
go mod download go.podman.io/storage || die "go mod download go.podman.io/storage failed"
cs=$(go list -m -f '{{.Dir}}' go.podman.io/storage) && [ -d "$cs/cmd/containers-storage" ] && [ -d "$cs/tests" ] ||
	die "go.podman.io/storage is not in the module cache ($cs)"
csver=$(go list -m -f '{{.Version}}' go.podman.io/storage)
for f in ${files[@]+"${files[@]}"}; do
	[ -f "$cs/tests/$f" ] || die "no test file $f in c/storage $csver (files: $(cd "$cs/tests" && echo *.bats))"
done
build=$(mktemp -d "$repo/_cstorage-build-XXXXXX") || die "mktemp in $repo failed"
pkg=github.com/cfs-storage/cfs-storage/${build##*/}
mkdir "$build/opts"
for f in "$cs"/cmd/containers-storage/*.go; do
	case "$f" in *_test.go) continue ;; esac
	cp "$f" "$build/"
done
for f in "$cs"/internal/opts/*.go; do
	case "$f" in *_test.go) continue ;; esac
	cp "$f" "$build/opts/"
done
chmod -R u+w "$build"
n=$(grep -l '"go.podman.io/storage/internal/opts"' "$build"/*.go | wc -l)
[ "$n" -gt 0 ] || die "cmd/containers-storage no longer imports internal/opts: look at the build step"
sed -i "s#\"go.podman.io/storage/internal/opts\"#\"$pkg/opts\"#" "$build"/*.go
if grep -q '"go.podman.io/storage/internal/' "$build"/*.go "$build"/opts/*.go; then
	die "the CLI imports other internal packages of c/storage: $(grep -ho '"go.podman.io/storage/internal/[^"]*"' "$build"/*.go "$build"/opts/*.go | sort -u | tr '\n' ' ')"
fi
grep -q 'reexec.Init()' "$build/main.go" || die "cmd/containers-storage's main no longer calls reexec.Init"
cat >"$build/zz_cfs_driver.go" <<'EOF'
package main

// Generated by scripts/cstorage-suite.sh: links the cfs graph driver in.
import _ "github.com/cfs-storage/cfs-storage/driver"
EOF
bin=$work/bin/containers-storage
echo "cstorage-suite: building containers-storage ($csver) with the cfs driver"
if ! go build -o "$bin" "./${build##*/}" >"$work/logs/build.log" 2>&1; then
	cat "$work/logs/build.log"
	die "building containers-storage failed"
fi
rm -rf "$build"
build=""
# The binary must know the driver (and open a store with it).
smoke=$work/tmp/smoke
if ! out=$("$bin" --graph "$smoke/root" --run "$smoke/runroot" --storage-driver "$driver" status 2>&1) ||
	! grep -qx "Driver Name: $driver" <<<"$out"; then
	echo "$out"
	die "containers-storage cannot open a $driver store"
fi
"$bin" --graph "$smoke/root" --run "$smoke/runroot" --storage-driver "$driver" shutdown >/dev/null 2>&1
unmount_under "$smoke"
rm -rf --one-file-system "$smoke"

# --- copy the suite and admit cfs through the driver gates ---
cp "$cs"/tests/*.bats "$cs"/tests/*.bash "$work/tests/" && chmod -R u+w "$work/tests" || die "copying $cs/tests failed"
gates=0 patched=0
for f in "$work"/tests/*.bats; do
	# Inside a `case "$STORAGE_DRIVER" in` ... `esac`, a pattern line
	# with an overlay alternative (overlay, overlay*) gets cfs| in front.
	# One gate stays closed: stale-tmpdir.bats "recover stale tempdir with
	# mount" checks overlay's bind mount of its own home (MakePrivate),
	# which cfs must not make: a store on a mount of its own could not
	# hard-link host ostree objects (link(2) across mounts is EXDEV). The
	# test skips on cfs; tests/cstorage-allowed-skips.txt says why.
	nopatch=0
	[ "${f##*/}" = stale-tmpdir.bats ] && nopatch=1
	awk -v nopatch="$nopatch" '
	/^[[:space:]]*case "\$STORAGE_DRIVER" in[[:space:]]*$/ { incase = 1; gates++; print; next }
	incase && /^[[:space:]]*esac/ { incase = 0 }
	incase && !nopatch && /^[[:space:]]*[A-Za-z0-9_*|]+\)[[:space:]]*$/ && /(^|[[:space:]|])overlay\*?[|)]/ {
		sub(/[^[:space:]]/, "cfs|&"); patched++
	}
	{ print }
	END { printf "%d %d\n", gates, patched > "/dev/stderr" }
	' "$f" >"$f.new" 2>"$f.count" || die "patching $f failed"
	read -r g p <"$f.count"
	gates=$((gates + g)) patched=$((patched + p))
	mv "$f.new" "$f" && rm -f "$f.count"
done
# Other forms of a driver gate ([ "$STORAGE_DRIVER" = overlay ], [[ ... ==
# overlay* ]], ...) are not patched: any of them stops the run.
others=$(grep -nE '\$\{?STORAGE_DRIVER\}?"?[[:space:]]*(=|==|!=|=~)[[:space:]]*"?(overlay|vfs|btrfs|zfs|aufs|devmapper|cfs)|(overlay|vfs|btrfs|zfs|aufs|devmapper)"?[[:space:]]*(=|==|!=)[[:space:]]*"?\$\{?STORAGE_DRIVER' \
	"$work"/tests/*.bats "$work"/tests/*.bash)
# Overlay named outright becomes the driver under test: overlay's home
# (${TESTDIR}/root/overlay), and driver="overlay" in a storage.conf.
hardcoded=$(cat "$work"/tests/*.bats | grep -cE '/root/overlay([^-A-Za-z0-9_]|$)|^[[:space:]]*driver[[:space:]]*=[[:space:]]*"overlay"')
sed -i -E 's#/root/overlay([^-A-Za-z0-9_]|$)#/root/${STORAGE_DRIVER}\1#g; s#^([[:space:]]*driver[[:space:]]*=[[:space:]]*)"overlay"#\1"${STORAGE_DRIVER}"#' "$work"/tests/*.bats
left=$(grep -nw overlay "$work"/tests/*.bats | grep -vE 'skip "|^[^:]+:[0-9]+:[[:space:]]*[A-Za-z0-9_*|]+\)[[:space:]]*$')
if [ "$gates" -ne "$expected_gates" ] || [ "$patched" -ne "$expected_patched" ] || [ -n "$others" ] || [ "$hardcoded" -ne "$expected_hardcoded" ] || [ -n "$left" ]; then
	echo "cstorage-suite: the driver gates of c/storage $csver are not the expected ones:" >&2
	echo "  case \"\$STORAGE_DRIVER\" gates: $gates (expected $expected_gates), patched to admit cfs: $patched (expected $expected_patched)" >&2
	echo "  overlay named outright (root/overlay, driver=\"overlay\"): $hardcoded (expected $expected_hardcoded)" >&2
	[ -n "$left" ] && echo "  other mentions of overlay:" >&2 && echo "$left" | sed 's/^/    /' >&2
	[ -n "$others" ] && echo "  driver comparisons the patcher does not handle:" >&2 && echo "$others" | sed 's/^/    /' >&2
	die "driver gates changed: review scripts/cstorage-suite.sh against $cs/tests"
fi
echo "cstorage-suite: c/storage $csver suite: admitted cfs through $patched driver gates, $hardcoded mentions of overlay made the driver's"

# --- run ---
if [ ${#files[@]} -eq 0 ]; then
	subset=false
	for f in "$work"/tests/*.bats; do files+=("${f##*/}"); done
else
	subset=true
fi
results=$work/logs/results.tsv # file, result (ok|fail|skip|missing), name, skip reason
: >"$results"
start=$SECONDS
echo "cstorage-suite: running ${#files[@]} files with STORAGE_DRIVER=$driver (logs: $work/logs)"
for f in "${files[@]}"; do
	tap=$work/logs/${f%.bats}.tap
	t0=$SECONDS
	(cd "$work/tests" && env STORAGE_DRIVER="$driver" STORAGE_BINARY="$bin" TMPDIR="$work/tmp" \
		timeout --kill-after=30s "${CSTORAGE_TIMEOUT:-30m}" bats --tap --verbose-run "$f") >"$tap" 2>&1
	rc=$?
	unmount_under "$work/tmp"
	# TAP: "ok N name", "ok N name # skip reason", "not ok N name", then
	# "# " lines (location, failed command, the test's output).
	awk -v file="$f" -v details="$work/logs/details.txt" '
	function flush() { if (cur != "") { print cur "\n" buf >> details; cur = ""; buf = "" } }
	/^ok [0-9]+ / {
		flush(); line = $0; sub(/^ok [0-9]+ /, "", line)
		if (match(line, / # skip( |$)/)) {
			reason = substr(line, RSTART + RLENGTH); name = substr(line, 1, RSTART - 1)
			printf "%s\tskip\t%s\t%s\n", file, name, reason
		} else printf "%s\tok\t%s\t\n", file, line
		next
	}
	/^not ok [0-9]+ / {
		flush(); line = $0; sub(/^not ok [0-9]+ /, "", line)
		printf "%s\tfail\t%s\t\n", file, line
		cur = "=== " file ": " line; next
	}
	cur != "" { buf = buf $0 "\n" }
	END { flush() }
	' "$tap" >>"$results"
	# Tests of the file that reported nothing (bats killed or crashed).
	grep -oE '^@test "([^"\\]|\\.)*"' "$work/tests/$f" | sed -E 's/^@test "//; s/"$//; s/\\"/"/g' |
		while IFS= read -r name; do
			if ! awk -F'\t' -v f="$f" -v n="$name" '$1 == f && $3 == n { found = 1 } END { exit !found }' "$results"; then
				printf '%s\tmissing\t%s\t%s\n' "$f" "$name" "no result (bats exit $rc)" >>"$results"
				printf '=== %s: %s\n  no result: bats exited %s (timeout: 124)\n  %s\n\n' "$f" "$name" "$rc" "$(tail -5 "$tap" | tr '\n' ' ')" >>"$work/logs/details.txt"
			fi
		done
	echo "  $f: $(awk -F'\t' -v f="$f" '$1 == f { c[$2]++ } END { printf "%d ok, %d not ok, %d skipped%s", c["ok"], c["fail"], c["skip"], c["missing"] ? ", " c["missing"] " did not run" : "" }' "$results") ($((SECONDS - t0)) s)"
done
elapsed=$((SECONDS - start))

# --- judge ---
# list_entries FILE: "file.bats: test name" per entry, comments removed.
list_entries() {
	[ -f "$1" ] || return 0
	sed -E 's/[[:space:]]+#.*$//; s/^[[:space:]]+//; s/[[:space:]]+$//' "$1" | grep -v '^#' | grep -v '^$'
}
if [ "$driver" = cfs ]; then
	list_entries "$expected_list" >"$work/logs/expected"
	list_entries "$skips_list" >"$work/logs/skips"
else
	: >"$work/logs/expected"
	: >"$work/logs/skips"
fi
report=$work/logs/report.txt
: >"$report"
awk -F'\t' -v expf="$work/logs/expected" -v skpf="$work/logs/skips" -v other="$([ "$driver" = cfs ] && echo 0 || echo 1)" -v subset="$subset" -v report="$report" '
BEGIN {
	while ((getline l < expf) > 0) expected[l] = 1
	while ((getline l < skpf) > 0) allowed[l] = 1
}
{
	key = $1 ": " $3; seen[key] = 1; ran[$1] = 1
	if ($2 == "ok") {
		if (key in expected) { failed++; print "UNEXPECTED PASS (remove it from the expected failures): " key > report }
		else passed++
	} else if ($2 == "skip") {
		if (key in expected) { xfail++; print "expected failure (skipped: " $4 "): " key > report }
		else if (other || key in allowed) { skipped++; print "skip: " key " (" $4 ")" > report }
		else { failed++; print "UNEXPECTED SKIP (" $4 "): " key > report }
	} else if ($2 == "fail") {
		if (key in expected) { xfail++; print "expected failure: " key > report }
		else { failed++; print "FAILED: " key > report }
	} else { failed++; print "DID NOT RUN (" $4 "): " key > report }
}
END {
	for (k in expected) if (!(k in seen)) {
		split(k, a, ": ")
		if (subset == "false" || a[1] in ran) { failed++; print "STALE expected failure (no such test): " k > report }
	}
	for (k in allowed) if (!(k in seen)) {
		split(k, a, ": ")
		if (subset == "false" || a[1] in ran) { failed++; print "STALE allowed skip (no such test): " k > report }
	}
	printf "%d %d %d %d\n", passed, failed, skipped, xfail
}' "$results" >"$work/logs/counts"
read -r passed failed skipped xfail <"$work/logs/counts"

sort "$report" | grep -E '^(UNEXPECTED|FAILED|DID NOT|STALE)' >"$work/logs/problems" || true
grep -E '^skip: ' "$report" | sed 's/^/  /'
grep -E '^expected failure' "$report" | sed 's/^/  /'
if [ -s "$work/logs/problems" ]; then
	echo "--- unexpected results (details: $work/logs/details.txt, TAP: $work/logs/*.tap) ---"
	while IFS= read -r p; do
		echo "$p"
		key=${p#*: }
		case "$p" in
		FAILED*|DID\ NOT*)
			# the failing command and the last lines of the test's output
			# (without c/storage's debug log)
			awk -v k="=== $key" '$0 == k { on = 1; next } on && /^=== / { exit } on' "$work/logs/details.txt" |
				awk 'NF && !/level=debug/ && !/^# Last output:$/ { l[++n] = $0 } END { for (i = 1; i <= n; i++) if (n <= 20 || i <= 4 || i > n - 14) print l[i]; else if (i == 5) print "..." }' | sed 's/^/    /'
			;;
		esac
	done <"$work/logs/problems"
fi
echo "cstorage-suite: $((elapsed / 60)) min $((elapsed % 60)) s; logs in $work/logs (kept if the run fails)"
echo "c/storage suite ($driver): $passed passed, $failed failed, $skipped skipped, $xfail expected failures"
[ "$failed" -eq 0 ] && [ "$((passed + skipped + xfail))" -gt 0 ]
exit
}
