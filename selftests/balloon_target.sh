#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# A guest override through /sys/kernel/balloon/target moves the balloon and
# MemTotal, the rate limits slow it down, and 'host' hands control back.
cd "$(dirname "$0")" && . ./lib.sh
require_balloon "balloon_target"

ktap_plan 5
echo host > $B/target
echo 0 > $B/inflate_rate
echo 0 > $B/deflate_rate
host=$(cat $B/host_target)
wait_until 60 value_is $B/size "$host"
total0=$(meminfo_kb MemTotal)
size0=$(cat $B/size)
want=$(( size0 + $(mib 64) ))

override() {
	echo $((want / 1048576))M > $B/target &&
	value_is $B/target_source user &&
	wait_until 60 value_is $B/size $want ||
		{ echo "size $(cat $B/size), want $want"; return 1; }
}
ktap_check "a guest override inflates to the target" override

# With the host's DEFLATE_ON_OOM the pages stay in MemTotal (as in-tree).
drop=$((64 * 1024))
grep -qw oom_deflate $B/features && drop=0
memtotal_follows() {
	local total=$(meminfo_kb MemTotal)
	[ $((total0 - total)) -eq $drop ] ||
		{ echo "MemTotal $total0 -> $total kB"; return 1; }
}
ktap_check "MemTotal drops by what the balloon holds (unless DEFLATE_ON_OOM)" memtotal_follows

back_to_host() {
	echo host > $B/target && value_is $B/target_source host &&
	wait_until 60 value_is $B/size "$host" &&
	[ "$(meminfo_kb MemTotal)" -eq "$total0" ] ||
		{ echo "size $(cat $B/size) MemTotal $(meminfo_kb MemTotal)"; return 1; }
}
ktap_check "'host' returns to the host's target" back_to_host

# seconds (with a fraction) until size reaches $1
time_to_size() {
	local t0=$(date +%s%N)
	wait_until 60 value_is $B/size "$1" || return 1
	echo $(( ($(date +%s%N) - t0) / 1000000 ))
}

inflate_rate() {
	local ms
	echo 64M > $B/inflate_rate
	echo $((size0 / 1048576 + 256))M > $B/target
	ms=$(time_to_size $((size0 + $(mib 256)))) || { echo "never reached"; return 1; }
	echo 0 > $B/inflate_rate
	echo "256 MiB at inflate_rate 64M took $ms ms"
	[ "$ms" -ge 3000 ] || { echo "too fast: $ms ms"; return 1; }
}
ktap_check "inflate_rate 64M: 256 MiB takes at least 3 s" inflate_rate

deflate_rate() {
	local ms
	echo 64M > $B/deflate_rate
	echo host > $B/target
	ms=$(time_to_size "$host") || { echo "never reached"; return 1; }
	echo 0 > $B/deflate_rate
	echo "256 MiB at deflate_rate 64M took $ms ms"
	[ "$ms" -ge 3000 ] || { echo "too fast: $ms ms"; return 1; }
}
ktap_check "deflate_rate 64M: 256 MiB takes at least 3 s" deflate_rate

echo 0 > $B/inflate_rate
echo 0 > $B/deflate_rate
echo host > $B/target
ktap_finish
