#!/bin/bash
# A burst of BURST_FLOWS (default 20000) UDP flows, one datagram each, then a flush.
# BURST_RATE (datagrams/s, default 0 = as fast as the sender can) paces it.
# conntrack -E loses events at this rate: bulk rule (see README) plus counts.
# timeout: 480
. "$(dirname "$0")/../lib.sh"
lib_setup

FLOWS=${BURST_FLOWS:-20000}
NS=trk-burst
ns_create $NS
ns_drop_udp $NS 10000-65535
# The burst must still be in the table when it is counted, however slow the guest
# (30 s, the default UDP timeout, was not enough under TCG on 5.10).
in_ns $NS sysctl -qw net.netfilter.nf_conntrack_udp_timeout=600
cur=$(sysctl -n net.netfilter.nf_conntrack_max)
[ "$cur" -ge $((FLOWS * 2)) ] || set_global_sysctl net.netfilter.nf_conntrack_max $((FLOWS * 2))
oracle_start $NS -b 8388608
out=$(traffic $NS udp-burst 127.0.0.1 127.0.0.2 --count "$FLOWS" --port-base 10000 --time-limit 40 --rate "${BURST_RATE:-0}")
log "sender: $out"
sent=$(sed -E 's/.*sent=([0-9]+).*/\1/' <<<"$out")
[ "$sent" -ge $((FLOWS / 2)) ] || fail "sender managed only $sent of $FLOWS flows: $out"
t0=$SECONDS
oracle_settle 30
n=$(ct_count $NS)
[ "$n" = "$sent" ] || fail "conntrack holds $n entries, $sent flows were sent"
check_counts "0=$sent"
ct_flush $NS
oracle_settle 30
check_counts ""
oracle_stop 30
if grep -q 'source=netlink' "$TRK_ERR"; then
    # The ctnetlink fallback is as lossy as conntrack -E: what it must not do is lose
    # events silently. Every shortfall has to show in the exit line's lost count.
    trk_new=$(grep -c '\[NEW\]' "$TRK_OUT" || true)
    trk_destroy=$(grep -c '\[DESTROY\]' "$TRK_OUT" || true)
    if [ "$trk_new" -lt "$sent" ] || [ "$trk_destroy" -lt "$sent" ]; then
        [ "$TRK_LOST" -gt 0 ] || fail "netlink source showed $trk_new NEW and $trk_destroy DESTROY of $sent flows but reported 0 lost"
    fi
    note "netlink source: $trk_new NEW, $trk_destroy DESTROY of $sent flows, $TRK_LOST overruns reported"
    exit 0
fi
oracle_compare_bulk "$sent"
ct_new=$(grep -c '\[NEW\]' "$CT_OUT" || true)
ct_destroy=$(grep -c '\[DESTROY\]' "$CT_OUT" || true)
note "$out; tracker kept up (NEW=DESTROY=$sent); conntrack -E showed $ct_new NEW, $ct_destroy DESTROY; settle+counts+flush $((SECONDS - t0)) s"
