#!/bin/bash
# Runs every tests/scenarios/*.sh inside the test-bed VM (or any root shell with
# nf_conntrack) and compares the tracker with conntrack. See tests/README.md.
#
# Env: TRACKER (absolute path of the tracker binary), RESULTS_DIR (writable),
#      SCENARIOS (optional: space/comma separated globs or regexes on scenario names),
#      SCEN_TIMEOUT (seconds per scenario, default 300), SUITE_STAGE=1 (test-bed guests
#      only: copy hot files into guest RAM first, see stage_in_ram).
# Prints  RESULT<TAB>name<TAB>pass|fail|skip<TAB>seconds<TAB>reason  per scenario
# (also appended to $RESULTS_DIR/results.tsv), then SUITE-DONE; exits 1 if any failed.

set -u

TESTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${TRACKER:?TRACKER must be the absolute path of the tracker binary}"
: "${RESULTS_DIR:?RESULTS_DIR must be a writable directory}"
SCEN_TIMEOUT=${SCEN_TIMEOUT:-300}
SCENARIOS=${SCENARIOS:-}
mkdir -p "$RESULTS_DIR"
RESULTS=$RESULTS_DIR/results.tsv

selected() {
    local name=$1 pat
    [ -z "$SCENARIOS" ] && return 0
    # A pattern with any of ^$()|+\ is an extended regex (unanchored); one with * ? [ is
    # a glob on the whole name; a plain word matches as a substring.
    set -f
    for pat in ${SCENARIOS//,/ }; do
        if [[ $pat == *[\^\$\(\)\|+\\]* ]]; then
            [[ $name =~ $pat ]] && { set +f; return 0; }
        elif [[ $pat == *[\*\?\[]* ]]; then
            # shellcheck disable=SC2053
            [[ $name == $pat ]] && { set +f; return 0; }
        elif [[ $name == *"$pat"* ]]; then
            set +f
            return 0
        fi
    done
    set +f
    return 1
}

# Fresh state between scenarios: leftover namespaces of ours, the init netns table.
reset_state() {
    local ns
    for ns in $(ip netns list 2>/dev/null | awk '$1 ~ /^trk-/ { print $1 }'); do
        ip netns del "$ns" 2>/dev/null
    done
    conntrack -F >/dev/null 2>&1
}

one_line() { tr '\t\r\n' '   ' | sed -e 's/  */ /g' -e 's/^ //' -e 's/ $//' | cut -c1-300; }

# SUITE_STAGE=1 (set by `cargo xtask` for its guests only): the guest's root is
# the host's filesystem over 9p without a page cache, so every exec reads its
# binary and libraries from the host again, and under TCG each read is slow.
# The commands the scenarios run most are put in guest RAM once: /usr is an
# overlay whose upper layer is guest tmpfs, and an attribute change copies a
# file up (atime only, so no mtime changes); the tracker, which lives under the
# 9p target mount, is copied to a tmpfs. Never on a real host: there
# the atime change would reach the host's own files.
stage_in_ram() {
    local dir=/run/trk-stage files=() c p started=$SECONDS
    mkdir -p "$dir" && mount -t tmpfs -o size=256m tmpfs "$dir" || return 0
    if cp "$TRACKER" "$dir/tracker"; then TRACKER=$dir/tracker; fi
    for c in bash conntrack ip nsenter nft iptables ip6tables grep sed awk cat date sleep \
        stat timeout sort uniq tr cut head tail wc diff kill sysctl mkdir rm mktemp \
        "${PYTHON:-/usr/bin/python3}"; do
        p=$(command -v "$c") && files+=("$(readlink -f "$p")")
    done
    # Shared libraries of those, and the modules the Python helpers import.
    mapfile -t -O "${#files[@]}" files < <(
        ldd "${files[@]}" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
        "${PYTHON:-/usr/bin/python3}" -S -v "$TESTS_DIR/oracle.py" --help 2>&1 >/dev/null \
            | sed -nE "s/^# code object from '(.*)'$/\1/p; s/^# extension module .* from '(.*)'$/\1/p"
        "${PYTHON:-/usr/bin/python3}" -S -v "$TESTS_DIR/traffic.py" --help 2>&1 >/dev/null \
            | sed -nE "s/^# code object from '(.*)'$/\1/p; s/^# extension module .* from '(.*)'$/\1/p"
    )
    mapfile -t files < <(readlink -f "${files[@]}" | grep '^/usr/' | sort -u)
    touch -a -c "${files[@]}" 2>/dev/null
    echo "vm-suite: staged the tracker and ${#files[@]} files in guest RAM in $((SECONDS - started)) s"
}
[ "${SUITE_STAGE:-}" = 1 ] && stage_in_ram

echo "vm-suite: kernel $(uname -r), tracker $TRACKER, results $RESULTS_DIR"
modprobe -q nf_conntrack 2>/dev/null
modprobe -q nf_conntrack_netlink 2>/dev/null
failed=0
ran=0
for script in "$TESTS_DIR"/scenarios/*.sh; do
    [ -e "$script" ] || continue
    name=$(basename "$script" .sh)
    selected "$name" || continue
    ran=$((ran + 1))
    dir=$RESULTS_DIR/$name
    rm -rf "$dir"
    mkdir -p "$dir"
    reset_state
    # A scenario may ask for more time with a `# timeout: SECONDS` line.
    limit=$(sed -nE 's/^# timeout: ([0-9]+)$/\1/p' "$script" | head -n1)
    limit=$(( ${limit:-0} > SCEN_TIMEOUT ? limit : SCEN_TIMEOUT ))
    start=$(date +%s.%N)
    SCEN_UNDER_SUITE=1 SCEN_NAME=$name SCEN_DIR=$dir TESTS_DIR=$TESTS_DIR TRACKER=$TRACKER \
        timeout -k 10 "$limit" bash "$script" >"$dir/log" 2>&1 </dev/null
    rc=$?
    secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
    reason=
    [ -s "$dir/reason" ] && reason=$(head -n1 "$dir/reason" | one_line)
    case $rc in
        0) status=pass ;;
        77) status=skip
            [ -n "$reason" ] || reason=$(grep -v '^\s*$' "$dir/log" | tail -n1 | one_line) ;;
        124 | 137) status=fail; reason="timed out after ${limit}s${reason:+; $reason}" ;;
        *) status=fail
           [ -n "$reason" ] || reason="exit code $rc: $(grep -v '^\s*$' "$dir/log" | tail -n1 | one_line)" ;;
    esac
    line=$(printf 'RESULT\t%s\t%s\t%s\t%s' "$name" "$status" "$secs" "$reason")
    if [ "$status" = fail ]; then
        failed=$((failed + 1))
        echo "===== log of $name ($dir/log) ====="
        if [ "$(wc -l <"$dir/log")" -gt 400 ]; then
            head -n 100 "$dir/log"
            echo "... ($(wc -l <"$dir/log") lines; middle cut) ..."
            tail -n 300 "$dir/log"
        else
            cat "$dir/log"
        fi
        echo "===== end of log of $name ====="
    fi
    echo "$line"
    echo "$line" >>"$RESULTS"
done
reset_state
[ "$ran" -gt 0 ] || { echo "vm-suite: no scenario matches SCENARIOS='$SCENARIOS'"; failed=1; }
echo "SUITE-DONE"
[ "$failed" -eq 0 ]
