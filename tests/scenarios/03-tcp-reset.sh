#!/bin/bash
# TCP resets: connects refused with RST (the entry dies at once in the packet path) and
# established connections aborted with RST (state CLOSE, removed by timeout/GC).
. "$(dirname "$0")/../lib.sh"
lib_setup

NS=trk-rst
ns_create $NS
in_ns $NS sysctl -qw net.netfilter.nf_conntrack_tcp_timeout_close=2
start_tcp_server $NS 127.0.0.1 8000
oracle_start $NS
traffic $NS tcp-refused 127.0.0.1 8001 --count 3
traffic $NS tcp-client 127.0.0.1 8000 --count 3 --abort
# The aborted ones sit in CLOSE for 2 s. GC may take up to a minute to come round on
# recent kernels; a dump evicts expired entries as well (DESTROY without a request).
sleep 3
in_ns $NS conntrack -L >/dev/null 2>&1
if ! wait_ct_count $NS 0 5; then
    log "entries left after expiry and a dump: $(ct_count $NS); flushing"
    ct_flush $NS
fi
oracle_stop
expect_events '^ *\[NEW\] tcp +6 .*dport=8001 ' 3 3
expect_events '^\[DESTROY\] tcp +6 .*dport=8001 .*UNREPLIED' 3 3
expect_events '^ *\[NEW\] tcp +6 .*dport=8000 ' 3 3
expect_events '^\[DESTROY\] tcp +6 .*dport=8000 ' 3 3
oracle_compare
