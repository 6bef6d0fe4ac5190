#!/bin/bash
# UDP datagrams that get no answer (dropped on input): [UNREPLIED] flows.
. "$(dirname "$0")/../lib.sh"
lib_setup

NS=trk-udpnr
ns_create $NS
ns_drop_udp $NS 5301
oracle_start $NS
traffic $NS udp-client 127.0.0.1 5301 --count 5 --no-reply
ct_flush $NS
oracle_stop
expect_events '^ *\[NEW\] udp +17 .*dport=5301 \[UNREPLIED\]' 5 5
expect_events '^\[DESTROY\] udp +17 .*dport=5301 .*\[UNREPLIED\]' 5 5
oracle_compare
