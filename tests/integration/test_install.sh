#!/usr/bin/env bash
# test_install.sh -- "make install DESTDIR=..." from the build tree, check
# the installed layout, then drive the INSTALLED init script against the
# INSTALLED binary and a temp copy of the INSTALLED sample config (start,
# status, reload, stop); then check that a reinstall keeps an edited
# orchd.conf and that "make uninstall" leaves nothing else behind.
#
# Needs ORCHD_BUILDDIR (a configured and built tree) and curl.  The prefix is
# the configured one, under a temp DESTDIR.  Exit 0 if every check passed,
# 1 otherwise, 77 (skip) when something it needs is missing.
set -u

SKIP=77
skip() {
	echo "SKIP: $*"
	exit "$SKIP"
}

[ -n "${ORCHD_BUILDDIR:-}" ] || skip "ORCHD_BUILDDIR is not set"
builddir=$(cd "$ORCHD_BUILDDIR" 2>/dev/null && pwd) || skip "no $ORCHD_BUILDDIR"
[ -f "$builddir/Makefile" ] || skip "$builddir is not configured"
[ -x "$builddir/orchd" ] || skip "$builddir/orchd not built"
command -v curl >/dev/null 2>&1 || skip "curl not installed"
command -v make >/dev/null 2>&1 || skip "make not installed"
# This runs from "make check": the outer make's job server is not ours.
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES

pass=0
failed=0
ok() {
	pass=$((pass + 1))
	echo "ok   - $1"
}
not_ok() {
	failed=$((failed + 1))
	echo "FAIL - $1"
	shift
	local line
	for line in "$@"; do
		printf '       %s\n' "$line"
	done
}
# check NAME COMMAND...: ok if COMMAND succeeds.
check() {
	local name=$1
	shift
	if "$@" >/dev/null 2>&1; then
		ok "$name"
	else
		not_ok "$name" "failed: $*"
	fi
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/orchd-install.XXXXXX") || exit 1
# Workers run as nobody and reopen the log themselves.
chmod 755 "$tmp"
dest=$tmp/root
conf=$tmp/orchd.conf
pidfile=$tmp/orchd.pid
logfile=$tmp/orchd.log
known_pids=""
daemon=""

alive() {
	kill -0 "$1" 2>/dev/null || return 1
	[ "$(sed -n 's/^.*) \([A-Za-z]\) .*$/\1/p' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

read_pid() {
	[ -s "$pidfile" ] && tr -dc '0-9' <"$pidfile"
}

kids_of() {
	command -v pgrep >/dev/null 2>&1 || return 0
	pgrep -P "$1" 2>/dev/null | tr '\n' ' '
}

# The workers of supervisor PID: its children but the relay.
workers_of() {
	local k
	for k in $(kids_of "$1"); do
		[ "$(cat "/proc/$k/comm" 2>/dev/null)" = orchd-relay ] && continue
		printf '%s ' "$k"
	done
}

cleanup() {
	local pid p n
	pid=$(read_pid)
	if [ -n "$pid" ] && alive "$pid"; then
		known_pids="$known_pids $(kids_of "$pid")"
		kill -TERM "$pid" 2>/dev/null
		n=50
		while alive "$pid" && [ "$n" -gt 0 ]; do
			sleep 0.1
			n=$((n - 1))
		done
		kill -KILL "$pid" 2>/dev/null
	fi
	for p in $known_pids; do
		if [ -n "$daemon" ] &&
			[ "$(readlink -f "/proc/$p/exe" 2>/dev/null)" = "$(readlink -f "$daemon")" ]; then
			kill -KILL "$p" 2>/dev/null
		fi
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# makevar NAME: the build tree's value of a make variable, fully expanded.
makevar() {
	# shellcheck disable=SC2016 # a make rule, expanded by make
	printf 'print-%%:\n\t@echo $($*)\n' |
		make -s --no-print-directory -C "$builddir" -f Makefile -f - "print-$1"
}

# ---- make install ---------------------------------------------------------
if make -s -C "$builddir" install DESTDIR="$dest" >"$tmp/install.out" 2>&1; then
	ok "make install DESTDIR=... succeeds"
else
	not_ok "make install DESTDIR=... succeeds" "$(tail -n 20 "$tmp/install.out")"
	echo "$pass passed, $failed failed"
	exit 1
fi

sbindir=$(makevar sbindir)
sysconfdir=$(makevar sysconfdir)
mandir=$(makevar mandir)
pkgdatadir=$(makevar pkgdatadir)
localstatedir=$(makevar localstatedir)
runstatedir=$(makevar runstatedir)
unitdir=$(makevar systemdunitdir)
if [ -z "$sbindir" ] || [ -z "$sysconfdir" ] || [ -z "$runstatedir" ]; then
	not_ok "read the configured directories" "sbindir='$sbindir'" \
		"sysconfdir='$sysconfdir' runstatedir='$runstatedir'"
	echo "$pass passed, $failed failed"
	exit 1
fi
daemon=$dest$sbindir/orchd
initscript=$dest$sysconfdir/init.d/orchd
unit=$dest$unitdir/orchd.service
installed_conf=$dest$sysconfdir/orchd/orchd.conf

# ---- layout ---------------------------------------------------------------
check "binary installed: $sbindir/orchd" test -x "$daemon"
check "init script installed and executable" test -x "$initscript"
check "systemd unit installed: $unitdir/orchd.service" test -f "$unit"
check "logrotate snippet installed" test -f "$dest$sysconfdir/logrotate.d/orchd"
check "orchd.conf installed" test -f "$installed_conf"
check "orchd.conf.sample installed" test -f "$installed_conf.sample"
check "schema.sql installed in $pkgdatadir" test -f "$dest$pkgdatadir/schema.sql"
check "log directory $localstatedir/log/orchd created" test -d "$dest$localstatedir/log/orchd"
# Every program and every man page of the source tree is installed (a new
# one, like orchctl, is covered without changing this test).
for p in $(makevar sbin_PROGRAMS); do
	check "program $p installed in $sbindir" test -x "$dest$sbindir/$p"
done
bindir=$(makevar bindir)
for p in $(makevar bin_PROGRAMS); do
	check "program $p installed in $bindir" test -x "$dest$bindir/$p"
done
srcdir=$(makevar abs_top_srcdir)
nman=0
for m in "$srcdir"/man/*.[1-8].in; do
	[ -f "$m" ] || continue
	base=${m##*/}
	base=${base%.in}
	sect=${base##*.}
	nman=$((nman + 1))
	check "man page $base installed in man$sect" test -f "$dest$mandir/man$sect/$base"
done
if [ "$nman" -ge 2 ]; then
	ok "the source has $nman man pages"
else
	not_ok "the source has at least orchd.8 and orchd.conf.5" "found $nman in $srcdir/man"
fi
# No @placeholder@ survived the substitution.
left=$(grep -l '@[a-zA-Z_]*@' "$initscript" "$unit" "$installed_conf" \
	"$dest$sysconfdir/logrotate.d/orchd" "$dest$mandir"/man*/* 2>/dev/null)
if [ -z "$left" ]; then
	ok "no @placeholder@ left in the installed files"
else
	# shellcheck disable=SC2086 # one line per file
	not_ok "no @placeholder@ left in the installed files" $left
fi
# The generated files name the configured paths.
check "init script runs $sbindir/orchd" grep -q "^DAEMON=\${DAEMON:-$sbindir/orchd}" "$initscript"
check "unit: Type=notify" grep -qx "Type=notify" "$unit"
check "unit: NotifyAccess=main" grep -qx "NotifyAccess=main" "$unit"
check "unit: ExecStart in the foreground" grep -q "^ExecStart=$sbindir/orchd -f " "$unit"
check "unit: ExecStartPre tests the config" grep -qx "ExecStartPre=$sbindir/orchd -t -q" "$unit"
# shellcheck disable=SC2016 # a literal $MAINPID
check "unit: ExecReload sends HUP" grep -qx 'ExecReload=/bin/kill -HUP $MAINPID' "$unit"
# systemd's own parser, where there is one: any complaint is a failure.
# The binary is not at its configured path (DESTDIR), so a copy of the unit
# runs /bin/true instead.
if command -v systemd-analyze >/dev/null 2>&1; then
	sed "s|$sbindir/orchd|/bin/true|g" "$unit" >"$tmp/orchd.service"
	out=$(systemd-analyze verify --man=no "$tmp/orchd.service" 2>&1)
	if [ -z "$out" ]; then
		ok "systemd-analyze verify finds nothing wrong in the unit"
	else
		not_ok "systemd-analyze verify finds nothing wrong in the unit" "$out"
	fi
fi
check "logrotate signals the pid in $runstatedir" grep -q "$runstatedir/orchd.pid" "$dest$sysconfdir/logrotate.d/orchd"

if out=$("$daemon" -V 2>&1) && grep -q '^orchd [0-9]' <<<"$out"; then
	ok "installed binary runs: $out"
else
	not_ok "installed binary runs" "$out"
fi
if out=$("$daemon" -t -q -c "$installed_conf" 2>&1); then
	ok "the installed sample config passes orchd -t"
else
	not_ok "the installed sample config passes orchd -t" "$out"
fi

# ---- a temp copy of the installed sample, adapted -------------------------
port=$(/usr/bin/python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])' 2>/dev/null) || port=$((20000 + RANDOM % 30000))
url=http://127.0.0.1:$port/healthz
mkdir -p "$tmp/run"
# Drop the directives set here, point anything else in runstatedir (an admin
# socket, say) into the temp dir, then add ours.
sed -E -e '/^[[:space:]]*(listen|workers|pidfile|log|user|group)[[:space:]]/d' \
	-e "/^[[:space:]]*#/!s|$runstatedir/|$tmp/run/|g" \
	"$installed_conf" >"$conf"
{
	echo "listen 127.0.0.1:$port"
	echo "workers 2"
	echo "log $logfile"
	echo "pidfile $pidfile"
	[ "$(id -u)" -eq 0 ] && echo "user nobody"
} >>"$conf"

export DAEMON=$daemon CONFFILE=$conf PIDFILE=$pidfile
export ORCHD_DEFAULTS=$tmp/no-such-defaults ORCHD_OPTS=""
export SYSTEMCTL_SKIP_REDIRECT=1
export DAEMON_JWT_SECRET=install-test-secret-0123456789abcdef

out=""
rc=0
runout=$tmp/run.out
run() {
	timeout 90 "$initscript" "$@" >"$runout" 2>&1 </dev/null
	rc=$?
	out=$(cat "$runout")
}
expect_rc() {
	if [ "$rc" -eq "$2" ]; then
		ok "$1 (exit $rc)"
	else
		not_ok "$1: exit $rc, want $2" "$out"
	fi
}
healthz() {
	local body code
	body=$(curl -s --max-time 2 -w '\n%{http_code}' "$url" 2>/dev/null)
	code=${body##*$'\n'}
	body=${body%$'\n'*}
	echo "$code $body"
}
generation() {
	sed -n 's/.*"generation": *\([0-9]*\).*/\1/p' <<<"$1"
}

run status
expect_rc "status before start (LSB: not running)" 3

run start
expect_rc "start" 0
pid=$(read_pid)
if [ -n "$pid" ] && alive "$pid"; then
	ok "pid file names a live process ($pid)"
	known_pids="$known_pids $pid"
else
	not_ok "pid file names a live process" "pid file: '$pid'" "$out" \
		"$(tail -n 20 "$logfile" 2>/dev/null)"
fi
if [ -n "$pid" ] && [ "$(readlink -f "/proc/$pid/exe")" = "$(readlink -f "$daemon")" ]; then
	ok "the supervisor runs the installed binary"
else
	not_ok "the supervisor runs the installed binary" \
		"exe: $(readlink -f "/proc/$pid/exe" 2>/dev/null)"
fi

r=""
for _ in $(seq 100); do
	r=$(healthz)
	[ "${r%% *}" = 200 ] && break
	sleep 0.1
done
if [ "${r%% *}" = 200 ] && grep -q '"workers": *2[,}]' <<<"$r"; then
	ok "GET /healthz answers 200 with 2 workers"
else
	not_ok "GET /healthz answers 200 with 2 workers" "got: $r"
fi
gen1=$(generation "$r")

run status
expect_rc "status while running" 0

# ---- reload: new workers, same supervisor ---------------------------------
w1=""
[ -n "$pid" ] && w1=$(workers_of "$pid")
known_pids="$known_pids $w1"
if [ "$(wc -w <<<"$w1")" -eq 2 ]; then
	ok "two workers before the reload ($w1)"
else
	not_ok "two workers before the reload" "workers: '$w1'"
fi
run reload
expect_rc "reload" 0
# The new generation answers, and the old workers are gone (drained).
w2=""
done_reload=""
for _ in $(seq 150); do
	r=$(healthz)
	w2=""
	[ -n "$pid" ] && w2=$(workers_of "$pid")
	known_pids="$known_pids $w2"
	if [ "${r%% *}" = 200 ] && [ "$(generation "$r")" != "$gen1" ] &&
		[ "$(wc -w <<<"$w2")" -eq 2 ]; then
		stale=""
		for k in $w1; do
			grep -qw "$k" <<<"$w2" && stale="$stale $k"
		done
		if [ -z "$stale" ]; then
			done_reload=yes
			break
		fi
	fi
	sleep 0.1
done
if [ -n "$done_reload" ]; then
	ok "reload replaced both workers ($w1-> $w2) and /healthz shows generation $(generation "$r")"
else
	not_ok "reload replaced both workers" "before: $w1 (generation $gen1)" \
		"after: $w2" "healthz: $r"
fi
if [ -n "$pid" ] && [ "$(read_pid)" = "$pid" ] && alive "$pid"; then
	ok "reload kept the supervisor ($pid)"
else
	not_ok "reload kept the supervisor" "pid was $pid, now $(read_pid)"
fi

# ---- stop -----------------------------------------------------------------
[ -n "$pid" ] && known_pids="$known_pids $(kids_of "$pid")"
run stop
expect_rc "stop" 0
if [ -n "$pid" ] && ! alive "$pid"; then
	ok "the supervisor is gone"
else
	not_ok "the supervisor is gone" "pid '$pid'"
fi
if [ ! -e "$pidfile" ]; then
	ok "stop removed the pid file"
else
	not_ok "stop removed the pid file" "$pidfile: $(cat "$pidfile")"
fi
r=$(healthz)
if [ "${r%% *}" != 200 ]; then
	ok "nothing answers on the port any more"
else
	not_ok "nothing answers on the port any more" "got: $r"
fi
run status
expect_rc "status when stopped (LSB: not running)" 3

# ---- reinstall keeps an edited orchd.conf; uninstall ----------------------
echo "# edited by the admin" >>"$installed_conf"
if make -s -C "$builddir" install DESTDIR="$dest" >"$tmp/install.out" 2>&1 &&
	grep -q '^# edited by the admin$' "$installed_conf"; then
	ok "a second make install keeps the edited orchd.conf"
else
	not_ok "a second make install keeps the edited orchd.conf" \
		"$(tail -n 5 "$tmp/install.out")"
fi
if ! grep -q 'edited by the admin' "$installed_conf.sample"; then
	ok "the sample beside it is the pristine one"
else
	not_ok "the sample beside it is the pristine one"
fi
if make -s -C "$builddir" uninstall DESTDIR="$dest" >"$tmp/uninstall.out" 2>&1; then
	ok "make uninstall succeeds"
else
	not_ok "make uninstall succeeds" "$(tail -n 5 "$tmp/uninstall.out")"
fi
files=$(cd "$dest" && find . -type f | sort | tr '\n' ' ')
if [ "$files" = "./${sysconfdir#/}/orchd/orchd.conf " ]; then
	ok "make uninstall leaves only the edited orchd.conf"
else
	not_ok "make uninstall leaves only the edited orchd.conf" "left: $files"
fi

# An untouched install uninstalls to nothing.
rm -rf "$dest"
if make -s -C "$builddir" install DESTDIR="$dest" >"$tmp/install.out" 2>&1 &&
	make -s -C "$builddir" uninstall DESTDIR="$dest" >"$tmp/uninstall.out" 2>&1; then
	files=$(cd "$dest" && find . -type f | sort | tr '\n' ' ')
	if [ -z "$files" ]; then
		ok "install + uninstall of an untouched tree leaves no file"
	else
		not_ok "install + uninstall of an untouched tree leaves no file" "left: $files"
	fi
else
	not_ok "install + uninstall of an untouched tree" \
		"$(tail -n 5 "$tmp/install.out" "$tmp/uninstall.out")"
fi

echo "$pass passed, $failed failed"
[ "$failed" -eq 0 ]
