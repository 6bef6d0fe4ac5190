#!/bin/bash
# JSON output of a real kernel: every line of `tracker events -o json` validates against
# docs/event.schema.json, and its events are the ones conntrack -E printed (kind, protocol,
# both tuples), for TCP, UDP and ICMP over IPv4 and IPv6.
. "$(dirname "$0")/../lib.sh"
lib_setup
"$PY" -c 'import jsonschema' 2>/dev/null || skip "python3-jsonschema is not installed (cargo xtask setup installs it)"

NS=trk-json
ns_create $NS
start_tcp_server $NS 127.0.0.1 8000
start_udp_echo $NS ::1 5300
oracle_start $NS
extra_tracker_start $NS json events -e NEW,DESTROY -o json
traffic $NS tcp-client 127.0.0.1 8000 --count 2
traffic $NS udp-client ::1 5300 --count 2
traffic $NS ping 127.0.0.1 --count 1
ct_flush $NS
oracle_stop
extra_tracker_stop
expect_events '\[NEW\]' 5 5
expect_events '\[DESTROY\]' 5 5
oracle_compare
"$PY" - "$TESTS_DIR/../docs/event.schema.json" "$SCEN_DIR/json.out" "$CT_OUT" <<'PY' || fail "JSON output does not match the schema or conntrack -E (see above)"
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
    got.append((ev["type"], ev["proto"], side(ev["orig"]), side(ev["reply"])))

want = []
for line in open(sys.argv[3]):
    kind = re.search(r"\[(NEW|DESTROY)\]", line).group(1).lower()
    proto = line.split("]", 1)[1].split()[0]
    tuples = re.findall(r"src=(\S+) dst=(\S+)(?: sport=(\d+) dport=(\d+))?(?: type=(\d+) code=(\d+) id=(\d+))?", line)
    def side(t):
        src, dst, sp, dp, ty, co, i = t
        num = lambda v: int(v) if v else None
        return (src, dst, num(sp), num(dp), num(ty), num(co), num(i))
    want.append((kind, proto, side(tuples[0]), side(tuples[1])))

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
