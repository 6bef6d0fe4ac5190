#!/bin/bash
# When UPDATE lines can differ from conntrack's: RACE_CLOSES (default 200) TCP connections
# through a DNAT port forward whose two ends close at the same moment from two CPUs,
# `tracker events -e ALL` beside `conntrack -E -e ALL`. Both get each UPDATE from the same
# call of ctnetlink's notifier, ctnetlink_conntrack_event() in
# net/netfilter/nf_conntrack_netlink.c, but read the entry at two moments: the eBPF source
# at the call's entry, conntrack when ctnetlink fills its message further on (the TCP state
# under the entry's lock). The other end's FIN, handled on the other CPU in between, moves
# the entry on, and only conntrack's line shows it. The oracle's `updates` rule allows
# exactly that and nothing else; the scenario reports how often it happened. With the
# netlink source both read the same message: every line must be equal.
# timeout: 300
. "$(dirname "$0")/../lib.sh"
lib_setup

NS=trk-race
CLOSES=${RACE_CLOSES:-200}
ns_create $NS
in_ns $NS sysctl -qw net.netfilter.nf_conntrack_tcp_timeout_close=2
try_or_skip "DNAT (nft nat output chain) unavailable" in_ns $NS nft -f - <<'EOF'
table ip trk_race {
    chain out {
        type nat hook output priority -100; policy accept;
        ip daddr 127.0.0.2 tcp dport 80 dnat to 127.0.0.1:8000
    }
}
EOF

# conntrack -E with a large socket buffer: a loss on its side would look like a difference.
ORACLE_EVENTS=ALL TRACKER_ARGS=--set-nf-conntrack-events oracle_start $NS -b 8388608
# 20 ms apart: the race is within each connection, and in a slow guest conntrack -E
# loses a back-to-back stream of them (ENOBUFS) even with the large buffer.
traffic $NS tcp-close-race 127.0.0.1 8000 --to 127.0.0.2 80 --count "$CLOSES" --gap 0.02
# No flush while the oracle runs: its burst of DESTROY events is not what this compares,
# and conntrack -E can lose some of it (ENOBUFS) even with the large buffer.
oracle_stop
ct_flush $NS
if grep -q ENOBUFS "$CT_ERR"; then
    fail "conntrack -E lost events (ENOBUFS) even with an 8 MiB buffer: nothing to compare with"
fi
expect_events "^ *\[NEW\] tcp .*dst=127\.0\.0\.2 sport=[0-9]+ dport=80 .*sport=8000 " "$CLOSES" "$CLOSES"
# Not exactly one each: the kernel may fold two changes into one event, and a line may
# show a later state.
expect_events "^ *\[UPDATE\] tcp +6 [0-9]+ ESTABLISHED .*dport=80 " $((CLOSES * 9 / 10)) "$CLOSES"
expect_events "^ *\[UPDATE\] tcp +6 [0-9]+ TIME_WAIT .*dport=80 " $((CLOSES * 9 / 10))
"${ORACLE[@]}" updates "$CT_OUT" "$TRK_OUT" "$SCEN_DIR" \
    || fail "UPDATE lines differ from conntrack -E's in a way no later reading explains (see updates.report)"
[ "${TRK_LOST:-0}" = 0 ] || fail "tracker reported $TRK_LOST lost events"
if grep -q 'source=netlink' "$TRK_ERR"; then
    grep -q '; in 0 connections$' "$SCEN_DIR/updates.report" \
        || fail "netlink source: conntrack -E and the tracker read the same messages, yet lines differ"
fi
note "$(head -n1 "$SCEN_DIR/updates.report")"
