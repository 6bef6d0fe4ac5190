#!/bin/bash
# NAT through a router namespace: the Docker `-p 8080:80` shape (PREROUTING DNAT, TCP and
# UDP) and MASQUERADE towards the server side. The oracle watches the router.
# timeout: 480
. "$(dirname "$0")/../lib.sh"
lib_setup
need_cmd iptables
for m in nf_nat iptable_nat nft_chain_nat xt_nat xt_MASQUERADE nf_nat_ipv4 ipt_MASQUERADE; do
    modprobe -q $m 2>/dev/null || true # names vary by kernel; the rules below are the test
done

CLI=trk-nat-cli RTR=trk-nat-rtr SRV=trk-nat-srv
ns_create $CLI
ns_create $RTR
ns_create $SRV
veth_link $CLI eth0 10.200.1.2/24 $RTR cli0 10.200.1.1/24
veth_link $SRV eth0 10.200.2.2/24 $RTR srv0 10.200.2.1/24
in_ns $CLI ip route add default via 10.200.1.1
in_ns $SRV ip route add default via 10.200.2.1
in_ns $RTR sysctl -qw net.ipv4.ip_forward=1
try_or_skip "DNAT (iptables -t nat) unavailable" \
    in_ns $RTR iptables -t nat -A PREROUTING -i cli0 -p tcp --dport 8080 -j DNAT --to-destination 10.200.2.2:80
in_ns $RTR iptables -t nat -A PREROUTING -i cli0 -p udp --dport 5353 -j DNAT --to-destination 10.200.2.2:53
try_or_skip "MASQUERADE unavailable" \
    in_ns $RTR iptables -t nat -A POSTROUTING -o srv0 -p tcp --dport 81 -j MASQUERADE

start_tcp_server $SRV 10.200.2.2 80
start_tcp_server $SRV 10.200.2.2 81
start_udp_echo $SRV 10.200.2.2 53
oracle_start $RTR
traffic $CLI tcp-client 10.200.1.1 8080 --count 3
traffic $CLI udp-client 10.200.1.1 5353 --count 3
traffic $CLI tcp-client 10.200.2.2 81 --count 3
ct_flush $RTR
oracle_stop
expect_events '^ *\[NEW\] tcp .*src=10\.200\.1\.2 dst=10\.200\.1\.1 sport=[0-9]+ dport=8080 \[UNREPLIED\] src=10\.200\.2\.2 dst=10\.200\.1\.2 sport=80 ' 3 3
expect_events '^ *\[NEW\] udp .*src=10\.200\.1\.2 dst=10\.200\.1\.1 sport=[0-9]+ dport=5353 \[UNREPLIED\] src=10\.200\.2\.2 dst=10\.200\.1\.2 sport=53 ' 3 3
expect_events '^ *\[NEW\] tcp .*src=10\.200\.1\.2 dst=10\.200\.2\.2 sport=[0-9]+ dport=81 \[UNREPLIED\] src=10\.200\.2\.2 dst=10\.200\.2\.1 sport=81 ' 3 3
expect_events '^\[DESTROY\] ' 9 9
oracle_compare
