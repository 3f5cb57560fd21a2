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
wait_until 120 attached || echo "# bpftrace did not attach: $(cat "$out")"

echo $(( (host + $(mib 48)) / 1048576 ))M > $B/target
wait_until 60 value_is $B/size $((host + $(mib 48)))
echo host > $B/target
wait_until 60 value_is $B/size "$host"
kill -INT $tracer
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
