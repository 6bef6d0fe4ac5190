#!/bin/bash
# Table full: nf_conntrack_max=64 (init-netns sysctl, restored at exit), 200 new flows.
# Early drop evicts unassured entries (DESTROY without a request) or the packet is dropped.
. "$(dirname "$0")/../lib.sh"
lib_setup

MAX=64 FLOWS=200
NS=trk-full
ns_create $NS
ns_drop_udp $NS 20000-20999
set_global_sysctl net.netfilter.nf_conntrack_max $MAX
oracle_start $NS
out=$(traffic $NS udp-burst 127.0.0.1 --count $FLOWS --port-base 20000)
log "sender: $out"
n=$(ct_count $NS)
[ "$n" -le $MAX ] || fail "table holds $n entries with nf_conntrack_max=$MAX"
check_counts
ct_flush $NS
check_counts ""
oracle_stop
new=$(grep -cE '^ *\[NEW\] udp .*dport=20' "$CT_OUT" || true)
early=$(grep -E '^\[DESTROY\] udp .*dport=20' "$CT_OUT" | grep -vc USERSPACE || true)
expect_events '^ *\[NEW\] udp +17 .*dport=20' $MAX $FLOWS
expect_events '^\[DESTROY\] udp +17 .*dport=20' "$new" "$new"
oracle_compare
note "$new of $FLOWS flows created, $early early drops, sender: $out"
