#!/bin/bash
# ICMP and ICMPv6 echo request/reply over loopback, one id per flow.
. "$(dirname "$0")/../lib.sh"
lib_setup

NS=trk-icmp
ns_create $NS
oracle_start $NS
traffic $NS ping 127.0.0.1 --count 3
if in_ns $NS ip -6 addr show dev lo | grep -q '::1'; then
    traffic $NS ping ::1 --count 3
    want6=3
else
    log "no ::1 in $NS (IPv6 disabled?): IPv4 only"
    want6=0
fi
ct_flush $NS
oracle_stop
expect_events '^ *\[NEW\] icmp +1 .*type=8 code=0 id=' 3 3
expect_events '^\[DESTROY\] icmp +1 .*type=8 code=0 id=' 3 3
expect_events '^ *\[NEW\] icmpv6 +58 .*type=128 code=0 id=' $want6 $want6
expect_events '^\[DESTROY\] icmpv6 +58 .*type=128 code=0 id=' $want6 $want6
oracle_compare
