#!/usr/bin/env bash
# run-tests.sh: runs every Go test (GOFLAGS from the Makefile carries the
# build tags), keeps the verbose log, prints the per-package summary lines
# and a closing "N passed, N failed, N skipped" line, then runs each fuzz
# target for FUZZTIME (default 10s; 0 skips fuzzing), and exits non-zero
# on any failure. Extra arguments go to `go test`.
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
echo "tests: $passed passed, $failed failed, $skipped skipped"
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ] && [ "$fuzz_failed" -eq 0 ]
