#!/bin/bash
# Entries made and changed by userspace: conntrack -I (insert), -U --mark (update,
# full original tuple: 1.4.7 refuses partial filters), -D (delete), -F (flush);
# counts checked after each. Three entries carry a zone for both directions, the
# original only and the reply only: conntrack prints them as zone=, zone-orig=
# and zone-reply= in different places of the line.
. "$(dirname "$0")/../lib.sh"
lib_setup

NS=trk-ctnl
ns_create $NS
oracle_start $NS
ct() { in_ns $NS conntrack "$@" 2>&1 | sed 's/^/  conntrack: /'; }
A=(-p udp -s 10.9.9.1 -d 10.9.9.2 --sport 1000 --dport 2000)
B=(-p tcp -s 10.9.9.1 -d 10.9.9.2 --sport 1001 --dport 80)
C=(-p udp -s 10.9.9.3 -d 10.9.9.4 --sport 1002 --dport 2002)
Z=(-p udp -s 10.9.9.5 -d 10.9.9.6 --dport 2003 -t 60)
ct -I "${A[@]}" -t 60 -u SEEN_REPLY --mark 1
ct -I "${B[@]}" --state ESTABLISHED -t 120 -u SEEN_REPLY,ASSURED --mark 2
ct -I "${C[@]}" -t 60
ct -I "${Z[@]}" --sport 1003 --zone 4
ct -I "${Z[@]}" --sport 1004 --orig-zone 2
ct -I "${Z[@]}" --sport 1005 --reply-zone 3 -u SEEN_REPLY
check_counts "0=4,1=1,2=1"
ct -U "${C[@]}" --mark 2
check_counts "0=3,1=1,2=2"
ct -D "${A[@]}"
check_counts "0=3,2=2"
ct -F
check_counts ""
oracle_stop
expect_events '^ *\[NEW\] ' 6 6
expect_events '^ *\[NEW\] udp .*sport=1003 .* zone=4( |$)' 1 1
expect_events '^ *\[NEW\] udp .*sport=1004 dport=2003 zone-orig=2 ' 1 1
expect_events '^ *\[NEW\] udp .*sport=2003 dport=1005 zone-reply=3( |$)' 1 1
expect_events '^\[DESTROY\] udp .*sport=1000 .* mark=1( |$)' 1 1
expect_events '^\[DESTROY\] udp .*sport=1002 .* mark=2( |$)' 1 1
expect_events '^\[DESTROY\] tcp .*sport=1001 .* mark=2( |$)' 1 1
oracle_compare
