#!/bin/bash
# conntrack -E's filters, given the same words on both sides: mixed traffic (TCP and UDP,
# IPv4 and IPv6, one UDP port marked 1 by nft `ct mark set`) and, per filter set, the
# tracker's stream must equal conntrack -E's. Family, protocol and mark are applied in
# the eBPF programs, the rest in userspace: both paths are covered. Then -p tcp --state
# ESTABLISHED and the zone filters the same way, and --state NEW (iptables' ctstate)
# refused with exit code 2.
# timeout: 480
. "$(dirname "$0")/../lib.sh"
lib_setup
need_cmd nft

NS=trk-filter
ns_create $NS
in_ns $NS nft -f - <<'NFT' || skip "nft cannot set ct mark here"
table inet trk_mark {
    chain out {
        type filter hook output priority mangle; policy accept;
        udp dport 5301 ct mark set 1
    }
}
NFT
start_tcp_server $NS 127.0.0.1 8000
start_tcp_server $NS ::1 8001
start_udp_echo $NS 127.0.0.1 5300
start_udp_echo $NS 127.0.0.1 5301
start_udp_echo $NS ::1 5302

# Every filter set is a pair of its own (conntrack -E and the tracker, given the same
# words), all running through one round of traffic: what one set must show, no other
# set's traffic adds to (each expected count below holds for the whole round).
pair_add udp-mark -p udp --dport 5301 -m 1
pair_add ipv6 -f ipv6 -r ::1 -q ::1 -p udp
pair_add ipv4-tcp -s 127.0.0.0/8 -d 127.0.0.1 -p tcp
# --state, applied in userspace, on the state the line shows. The traffic's TCP lines are
# NEW SYN_SENT and DESTROY TIME_WAIT or CLOSE: none match. An entry inserted ESTABLISHED
# shows it on its NEW line, and on its DESTROY where DESTROY carries the state (5.15+).
pair_add state -p tcp --state ESTABLISHED
# Zones: one entry per kind of zone, inserted by conntrack. --orig-zone 5 shows only the
# entry zoned in the original direction; --reply-zone 0 every entry without a reply-only
# zone (a zone slot an entry lacks compares as 0 in conntrack).
pair_add orig-zone --orig-zone 5 -p udp
pair_add reply-zone --reply-zone 0 -d 10.9.8.2
pairs_start $NS

traffic $NS tcp-client 127.0.0.1 8000 --count 1
traffic $NS tcp-client ::1 8001 --count 1
traffic $NS udp-client 127.0.0.1 5300 --count 1
traffic $NS udp-client 127.0.0.1 5301 --count 2
traffic $NS udp-client ::1 5302 --count 1
ZONE_T="-p udp -d 10.9.8.2 --sport 1 --dport 2 -t 60"
cat >"$SCEN_DIR/inserts" <<BATCH
-I -p tcp -s 10.9.9.1 -d 10.9.9.2 --sport 1001 --dport 80 --state ESTABLISHED -t 120 -u SEEN_REPLY,ASSURED
-I -s 10.9.8.1 $ZONE_T --orig-zone 5
-I -s 10.9.8.3 $ZONE_T --reply-zone 5
-I -s 10.9.8.4 $ZONE_T --zone 5
BATCH
in_ns $NS conntrack -R "$SCEN_DIR/inserts" 2>&1 | sed 's/^/  conntrack: /'
ct_flush $NS
pairs_stop

for set in udp-mark ipv6 ipv4-tcp; do
    pair_use $set
    case $set in
        udp-mark) expect_events '\[(NEW|DESTROY)\]' 4 4 ;;
        *) expect_events '\[(NEW|DESTROY)\]' 2 2 ;;
    esac
    oracle_compare
done

pair_use state
IFS=. read -r KMAJ KMIN _ <<<"$(uname -r)"
if [ "$KMAJ" -gt 5 ] || { [ "$KMAJ" = 5 ] && [ "${KMIN%%[!0-9]*}" -ge 15 ]; }; then
    DESTROYS=1
else
    DESTROYS=0
fi
expect_events '^ *\[NEW\] tcp +6 [0-9]+ ESTABLISHED src=10\.9\.9\.1 .*sport=1001 ' 1 1
expect_events '^\[DESTROY\] tcp +6 [0-9]+ ESTABLISHED src=10\.9\.9\.1 .*sport=1001 ' $DESTROYS $DESTROYS
expect_events '\[(NEW|DESTROY)\]' $((1 + DESTROYS)) $((1 + DESTROYS))
oracle_compare

pair_use orig-zone
expect_events '\[(NEW|DESTROY)\] .* zone-orig=5 ' 2 2
expect_events '\[(NEW|DESTROY)\]' 2 2
oracle_compare
pair_use reply-zone
expect_events '\[(NEW|DESTROY)\] udp .*src=10\.9\.8\.[14] ' 4 4
expect_events '\[(NEW|DESTROY)\]' 4 4
oracle_compare

# iptables' ctstate NEW is not a conntrack state: refused before anything is loaded.
if in_ns $NS timeout 30 "$TRACKER" events --state NEW -p tcp --dport 22 \
    >"$SCEN_DIR/state-new.out" 2>"$SCEN_DIR/state-new.err"; then rc=0; else rc=$?; fi
cat "$SCEN_DIR/state-new.err"
[ "$rc" = 2 ] || fail "tracker events --state NEW exited $rc, expected 2"
WANT="error: --state NEW is iptables' ctstate, not a conntrack entry state: to see new connections, use -e NEW"
[ "$(cat "$SCEN_DIR/state-new.err")" = "$WANT" ] \
    || fail "tracker events --state NEW did not say only: $WANT"
[ ! -s "$SCEN_DIR/state-new.out" ] || fail "tracker events --state NEW printed on stdout"
note "6 filter sets (-p --dport -m -f -r -q -s -d --state --orig-zone --reply-zone) equal to conntrack -E; --state NEW refused"
