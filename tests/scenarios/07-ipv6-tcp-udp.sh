#!/bin/bash
# IPv6: TCP and UDP over ::1 and between two namespaces on a veth pair (fd00:200::/64).
. "$(dirname "$0")/../lib.sh"
lib_setup

CLI=trk-cli6 SRV=trk-srv6
ns_create $CLI
ns_create $SRV
in_ns $SRV ip -6 addr show dev lo | grep -q '::1' || skip "IPv6 is disabled (no ::1 on lo)"
veth_link $CLI veth-c fd00:200::2/64 $SRV veth-s fd00:200::1/64
start_tcp_server $SRV fd00:200::1 8000
start_udp_echo $SRV fd00:200::1 5300
start_tcp_server $SRV ::1 8001
start_udp_echo $SRV ::1 5301
oracle_start $SRV
traffic $CLI tcp-client fd00:200::1 8000 --count 3
traffic $CLI udp-client fd00:200::1 5300 --count 3
traffic $SRV tcp-client ::1 8001 --count 2
traffic $SRV udp-client ::1 5301 --count 2
ct_flush $SRV
oracle_stop
expect_events '^ *\[NEW\] tcp +6 .*src=fd00:200::2 dst=fd00:200::1 .*dport=8000 ' 3 3
expect_events '^ *\[NEW\] udp +17 .*src=fd00:200::2 dst=fd00:200::1 .*dport=5300 ' 3 3
expect_events '^ *\[NEW\] tcp +6 .*src=::1 dst=::1 .*dport=8001 ' 2 2
expect_events '^ *\[NEW\] udp +17 .*src=::1 dst=::1 .*dport=5301 ' 2 2
expect_events '^\[DESTROY\] (tcp|udp) .*dport=(8000|5300|8001|5301) ' 10 10
oracle_compare
