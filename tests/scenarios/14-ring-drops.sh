#!/bin/bash
# Exact loss accounting: the tracker runs with a one-page ring and is stopped (SIGSTOP)
# while FLOWS new UDP flows are created, so the ring overflows on purpose. Afterwards
# every flow must be either shown or counted as lost: shown + lost == entries created
# (conntrack -C, the oracle for how many NEW events the kernel generated), lost > 0.
# Twice: showing one netns (the programs read the entry before they reserve its record)
# and --all-netns (the record is reserved first and the entry copied into it), as the
# two paths meet a full ring in different places.
. "$(dirname "$0")/../lib.sh"
lib_setup

FLOWS=${DROP_FLOWS:-3000}
NS=trk-drops
ns_create $NS
ns_drop_udp $NS 10000-65535
# run_case TRACKER_ARGS PORT_BASE
run_case() {
    TRK_OUT=$SCEN_DIR/tracker$1.events
    TRK_ERR=$SCEN_DIR/tracker$1.stderr
    # shellcheck disable=SC2086 # $1: no words, or one option
    nsenter --net="/run/netns/$NS" -- "$TRACKER" --ring-size 4K events -e NEW $1 >"$TRK_OUT" 2>"$TRK_ERR" &
    TRK_PID=$!
    for ((i = 0; i < TRACKER_READY_TIMEOUT * 10; i++)); do
        has_line "$TRK_ERR" 'tracker: listening' && break
        kill -0 "$TRK_PID" 2>/dev/null || { cat "$TRK_ERR"; fail "tracker exited before listening"; }
        pause 0.1
    done
    grep -q '^tracker: listening' "$TRK_ERR" || fail "tracker did not start listening"
    grep -q 'source=ebpf' "$TRK_ERR" || skip "the eBPF source did not attach here: $(grep listening "$TRK_ERR")"
    kill -STOP "$TRK_PID"
    out=$(traffic $NS udp-burst 127.0.0.1 --count "$FLOWS" --port-base "$2" --time-limit 40)
    created=$(ct_count $NS)
    kill -CONT "$TRK_PID"
    sleep 2
    kill -INT "$TRK_PID"
    wait "$TRK_PID" || true
    TRK_PID=
    cat "$TRK_ERR"
    summary=$(grep -E '^tracker: [0-9]+ flow events have been shown, [0-9]+ lost\.' "$TRK_ERR" | tail -n1)
    [ -n "$summary" ] || fail "no exit summary from the tracker"
    shown=$(sed -E 's/^tracker: ([0-9]+) .*/\1/' <<<"$summary")
    lost=$(sed -E 's/.*shown, ([0-9]+) lost.*/\1/' <<<"$summary")
    lines=$(grep -c '\[NEW\]' "$TRK_OUT" || true)
    log "sender: $out; entries created: $created; tracker shown=$shown (lines $lines) lost=$lost"
    [ "$lines" = "$shown" ] || fail "tracker says it showed $shown events but printed $lines lines"
    [ "$lost" -gt 0 ] || fail "the one-page ring did not overflow: the test proves nothing"
    [ $((shown + lost)) = "$created" ] || fail "shown ($shown) + lost ($lost) != created ($created)"
    note "${1:-one netns}: $created NEW generated with the reader stopped: $shown shown + $lost lost, exact"
}

run_case "" 10000
ct_flush $NS
run_case --all-netns 30000
