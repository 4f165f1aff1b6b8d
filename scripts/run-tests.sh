#!/usr/bin/env bash
# run-tests.sh: runs every Go test (GOFLAGS from the Makefile carries the
# build tags), keeps the verbose log, prints the per-package summary lines
# and a closing "N passed, N failed, N skipped" line, then runs each fuzz
# target for FUZZTIME (default 10s; 0 skips fuzzing), then containers/
# storage's own integration suite on the cfs driver (scripts/cstorage-suite.sh;
# CSTORAGE_SUITE=0 leaves it out, CSTORAGE_SUITE_ARGS passes it options or
# a few FILE.bats), whose counts are added into the closing
# line (its expected failures count as skipped), and exits non-zero on any
# failure. Extra arguments go to `go test`.
set -uo pipefail
log=${TEST_LOG:-$(mktemp /tmp/cfs-test-XXXXXX.log)}
go test -count=1 -timeout 45m -v "$@" ./... >"$log" 2>&1
rc=$?
grep -E '^(ok |FAIL|\?|panic:|--- FAIL)' "$log"
passed=$(grep -cE '^\s*--- PASS' "$log")
failed=$(grep -cE '^\s*--- FAIL' "$log")
skipped=$(grep -cE '^\s*--- SKIP' "$log")
if [ "$failed" -gt 0 ] || [ "$rc" -ne 0 ]; then
	echo "--- failures (full log: $log) ---"
	grep -E -B2 -A20 '^\s*--- FAIL|^panic:|build failed|\[setup failed\]' "$log" | head -300
fi

# Fuzz targets of the parsers that read untrusted input, each for a
# bounded time; a crasher is saved under the package's testdata/fuzz.
fuzztime=${FUZZTIME:-10s}
fuzz_failed=0
if [ "$fuzztime" != "0" ]; then
	for target in ./layers:FuzzIngest ./layers/erofs:FuzzOpen ./layers/dumpfile:FuzzParse ./hostlink/gvariant:FuzzDecode; do
		pkg=${target%%:*} fn=${target##*:}
		if go test -run '^$' -fuzz "^${fn}\$" -fuzztime "$fuzztime" "$pkg" >"$log.fuzz" 2>&1; then
			echo "fuzz $fn ($pkg, $fuzztime): ok"
		else
			echo "fuzz $fn ($pkg, $fuzztime): FAILED"
			tail -30 "$log.fuzz"
			fuzz_failed=$((fuzz_failed + 1))
		fi
	done
fi
# containers/storage's tests/*.bats on cfs (about 10 minutes; it skips with a
# message when not root, and fails instead when CI=true).
suite_failed=0
if [ "${CSTORAGE_SUITE:-1}" != "0" ]; then
	# shellcheck disable=SC2086 # CSTORAGE_SUITE_ARGS: options and files, split on spaces
	"$(dirname "$0")/cstorage-suite.sh" ${CSTORAGE_SUITE_ARGS:-} >"$log.cstorage" 2>&1
	suite_rc=$?
	# its progress and judgement, without the per-file, skip and
	# expected-failure lines (all in $log.cstorage)
	grep -vE '^  [^ ]' "$log.cstorage"
	counts=$(sed -nE 's/^c\/storage suite \([^)]*\): ([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped, ([0-9]+) expected failures$/\1 \2 \3 \4/p' "$log.cstorage" | tail -1)
	if [ -n "$counts" ]; then
		read -r s_passed s_failed s_skipped s_xfail <<<"$counts"
		passed=$((passed + s_passed))
		failed=$((failed + s_failed))
		skipped=$((skipped + s_skipped + s_xfail))
	fi
	if [ "$suite_rc" -ne 0 ]; then
		suite_failed=1
		# a suite that could not run counts as one failure
		[ -n "$counts" ] && [ "$s_failed" -gt 0 ] || failed=$((failed + 1))
		echo "c/storage suite: FAILED (full output: $log.cstorage)"
	fi
fi
echo "tests: $passed passed, $failed failed, $skipped skipped"
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ] && [ "$fuzz_failed" -eq 0 ] && [ "$suite_failed" -eq 0 ]
