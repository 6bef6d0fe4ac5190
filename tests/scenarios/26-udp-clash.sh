#!/bin/bash
# Two packets of one new UDP flow, sent at once from two threads, race to confirm their
# entries; the loser's packet is handed the winner's entry and accepted
# (__nf_ct_resolve_clash in net/netfilter/nf_conntrack_core.c; conntrack -S counts it as
# clash_resolve). conntrack -E shows one NEW per flow, and so must the tracker, whose NEW
# hook on the packet path sees the winner a second time; the counts take each entry once.
# timeout: 420
. "$(dirname "$0")/../lib.sh"
lib_setup

NS=trk-clash
ROUNDS=${CLASH_ROUNDS:-2000}
PORT=5326
ns_create $NS
ns_drop_udp $NS $PORT
in_ns $NS sysctl -qw net.netfilter.nf_conntrack_udp_timeout=600
clashes() {
    in_ns $NS conntrack -S 2>/dev/null \
        | grep -oE 'clash_resolve=[0-9]+' | awk -F= '{ n += $2 } END { print n + 0 }'
}
oracle_start $NS -b 8388608
before=$(clashes)
# Unpaced, the rounds come faster than conntrack -E keeps up with on a real host (2000
# flows in a fifth of a second, hundreds of events lost even with an 8 MiB buffer).
out=$(traffic $NS udp-clash 127.0.0.1 $PORT --count "$ROUNDS" --gap 0.0005)
resolved=$(($(clashes) - before))
oracle_settle 30
flows=$(ct_count $NS)
check_counts
ct_flush $NS
wait_ct_count $NS 0 30 || fail "scenario check: $(ct_count $NS) entries left after the flush"
oracle_settle 30
check_counts ""
oracle_stop 30
[ "$resolved" -gt 0 ] || skip "no race to confirm was resolved in $ROUNDS rounds ($out), nothing to compare"
ct_new=$(grep -c '\[NEW\]' "$CT_OUT" || true)
ct_destroy=$(grep -c '\[DESTROY\]' "$CT_OUT" || true)
expect_events "^ *\[NEW\] udp +17 .*dport=$PORT " 1 "$flows"
if [ "$ct_new" = "$flows" ] && [ "$ct_destroy" = "$flows" ]; then
    oracle_compare
    note "$resolved races resolved in $ROUNDS rounds, $flows flows: one NEW each (equal to conntrack -E), counts exact before and after the flush"
else
    # The two spinning senders take both CPUs of a small guest, and conntrack -E, slower
    # than the tracker per event, falls behind and loses some: then every line it printed
    # must be in the tracker's stream, which must hold exactly one NEW per flow, each
    # with its DESTROY.
    oracle_compare_bulk "$flows"
    note "$resolved races resolved in $ROUNDS rounds, $flows flows: one NEW each (conntrack -E showed $ct_new NEW, $ct_destroy DESTROY, all in the tracker's stream), counts exact before and after the flush"
fi
