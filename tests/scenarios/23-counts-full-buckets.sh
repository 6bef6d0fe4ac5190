#!/bin/bash
# 09-connmark-isps again with the slots that remember counted entries cut to one bucket of
# eight (TRACKER_LIVE_BUCKETS=1, a test knob): from the ninth live entry on (on kprobes, once
# a CPU's share of the eight ways is taken), entries overflow into the LIVE hash map, so
# counts, mark moves and DESTROYs are checked against conntrack -L across both places, and
# on a bucket that fills, empties and fills again. Where the hooks use no slots (kprobes on
# a host whose CPU numbers reach past 8, the netlink source) the tracker never mentions the
# knob: then this is skipped, having run 09 once more.
# timeout: 480
. "$(dirname "$0")/../lib.sh"
export TRACKER_LIVE_BUCKETS=1 SCEN_DIR SCEN_NAME
# Unset for the inner run: its clean-up would end the whole process group, this one
# included; this script's own clean-up does that at the end.
SCEN_UNDER_SUITE= bash "$(dirname "$0")/09-connmark-isps.sh" || exit $?
if ! grep -q '^tracker: counted entries: 1 bucket(s) of slots' "$SCEN_DIR/tracker.stderr" \
    || ! grep -q '^tracker: listening (source=ebpf' "$SCEN_DIR/tracker.stderr"; then
    : >"$REASON_FILE"
    skip "no slots in use here ($(grep '^tracker: listening' "$SCEN_DIR/tracker.stderr" | head -n1)): nothing for the knob to cut, so this was 09 once more"
fi
note "one bucket of 8 slots, the rest in the hash map: counts equal to conntrack -L at each step"
