#!/bin/bash
# 21-counts-expired for entries older than the tracker: UDP entries made before it starts
# are listed by its start-up dump, so the seed hook remembers them; once their timeout has
# passed, and before the GC removes them, `tracker counts` must leave them out as
# `conntrack -L` does. Their DESTROY, when the listing evicts them, must uncount them once.
# timeout: 300
. "$(dirname "$0")/../lib.sh"
lib_setup

NS=trk-cseed
N=20
TCP=5
UDP_TIMEOUT=20
table_count() { in_ns $NS cat /proc/sys/net/netfilter/nf_conntrack_count; }
ns_create $NS
in_ns $NS sysctl -qw net.netfilter.nf_conntrack_udp_timeout=$UDP_TIMEOUT
ns_drop_udp $NS 5304
start_tcp_server $NS 127.0.0.1 8004
traffic $NS tcp-client 127.0.0.1 8004 --count $TCP
traffic $NS udp-client 127.0.0.1 5304 --count $N --no-reply
sent=$SECONDS
total=$(table_count)
[ "$total" = $((TCP + N)) ] || fail "scenario check: nf_conntrack_count is $total, expected $((TCP + N))"
# The tracker starts after every entry exists: all of them come from its start-up dump.
oracle_start $NS
started=$((SECONDS - sent))
[ "$started" -lt $((UDP_TIMEOUT - 4)) ] \
    || skip "the tracker took $started s to start, too close to the $UDP_TIMEOUT s UDP timeout"
check_counts "0=$((TCP + N))"
# Past the UDP timeout, with a margin for a slow VM.
while [ $((SECONDS - sent)) -lt $((UDP_TIMEOUT + 3)) ]; do pause 0.5; done
j=$SCEN_DIR/expired.json
before=$(table_count)
in_ns $NS "$TRACKER" counts -o json >"$j" 2>"$j.stderr" \
    || fail "'tracker counts -o json' failed: $(tail -n1 "$j.stderr")"
after=$(table_count)
window=$((SECONDS - sent))
expired_counts_vs_listing $NS "$j" "0=$TCP" "$total" "$before" "$after" "$window" \
    "the $N expired entries from before its start"
# The listing evicted them: their DESTROYs took them out of the counts once.
wait_ct_count $NS $TCP 5 || fail "scenario check: $(ct_count $NS) entries after the listing, expected $TCP"
check_counts "0=$TCP"
oracle_stop
expect_events '^\[DESTROY\] udp +17 .*dport=5304 .*\[UNREPLIED\]' $N $N
oracle_compare
note "$N UDP entries from before the start, expired and still in the table (nf_conntrack_count $after) $window s after send, were not counted"
