#!/bin/bash
# Entries that time out: DESTROY comes from the conntrack GC, not from a request.
# timeout: 480
. "$(dirname "$0")/../lib.sh"
lib_setup

NS=trk-exp
ns_create $NS
in_ns $NS sysctl -qw net.netfilter.nf_conntrack_udp_timeout=3
ns_drop_udp $NS 5302
oracle_start $NS
traffic $NS udp-client 127.0.0.1 5302 --count 5 --no-reply
start=$SECONDS
if wait_ct_count $NS 0 20; then
    how="by GC"
else
    # A dump evicts expired entries too (also a DESTROY without a request).
    log "GC left $(ct_count $NS) entries after 20 s; a dump evicts them"
    in_ns $NS conntrack -L >/dev/null 2>&1
    wait_ct_count $NS 0 5 || fail "entries still present after expiry and dump: $(ct_count $NS)"
    how="by a dump (GC slower than 20 s)"
fi
oracle_stop
expect_events '^ *\[NEW\] udp +17 .*dport=5302 ' 5 5
expect_events '^\[DESTROY\] udp +17 .*dport=5302 .*\[UNREPLIED\]' 5 5
if grep -q 'USERSPACE' "$CT_OUT"; then fail "scenario check: an expiry DESTROY came from userspace"; fi
oracle_compare
note "5 UDP entries expired and were removed $how after $((SECONDS - start)) s"
