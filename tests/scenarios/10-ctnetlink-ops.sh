#!/bin/bash
# Entries made and changed by userspace: conntrack -I (insert), -U --mark (update,
# full original tuple: 1.4.7 refuses partial filters), -D (delete), -F (flush);
# counts checked after each.
. "$(dirname "$0")/../lib.sh"
lib_setup

NS=trk-ctnl
ns_create $NS
oracle_start $NS
ct() { in_ns $NS conntrack "$@" 2>&1 | sed 's/^/  conntrack: /'; }
A=(-p udp -s 10.9.9.1 -d 10.9.9.2 --sport 1000 --dport 2000)
B=(-p tcp -s 10.9.9.1 -d 10.9.9.2 --sport 1001 --dport 80)
C=(-p udp -s 10.9.9.3 -d 10.9.9.4 --sport 1002 --dport 2002)
ct -I "${A[@]}" -t 60 -u SEEN_REPLY --mark 1
ct -I "${B[@]}" --state ESTABLISHED -t 120 -u SEEN_REPLY,ASSURED --mark 2
ct -I "${C[@]}" -t 60
check_counts "0=1,1=1,2=1"
ct -U "${C[@]}" --mark 2
check_counts "1=1,2=2"
ct -D "${A[@]}"
check_counts "2=2"
ct -F
check_counts ""
oracle_stop
expect_events '^ *\[NEW\] ' 3 3
expect_events '^\[DESTROY\] udp .*sport=1000 .* mark=1( |$)' 1 1
expect_events '^\[DESTROY\] udp .*sport=1002 .* mark=2( |$)' 1 1
expect_events '^\[DESTROY\] tcp .*sport=1001 .* mark=2( |$)' 1 1
oracle_compare
