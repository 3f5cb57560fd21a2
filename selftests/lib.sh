#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# KTAP output and deadline-bound waiting for the uniballoon selftests.
export LC_ALL=C
B=/sys/kernel/balloon
KSFT_SKIP=4
ktap_n=0 ktap_pass=0 ktap_fail=0 ktap_skip=0

ktap_plan() {
	echo "KTAP version 1"
	echo "1..$1"
}

ktap_ok() {
	ktap_n=$((ktap_n + 1)) ktap_pass=$((ktap_pass + 1))
	echo "ok $ktap_n $*"
}

# ktap_not_ok NAME [DIAGNOSTIC LINE...]
ktap_not_ok() {
	ktap_n=$((ktap_n + 1)) ktap_fail=$((ktap_fail + 1))
	echo "not ok $ktap_n $1"
	shift
	for line in "$@"; do echo "# $line"; done
}

ktap_skip() {
	ktap_n=$((ktap_n + 1)) ktap_skip=$((ktap_skip + 1))
	echo "ok $ktap_n $1 # SKIP ${2:-}"
}

# ktap_check NAME COMMAND...: one result from a command's exit status
ktap_check() {
	local name=$1 out
	shift
	if out=$("$@" 2>&1); then
		ktap_ok "$name"
		[ -z "$out" ] || echo "$out" | sed 's/^/# /'
	else
		ktap_not_ok "$name" "$out"
	fi
}

ktap_finish() {
	echo "# totals: pass:$ktap_pass fail:$ktap_fail xfail:0 xpass:0 skip:$ktap_skip error:0"
	[ "$ktap_fail" -eq 0 ] || exit 1
	[ "$ktap_pass" -gt 0 ] || exit $KSFT_SKIP
	exit 0
}

# The whole file is skipped when no balloon backend is active.
require_balloon() {
	if [ ! -r $B/backend ] || [ "$(cat $B/backend)" = none ]; then
		ktap_plan 1
		ktap_skip "$1" "uniballoon is not loaded with an active backend"
		ktap_finish
	fi
}

# wait_until SECONDS COMMAND...: poll until COMMAND succeeds or time is up
wait_until() {
	local deadline=$(($(date +%s%N) + $1 * 1000000000))
	shift
	until "$@"; do
		[ "$(date +%s%N)" -lt "$deadline" ] || return 1
		sleep 0.1
	done
}

value_is() {
	[ "$(cat "$1")" = "$2" ]
}

meminfo_kb() {
	awk -v k="$1:" '$1 == k { print $2 }' /proc/meminfo
}

mib() {
	echo $(($1 * 1024 * 1024))
}

# write_errno FILE VALUE: print the error a write gives, or "ok"
write_errno() {
	local err
	if err=$( { printf '%s' "$2" > "$1"; } 2>&1 ); then
		echo ok
	else
		case "$err" in
		*"Invalid argument"*) echo EINVAL ;;
		*"Numerical result out of range"*) echo ERANGE ;;
		*"Operation not permitted"*) echo EPERM ;;
		*"No such device"*) echo ENODEV ;;
		*) echo "other: $err" ;;
		esac
	fi
}
