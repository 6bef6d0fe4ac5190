#!/bin/bash
# Two "ISPs": connections from 10.200.11.0/24 get connmark 1, from 10.200.12.0/24 mark 2
# (MARK by source subnet + CONNMARK save/restore in mangle PREROUTING); per-mark counts.
# Then one live UDP flow is re-marked to 3 by CONNMARK --set-mark on its next packet:
# the counts must follow the entry to its new mark.
# timeout: 480
. "$(dirname "$0")/../lib.sh"
lib_setup
need_cmd iptables
for m in iptable_mangle xt_mark xt_connmark; do modprobe -q $m 2>/dev/null || true; done

ISP1=trk-isp1 ISP2=trk-isp2 RTR=trk-isp-rtr
ns_create $ISP1
ns_create $ISP2
ns_create $RTR
veth_link $ISP1 eth0 10.200.11.2/24 $RTR isp1 10.200.11.1/24
veth_link $ISP2 eth0 10.200.12.2/24 $RTR isp2 10.200.12.1/24
# Keep unassured UDP entries for the whole scenario on a slow VM.
in_ns $RTR sysctl -qw net.netfilter.nf_conntrack_udp_timeout=120
try_or_skip "CONNMARK unavailable" in_ns $RTR iptables -t mangle -A PREROUTING -j CONNMARK --restore-mark
in_ns $RTR iptables -t mangle -A PREROUTING -m mark ! --mark 0 -j ACCEPT
try_or_skip "MARK unavailable" in_ns $RTR iptables -t mangle -A PREROUTING -s 10.200.11.0/24 -j MARK --set-mark 1
in_ns $RTR iptables -t mangle -A PREROUTING -s 10.200.12.0/24 -j MARK --set-mark 2
in_ns $RTR iptables -t mangle -A PREROUTING -j CONNMARK --save-mark

start_tcp_server $RTR 0.0.0.0 8000
start_udp_echo $RTR 0.0.0.0 5300
oracle_start $RTR
traffic $ISP1 tcp-client 10.200.11.1 8000 --count 20
traffic $ISP1 udp-client 10.200.11.1 5300 --count 10
traffic $ISP2 tcp-client 10.200.12.1 8000 --count 10
traffic $ISP2 udp-client 10.200.12.1 5300 --count 15
traffic $ISP1 udp-client 10.200.11.1 5300 --sport 40001
check_counts "1=31,2=25"
in_ns $RTR iptables -t mangle -I PREROUTING 1 -s 10.200.11.2 -p udp --sport 40001 -j CONNMARK --set-mark 3
traffic $ISP1 udp-client 10.200.11.1 5300 --sport 40001
check_counts "1=30,2=25,3=1"
ct_flush $RTR
check_counts ""
oracle_stop
expect_events '^ *\[NEW\] .*src=10\.200\.11\.2 .* mark=1( |$)' 31 31
expect_events '^ *\[NEW\] .*src=10\.200\.12\.2 .* mark=2( |$)' 25 25
expect_events '^\[DESTROY\] .* mark=1( |$)' 30 30
expect_events '^\[DESTROY\] .* mark=2( |$)' 25 25
expect_events '^\[DESTROY\] .*sport=40001 .* mark=3( |$)' 1 1
oracle_compare
