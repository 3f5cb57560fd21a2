#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# bpftrace sees tracepoint:balloon:* with the right sums while the guest
# moves its own balloon.
cd "$(dirname "$0")" && . ./lib.sh
require_balloon "balloon_trace"
if ! command -v bpftrace >/dev/null; then
	ktap_plan 1
	ktap_skip "balloon_trace" "bpftrace not installed"
	ktap_finish
fi

ktap_plan 3
out=$(mktemp)
echo host > $B/target
host=$(cat $B/host_target)
wait_until 60 value_is $B/size "$host"

# BEGIN fires once every probe is attached ("Attaching" comes before that).
# Each event is printed as it comes, so the sums are read while bpftrace
# runs: its exit after SIGINT (printing maps, detaching) has taken over a
# minute in an emulated guest on a busy host.
bpftrace -e '
BEGIN { printf("READY\n"); }
tracepoint:balloon:inflate { printf("inflate %d\n", args->pages << args->order); }
tracepoint:balloon:deflate { printf("deflate %d\n", args->pages << args->order); }
tracepoint:balloon:target { printf("target %s\n", args->reason); }
' > "$out" 2>&1 &
tracer=$!
attached() { grep -q "^READY" "$out"; }
stop_tracer() { { kill -KILL $tracer; wait $tracer; } 2>/dev/null; }

# Loading bpftrace (LLVM) in an emulated guest takes from 20 s to over 2
# minutes on a busy host; past the deadline, say so rather than hang.
if ! wait_until 180 attached; then
	stop_tracer
	for t in "bpftrace sums inflate pages" "bpftrace sums deflate pages" \
		 "target events name the user as the reason"; do
		ktap_not_ok "$t" "bpftrace did not attach in 180 s"
	done
	sed 's/^/# /' "$out"
	rm -f "$out"
	ktap_finish
fi

# sum EVENT: pages the events of that kind carried so far
sum() {
	awk -v e="$1" '$1 == e { s += $2 } END { print s + 0 }' "$out"
}
at_least() { [ "$(sum "$1")" -ge "$2" ]; }
users() { grep -c "^target user" "$out"; }
pages=$((48 * 256))

echo $(( (host + $(mib 48)) / 1048576 ))M > $B/target
wait_until 60 value_is $B/size $((host + $(mib 48)))
echo host > $B/target
wait_until 60 value_is $B/size "$host"
# events reach bpftrace's output a little after the size moved
wait_until 30 at_least inflate $pages
wait_until 30 at_least deflate $pages
stop_tracer

ktap_check "bpftrace sums inflate pages" test "$(sum inflate)" = $pages
ktap_check "bpftrace sums deflate pages" test "$(sum deflate)" = $pages
ktap_check "target events name the user as the reason" test "$(users)" -ge 1
[ "$ktap_fail" -eq 0 ] || sed 's/^/# /' "$out"
rm -f "$out"
ktap_finish
