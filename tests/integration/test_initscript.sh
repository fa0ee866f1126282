#!/usr/bin/env bash
# test_initscript.sh -- drive the generated init script (etc/init.d/orchd)
# against the built orchd binary, in a private temp dir.
#
# Needs ORCHD_BUILDDIR (a configured and built tree; the binary is
# ORCHD_BIN if set, else $ORCHD_BUILDDIR/orchd) and curl.  The script is
# pointed at the build tree's binary, a temp config and a temp pid file with
# the DAEMON, CONFFILE and PIDFILE environment overrides it supports.
# Exit 0 if every check passed, 1 otherwise, 77 (skip) when something it
# needs is missing.
set -u

SKIP=77
skip() {
	echo "SKIP: $*"
	exit "$SKIP"
}

[ -n "${ORCHD_BUILDDIR:-}" ] || skip "ORCHD_BUILDDIR is not set"
builddir=$(cd "$ORCHD_BUILDDIR" 2>/dev/null && pwd) || skip "no $ORCHD_BUILDDIR"
daemon=${ORCHD_BIN:-$builddir/orchd}
initscript=$builddir/etc/init.d/orchd
[ -x "$daemon" ] || skip "$daemon not built"
if [ ! -x "$initscript" ]; then
	make -s -C "$builddir" etc/init.d/orchd >/dev/null 2>&1 || true
fi
[ -x "$initscript" ] || skip "$initscript not generated"
command -v curl >/dev/null 2>&1 || skip "curl not installed"

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

tmp=$(mktemp -d "${TMPDIR:-/tmp}/orchd-initscript.XXXXXX") || exit 1
# Workers run as nobody and reopen the log themselves.
chmod 755 "$tmp"
conf=$tmp/orchd.conf
pidfile=$tmp/orchd.pid
logfile=$tmp/orchd.log
known_pids=""
kids=""

# alive PID: exists and is not a zombie (a daemonized process is reaped by
# pid 1, which in a container may take its time).
alive() {
	kill -0 "$1" 2>/dev/null || return 1
	[ "$(sed -n 's/^.*) \([A-Za-z]\) .*$/\1/p' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

read_pid() {
	[ -s "$pidfile" ] && tr -dc '0-9' <"$pidfile"
}

# Children of PID (the workers), when pgrep can tell.
kids_of() {
	command -v pgrep >/dev/null 2>&1 || return 0
	pgrep -P "$1" 2>/dev/null | tr '\n' ' '
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
	# Anything we saw running from this test and that is still around.
	for p in $known_pids; do
		if [ "$(readlink -f "/proc/$p/exe" 2>/dev/null)" = "$daemon" ]; then
			kill -KILL "$p" 2>/dev/null
		fi
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

free_port() {
	if command -v python3 >/dev/null 2>&1; then
		python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
		return
	fi
	local p
	while :; do
		p=$((20000 + RANDOM % 40000))
		(echo >"/dev/tcp/127.0.0.1/$p") 2>/dev/null || {
			echo "$p"
			return
		}
	done
}
port=$(free_port)
url=http://127.0.0.1:$port/healthz

write_conf() {
	{
		echo "# orchd init script test"
		echo "listen 127.0.0.1:$port"
		echo "workers 2"
		echo "log $logfile"
		echo "pidfile $pidfile"
		if [ "$(id -u)" -eq 0 ]; then
			echo "user nobody"
		fi
	} >"$conf"
}
write_conf

# The environment the init script is run with.  ORCHD_DEFAULTS keeps a real
# /etc/default/orchd out of the way; SYSTEMCTL_SKIP_REDIRECT keeps
# /lib/lsb/init-functions from handing actions to systemctl.
export DAEMON=$daemon CONFFILE=$conf PIDFILE=$pidfile
export ORCHD_DEFAULTS=$tmp/no-such-defaults ORCHD_OPTS=""
export SYSTEMCTL_SKIP_REDIRECT=1
# In case the config requires a secret; harmless otherwise.
export DAEMON_JWT_SECRET=init-script-test-secret-0123456789abcdef

out=""
rc=0
runout=$tmp/run.out
# run ACTION: run the init script, keep its output in $out and status in $rc.
# The output goes through a file, not a pipe: a daemon that kept the
# caller's stdout or stderr open would make $(...) wait forever (checked
# separately below).
run() {
	timeout 90 "$initscript" "$@" >"$runout" 2>&1 </dev/null
	rc=$?
	out=$(cat "$runout")
}

# expect_rc NAME WANT: check $rc.
expect_rc() {
	if [ "$rc" -eq "$2" ]; then
		ok "$1 (exit $rc)"
	else
		not_ok "$1: exit $rc, want $2" "$out"
	fi
}

# healthz: print "HTTPCODE BODY" of GET /healthz.
healthz() {
	local body code
	body=$(curl -s --max-time 2 -w '\n%{http_code}' "$url" 2>/dev/null)
	code=${body##*$'\n'}
	body=${body%$'\n'*}
	echo "$code $body"
}

# wait_healthz: poll until /healthz answers 200 (5 s).
wait_healthz() {
	local n=50 r
	while [ "$n" -gt 0 ]; do
		r=$(healthz)
		[ "${r%% *}" = 200 ] && {
			echo "$r"
			return 0
		}
		sleep 0.1
		n=$((n - 1))
	done
	echo "$r"
	return 1
}

generation() {
	sed -n 's/.*"generation": *\([0-9]*\).*/\1/p' <<<"$1"
}

# ---- configtest on a good config ------------------------------------------
run configtest
expect_rc "configtest, valid config" 0
if grep -q "syntax is ok" <<<"$out"; then
	ok "configtest says the syntax is ok"
else
	not_ok "configtest says the syntax is ok" "$out"
fi

# ---- start ----------------------------------------------------------------
run start
expect_rc "start" 0
pid=$(read_pid)
if [ -n "$pid" ] && alive "$pid"; then
	ok "pid file names a live process ($pid)"
	known_pids="$known_pids $pid"
else
	not_ok "pid file names a live process" "pid file: '$pid'" "$out"
fi

if r=$(wait_healthz); then
	ok "GET /healthz answers 200"
else
	not_ok "GET /healthz answers 200" "got: $r"
fi
if grep -q '"status": *"ok"' <<<"$r" && grep -q '"workers": *2[,}]' <<<"$r"; then
	ok "/healthz body reports status ok and 2 workers"
else
	not_ok "/healthz body reports status ok and 2 workers" "got: $r"
fi
gen1=$(generation "$r")

if [ -n "$pid" ]; then
	kids=$(kids_of "$pid")
	known_pids="$known_pids $kids"
	if [ -n "$kids" ] && [ "$(id -u)" -eq 0 ]; then
		bad=""
		for k in $kids; do
			u=$(stat -c %U "/proc/$k" 2>/dev/null)
			[ "$u" = nobody ] || bad="$bad $k:$u"
		done
		if [ -z "$bad" ]; then
			ok "children run as nobody ($kids)"
		else
			not_ok "children run as nobody" "not nobody:$bad"
		fi
	fi
fi

# A daemon must not keep the stdio of whoever started it: "$(orchd)" or
# "/etc/init.d/orchd start | tee" would never see EOF.
if [ -n "$pid" ]; then
	held=""
	for p in $pid $kids; do
		for fd in 0 1 2; do
			if [ "$(readlink "/proc/$p/fd/$fd" 2>/dev/null)" = "$runout" ]; then
				held="$held pid $p fd $fd;"
			fi
		done
	done
	if [ -z "$held" ]; then
		ok "no orchd process keeps the caller's stdout/stderr"
	else
		not_ok "no orchd process keeps the caller's stdout/stderr" "$held"
	fi
fi

run status
expect_rc "status while running" 0

run start
expect_rc "start while already running" 0
if [ "$(read_pid)" = "$pid" ]; then
	ok "second start left the same supervisor"
else
	not_ok "second start left the same supervisor" "pid was $pid, now $(read_pid)"
fi

# ---- reload ---------------------------------------------------------------
loglines=$(wc -l <"$logfile" 2>/dev/null || echo 0)
run reload
expect_rc "reload" 0
seen=""
for _ in $(seq 50); do
	if tail -n +"$((loglines + 1))" "$logfile" 2>/dev/null | grep -qi reload; then
		seen=yes
		break
	fi
	sleep 0.1
done
if [ -n "$seen" ]; then
	ok "the log shows the reload"
else
	not_ok "the log shows the reload" "$(tail -n 5 "$logfile" 2>/dev/null)"
fi
r=""
for _ in $(seq 50); do
	r=$(healthz)
	if [ "${r%% *}" = 200 ] && [ -n "$gen1" ] &&
		[ "$(generation "$r")" != "$gen1" ]; then
		break
	fi
	sleep 0.1
done
if [ "${r%% *}" = 200 ] && [ -n "$gen1" ] && [ "$(generation "$r")" != "$gen1" ]; then
	ok "after reload /healthz answers from a new generation"
else
	not_ok "after reload /healthz answers from a new generation" \
		"before: generation $gen1" "after: $r"
fi
if [ "$(read_pid)" = "$pid" ] && alive "$pid"; then
	ok "reload kept the supervisor"
else
	not_ok "reload kept the supervisor" "pid was $pid, now $(read_pid)"
fi
[ -n "$pid" ] && known_pids="$known_pids $(kids_of "$pid")"

# ---- log reopen (USR1, as logrotate does) ---------------------------------
if [ -n "$pid" ]; then
	mv "$logfile" "$logfile.1"
	kill -USR1 "$pid"
	for _ in $(seq 50); do
		[ -e "$logfile" ] && break
		sleep 0.1
	done
	if [ -e "$logfile" ]; then
		ok "USR1 reopens the log file"
		if [ "$(id -u)" -eq 0 ]; then
			u=$(stat -c %U "$logfile")
			if [ "$u" = nobody ]; then
				ok "the reopened log belongs to the worker user"
			else
				not_ok "the reopened log belongs to the worker user" "owner: $u"
			fi
		fi
	else
		not_ok "USR1 reopens the log file" "$logfile was not recreated"
	fi
fi

# ---- a broken config is refused -------------------------------------------
cp "$conf" "$conf.good"
echo "no_such_directive yes" >>"$conf"
badline=$(wc -l <"$conf")

run configtest
if [ "$rc" -ne 0 ]; then
	ok "configtest, broken config fails (exit $rc)"
else
	not_ok "configtest, broken config fails" "$out"
fi
if grep -q "orchd.conf:$badline:" <<<"$out"; then
	ok "configtest prints file:line: for the error"
else
	not_ok "configtest prints file:line: for the error" \
		"want orchd.conf:$badline:" "$out"
fi

run reload
if [ "$rc" -ne 0 ] && grep -q "orchd.conf:$badline:" <<<"$out"; then
	ok "reload with a broken config is refused and shows the error"
else
	not_ok "reload with a broken config is refused and shows the error" \
		"exit $rc" "$out"
fi

run restart
if [ "$rc" -ne 0 ] && [ "$(read_pid)" = "$pid" ] && alive "$pid"; then
	ok "restart with a broken config is refused, the daemon keeps running"
else
	not_ok "restart with a broken config is refused, the daemon keeps running" \
		"exit $rc, pid was $pid, now $(read_pid)" "$out"
fi
r=$(healthz)
if [ "${r%% *}" = 200 ]; then
	ok "still serving after the refused reload and restart"
else
	not_ok "still serving after the refused reload and restart" "got: $r"
fi

mv "$conf.good" "$conf"

# ---- restart --------------------------------------------------------------
[ -n "$pid" ] && known_pids="$known_pids $(kids_of "$pid")"
run restart
expect_rc "restart" 0
newpid=$(read_pid)
if [ -n "$newpid" ] && [ "$newpid" != "$pid" ] && alive "$newpid"; then
	ok "restart started a new supervisor ($newpid)"
	known_pids="$known_pids $newpid"
else
	not_ok "restart started a new supervisor" "pid was $pid, now '$newpid'" "$out"
fi
if [ -n "$pid" ] && ! alive "$pid"; then
	ok "restart stopped the old supervisor"
else
	not_ok "restart stopped the old supervisor" "$pid is still alive"
fi
if r=$(wait_healthz); then
	ok "GET /healthz answers 200 after restart"
else
	not_ok "GET /healthz answers 200 after restart" "got: $r"
fi
pid=$newpid

# ---- stop -----------------------------------------------------------------
kids=""
if [ -n "$pid" ]; then
	kids=$(kids_of "$pid")
	known_pids="$known_pids $kids"
fi
run stop
expect_rc "stop" 0
if [ -n "$pid" ] && ! alive "$pid"; then
	ok "the supervisor is gone"
else
	not_ok "the supervisor is gone" "pid '$pid'"
fi
left=""
for k in $kids; do
	if [ "$(readlink -f "/proc/$k/exe" 2>/dev/null)" = "$daemon" ]; then
		left="$left $k"
	fi
done
if [ -z "$left" ]; then
	ok "no worker is left"
else
	not_ok "no worker is left" "still running:$left"
fi
if [ ! -e "$pidfile" ]; then
	ok "the pid file is removed"
else
	not_ok "the pid file is removed" "$pidfile: $(cat "$pidfile")"
fi
r=$(healthz)
if [ "${r%% *}" != 200 ]; then
	ok "nothing answers on the port any more"
else
	not_ok "nothing answers on the port any more" "got: $r"
fi

run status
expect_rc "status when stopped" 3

run stop
expect_rc "stop when already stopped" 0

run reload
if [ "$rc" -ne 0 ]; then
	ok "reload when stopped fails (exit $rc)"
else
	not_ok "reload when stopped fails" "$out"
fi

# A pid file naming a dead process: LSB status 1.
sleep 0 &
deadpid=$!
wait "$deadpid"
echo "$deadpid" >"$pidfile"
run status
expect_rc "status with a stale pid file" 1
rm -f "$pidfile"

echo "$pass passed, $failed failed"
[ "$failed" -eq 0 ]
