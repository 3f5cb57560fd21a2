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

# BEGIN fires once every probe is attached ("Attaching" comes before that)
bpftrace -e '
BEGIN { printf("READY\n"); }
tracepoint:balloon:inflate { @inflated = sum(args->pages << args->order); }
tracepoint:balloon:deflate { @deflated = sum(args->pages << args->order); }
tracepoint:balloon:target { @targets[args->reason] = count(); }
' > "$out" 2>&1 &
tracer=$!
attached() { grep -q "^READY" "$out"; }
gone() { ! kill -0 "$tracer" 2>/dev/null; }

# Loading bpftrace (LLVM) in an emulated guest takes from 20 s to over 2
# minutes on a busy host; past the deadline, say so rather than hang.
if ! wait_until 180 attached; then
	kill -KILL $tracer 2>/dev/null
	wait $tracer
	for t in "bpftrace sums inflate pages" "bpftrace sums deflate pages" \
		 "target events name the user as the reason"; do
		ktap_not_ok "$t" "bpftrace did not attach in 180 s"
	done
	sed 's/^/# /' "$out"
	rm -f "$out"
	ktap_finish
fi

echo $(( (host + $(mib 48)) / 1048576 ))M > $B/target
wait_until 60 value_is $B/size $((host + $(mib 48)))
echo host > $B/target
wait_until 60 value_is $B/size "$host"
# SIGINT makes bpftrace print its maps and exit
kill -INT $tracer
wait_until 30 gone || kill -KILL $tracer
wait $tracer

map() {
	awk -v k="$1" '$1 == k { print $2 }' "$out"
}
ktap_check "bpftrace sums inflate pages" \
	test "$(map @inflated:)" = $((48 * 256))
ktap_check "bpftrace sums deflate pages" \
	test "$(map @deflated:)" = $((48 * 256))
ktap_check "target events name the user as the reason" \
	test "$(map '@targets[user]:')" -ge 1
[ "$ktap_fail" -eq 0 ] || sed 's/^/# /' "$out"
rm -f "$out"
ktap_finish
