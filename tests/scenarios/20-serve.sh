#!/bin/bash
# `tracker serve` scraped by a real Prometheus server, on a two-ISP gateway (connmark 1
# and 2 by source subnet, as in 09): per-mark live connections through Prometheus's API
# against `conntrack -L` grouped by mark; after a flush, per-mark closed flows, bytes and
# packets against the DESTROY lines `conntrack -E` printed; `promtool check metrics` on
# the exposition. --events-json is given events filters (UDP of mark 2): the file must hold
# exactly the lines `conntrack -E` prints with the same filter words, while the metrics
# above still count every flow. Also: bad input, a filter without --events-json and a
# second instance are refused with nothing left attached or pinned, a non-loopback --listen
# warns, SIGHUP reopens --events-json, SIGTERM cleans up and restores nf_conntrack_acct.
# timeout: 420
. "$(dirname "$0")/../lib.sh"
lib_setup
need_cmd iptables curl prometheus promtool
for m in iptable_mangle iptable_raw xt_mark xt_connmark xt_CT; do modprobe -q $m 2>/dev/null || true; done

ISP1=trk-sv-isp1 ISP2=trk-sv-isp2 RTR=trk-sv-rtr
PORT=10260 PROM=http://127.0.0.1:9090
# The events filters of --events-json, given as the same words to conntrack -E: one
# protocol and one mark (both checked in the eBPF programs on that source) out of two each.
FILE_FILTER=(-p udp -m 2)
PROMCHECK=("$PY" -S "$TESTS_DIR/prom_check.py")
ns_create $ISP1
ns_create $ISP2
ns_create $RTR
veth_link $ISP1 eth0 10.201.11.2/24 $RTR isp1 10.201.11.1/24
veth_link $ISP2 eth0 10.201.12.2/24 $RTR isp2 10.201.12.1/24
in_ns $RTR ip link set lo up
in_ns $RTR sysctl -qw net.netfilter.nf_conntrack_udp_timeout=120
in_ns $RTR sysctl -qw net.netfilter.nf_conntrack_acct=0
# Scrapes and API queries run over loopback: keep them out of the table being compared.
try_or_skip "NOTRACK unavailable" in_ns $RTR iptables -t raw -A PREROUTING -i lo -j CT --notrack
in_ns $RTR iptables -t raw -A OUTPUT -o lo -j CT --notrack
try_or_skip "CONNMARK unavailable" in_ns $RTR iptables -t mangle -A PREROUTING -j CONNMARK --restore-mark
in_ns $RTR iptables -t mangle -A PREROUTING -m mark ! --mark 0 -j ACCEPT
try_or_skip "MARK unavailable" in_ns $RTR iptables -t mangle -A PREROUTING -s 10.201.11.0/24 -j MARK --set-mark 1
in_ns $RTR iptables -t mangle -A PREROUTING -s 10.201.12.0/24 -j MARK --set-mark 2
in_ns $RTR iptables -t mangle -A PREROUTING -j CONNMARK --save-mark
start_tcp_server $RTR 0.0.0.0 8000
start_udp_echo $RTR 0.0.0.0 5300

# Prometheus first: it takes a while to start in the test bed, and scrapes a target that
# is not up yet as down until it is.
cat >"$SCEN_DIR/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: tracker
    static_configs:
      - targets: ['127.0.0.1:$PORT']
YML
# Prometheus mmaps its files, which the test bed's shared filesystem refuses: a tmpfs.
PROM_DATA=$(mktemp -d /dev/shm/trk-prometheus.XXXXXX 2>/dev/null || mktemp -d /tmp/trk-prometheus.XXXXXX)
_restore_cmds+=("rm -rf $PROM_DATA")
bg_in_ns $RTR prometheus --config.file="$SCEN_DIR/prometheus.yml" --storage.tsdb.path="$PROM_DATA" \
    --web.listen-address=127.0.0.1:9090
PROM_PID=$BG_PID

# serve_refused RC SENTENCE ARGS... — `tracker serve ARGS` in $RTR must exit RC at once,
# saying SENTENCE, and leave no pin directory behind.
serve_refused() {
    local want_rc=$1 sentence=$2 rc=0
    shift 2
    nsenter --net="/run/netns/$RTR" -- timeout 60 "$TRACKER" serve "$@" \
        >"$SCEN_DIR/refused.out" 2>"$SCEN_DIR/refused.err" || rc=$?
    log "serve $*: rc=$rc: $(tail -n1 "$SCEN_DIR/refused.err")"
    [ "$rc" = "$want_rc" ] || fail "tracker serve $* exited $rc, expected $want_rc: $(cat "$SCEN_DIR/refused.err")"
    grep -q -- "$sentence" "$SCEN_DIR/refused.err" \
        || fail "tracker serve $*: stderr lacks '$sentence': $(cat "$SCEN_DIR/refused.err")"
    grep -q '^tracker: serving' "$SCEN_DIR/refused.err" \
        && fail "tracker serve $* started serving before refusing"
    return 0
}
pin_dirs() { local d=(/sys/fs/bpf/tracker/*/); [ -e "${d[0]}" ] && echo ${#d[@]} || echo 0; }
pins_before=$(pin_dirs)
serve_refused 2 "expected ADDR:PORT" --listen 127.0.0.1:99999
serve_refused 2 "cannot open --events-json" --listen 127.0.0.1:$PORT --events-json /nonexistent/events.json
serve_refused 2 "^error: -p/--proto only applies to --events-json" --listen 127.0.0.1:$PORT -p udp
start_tcp_server $RTR 127.0.0.1 $((PORT + 1))
serve_refused 1 "the port is in use" --listen 127.0.0.1:$((PORT + 1))
[ "$(pin_dirs)" = "$pins_before" ] || fail "a refused serve left pins"

# The DESTROY oracle, subscribed before anything is counted.
base=$(_nfnl_listeners $RTR)
nsenter --net="/run/netns/$RTR" -- conntrack -E -e DESTROY >"$SCEN_DIR/conntrack.events" 2>"$SCEN_DIR/conntrack.stderr" &
CT_PID=$!
for ((i = 0; i < 100; i++)); do [ "$(_nfnl_listeners $RTR)" -gt "$base" ] && break; pause 0.1; done
# The --events-json oracle: conntrack -E with the file's filter words.
base=$(_nfnl_listeners $RTR)
nsenter --net="/run/netns/$RTR" -- conntrack -E -e NEW,DESTROY "${FILE_FILTER[@]}" \
    >"$SCEN_DIR/conntrack.filtered" 2>"$SCEN_DIR/conntrack.filtered.stderr" &
CT_FILTERED_PID=$!
_bg_pids+=("$CT_FILTERED_PID")
for ((i = 0; i < 100; i++)); do [ "$(_nfnl_listeners $RTR)" -gt "$base" ] && break; pause 0.1; done

serve_start $RTR "$SCEN_DIR/serve.err" serve --listen 127.0.0.1:$PORT --set-nf-conntrack-acct \
    --events-json "$SCEN_DIR/events.json" "${FILE_FILTER[@]}"
SERVE_PID=$STARTED_PID
log "$(grep '^tracker: serving' "$SCEN_DIR/serve.err")"
[ "$(in_ns $RTR sysctl -n net.netfilter.nf_conntrack_acct)" = 1 ] || fail "--set-nf-conntrack-acct did not set the sysctl"
serve_refused 1 "already running" --listen 127.0.0.1:$((PORT + 2))

# A non-loopback endpoint works but warns (in another namespace: one serve per namespace;
# with the netlink source, which starts faster and warns the same).
serve_start $ISP1 "$SCEN_DIR/wide.err" --source netlink serve --listen 0.0.0.0:$PORT
WIDE_PID=$STARTED_PID
grep -q 'reachable from the network' "$SCEN_DIR/wide.err" || fail "no warning for a non-loopback --listen: $(cat "$SCEN_DIR/wide.err")"
kill -TERM $WIDE_PID; wait $WIDE_PID || fail "serve --listen 0.0.0.0 did not exit cleanly on SIGTERM"

for ((i = 0; i < 600; i++)); do
    in_ns $RTR curl -sf $PROM/-/ready >/dev/null 2>&1 && break
    kill -0 "$PROM_PID" 2>/dev/null || fail "prometheus exited: $(grep -m1 -iE 'panic|err' "$SCEN_DIR/background.log")"
    pause 0.2
done
in_ns $RTR curl -sf $PROM/-/ready >/dev/null || fail "prometheus did not become ready: $(tail -n3 "$SCEN_DIR/background.log")"

traffic $ISP1 tcp-client 10.201.11.1 8000 --count 20
traffic $ISP1 udp-client 10.201.11.1 5300 --count 10
traffic $ISP2 tcp-client 10.201.12.1 8000 --count 10
traffic $ISP2 udp-client 10.201.12.1 5300 --count 15
in_ns $RTR "${PROMCHECK[@]}" wait $PROM 'conntrack_tracker_events_total{kind="new"}' 55 60 \
    || fail "prometheus never scraped 55 NEW events"
ok=
for try in 1 2 3; do
    # A scrape newer than the listing: the table is stable (UDP 120 s, TCP TIME_WAIT).
    in_ns $RTR conntrack -L >"$SCEN_DIR/conntrack.list" 2>/dev/null
    sleep 2.5
    if in_ns $RTR "${PROMCHECK[@]}" connections $PROM "$SCEN_DIR/conntrack.list"; then ok=1; break; fi
done
[ -n "$ok" ] || fail "per-mark connections in Prometheus differ from conntrack -L"
grep -qE 'mark=1' "$SCEN_DIR/conntrack.list" && grep -qE 'mark=2' "$SCEN_DIR/conntrack.list" \
    || fail "scenario check: conntrack -L shows no mark 1 and 2 entries"

in_ns $RTR curl -sf http://127.0.0.1:$PORT/metrics >"$SCEN_DIR/metrics.txt" || fail "GET /metrics failed"
# promtool checks in the background while the flush is counted.
promtool check metrics <"$SCEN_DIR/metrics.txt" >"$SCEN_DIR/promtool.out" 2>&1 &
PROMTOOL_PID=$!

# Log rotation: move the events file away, SIGHUP, and the flush's DESTROYs must land
# in a new file at the same path.
mv "$SCEN_DIR/events.json" "$SCEN_DIR/events.json.1"
kill -HUP $SERVE_PID
for ((i = 0; i < 50; i++)); do [ -e "$SCEN_DIR/events.json" ] && break; pause 0.1; done
[ -e "$SCEN_DIR/events.json" ] || fail "SIGHUP did not reopen --events-json"
ct_flush $RTR
for ((i = 0; i < 100; i++)); do
    [ "$(grep -c '^\[DESTROY\]' "$SCEN_DIR/conntrack.events")" -ge 55 ] && break
    pause 0.2
done
n=$(grep -c '^\[DESTROY\]' "$SCEN_DIR/conntrack.events" || true)
[ "$n" = 55 ] || fail "scenario check: conntrack -E printed $n DESTROY lines, expected 55 (it must lose nothing here)"
for ((i = 0; i < 50; i++)); do
    [ "$(grep -c '^\[DESTROY\]' "$SCEN_DIR/conntrack.filtered")" -ge 15 ] && break
    pause 0.2
done
in_ns $RTR "${PROMCHECK[@]}" wait $PROM 'conntrack_tracker_events_total{kind="destroy"}' 55 60 \
    || fail "prometheus never scraped 55 DESTROY events"
sleep 1.5
in_ns $RTR "${PROMCHECK[@]}" closed $PROM "$SCEN_DIR/conntrack.events" \
    || fail "per-mark closed flows in Prometheus differ from conntrack -E's DESTROY lines"
in_ns $RTR curl -sf http://127.0.0.1:$PORT/metrics >"$SCEN_DIR/metrics.after-flush.txt" || fail "GET /metrics failed"
in_ns $RTR "${PROMCHECK[@]}" wait $PROM 'conntrack_tracker_events_lost_total' 0 5 >/dev/null \
    || fail "no events_lost series"

wait $PROMTOOL_PID || fail "promtool check metrics: $(head -n3 "$SCEN_DIR/promtool.out")"
kill -TERM $SERVE_PID
rc=0; wait $SERVE_PID || rc=$?
[ "$rc" = 0 ] || fail "tracker serve exited $rc on SIGTERM: $(tail -n3 "$SCEN_DIR/serve.err")"
grep -q '^tracker: stopped serving; 0 events lost' "$SCEN_DIR/serve.err" || fail "no clean stop line: $(tail -n2 "$SCEN_DIR/serve.err")"
[ ! -e "/sys/fs/bpf/tracker/$SERVE_PID" ] || fail "pins of the stopped serve remain"
[ "$(in_ns $RTR sysctl -n net.netfilter.nf_conntrack_acct)" = 0 ] || fail "nf_conntrack_acct not restored"
kill -INT $CT_FILTERED_PID; wait $CT_FILTERED_PID || true
# The scenario's own traffic: 15 UDP flows from ISP2 (mark 2), each a NEW and a DESTROY.
for kind in NEW DESTROY; do
    n=$(grep -cE "^ *\[$kind\] udp .* mark=2( |$)" "$SCEN_DIR/conntrack.filtered" || true)
    [ "$n" = 15 ] || fail "scenario check: conntrack -E ${FILE_FILTER[*]} printed $n $kind lines, expected 15"
done
jn=$(grep -c . "$SCEN_DIR/events.json" || true)
jd=$(grep -c '"type":"destroy"' "$SCEN_DIR/events.json" || true)
[ "$jn" = 15 ] && [ "$jd" = 15 ] || fail "--events-json (reopened) has $jn lines, $jd destroy, expected 15 destroy only"
jn=$(grep -c . "$SCEN_DIR/events.json.1" || true)
jd=$(grep -c '"type":"new"' "$SCEN_DIR/events.json.1" || true)
[ "$jn" = 15 ] && [ "$jd" = 15 ] || fail "--events-json (rotated) has $jn lines, $jd new, expected 15 new only"
"${ORACLE[@]}" json "$SCEN_DIR/conntrack.filtered" "$SCEN_DIR/events.json.1" "$SCEN_DIR/events.json" \
    || fail "--events-json ${FILE_FILTER[*]} differs from conntrack -E ${FILE_FILTER[*]} (see PROBLEM lines)"
note "$(sed -n 's/^tracker: serving metrics on .* (\(.*\))$/\1/p' "$SCEN_DIR/serve.err" | head -n1): 55 flows, connections/closed bytes per mark equal via Prometheus; --events-json ${FILE_FILTER[*]} equal to conntrack -E; promtool clean"
