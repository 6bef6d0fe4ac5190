#!/bin/bash
# Which way the hooks attach, against what the running kernel offers: where nf_conntrack's
# functions have BTF (vmlinux, or the module's split BTF at /sys/kernel/btf/nf_conntrack,
# kernel 5.11+) the NEW and DESTROY hooks must be fexit trampolines; without it (Debian
# 5.10) kprobe pairs. The kernel's own view is the oracle: bpftool lists the programs the
# tracker loaded with their types (tracing = fentry/fexit, kprobe = kprobe/kretprobe).
. "$(dirname "$0")/../lib.sh"
lib_setup
need_cmd bpftool

NS=trk-hooks
ns_create $NS
TRK_OUT=$SCEN_DIR/tracker.events
TRK_ERR=$SCEN_DIR/tracker.stderr
nsenter --net="/run/netns/$NS" -- "$TRACKER" events >"$TRK_OUT" 2>"$TRK_ERR" &
TRK_PID=$!
for ((i = 0; i < TRACKER_READY_TIMEOUT * 10; i++)); do
    has_line "$TRK_ERR" 'tracker: listening' && break
    kill -0 "$TRK_PID" 2>/dev/null || { cat "$TRK_ERR"; fail "tracker exited before listening"; }
    pause 0.1
done
grep -q '^tracker: listening' "$TRK_ERR" || fail "tracker did not start listening"
cat "$TRK_ERR"
grep -q 'source=ebpf' "$TRK_ERR" || skip "the eBPF source did not attach here: $(grep listening "$TRK_ERR")"

# What the kernel offers: BTF for the confirm function, in vmlinux or in the module's
# split BTF (dumped on top of vmlinux's).
has_confirm_func() { "$@" 2>/dev/null | grep "FUNC '__nf_conntrack_confirm'" >/dev/null; }
btf_for_confirm=no
if has_confirm_func bpftool btf dump file /sys/kernel/btf/vmlinux; then
    btf_for_confirm=yes
elif [ -e /sys/kernel/btf/nf_conntrack ] &&
    has_confirm_func bpftool -B /sys/kernel/btf/vmlinux btf dump file /sys/kernel/btf/nf_conntrack; then
    btf_for_confirm=yes
fi

# What the kernel says is loaded: the tracker loads a program only to attach it, and it
# is the only BPF user in the test bed (bpftool here cannot name a program's owner).
types=$(bpftool -j prog show 2>/dev/null | python3 -c '
import json, sys
for p in json.load(sys.stdin):
    print(p.get("name", "?"), p.get("type", "?"))
')
log "loaded programs: $(tr '\n' ' ' <<<"$types")"
kill -INT "$TRK_PID"
wait "$TRK_PID" || true
TRK_PID=

# bpftool cuts program names to 15 characters.
prog_type() { awk -v n="$1" 'index($1, substr(n, 1, 15)) == 1 { print $2; exit }' <<<"$types"; }
if [ "$btf_for_confirm" = yes ]; then
    for p in confirm_fexit insert_fexit delete_fexit; do
        [ "$(prog_type $p)" = tracing ] || fail "the kernel has BTF for nf_conntrack but $p is not attached (types: $(tr '\n' ' ' <<<"$types"))"
    done
    grep -q 'hooks=fexit' "$TRK_ERR" || fail "start-up line does not say hooks=fexit: $(grep listening "$TRK_ERR")"
    note "BTF for nf_conntrack: NEW and DESTROY hooks are fexit trampolines"
else
    for p in confirm_kretprobe delete_kretprobe; do
        [ "$(prog_type $p)" = kprobe ] || fail "no BTF for nf_conntrack, yet $p is not a kprobe (types: $(tr '\n' ' ' <<<"$types"))"
    done
    grep -q 'hooks=kprobe' "$TRK_ERR" || fail "start-up line does not say hooks=kprobe: $(grep listening "$TRK_ERR")"
    note "no BTF for nf_conntrack's functions: NEW and DESTROY hooks are kprobe pairs"
fi
