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
