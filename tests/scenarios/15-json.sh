#!/bin/bash
# JSON output of a real kernel: every line of `tracker events -e ALL -o json` validates
# against docs/event.schema.json, and its events are the ones conntrack -E printed (kind,
# protocol, both tuples, TCP state), for TCP, UDP and ICMP over IPv4 and IPv6, UPDATEs
# included; with the eBPF source every update lists what changed.
. "$(dirname "$0")/../lib.sh"
lib_setup
"$PY" -c 'import jsonschema' 2>/dev/null || skip "python3-jsonschema is not installed (cargo xtask setup installs it)"

NS=trk-json
ns_create $NS
start_tcp_server $NS 127.0.0.1 8000
start_udp_echo $NS ::1 5300
ORACLE_EVENTS=ALL oracle_start $NS
extra_tracker_start $NS json events -e ALL -o json
traffic $NS tcp-client 127.0.0.1 8000 --count 2
traffic $NS udp-client ::1 5300 --count 2
traffic $NS ping 127.0.0.1 --count 1
ct_flush $NS
oracle_stop
extra_tracker_stop
expect_events '\[NEW\]' 5 5
expect_events '\[DESTROY\]' 5 5
expect_events '\[UPDATE\] icmp ' 1
expect_events '\[UPDATE\] udp ' 2
expect_events '\[UPDATE\] tcp .* ESTABLISHED ' 2
oracle_compare
SOURCE=netlink
grep -q 'source=ebpf' "$SCEN_DIR/json.err" && SOURCE=ebpf
"$PY" - "$TESTS_DIR/../docs/event.schema.json" "$SCEN_DIR/json.out" "$CT_OUT" "$SOURCE" <<'PY' || fail "JSON output does not match the schema or conntrack -E (see above)"
import json, re, sys
import jsonschema

schema = json.load(open(sys.argv[1]))
validator = jsonschema.Draft202012Validator(schema)
errors = 0
got = []
for n, line in enumerate(open(sys.argv[2]), 1):
    ev = json.loads(line)
    for e in validator.iter_errors(ev):
        print(f"json line {n}: {e.message}")
        errors += 1
    def side(t):
        ids = tuple(t.get(k) for k in ("sport", "dport", "icmp_type", "icmp_code", "icmp_id"))
        return (t["src"], t["dst"]) + ids
    got.append((ev["type"], ev["proto"], side(ev["orig"]), side(ev["reply"]), ev.get("tcp_state")))
    if ev["type"] == "update":
        # Only the eBPF source sees the kernel's event bits.
        if sys.argv[4] == "ebpf" and not ev.get("changed"):
            print(f"json line {n}: an eBPF update without `changed`")
            errors += 1
        if sys.argv[4] == "netlink" and "changed" in ev:
            print(f"json line {n}: a netlink update with `changed`")
            errors += 1

want = []
for line in open(sys.argv[3]):
    kind = re.search(r"\[(NEW|UPDATE|DESTROY)\]", line).group(1).lower()
    words = line.split("]", 1)[1].split()
    proto = words[0]
    # `tcp 6 [TIMEOUT] [STATE] src=...`: a TCP state is the upper-case word before src=.
    head = words[2:words.index(next(w for w in words if w.startswith("src=")))]
    state = next((w for w in head if w.isupper()), None) if proto == "tcp" else None
    tuples = re.findall(r"src=(\S+) dst=(\S+)(?: sport=(\d+) dport=(\d+))?(?: type=(\d+) code=(\d+) id=(\d+))?", line)
    def side(t):
        src, dst, sp, dp, ty, co, i = t
        num = lambda v: int(v) if v else None
        return (src, dst, num(sp), num(dp), num(ty), num(co), num(i))
    want.append((kind, proto, side(tuples[0]), side(tuples[1]), state))

if sorted(got) != sorted(want):
    print("JSON events differ from conntrack -E:")
    for x in sorted(set(want) - set(got)):
        print("  only in conntrack -E:", x)
    for x in sorted(set(got) - set(want)):
        print("  only in JSON:", x)
    errors += 1
print(f"{len(got)} JSON events checked against the schema and conntrack -E")
sys.exit(1 if errors else 0)
PY
note "$(grep -c . "$SCEN_DIR/json.out") JSON events valid and equal to conntrack -E"
