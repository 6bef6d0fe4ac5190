# shellcheck shell=bash
# Shared helpers for the in-guest scenarios (tests/scenarios/*.sh). Source it first:
#   . "$(dirname "$0")/../lib.sh"
# See tests/README.md for the contract (results, skips, normalisation).

set -eEuo pipefail

TESTS_DIR=${TESTS_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
PY=${PYTHON:-/usr/bin/python3}
# -S: the helpers need only the standard library, and skipping site-packages
# (.pth files, distutils hooks) saves ~0.6 s of every start in a TCG guest.
TRAFFIC=("$PY" -S "$TESTS_DIR/traffic.py")
ORACLE=("$PY" -S "$TESTS_DIR/oracle.py")
SCEN_NAME=${SCEN_NAME:-$(basename "$0" .sh)}
if [ -z "${SCEN_DIR:-}" ]; then
    SCEN_DIR=$(mktemp -d "/tmp/trk-$SCEN_NAME.XXXXXX")
fi
mkdir -p "$SCEN_DIR"
# One line: why the scenario was skipped, failed, or a note on a pass (read by vm-suite.sh).
REASON_FILE=$SCEN_DIR/reason
rm -f "$REASON_FILE"
TRACKER_READY_TIMEOUT=${TRACKER_READY_TIMEOUT:-30}

# Waiting without a process per poll: in a TCG guest an exec of sleep or grep
# costs about 0.1 s of CPU, so a poll ten times a second took half a vCPU from
# the tracker it was waiting for. `read -t` on a pipe nobody writes is a
# builtin sleep.
exec {_PAUSE_FD}<> <(:)
pause() { read -r -t "$1" -u "$_PAUSE_FD" _ || true; }

# has_line FILE PREFIX — FILE has a line starting with PREFIX (builtins only).
has_line() {
    local line
    [ -r "$1" ] || return 1
    while IFS= read -r line || [ -n "$line" ]; do
        [[ $line == "$2"* ]] && return 0
    done <"$1"
    return 1
}

_created_ns=()
_bg_pids=()
_restore_cmds=()
ORACLE_NS=
CT_PID=
TRK_PID=

log() { printf '[%s] %s\n' "$(date +%T.%3N)" "$*"; }

_set_reason() { [ -s "$REASON_FILE" ] || printf '%s\n' "$*" | head -n1 > "$REASON_FILE"; }
# A pass may carry a note (e.g. a rate) in the results line.
note() { printf '%s\n' "$*" | head -n1 > "$REASON_FILE"; log "note: $*"; }
fail() { _set_reason "$*"; log "FAIL: $*"; exit 1; }
skip() { _set_reason "$*"; log "SKIP: $*"; echo "$*"; exit 77; }

_on_err() {
    local rc=$1 line=$2 cmd=$3
    _set_reason "command failed (rc=$rc) at ${SCEN_NAME}.sh:$line: $cmd"
    log "ERROR: rc=$rc at line $line: $cmd"
    exit 1
}

_cleanup() {
    local rc=$? pid i
    set +eE
    trap - ERR
    for pid in "${_bg_pids[@]}" $CT_PID $TRK_PID; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${_bg_pids[@]}" $CT_PID $TRK_PID; do
        for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; pause 0.1; done
        kill -KILL "$pid" 2>/dev/null
    done
    # Under vm-suite.sh the scenario runs in timeout's process group: end stragglers
    # (anything started in the background and not registered), never timeout itself.
    if [ -n "${SCEN_UNDER_SUITE:-}" ] && command -v pgrep >/dev/null; then
        local pgid
        pgid=$(ps -o pgid= -p $$ | tr -d ' ')
        for pid in $(pgrep -g "$pgid"); do
            [ "$pid" = $$ ] || [ "$pid" = "$pgid" ] || [ "$pid" = "$BASHPID" ] && continue
            kill -TERM "$pid" 2>/dev/null
        done
    fi
    for ((i = ${#_restore_cmds[@]} - 1; i >= 0; i--)); do
        eval "${_restore_cmds[$i]}" >/dev/null 2>&1
    done
    for i in "${_created_ns[@]}"; do
        ip netns exec "$i" conntrack -F >/dev/null 2>&1
        ip netns del "$i" 2>/dev/null
    done
    exit "$rc"
}

trap '_on_err $? $LINENO "$BASH_COMMAND"' ERR
trap _cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# --- pre-flight --------------------------------------------------------------------------

need_cmd() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || skip "tool '$c' is not installed"
    done
}

# True when the module is loaded, loadable or built in.
have_module() {
    local m=$1
    modprobe -q "$m" 2>/dev/null && return 0
    [ -d "/sys/module/$m" ] && return 0
    grep -qs "/$m.ko" "/lib/modules/$(uname -r)/modules.builtin" && return 0
    return 1
}

need_modules() {
    local m
    for m in "$@"; do
        have_module "$m" || skip "kernel $(uname -r): module $m is neither loadable nor built in"
    done
}

# Runs a command; if it fails, skips the scenario with the command's first error line.
# For features whose module may be missing or built in (NAT, CONNMARK): the test is
# whether the rule can be added, not the module's name.
try_or_skip() {
    local what=$1 out
    shift
    if ! out=$("$@" 2>&1); then
        skip "$what: $(printf '%s' "$out" | head -n1)"
    fi
}

# Pre-flight common to every scenario.
lib_setup() {
    need_cmd ip nsenter conntrack timeout diff "$PY"
    [ -n "${TRACKER:-}" ] || fail "TRACKER is not set"
    [ -x "$TRACKER" ] || fail "TRACKER=$TRACKER is not executable"
    modprobe -q nf_conntrack 2>/dev/null || true
    modprobe -q nf_conntrack_netlink 2>/dev/null || true
    [ -e /proc/sys/net/netfilter/nf_conntrack_max ] \
        || skip "kernel $(uname -r): nf_conntrack is not available"
    conntrack -C >/dev/null 2>&1 || skip "kernel $(uname -r): ctnetlink (nf_conntrack_netlink) is not available"
    log "kernel $(uname -r), scenario $SCEN_NAME, scratch $SCEN_DIR"
}

# --- namespaces and topology -------------------------------------------------------------

in_ns() {
    # nsenter --net switches only the network namespace: unlike `ip netns exec` it keeps
    # the mounts (/sys/fs/bpf, where the tracker pins its maps, and /sys/kernel/btf).
    local ns=$1
    shift
    nsenter --net="/run/netns/$ns" -- "$@"
}

# Sets an init-netns sysctl (e.g. nf_conntrack_max, read-only in other namespaces)
# and restores the old value when the scenario exits.
set_global_sysctl() {
    local key=$1 val=$2 old
    old=$(sysctl -n "$key")
    _restore_cmds+=("sysctl -qw $key=$old")
    sysctl -qw "$key=$val"
}

# Makes conntrack track in NS: a ct-state rule registers the conntrack hooks there.
# nft inet covers IPv4 and IPv6 in one rule; iptables/ip6tables otherwise.
ns_track() {
    local ns=$1
    if command -v nft >/dev/null 2>&1 && in_ns "$ns" nft -f - 2>/dev/null <<'EOF'
table inet trk_track {
    chain input {
        type filter hook input priority 0; policy accept;
        ct state new,established,related accept
    }
}
EOF
    then
        return 0
    fi
    in_ns "$ns" iptables -A INPUT -m conntrack --ctstate NEW,ESTABLISHED,RELATED -j ACCEPT \
        || skip "cannot add a conntrack rule in $ns (neither nft nor iptables works)"
    in_ns "$ns" ip6tables -A INPUT -m conntrack --ctstate NEW,ESTABLISHED,RELATED -j ACCEPT \
        || log "warning: ip6tables conntrack rule failed in $ns (IPv6 not tracked)"
}

# ns_create NAME: a fresh namespace with lo up, conntrack events/acct/timestamps on and
# a tracking rule. Deleted when the scenario exits. Use names starting with trk-.
ns_create() {
    local ns=$1
    ip netns del "$ns" 2>/dev/null || true
    ip netns add "$ns"
    _created_ns+=("$ns")
    in_ns "$ns" ip link set lo up
    # 6.1+ defaults nf_conntrack_events to 2 ("only if a listener existed at creation").
    in_ns "$ns" sysctl -qw net.netfilter.nf_conntrack_events=1 \
        net.netfilter.nf_conntrack_acct=1 net.netfilter.nf_conntrack_timestamp=1
    ns_track "$ns"
}

# veth_link NS1 IF1 ADDR1/PLEN NS2 IF2 ADDR2/PLEN — IPv6 addresses get nodad.
veth_link() {
    local ns1=$1 if1=$2 a1=$3 ns2=$4 if2=$5 a2=$6 extra1= extra2=
    [[ $a1 == *:* ]] && extra1=nodad
    [[ $a2 == *:* ]] && extra2=nodad
    in_ns "$ns1" ip link add "$if1" type veth peer name "$if2"
    in_ns "$ns1" ip link set "$if2" netns "$ns2"
    # shellcheck disable=SC2086
    in_ns "$ns1" ip addr add "$a1" dev "$if1" $extra1
    # shellcheck disable=SC2086
    in_ns "$ns2" ip addr add "$a2" dev "$if2" $extra2
    in_ns "$ns1" ip link set "$if1" up
    in_ns "$ns2" ip link set "$if2" up
}

# veth_addr NS IF ADDR/PLEN — add one more address (IPv6 gets nodad).
veth_addr() {
    local extra=
    [[ $3 == *:* ]] && extra=nodad
    # shellcheck disable=SC2086
    in_ns "$1" ip addr add "$3" dev "$2" $extra
}

# --- traffic -----------------------------------------------------------------------------

wait_file() {
    local f=$1 secs=${2:-10} i
    for ((i = 0; i < secs * 10; i++)); do
        [ -e "$f" ] && return 0
        pause 0.1
    done
    return 1
}

# bg_in_ns NS cmd... — background process killed at exit; its pid is in BG_PID.
bg_in_ns() {
    local ns=$1
    shift
    # nsenter itself, not the in_ns function: $! must be the process, not a subshell.
    nsenter --net="/run/netns/$ns" -- "$@" >>"$SCEN_DIR/background.log" 2>&1 &
    BG_PID=$!
    _bg_pids+=("$BG_PID")
}

# Servers: start and wait until they listen.
start_tcp_server() { # NS ADDR PORT
    local ready=$SCEN_DIR/ready.tcp.$2.$3
    rm -f "$ready"
    bg_in_ns "$1" "${TRAFFIC[@]}" tcp-serve "$2" "$3" --ready "$ready"
    wait_file "$ready" 20 || fail "TCP server on $2:$3 in $1 did not start ($(tail -n3 "$SCEN_DIR/background.log"))"
}
start_udp_echo() { # NS ADDR PORT
    local ready=$SCEN_DIR/ready.udp.$2.$3
    rm -f "$ready"
    bg_in_ns "$1" "${TRAFFIC[@]}" udp-echo "$2" "$3" --ready "$ready"
    wait_file "$ready" 20 || fail "UDP server on $2:$3 in $1 did not start ($(tail -n3 "$SCEN_DIR/background.log"))"
}
traffic() { # NS subcommand args...
    local ns=$1
    shift
    in_ns "$ns" "${TRAFFIC[@]}" "$@"
}

# --- conntrack table ---------------------------------------------------------------------

ct_count() { in_ns "$1" conntrack -C 2>/dev/null; }

# Flushes NS's table: a DESTROY event for every entry left.
ct_flush() { in_ns "$1" conntrack -F 2>&1 | sed 's/^/conntrack -F: /'; }

# wait_ct_count NS N SECS — poll `conntrack -C` until it shows N; false on timeout.
wait_ct_count() {
    local ns=$1 want=$2 secs=$3 end
    # A deadline, not a number of polls: in a TCG guest one `conntrack -C` takes
    # longer than the pause between polls.
    end=$((SECONDS + secs))
    while :; do
        [ "$(ct_count "$ns")" = "$want" ] && return 0
        [ "$SECONDS" -lt "$end" ] || return 1
        pause 0.2
    done
}

# --- the oracle ----------------------------------------------------------------------------

# Number of netfilter netlink sockets (protocol 12) subscribed to a group in NS.
_nfnl_listeners() {
    in_ns "$1" cat /proc/net/netlink | awk '$2 == 12 && $4 != "00000000" { n++ } END { print n + 0 }'
}

# The same for the netns of process PID, into NFNL_N, with builtins only (polled).
_nfnl_listeners_of() {
    local _sk proto _pid groups _rest
    NFNL_N=0
    [ -r "/proc/$1/net/netlink" ] || return 1
    while read -r _sk proto _pid groups _rest; do
        [ "$proto" = 12 ] && [ "$groups" != 00000000 ] && NFNL_N=$((NFNL_N + 1))
    done <"/proc/$1/net/netlink"
    return 0
}

# oracle_start NS [extra conntrack -E args...]
# Starts `conntrack -E -e NEW,DESTROY` then `$TRACKER events -e NEW,DESTROY` in NS and
# waits until the tracker prints `tracker: listening` on stderr. ORACLE_EVENTS replaces
# NEW,DESTROY for both (e.g. ALL); TRACKER_ARGS adds words to the tracker's command.
oracle_start() {
    local ns=$1 base i
    shift
    ORACLE_NS=$ns
    CT_OUT=$SCEN_DIR/conntrack.events
    CT_ERR=$SCEN_DIR/conntrack.stderr
    TRK_OUT=$SCEN_DIR/tracker.events
    TRK_ERR=$SCEN_DIR/tracker.stderr
    # Empty the files first: a scenario may run the oracle more than once, and the
    # readiness check below must never see the previous tracker's `listening` line.
    : >"$CT_OUT"; : >"$CT_ERR"; : >"$TRK_OUT"; : >"$TRK_ERR"
    base=$(_nfnl_listeners "$ns")
    # nsenter directly (not in_ns): $! must be conntrack itself to receive SIGINT.
    nsenter --net="/run/netns/$ns" -- conntrack -E -e "${ORACLE_EVENTS:-NEW,DESTROY}" "$@" \
        >"$CT_OUT" 2>"$CT_ERR" &
    CT_PID=$!
    for ((i = 0; i < 100; i++)); do
        _nfnl_listeners_of "$CT_PID" && [ "$NFNL_N" -gt "$base" ] && break
        kill -0 "$CT_PID" 2>/dev/null || fail "conntrack -E exited: $(cat "$CT_ERR")"
        pause 0.1
    done
    [ "$i" -lt 100 ] || log "warning: conntrack -E not seen on netlink after 10 s; going on"
    # shellcheck disable=SC2086  # TRACKER_ARGS: extra words, e.g. filters
    nsenter --net="/run/netns/$ns" -- "$TRACKER" events -e "${ORACLE_EVENTS:-NEW,DESTROY}" ${TRACKER_ARGS:-} \
        >"$TRK_OUT" 2>"$TRK_ERR" &
    TRK_PID=$!
    for ((i = 0; i < TRACKER_READY_TIMEOUT * 10; i++)); do
        has_line "$TRK_ERR" 'tracker: listening' && break
        if ! kill -0 "$TRK_PID" 2>/dev/null; then
            wait "$TRK_PID" && rc=0 || rc=$?
            TRK_PID=
            echo "--- tracker stderr ---"
            cat "$TRK_ERR"
            fail "tracker exited (rc=$rc) before listening: $(grep -v '^\s*$' "$TRK_ERR" | tail -n1)"
        fi
        pause 0.1
    done
    if [ "$i" -ge $((TRACKER_READY_TIMEOUT * 10)) ]; then
        echo "--- tracker stderr ---"
        cat "$TRK_ERR"
        fail "tracker did not print 'tracker: listening' within ${TRACKER_READY_TIMEOUT}s"
    fi
    log "oracle running in $ns: $(grep '^tracker: listening' "$TRK_ERR" | head -n1)"
}

# extra_tracker_start NS NAME ARGS... — a second tracker (e.g. -o json) beside the oracle's;
# output in $SCEN_DIR/NAME.out, stderr in $SCEN_DIR/NAME.err. Sets EXTRA_PID.
extra_tracker_start() {
    local ns=$1 name=$2 i
    shift 2
    : >"$SCEN_DIR/$name.err"
    nsenter --net="/run/netns/$ns" -- "$TRACKER" "$@" >"$SCEN_DIR/$name.out" 2>"$SCEN_DIR/$name.err" &
    EXTRA_PID=$!
    _bg_pids+=("$EXTRA_PID")
    for ((i = 0; i < TRACKER_READY_TIMEOUT * 10; i++)); do
        has_line "$SCEN_DIR/$name.err" 'tracker: listening' && return 0
        kill -0 "$EXTRA_PID" 2>/dev/null || fail "tracker $name exited: $(tail -n1 "$SCEN_DIR/$name.err")"
        pause 0.1
    done
    fail "tracker $name did not print 'tracker: listening'"
}

# serve_start NS ERRFILE ARGS... — `tracker ARGS` in NS until it says it serves; sets
# STARTED_PID.
serve_start() {
    local ns=$1 err=$2 i
    shift 2
    nsenter --net="/run/netns/$ns" -- "$TRACKER" "$@" >/dev/null 2>"$err" &
    STARTED_PID=$!
    _bg_pids+=("$STARTED_PID")
    for ((i = 0; i < TRACKER_READY_TIMEOUT * 10; i++)); do
        has_line "$err" 'tracker: serving metrics' && return 0
        kill -0 $STARTED_PID 2>/dev/null || fail "tracker $* exited: $(cat "$err")"
        pause 0.1
    done
    fail "tracker $* did not start serving: $(cat "$err")"
}

# extra_tracker_stop: SIGINT and wait.
extra_tracker_stop() {
    kill -INT "$EXTRA_PID" 2>/dev/null || true
    wait "$EXTRA_PID" 2>/dev/null || true
}

# Waits until both event files stop growing (about 1 s of quiet, at most SECS).
oracle_settle() {
    local secs=${1:-15} quiet=0 prev= cur i
    for ((i = 0; i < secs * 10 && quiet < 4; i += 3)); do
        cur="$(stat -c %s "$CT_OUT" "$TRK_OUT" | tr '\n' ' ')"
        if [ "$cur" = "$prev" ]; then quiet=$((quiet + 1)); else quiet=0; fi
        prev=$cur
        pause 0.3
    done
}

# Stops both with SIGINT and checks that the tracker exited with its summary line.
# Sets TRK_SHOWN and TRK_LOST.
oracle_stop() {
    local pid i rc
    oracle_settle "${1:-15}"
    _oracle_socket_state
    for pid in $CT_PID $TRK_PID; do kill -INT "$pid" 2>/dev/null || true; done
    for pid in $CT_PID $TRK_PID; do
        for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; pause 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
            [ "$pid" = "$TRK_PID" ] && fail "tracker did not exit within 10 s of SIGINT"
        fi
    done
    wait "$CT_PID" 2>/dev/null || true
    wait "$TRK_PID" && rc=0 || rc=$?
    CT_PID=
    TRK_PID=
    _stopped_pair "$rc" "$CT_ERR" "$TRK_ERR" "$TRK_OUT"
}

# Before the oracle stops: whether conntrack -E still runs, and its netlink socket's
# unread bytes and drops (/proc/net/netlink), so that a stream that ends early shows
# whether the kernel dropped messages for it or conntrack stopped reading.
_oracle_socket_state() {
    local fds table line inodes=() eth groups rmem drops inode _x
    if ! kill -0 "$CT_PID" 2>/dev/null; then
        log "conntrack -E (pid $CT_PID) exited before the oracle stopped it"
        return 0
    fi
    # One exec for all its descriptors (each costs tens of ms in a TCG guest); it may
    # exit meanwhile, which only ends the diagnosis.
    fds=$(ls -l "/proc/$CT_PID/fd" 2>/dev/null) || return 0
    { table=$(<"/proc/$CT_PID/net/netlink"); } 2>/dev/null || return 0
    while read -r line; do
        [[ $line =~ socket:\[([0-9]+)\] ]] && inodes+=("${BASH_REMATCH[1]}")
    done <<<"$fds"
    while read -r _x eth _x groups rmem _x _x _x drops inode _x; do
        [ "$eth" = 12 ] && [[ " ${inodes[*]} " == *" $inode "* ]] \
            && log "conntrack -E netlink socket: groups=$groups unread=$rmem drops=$drops"
    done <<<"$table"
    return 0
}

# _stopped_pair RC CT_ERR TRK_ERR TRK_OUT — shows both stderrs and checks the tracker's
# summary line against what it printed. Sets TRK_SHOWN and TRK_LOST.
_stopped_pair() {
    local rc=$1 ct_err=$2 trk_err=$3 trk_out=$4 summary lines
    echo "--- conntrack -E stderr (repeated lines once) ---"
    awk '!seen[$0]++' "$ct_err"
    echo
    echo "--- tracker stderr (rc=$rc) ---"
    cat "$trk_err"
    summary=$(grep -E '^tracker: [0-9]+ flow events have been shown, [0-9]+ lost\.' "$trk_err" | tail -n1 || true)
    [ -n "$summary" ] || fail "tracker (rc=$rc) did not print 'tracker: N flow events have been shown, M lost.' on exit"
    TRK_SHOWN=$(sed -E 's/^tracker: ([0-9]+) .*/\1/' <<<"$summary")
    TRK_LOST=$(sed -E 's/.*shown, ([0-9]+) lost.*/\1/' <<<"$summary")
    lines=$(grep -c . "$trk_out" || true)
    [ "$TRK_SHOWN" = "$lines" ] || fail "tracker says it showed $TRK_SHOWN events but printed $lines lines"
}

# --- several pairs at once ---------------------------------------------------------------

# pair_add NAME WORDS... then pairs_start NS: one `conntrack -E -e NEW,DESTROY WORDS` and
# one `tracker events -e NEW,DESTROY WORDS` per pair, files under $SCEN_DIR/NAME/. The
# pairs start together, so the trackers' start-ups (seconds each in a TCG guest) overlap.
# Every conntrack -E is subscribed before any tracker starts: the netlink fallback
# subscribes too, and the count of subscribers is how readiness is seen.
PAIRS=()
declare -A _PAIR_WORDS=() _PAIR_CT=() _PAIR_TRK=()
pair_add() {
    local name=$1
    shift
    PAIRS+=("$name")
    _PAIR_WORDS[$name]="$*"
}

pairs_start() {
    local ns=$1 name dir base i
    base=$(_nfnl_listeners "$ns")
    for name in "${PAIRS[@]}"; do
        dir=$SCEN_DIR/$name
        mkdir -p "$dir"
        # shellcheck disable=SC2086  # the words are split on purpose
        nsenter --net="/run/netns/$ns" -- conntrack -E -e NEW,DESTROY ${_PAIR_WORDS[$name]} \
            >"$dir/conntrack.events" 2>"$dir/conntrack.stderr" &
        _PAIR_CT[$name]=$!
        _bg_pids+=($!)
    done
    for ((i = 0; i < 100; i++)); do
        _nfnl_listeners_of "${_PAIR_CT[${PAIRS[0]}]}" \
            && [ "$NFNL_N" -ge $((base + ${#PAIRS[@]})) ] && break
        pause 0.1
    done
    [ "$i" -lt 100 ] || fail "not every conntrack -E subscribed within 10 s ($NFNL_N of $((base + ${#PAIRS[@]})) listeners)"
    for name in "${PAIRS[@]}"; do
        dir=$SCEN_DIR/$name
        # shellcheck disable=SC2086
        nsenter --net="/run/netns/$ns" -- "$TRACKER" events -e NEW,DESTROY ${_PAIR_WORDS[$name]} \
            >"$dir/tracker.events" 2>"$dir/tracker.stderr" &
        _PAIR_TRK[$name]=$!
        _bg_pids+=($!)
    done
    for name in "${PAIRS[@]}"; do
        dir=$SCEN_DIR/$name
        for ((i = 0; i < TRACKER_READY_TIMEOUT * 10; i++)); do
            has_line "$dir/tracker.stderr" 'tracker: listening' && break
            kill -0 "${_PAIR_TRK[$name]}" 2>/dev/null \
                || fail "tracker ${_PAIR_WORDS[$name]} exited before listening: $(tail -n1 "$dir/tracker.stderr")"
            pause 0.1
        done
        [ "$i" -lt $((TRACKER_READY_TIMEOUT * 10)) ] \
            || fail "tracker ${_PAIR_WORDS[$name]} did not print 'tracker: listening' within ${TRACKER_READY_TIMEOUT}s"
    done
    log "${#PAIRS[@]} pairs running in $ns"
}

# pairs_stop: waits until no event file grows, then stops every pair; pair_use NAME
# then points CT_OUT, TRK_OUT, TRK_LOST and ORACLE_DIR (the comparison's output) at a
# pair for expect_events and oracle_compare.
pairs_stop() {
    local name pid files=() prev= cur quiet=0 i rc
    for name in "${PAIRS[@]}"; do
        files+=("$SCEN_DIR/$name/conntrack.events" "$SCEN_DIR/$name/tracker.events")
    done
    for ((i = 0; i < 150 && quiet < 4; i += 3)); do
        cur="$(stat -c %s "${files[@]}" | tr '\n' ' ')"
        if [ "$cur" = "$prev" ]; then quiet=$((quiet + 1)); else quiet=0; fi
        prev=$cur
        pause 0.3
    done
    for name in "${PAIRS[@]}"; do
        kill -INT "${_PAIR_CT[$name]}" "${_PAIR_TRK[$name]}" 2>/dev/null || true
    done
    for name in "${PAIRS[@]}"; do
        wait "${_PAIR_CT[$name]}" 2>/dev/null || true
        pid=${_PAIR_TRK[$name]}
        for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; pause 0.1; done
        kill -0 "$pid" 2>/dev/null && { kill -KILL "$pid"; fail "tracker ${_PAIR_WORDS[$name]} did not exit within 10 s of SIGINT"; }
        wait "$pid" && rc=0 || rc=$?
        echo "=== pair $name: ${_PAIR_WORDS[$name]}"
        _stopped_pair "$rc" "$SCEN_DIR/$name/conntrack.stderr" "$SCEN_DIR/$name/tracker.stderr" \
            "$SCEN_DIR/$name/tracker.events"
        echo "$TRK_LOST" >"$SCEN_DIR/$name/lost"
    done
}

pair_use() {
    CT_OUT=$SCEN_DIR/$1/conntrack.events
    TRK_OUT=$SCEN_DIR/$1/tracker.events
    TRK_LOST=$(cat "$SCEN_DIR/$1/lost")
    ORACLE_DIR=$SCEN_DIR/$1
    log "pair $1: ${_PAIR_WORDS[$1]}"
}

# Exact rule: the multisets of normalised lines must be equal.
oracle_compare() {
    "${ORACLE[@]}" exact "$CT_OUT" "$TRK_OUT" "${ORACLE_DIR:-$SCEN_DIR}" \
        || fail "conntrack -E and tracker event streams differ (see diff)"
    [ "${TRK_LOST:-0}" = 0 ] || fail "tracker reported $TRK_LOST lost events"
}

# Bulk rule (conntrack -E loses events): every NEW in the tracker stream has its DESTROY,
# conntrack's lines are a subset of the tracker's; optional exact number of NEW events.
oracle_compare_bulk() {
    local args=()
    [ -n "${1:-}" ] && args=(--expect-new "$1")
    "${ORACLE[@]}" bulk "$CT_OUT" "$TRK_OUT" "$SCEN_DIR" "${args[@]}" \
        || fail "bulk check failed (see PROBLEM lines)"
    [ "${TRK_LOST:-0}" = 0 ] || fail "tracker reported $TRK_LOST lost events"
}

# expect_events ERE MIN [MAX] — sanity check of the scenario itself: conntrack -E printed
# between MIN and MAX lines matching ERE (so that two empty streams cannot pass).
expect_events() {
    local re=$1 min=$2 max=${3:-} n
    n=$(grep -cE -- "$re" "$CT_OUT" || true)
    if [ "$n" -lt "$min" ] || { [ -n "$max" ] && [ "$n" -gt "$max" ]; }; then
        echo "--- conntrack -E output ---"
        head -n 50 "$CT_OUT"
        fail "scenario check: conntrack -E printed $n lines matching /$re/, expected ${min}..${max:-inf}"
    fi
    log "conntrack -E: $n lines match /$re/"
}

# Mark table of a `conntrack -L` listing, for stability checks.
_mark_table() { grep -o 'mark=[0-9]*' "$1" | sort | uniq -c | tr -s ' ' | tr '\n' ' '; }

# check_counts [EXPECT] — `$TRACKER counts -o json` (the running tracker) against
# `conntrack -L` grouped by mark, in the oracle's namespace. EXPECT (e.g. "1=30,2=20",
# "" = empty table) also checks what conntrack shows, i.e. the scenario's own setup.
# The tracker answers first: a listing removes entries whose timeout has passed (see
# ctnetlink_dump_table in net/netfilter/nf_conntrack_netlink.c), which would hide a
# tracker that still counts them. Two listings after it must agree, so that the table
# did not change around the comparison.
check_counts() {
    local expect_args=() try l1=$SCEN_DIR/counts.list1 l2=$SCEN_DIR/counts.list2 j=$SCEN_DIR/counts.json
    [ $# -gt 0 ] && expect_args=(--expect "$1")
    [ -n "$TRK_PID" ] || fail "check_counts needs the running tracker"
    for try in 1 2 3 4; do
        if ! in_ns "$ORACLE_NS" "$TRACKER" counts -o json >"$j" 2>"$j.stderr"; then
            cat "$j.stderr"
            fail "'tracker counts -o json' failed: $(tail -n1 "$j.stderr")"
        fi
        in_ns "$ORACLE_NS" conntrack -L >"$l1" 2>/dev/null
        in_ns "$ORACLE_NS" conntrack -L >"$l2" 2>/dev/null
        if [ "$(_mark_table "$l1")" != "$(_mark_table "$l2")" ]; then
            log "conntrack table changed while counting; again"
            sleep 1
            continue
        fi
        if "${ORACLE[@]}" counts "$l1" "$j" "${expect_args[@]}"; then
            return 0
        fi
        [ "$try" -lt 4 ] && { log "counts differ (try $try); again in 1 s"; sleep 1; }
    done
    fail "tracker counts differ from conntrack -L (${1:+expected $1})"
}

# with_one_bucket SCENARIO NOTE — runs scenarios/SCENARIO again with the slots that remember
# counted entries cut to one bucket of eight (TRACKER_LIVE_BUCKETS=1, a test knob), so that
# entries overflow into the LIVE hash map, then notes NOTE. Where the hooks use no slots
# (kprobes on a host whose CPU numbers reach past 8, the netlink source) the tracker never
# mentions the knob: then it skips, having run SCENARIO once more.
with_one_bucket() {
    local scenario=$1 done_note=$2
    export TRACKER_LIVE_BUCKETS=1 SCEN_DIR SCEN_NAME
    # Unset for the inner run: its clean-up would end the whole process group, the caller
    # included; the caller's own clean-up does that at the end.
    SCEN_UNDER_SUITE= bash "$(dirname "${BASH_SOURCE[0]}")/scenarios/$scenario" || exit $?
    if ! grep -q '^tracker: counted entries: 1 bucket(s) of slots' "$SCEN_DIR/tracker.stderr" \
        || ! grep -q '^tracker: listening (source=ebpf' "$SCEN_DIR/tracker.stderr"; then
        : >"$REASON_FILE"
        skip "no slots in use here ($(grep '^tracker: listening' "$SCEN_DIR/tracker.stderr" | head -n1)): nothing for the knob to cut, so this was ${scenario%%-*} once more"
    fi
    note "$done_note"
}

# expired_counts_vs_listing NS JSON EXPECT TOTAL BEFORE AFTER WINDOW WHAT — for the expired-entry
# scenarios (21, 24): `tracker counts -o json` in JSON was taken while TOTAL entries were in
# the table (nf_conntrack_count BEFORE and AFTER it, WINDOW s after the traffic); now
# conntrack -L is the oracle, and the counts must equal EXPECT. Skips, with the reason, on
# the netlink source (its counts are a dump, checked first) and where GC already removed
# entries; fails naming WHAT the tracker counted wrongly.
expired_counts_vs_listing() {
    local ns=$1 j=$2 expect=$3 total=$4 before=$5 after=$6 window=$7 what=$8 source
    log "nf_conntrack_count: $total at send, $before before and $after after tracker counts ($window s after send)"
    source=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["source"])' "$j")
    if [ "$source" = netlink ]; then
        # The netlink source counts from a table dump, which evicts expired entries itself.
        in_ns "$ns" conntrack -L >"$SCEN_DIR/expired.list" 2>/dev/null
        "${ORACLE[@]}" counts "$SCEN_DIR/expired.list" "$j" --expect "$expect" \
            || fail "tracker counts (netlink) differ from conntrack -L"
        skip "netlink source: its counts are a table dump, which removes expired entries itself (agrees with conntrack -L); the window exists only for the eBPF count maps"
    fi
    if [ "$before" != "$total" ] || [ "$after" != "$total" ]; then
        skip "GC removed expired entries within $window s (nf_conntrack_count $total -> $before -> $after): the window is not observable here"
    fi
    in_ns "$ns" conntrack -L >"$SCEN_DIR/expired.list" 2>/dev/null
    "${ORACLE[@]}" counts "$SCEN_DIR/expired.list" "$j" --expect "$expect" \
        || fail "tracker counts include $what that conntrack -L does not list"
}

# ns_drop_udp NS PORT|LO-HI — drop incoming UDP to these ports ahead of the tracking rule,
# so that unanswered datagrams stay [UNREPLIED] without ICMP errors.
ns_drop_udp() {
    local ns=$1 ports=$2
    if in_ns "$ns" nft list table inet trk_track >/dev/null 2>&1; then
        in_ns "$ns" nft insert rule inet trk_track input udp dport "$ports" drop
    else
        in_ns "$ns" iptables -I INPUT -p udp --dport "${ports/-/:}" -j DROP
        in_ns "$ns" ip6tables -I INPUT -p udp --dport "${ports/-/:}" -j DROP 2>/dev/null || true
    fi
}
