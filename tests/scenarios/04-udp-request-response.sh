#!/bin/bash
# UDP request/response over loopback: each client socket is one flow that sees a reply.
. "$(dirname "$0")/../lib.sh"
lib_setup

NS=trk-udp
ns_create $NS
start_udp_echo $NS 127.0.0.1 5300
oracle_start $NS
traffic $NS udp-client 127.0.0.1 5300 --count 5
ct_flush $NS
oracle_stop
expect_events '^ *\[NEW\] udp +17 .*dport=5300 ' 5 5
expect_events '^\[DESTROY\] udp +17 .*dport=5300 ' 5 5
if grep -E '^\[DESTROY\] udp .*dport=5300 .*UNREPLIED' "$CT_OUT"; then
    fail "scenario check: a flow saw no reply"
fi
oracle_compare

# The same with --all-netns: the programs then reserve each record in the ring before they
# read the entry (no filter looks at it), the other way a record is written. Only this
# namespace makes traffic, so the stream must still equal conntrack -E's. eBPF only.
grep -q 'source=ebpf' "$TRK_ERR" || { note "5 flows equal to conntrack -E (--all-netns needs the eBPF source)"; exit 0; }
TRACKER_ARGS=--all-netns oracle_start $NS
traffic $NS udp-client 127.0.0.1 5300 --count 5
ct_flush $NS
oracle_stop
expect_events '^ *\[NEW\] udp +17 .*dport=5300 ' 5 5
expect_events '^\[DESTROY\] udp +17 .*dport=5300 ' 5 5
oracle_compare
note "5 flows equal to conntrack -E, with one netns and with --all-netns"
