#!/bin/bash
# Automake TESTS entry for the integration suites.
#
# Runs the Python suites (tests/integration/test_*.py, stdlib unittest under
# Debian's /usr/bin/python3) and then every tests/integration/test_*.sh
# (exit 0 = pass, 77 = skipped, anything else = fail), and ends with
#     integration: N passed, M failed[, K skipped]
# Exit status: 0 if nothing failed, 1 if something failed, 77 if the binary
# is missing or nothing ran at all.
#
# Environment (set by make check via TESTS_ENVIRONMENT; defaults for a run by
# hand from the source tree):
#     ORCHD_BIN        absolute path of the built orchd
#     ORCHD_SRCDIR     top of the source tree
#     ORCHD_BUILDDIR   top of the build tree
#     ORCHD_KEEP_TMP   keep each test's temp dir (and print its path)
#     ORCHD_IT_TIMEOUT seconds allowed to the Python suites (default 600)

set -u

here=$(cd "$(dirname "$0")" && pwd)
: "${ORCHD_SRCDIR:=$(cd "$here/.." && pwd)}"
: "${ORCHD_BUILDDIR:=$ORCHD_SRCDIR}"
: "${ORCHD_BIN:=$ORCHD_BUILDDIR/orchd}"
export ORCHD_BIN ORCHD_SRCDIR ORCHD_BUILDDIR

python=/usr/bin/python3
suite_dir="$ORCHD_SRCDIR/tests/integration"
py_timeout=${ORCHD_IT_TIMEOUT:-600}
sh_timeout=300

if [ ! -x "$ORCHD_BIN" ]; then
	echo "integration: $ORCHD_BIN not found or not executable, skipping"
	exit 77
fi
if [ ! -x "$python" ]; then
	echo "integration: $python not found, skipping"
	exit 77
fi
if [ ! -d "$suite_dir" ]; then
	echo "integration: $suite_dir not found" >&2
	echo "integration: 0 passed, 1 failed"
	exit 1
fi

passed=0
failed=0
skipped=0

# The captured output lives in the build dir when there is one: nothing
# that cleans up temp dirs behind other tests can take it away mid-run.
out=$(mktemp "${ORCHD_BUILDDIR:-${TMPDIR:-/tmp}}/integration-out.XXXXXX") || exit 99
trap 'rm -f "$out"' EXIT

# ---- Python suites ----------------------------------------------------------

echo "== python suites ($suite_dir/test_*.py)"
# The summary unittest prints goes to stderr; keep a copy to count from.
# PYTHONDONTWRITEBYTECODE: do not litter the source tree (distcheck makes it
# read-only anyway).
(
	cd "$suite_dir" &&
		PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
			timeout -k 10 "$py_timeout" \
			"$python" -m unittest discover -s "$suite_dir" -p 'test_*.py' -v
) 2>&1 | tee "$out"
py_rc=${PIPESTATUS[0]}

# "Ran N tests in 1.234s" then "OK", "OK (skipped=K)" or
# "FAILED (failures=F, errors=E, skipped=K, expected failures=X,
# unexpected successes=U)".
ran=$(sed -n 's/^Ran \([0-9][0-9]*\) tests\{0,1\} in .*/\1/p' "$out" | tail -n 1)
verdict=$(grep -E '^(OK|FAILED|NO TESTS RAN)' "$out" | tail -n 1)
# count NAME: the number after "NAME=" in the verdict, split on ", ".
count() {
	printf '%s\n' "$verdict" | sed -n 's/^[^(]*(\(.*\)).*$/\1/p' |
		sed 's/, /\n/g' | sed -n "s/^$1=\\([0-9][0-9]*\\)$/\\1/p"
}
if [ -n "$ran" ] && [ -n "$verdict" ]; then
	f=$(count failures)
	e=$(count errors)
	s=$(count skipped)
	xf=$(count 'expected failures')
	us=$(count 'unexpected successes')
	f=${f:-0} e=${e:-0} s=${s:-0} xf=${xf:-0} us=${us:-0}
	py_failed=$((f + e + us))
	py_skipped=$s
	py_passed=$((ran - f - e - s - us))
	[ "$py_passed" -lt 0 ] && py_passed=0
	# unittest says OK but exited non-zero (or the reverse): trust the failure.
	if [ "$py_rc" -ne 0 ] && [ "$py_failed" -eq 0 ]; then
		echo "integration: python exited with status $py_rc despite: $verdict"
		py_failed=1
	fi
else
	if [ "$py_rc" -eq 124 ] || [ "$py_rc" -eq 137 ]; then
		echo "integration: python suites killed after ${py_timeout}s"
	else
		echo "integration: python suites crashed (status $py_rc, no summary)"
	fi
	py_passed=0
	py_failed=1
	py_skipped=0
fi
passed=$((passed + py_passed))
failed=$((failed + py_failed))
skipped=$((skipped + py_skipped))

# ---- shell suites -------------------------------------------------------------

for t in "$suite_dir"/test_*.sh; do
	[ -e "$t" ] || continue
	name=$(basename "$t")
	echo "== $name"
	timeout -k 10 "$sh_timeout" bash "$t"
	rc=$?
	case $rc in
	0)
		echo "PASS: $name"
		passed=$((passed + 1))
		;;
	77)
		echo "SKIP: $name"
		skipped=$((skipped + 1))
		;;
	124 | 137)
		echo "FAIL: $name (timed out after ${sh_timeout}s)"
		failed=$((failed + 1))
		;;
	*)
		echo "FAIL: $name (exit $rc)"
		failed=$((failed + 1))
		;;
	esac
done

# ---- summary ------------------------------------------------------------------

summary="integration: $passed passed, $failed failed"
[ "$skipped" -gt 0 ] && summary="$summary, $skipped skipped"
echo "$summary"

if [ "$failed" -gt 0 ]; then
	exit 1
fi
if [ "$passed" -eq 0 ]; then
	exit 77
fi
exit 0
