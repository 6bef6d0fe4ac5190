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
with_one_bucket 09-connmark-isps.sh \
    "one bucket of 8 slots, the rest in the hash map: counts equal to conntrack -L at each step"
