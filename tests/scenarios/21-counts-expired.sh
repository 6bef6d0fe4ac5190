#!/bin/bash
# Entries whose timeout has passed but that the conntrack GC has not removed yet:
# `conntrack -L` does not list them (ctnetlink_dump_table skips and evicts expired
# entries), so `tracker counts` must not count them either, without dumping the table.
# The namespace's entry count (nf_conntrack_count, what `conntrack -C` shows; reading it
# evicts nothing) shows them still there before and after the tracker answers; only then
# does conntrack -L give the oracle. `tracker serve`'s connections metric, scraped in the
# same window, must leave them out too.
# timeout: 240
. "$(dirname "$0")/../lib.sh"
lib_setup

NS=trk-cexp
N=20
TCP=5
table_count() { in_ns $NS cat /proc/sys/net/netfilter/nf_conntrack_count; }
ns_create $NS
in_ns $NS sysctl -qw net.netfilter.nf_conntrack_udp_timeout=3
ns_drop_udp $NS 5303
start_tcp_server $NS 127.0.0.1 8003
oracle_start $NS
PORT=10261
# The scrapes' own connections must not become entries: they would change the table the
# scenario compares.
in_ns $NS nft -f - <<EOF
table ip trk_cexp_raw {
    chain out {
        type filter hook output priority raw; policy accept;
        tcp dport $PORT notrack
        tcp sport $PORT notrack
    }
}
EOF
serve_start $NS "$SCEN_DIR/serve.err" serve --listen 127.0.0.1:$PORT
traffic $NS tcp-client 127.0.0.1 8003 --count $TCP
traffic $NS udp-client 127.0.0.1 5303 --count $N --no-reply
total=$(table_count)
[ "$total" = $((TCP + N)) ] || fail "scenario check: nf_conntrack_count is $total, expected $((TCP + N))"
sent=$SECONDS
# Past the 3 s UDP timeout, with a margin for a slow VM.
sleep 5
j=$SCEN_DIR/expired.json
before=$(table_count)
in_ns $NS "$TRACKER" counts -o json >"$j" 2>"$j.stderr" \
    || fail "'tracker counts -o json' failed: $(tail -n1 "$j.stderr")"
# Two scrapes back to back: the first makes serve's first pass over the live entries,
# the second may reuse what it found (passes are spaced by their cost).
for i in 1 2; do
    in_ns $NS curl -sf "http://127.0.0.1:$PORT/metrics" >"$SCEN_DIR/scrape$i.txt" \
        || fail "GET /metrics from tracker serve failed"
done
after=$(table_count)
window=$((SECONDS - sent))
# serve_connections FILE PROTO — the connections metric of one scrape, summed over marks.
serve_connections() {
    awk -v p="protocol=\"$2\"" '/^conntrack_tracker_connections\{/ && index($0, p) { n += $2 }
        END { print n + 0 }' "$1"
}
expired_counts_vs_listing $NS "$j" "0=$TCP" "$total" "$before" "$after" "$window" \
    "the $N expired entries"
for i in 1 2; do
    got="$(serve_connections "$SCEN_DIR/scrape$i.txt" tcp) $(serve_connections "$SCEN_DIR/scrape$i.txt" udp)"
    [ "$got" = "$TCP 0" ] \
        || fail "tracker serve, scrape $i: tcp and udp connections are '$got', expected '$TCP 0' (conntrack -L)"
done
# The listing evicted them: the table now holds only the TCP entries.
wait_ct_count $NS $TCP 5 || fail "scenario check: $(ct_count $NS) entries after the listing, expected $TCP"
check_counts "0=$TCP"
oracle_stop
expect_events '^ *\[NEW\] udp +17 .*dport=5303 ' $N $N
expect_events '^\[DESTROY\] udp +17 .*dport=5303 .*\[UNREPLIED\]' $N $N
oracle_compare
note "$N expired UDP entries, still in the table (nf_conntrack_count $after) $window s after send, were not counted"
