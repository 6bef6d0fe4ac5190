#!/bin/bash
# UPDATE events: `tracker events -e ALL` against `conntrack -E` (all events) for TCP
# connect/close, TCP resets, a UDP flow's first reply and its assured state,
# `conntrack -U --mark` and an nft `ct mark set` re-mark (counts follow it). With the eBPF source also the event-cache sysctl: refused
# without --set-nf-conntrack-events while it is not 1, set to 1 for the run and
# restored on exit with it, and UPDATE events with no ctnetlink listener at all.
# timeout: 480
. "$(dirname "$0")/../lib.sh"
lib_setup

NS=trk-upd
SYSCTL=net.netfilter.nf_conntrack_events
ns_create $NS
in_ns $NS sysctl -qw net.netfilter.nf_conntrack_tcp_timeout_close=2
start_tcp_server $NS 127.0.0.1 8000
start_udp_echo $NS 127.0.0.1 5300
start_udp_echo $NS 127.0.0.1 5301

# Not "always on", as on a host without the tool's help: 2 (the default, "only while a
# ctnetlink listener exists") from 5.19 on; 0 before, where any non-zero value is on.
IFS=. read -r KMAJ KMIN _ <<<"$(uname -r)"
if [ "$KMAJ" -gt 5 ] || { [ "$KMAJ" = 5 ] && [ "${KMIN%%[!0-9]*}" -ge 19 ]; }; then
    in_ns $NS sysctl -qw $SYSCTL=2
else
    in_ns $NS sysctl -qw $SYSCTL=0
fi
BEFORE=$(in_ns $NS sysctl -n $SYSCTL)
log "$SYSCTL=$BEFORE in $NS"

# --- 1. without the flag ------------------------------------------------------------------
if in_ns $NS timeout 60 "$TRACKER" events -e ALL --duration 1s >"$SCEN_DIR/noflag.out" \
    2>"$SCEN_DIR/noflag.err"; then rc=0; else rc=$?; fi
cat "$SCEN_DIR/noflag.err"
if grep -q 'source=netlink' "$SCEN_DIR/noflag.err"; then
    SOURCE=netlink
    log "netlink source: ctnetlink listeners get UPDATE events without the sysctl"
elif grep -q -- '--set-nf-conntrack-events' "$SCEN_DIR/noflag.err"; then
    SOURCE=ebpf
    [ "$rc" = 1 ] || fail "refusal without --set-nf-conntrack-events exited $rc, expected 1"
    grep -q "$SYSCTL=1, and it is $BEFORE" "$SCEN_DIR/noflag.err" \
        || fail "the refusal does not name the sysctl and its value"
    [ "$(in_ns $NS sysctl -n $SYSCTL)" = "$BEFORE" ] || fail "the refusal changed $SYSCTL"
else
    fail "tracker -e ALL (rc=$rc) neither refused for the sysctl nor used netlink"
fi

# --- 2. side by side with conntrack -E, all events ----------------------------------------
ORACLE_EVENTS=ALL TRACKER_ARGS=--set-nf-conntrack-events oracle_start $NS
if [ $SOURCE = ebpf ]; then
    [ "$(in_ns $NS sysctl -n $SYSCTL)" = 1 ] || fail "$SYSCTL is not 1 while the tracker runs"
    grep -q "set $SYSCTL=1 .*was $BEFORE" "$TRK_ERR" || fail "the tracker did not say it set $SYSCTL"
fi
traffic $NS tcp-client 127.0.0.1 8000 --count 2
traffic $NS tcp-client 127.0.0.1 8000 --count 2 --abort
traffic $NS tcp-refused 127.0.0.1 8001 --count 2
# First reply (UNREPLIED goes), then after 2 s more of the same flow (ASSURED: 6.x
# assures a UDP flow only once it lived 2 s).
traffic $NS udp-client 127.0.0.1 5300 --sport 4000
sleep 2.5
traffic $NS udp-client 127.0.0.1 5300 --sport 4000
# Mark changes over ctnetlink: a live UDP flow and an inserted TCP entry.
in_ns $NS conntrack -U -p udp -s 127.0.0.1 -d 127.0.0.1 --sport 4000 --dport 5300 --mark 7 \
    2>&1 | sed 's/^/  conntrack: /'
T=(-p tcp -s 10.9.9.1 -d 10.9.9.2 --sport 1001 --dport 80)
in_ns $NS conntrack -I "${T[@]}" --state ESTABLISHED -t 120 -u SEEN_REPLY,ASSURED 2>&1 | sed 's/^/  conntrack: /'
in_ns $NS conntrack -U "${T[@]}" --mark 3 2>&1 | sed 's/^/  conntrack: /'
sleep 3
# A re-mark in the packet path by nft (`ct mark set`), which the kernel reports as an
# event: with UPDATE attached the per-mark counts follow it too.
in_ns $NS nft -f - <<'EOF'
table inet trk_remark {
    chain out {
        type filter hook output priority mangle; policy accept;
        udp dport 5300 ct mark set 9
    }
}
EOF
traffic $NS udp-client 127.0.0.1 5300 --sport 4000
check_counts
ct_flush $NS
oracle_stop
if [ $SOURCE = ebpf ]; then
    [ "$(in_ns $NS sysctl -n $SYSCTL)" = "$BEFORE" ] || fail "$SYSCTL was not restored to $BEFORE"
    log "$SYSCTL restored to $BEFORE"
fi
expect_events '^ *\[UPDATE\] tcp +6 [0-9]+ SYN_RECV .*dport=8000 ' 4 4
expect_events '^ *\[UPDATE\] tcp +6 [0-9]+ ESTABLISHED .*dport=8000 .*\[ASSURED\]' 4 4
expect_events '^ *\[UPDATE\] tcp +6 [0-9]+ CLOSE .*dport=8000 ' 2 2
expect_events '^ *\[UPDATE\] udp +17 [0-9]+ src=127.0.0.1 .*sport=4000 dport=5300 src=.*dport=4000( |$)' 1
expect_events '^ *\[UPDATE\] udp +17 .*sport=4000 .*\[ASSURED\]' 1
expect_events '^ *\[UPDATE\] udp +17 .*sport=4000 .* mark=7' 1 1
expect_events '^ *\[UPDATE\] tcp +6 .*sport=1001 .* mark=3' 1 1
expect_events '^ *\[UPDATE\] udp +17 .*sport=4000 .* mark=9' 1 1
oracle_compare

# --- 3. no ctnetlink listener at all ------------------------------------------------------
# What a host without conntrack -E sees: only the sysctl the tracker sets makes the
# kernel collect UPDATE events.
if [ $SOURCE = ebpf ]; then
    extra_tracker_start $NS alone events -e ALL --set-nf-conntrack-events -p udp
    n=$(_nfnl_listeners $NS)
    [ "$n" = 0 ] || fail "expected no ctnetlink listener in $NS, found $n"
    traffic $NS udp-client 127.0.0.1 5301 --sport 4001
    sleep 1
    extra_tracker_stop
    cat "$SCEN_DIR/alone.err"
    grep -E '^ *\[UPDATE\] udp +17 .*sport=4001 dport=5301 ' "$SCEN_DIR/alone.out" \
        || fail "no UPDATE for the first reply without a ctnetlink listener"
    [ "$(in_ns $NS sysctl -n $SYSCTL)" = "$BEFORE" ] || fail "$SYSCTL was not restored to $BEFORE"
fi
