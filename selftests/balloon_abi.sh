#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The files of /sys/kernel/balloon: present, right modes, and every writable
# one refuses bad input with a clear error and changes nothing.
cd "$(dirname "$0")" && . ./lib.sh
require_balloon "balloon_abi"

RO="backend features size host_target target_source blocked pressure_reserve"
RW="target floor inflate_rate deflate_rate oom_deflate oom_deflate_size"
STATS="inflated deflated alloc_failures host_refusals host_errors oom_deflations oom_deflated target_changes floor_holds rate_delays migrations"
# malformed, negative, fractional, hex, padded, stacked suffixes, overflow
GARBAGE=($'\n' $'5\n\n' $'1\n\n' "abc" "-1" "-1M" "1.5G" "12Q" "0x10" " 5" "+5" "1G1" "1KK" "M" \
	 "99999999999999999999" "18014398509481984K" "18446744073709551615G")

ktap_plan 10

files_ok() {
	local f mode
	for f in $RO; do
		mode=$(stat -c %a $B/$f) && [ "$mode" = 444 ] ||
			{ echo "$f mode ${mode:-missing}"; return 1; }
	done
	for f in $RW; do
		mode=$(stat -c %a $B/$f) && [ "$mode" = 644 ] ||
			{ echo "$f mode ${mode:-missing}"; return 1; }
	done
	for f in $STATS; do
		grep -qE '^[0-9]+$' $B/stats/$f || { echo "stats/$f"; return 1; }
	done
}
ktap_check "every file is there with its mode" files_ok

snapshot() {
	local f
	for f in $RW; do echo "$f=$(cat $B/$f)"; done
	echo "source=$(cat $B/target_source)"
}

garbage_refused() {
	local f v e before
	before=$(snapshot)
	for f in $RW; do
		for v in "${GARBAGE[@]}"; do
			e=$(write_errno $B/$f "$v")
			case "$e" in
			EINVAL|ERANGE) ;;
			*) echo "$f <- '$v': $e"; return 1 ;;
			esac
		done
	done
	[ "$(snapshot)" = "$before" ] || { echo "values changed"; return 1; }
}
ktap_check "garbage is refused with EINVAL or ERANGE" garbage_refused

expect_errno() {
	local e
	e=$(write_errno "$1" "$2")
	[ "$e" = "$3" ] || { echo "$1 <- '$2': $e, expected $3"; return 1; }
}

# an empty balloon gives back at most its size
ram_bytes=$(( $(meminfo_kb MemTotal) * 1024 + $(cat $B/size) ))
too_big=$(( ram_bytes + 4096 ))
out_of_range() {
	local before
	before=$(snapshot)
	expect_errno $B/target $too_big ERANGE &&
	expect_errno $B/floor $too_big ERANGE &&
	expect_errno $B/oom_deflate_size 0 ERANGE &&
	expect_errno $B/oom_deflate_size $too_big ERANGE &&
	expect_errno $B/inflate_rate 1 ERANGE &&
	expect_errno $B/deflate_rate 4095 ERANGE &&
	expect_errno $B/oom_deflate 2 EINVAL &&
	expect_errno $B/oom_deflate -1 EINVAL &&
	expect_errno $B/oom_deflate 01 EINVAL &&
	[ "$(snapshot)" = "$before" ] || { echo "values changed"; return 1; }
}
ktap_check "out-of-range values are refused with ERANGE" out_of_range

suffixes() {
	local old
	old=$(cat $B/floor)
	echo 4K > $B/floor && value_is $B/floor 4096 &&
	echo 3m > $B/floor && value_is $B/floor $(mib 3) &&
	echo 0G > $B/floor && value_is $B/floor 0 &&
	printf 123 > $B/floor && value_is $B/floor 123 &&
	echo "$old" > $B/floor
}
ktap_check "sizes take K/M/G suffixes, with or without a newline" suffixes

no_cap_sys_admin() {
	local f before e
	before=$(snapshot)
	for f in $RW; do
		e=$(setpriv --bounding-set -sys_admin bash -c \
			". ./lib.sh; write_errno $B/$f 1M")
		[ "$e" = EPERM ] || { echo "$f: $e"; return 1; }
	done
	[ "$(snapshot)" = "$before" ] || { echo "values changed"; return 1; }
}
if command -v setpriv >/dev/null; then
	ktap_check "writes need CAP_SYS_ADMIN" no_cap_sys_admin
else
	ktap_skip "writes need CAP_SYS_ADMIN" "setpriv not installed"
fi

ktap_check "backend names the active backend" \
	grep -qxE 'virtio|vmware|xen' $B/backend
ktap_check "features lists the core's knobs" \
	grep -qE '^target floor inflate_rate deflate_rate' $B/features

debugfs_ok() {
	local d=/sys/kernel/debug/balloon
	grep -q "^backend: *$(cat $B/backend)" $d/status &&
	grep -q "^size: *$(( $(cat $B/size) / 4096 )) pages" $d/status &&
	grep -q "^backend: $(cat $B/backend)" $d/backend
}
ktap_check "debugfs status and backend files agree with sysfs" debugfs_ok

tracefs_ok() {
	local t=/sys/kernel/tracing/events/balloon e f
	[ -d $t ] || t=/sys/kernel/debug/tracing/events/balloon
	for e in inflate:pages inflate:order inflate:duration_ns \
		 deflate:pages target:old_bytes target:new_bytes target:reason \
		 oom_deflate:pages oom_deflate:size_bytes backend:event backend:err; do
		grep -q "field:.* ${e#*:}\[*[0-9]*\]*;" $t/${e%%:*}/format ||
			{ echo "no field $e"; return 1; }
	done
}
ktap_check "tracepoints balloon:* carry their fields" tracefs_ok

host_word() {
	local old=$(cat $B/target_source)
	echo host > $B/target && value_is $B/target_source host &&
	[ "$(cat $B/target)" = "$(cat $B/host_target)" ] || { echo "source $old"; return 1; }
}
ktap_check "writing 'host' hands the target back to the host" host_word

ktap_finish
