#!/usr/bin/python3
"""Compare the tracker's output with conntrack's (the oracle).

  oracle.py exact  CT_EVENTS TRK_EVENTS OUTDIR   multisets of event lines must be equal
  oracle.py bulk   CT_EVENTS TRK_EVENTS OUTDIR   rules for bulk deletes, where conntrack -E loses events
  oracle.py counts CT_LIST TRK_JSON [--expect 1=30,2=20]
  oracle.py json   CT_EVENTS JSON_FILE...        the events of JSON lines (`-o json`, `serve
                                                 --events-json`) equal conntrack -E's lines
  oracle.py updates CT_EVENTS TRK_EVENTS OUTDIR  NEW and DESTROY lines equal; UPDATE lines of a
                                                 connection equal, or conntrack's read the entry
                                                 at a later state (see cmd_updates)

Normalisation (both streams): trailing whitespace and conntrack's
` [USERSPACE] portid=N` suffix are dropped; the timeout field (the number after the
L4 protocol number) matches when the two values differ by at most 1.
Exit status: 0 equal, 1 different (a readable report on stdout), 2 usage/input error.
"""

import collections
import json
import os
import re
import subprocess
import sys

# conntrack >= 1.4.7 appends " [USERSPACE] portid=N" and, when it can resolve the
# sender's process in time, " progname=NAME" (racy: the requester may be gone already).
USERSPACE_RE = re.compile(r"\s*\[USERSPACE\] portid=\d+( progname=\S*)?\s*$")
# `    [NEW] tcp      6 120 SYN_SENT src=...`: group 2 is the timeout.
TIMEOUT_RE = re.compile(r"^(\s*\[[A-Z]+\]\s+\S+\s+\d+ )(\d+)( .*)$")
EVENT_RE = re.compile(r"^\s*\[([A-Z]+)\]\s+(\S+)\s+(\d+)\s")
TIMEOUT_SLACK = 1
DIFF_LINES_SHOWN = 200


def read_lines(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        out = []
        for raw in f:
            line = USERSPACE_RE.sub("", raw.rstrip("\n")).rstrip()
            if line:
                out.append(line)
        return out


def split_timeout(line):
    """(line with the timeout replaced by a placeholder, timeout or None)."""
    m = TIMEOUT_RE.match(line)
    if not m:
        return line, None
    return m.group(1) + "{T}" + m.group(3), int(m.group(2))


def with_timeout(key, timeout):
    return key if timeout is None else key.replace("{T}", str(timeout), 1)


def group(lines):
    groups = collections.defaultdict(list)
    for line in lines:
        key, t = split_timeout(line)
        groups[key].append(t)
    return groups


def match_timeouts(a, b):
    """Pair values of two lists that differ by at most TIMEOUT_SLACK (greedy on sorted
    lists, which finds a maximum matching for an interval tolerance).
    Returns (pairs, unmatched_a, unmatched_b)."""
    if any(x is None for x in a + b):
        # No timeout field: plain multiset.
        ca, cb = collections.Counter(a), collections.Counter(b)
        common = ca & cb
        pairs = [(x, x) for x in common.elements()]
        return pairs, list((ca - common).elements()), list((cb - common).elements())
    a, b = sorted(a), sorted(b)
    i = j = 0
    pairs, ua, ub = [], [], []
    while i < len(a) and j < len(b):
        if abs(a[i] - b[j]) <= TIMEOUT_SLACK:
            pairs.append((a[i], b[j]))
            i += 1
            j += 1
        elif a[i] < b[j]:
            ua.append(a[i])
            i += 1
        else:
            ub.append(b[j])
            j += 1
    ua += a[i:]
    ub += b[j:]
    return pairs, ua, ub


def normalise_pair(ct_lines, trk_lines):
    """Normalised line lists; a tracker timeout matched to conntrack's is rewritten to
    conntrack's value so matched lines compare equal. Also returns the unmatched lines."""
    gc, gt = group(ct_lines), group(trk_lines)
    ct_out, trk_out, ct_only, trk_only = [], [], [], []
    for key in set(gc) | set(gt):
        pairs, ua, ub = match_timeouts(gc.get(key, []), gt.get(key, []))
        for x, _ in pairs:
            ct_out.append(with_timeout(key, x))
            trk_out.append(with_timeout(key, x))
        ct_out += [with_timeout(key, x) for x in ua]
        trk_out += [with_timeout(key, x) for x in ub]
        ct_only += [with_timeout(key, x) for x in ua]
        trk_only += [with_timeout(key, x) for x in ub]
    return sorted(ct_out), sorted(trk_out), sorted(ct_only), sorted(trk_only)


def event_summary(lines):
    c = collections.Counter()
    for line in lines:
        m = EVENT_RE.match(line)
        c[m.group(1) if m else "(not an event line)"] += 1
    return ", ".join(f"{k} {v}" for k, v in sorted(c.items())) or "nothing"


def write(path, lines):
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)


def cmd_exact(ct_path, trk_path, outdir):
    return cmd_exact_lines(read_lines(ct_path), read_lines(trk_path), outdir, "events")


def cmd_exact_lines(ct_lines, trk_lines, outdir, name):
    ct_norm, trk_norm, _, _ = normalise_pair(ct_lines, trk_lines)
    a = os.path.join(outdir, "conntrack.norm")
    b = os.path.join(outdir, "tracker.norm")
    write(a, ct_norm)
    write(b, trk_norm)
    print(f"conntrack -E: {len(ct_lines)} lines ({event_summary(ct_lines)})")
    print(f"tracker:      {len(trk_lines)} lines ({event_summary(trk_lines)})")
    if ct_norm == trk_norm:
        print("event streams are equal")
        return 0
    diff = subprocess.run(
        ["diff", "-u", "--label", "conntrack -E (sorted, normalised)",
         "--label", "tracker (sorted, normalised)", a, b],
        capture_output=True, text=True).stdout
    path = os.path.join(outdir, f"{name}.diff")
    with open(path, "w", encoding="utf-8") as f:
        f.write(diff)
    dl = diff.splitlines()
    print(f"event streams differ ({path}):")
    print("\n".join(dl[:DIFF_LINES_SHOWN]))
    if len(dl) > DIFF_LINES_SHOWN:
        print(f"... {len(dl) - DIFF_LINES_SHOWN} more diff lines in {path}")
    return 1


# conntrack's TCP states in the order a connection passes through them (the kernel's
# enum tcp_conntrack, include/uapi/linux/netfilter/nf_conntrack_tcp.h, with SYN_SENT2,
# a simultaneous open, placed after SYN_SENT). A later reading of the same entry can
# only show a state at the same place or further on.
TCP_STATE_ORDER = ["NONE", "SYN_SENT", "SYN_SENT2", "SYN_RECV", "ESTABLISHED", "FIN_WAIT",
                   "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE"]


def progress(line):
    """How far an UPDATE line's entry had got: (TCP state, assured, replied), each
    growing only as the connection goes on; None when the line shows no TCP state."""
    head = line.split("src=", 1)[0].split()
    state = next((w for w in head if w in TCP_STATE_ORDER), None)
    if state is None:
        return None
    return (TCP_STATE_ORDER.index(state), "[ASSURED]" in line, "[UNREPLIED]" not in line)


def cmd_updates(ct_path, trk_path, outdir):
    """For UPDATE events conntrack -E and the tracker read the entry at two moments: the
    tracker where ctnetlink's notifier starts, conntrack when ctnetlink fills its message,
    later, with the entry's lock held for the TCP state. A packet handled on another CPU
    in between moves the entry on, and conntrack shows the later state. So: NEW and
    DESTROY lines must be equal as multisets; per connection, the UPDATE lines must be as
    many, and each one that is not equal to one of the tracker's must be paired with a
    tracker line of the same connection that it is ahead of (state, assured, replied,
    each no less, sorted pairing), or differ from it in the timeout alone (the tracker
    read between the kernel's store of the state and of its timeout). Anything else
    fails."""
    ct_lines, trk_lines = read_lines(ct_path), read_lines(trk_path)

    def is_update(line):
        m = EVENT_RE.match(line)
        return m is not None and m.group(1) == "UPDATE"

    rc = cmd_exact_lines([x for x in ct_lines if not is_update(x)],
                         [x for x in trk_lines if not is_update(x)], outdir, "new-destroy")
    per_conn = collections.defaultdict(lambda: ([], []))
    for side, lines in ((0, ct_lines), (1, trk_lines)):
        for line in filter(is_update, lines):
            per_conn[orig_tuple(line)][side].append(line)
    same = later = torn = affected = 0
    problems, examples = [], []
    for conn, (ct, trk) in sorted(per_conn.items()):
        if len(ct) != len(trk):
            problems.append(f"{conn}: conntrack -E {len(ct)} UPDATE lines, tracker {len(trk)}")
            continue
        _, _, ct_only, trk_only = normalise_pair(ct, trk)
        same += len(ct) - len(ct_only)
        affected += bool(ct_only)
        pa = sorted((progress(x), x) for x in ct_only if progress(x) is not None)
        pb = sorted((progress(x), x) for x in trk_only if progress(x) is not None)
        if len(pa) != len(ct_only) or len(pb) != len(trk_only):
            problems.append(f"{conn}: differing UPDATE lines without a TCP state")
            continue
        for (ra, a), (rb, b) in zip(pa, pb):
            if all(x >= y for x, y in zip(ra, rb)) and ra != rb:
                later += 1
                examples.append(f"  conntrack -E: {a}\n  tracker:      {b}")
            elif ra == rb and split_timeout(a)[0] == split_timeout(b)[0]:
                # The kernel stores a new state, then the new state's timeout
                # (nf_ct_refresh_acct() after the state machine in
                # nf_conntrack_proto_tcp.c): read in between, the entry shows the
                # new state with the timeout of the state before.
                torn += 1
                examples.append(f"  conntrack -E: {a}\n  tracker:      {b}")
            else:
                problems.append(f"{conn}: not a later reading:\n  conntrack -E: {a}\n"
                                f"  tracker:      {b}")
    total = sum(len(ct) for ct, _ in per_conn.values())
    summary = (f"UPDATE lines: {total} in {len(per_conn)} connections; {same} equal; "
               f"{later} where conntrack -E shows a later state, {torn} where only the timeout "
               f"differs; in {affected} connections")
    with open(os.path.join(outdir, "updates.report"), "w", encoding="utf-8") as f:
        f.write(summary + "\n" + "\n".join(examples + problems) + "\n")
    print(summary)
    if examples:
        print("\n".join(examples[:10]))
    if problems:
        print(f"{len(problems)} UPDATE differences that no later reading explains:")
        print("\n".join(problems[:DIFF_LINES_SHOWN]))
        return 1
    return rc


def orig_tuple(line):
    """Protocol plus the original-direction tuple (the first src/dst/ports or
    type/code/id tokens), or None for a line that is no event."""
    m = EVENT_RE.match(line)
    if not m:
        return None
    fields, seen = [m.group(2)], set()
    for tok in line.split():
        k, _, v = tok.partition("=")
        if k in ("src", "dst", "sport", "dport", "type", "code", "id", "srckey", "dstkey", "zone"):
            if k in seen:
                if k == "zone":
                    continue
                break  # the reply tuple starts
            seen.add(k)
            fields.append(tok)
    return " ".join(fields)


def cmd_bulk(ct_path, trk_path, outdir, expect_new=None):
    ct_lines, trk_lines = read_lines(ct_path), read_lines(trk_path)
    problems = []
    junk = [l for l in trk_lines if not EVENT_RE.match(l)]
    if junk:
        problems.append(f"tracker printed {len(junk)} lines that are no events, e.g. {junk[0]!r}")
    new = collections.Counter()
    destroy = collections.Counter()
    for l in trk_lines:
        m = EVENT_RE.match(l)
        if not m:
            continue
        if m.group(1) == "NEW":
            new[orig_tuple(l)] += 1
        elif m.group(1) == "DESTROY":
            destroy[orig_tuple(l)] += 1
    never_destroyed = new - destroy
    destroyed_unseen = destroy - new
    if never_destroyed:
        ex = list(never_destroyed.elements())[:10]
        problems.append(f"{sum(never_destroyed.values())} connections the tracker saw NEW "
                        "have no DESTROY in the tracker stream, e.g.:\n    " + "\n    ".join(ex))
    # conntrack -E may lose events here, but what it printed must be in the tracker stream.
    _, _, ct_only, _ = normalise_pair(ct_lines, trk_lines)
    if ct_only:
        write(os.path.join(outdir, "conntrack-only.txt"), ct_only)
        problems.append(f"{len(ct_only)} conntrack -E lines are missing from the tracker stream "
                        f"(conntrack-only.txt), e.g.:\n    " + "\n    ".join(ct_only[:10]))
    n_new = sum(new.values())
    if expect_new is not None and n_new != expect_new:
        problems.append(f"tracker showed {n_new} NEW events, the scenario created {expect_new} connections")
    print(f"conntrack -E: {len(ct_lines)} lines ({event_summary(ct_lines)})")
    print(f"tracker:      {len(trk_lines)} lines ({event_summary(trk_lines)})")
    print(f"tracker: {n_new} NEW, {sum(destroy.values())} DESTROY, "
          f"{sum(destroyed_unseen.values())} DESTROY without NEW (allowed: NAT clash losers)")
    for p in problems:
        print("PROBLEM: " + p)
    return 1 if problems else 0


def parse_ct_list(path):
    counts = collections.Counter()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if "src=" not in line:
                continue
            m = re.search(r"\bmark=(\d+)", line)
            counts[int(m.group(1)) if m else 0] += 1
    return counts


def cmd_counts(ct_path, trk_path, expect=None):
    ct = parse_ct_list(ct_path)
    try:
        with open(trk_path, encoding="utf-8") as f:
            doc = json.load(f)
        trk = collections.Counter()
        for e in doc["marks"]:
            trk[int(e["mark"])] += int(e["connections"])
        trk_total = int(doc["total"]) if "total" in doc else sum(trk.values())
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"cannot read the tracker's counts JSON: {e}")
        try:
            print(open(trk_path, encoding="utf-8", errors="replace").read()[:2000])
        except OSError:
            pass
        return 1
    ct_nz = {k: v for k, v in ct.items() if v}
    trk_nz = {k: v for k, v in trk.items() if v}
    problems = []
    if ct_nz != trk_nz:
        problems.append("per-mark connection counts differ")
    if trk_total != sum(trk.values()):
        problems.append(f"tracker total {trk_total} is not the sum of its marks {sum(trk.values())}")
    if trk_total != sum(ct.values()):
        problems.append(f"tracker total {trk_total} != conntrack -L total {sum(ct.values())}")
    if expect is not None:
        want = {}
        for part in filter(None, expect.split(",")):
            k, _, v = part.partition("=")
            if int(v):
                want[int(k)] = int(v)
        if ct_nz != want:
            problems.append(f"conntrack -L does not show what the scenario set up: expected {want}")
    if problems:
        print("counts differ: " + "; ".join(problems))
        print(f"  {'mark':>10}  {'conntrack -L':>12}  {'tracker':>8}")
        for k in sorted(set(ct_nz) | set(trk_nz)):
            flag = "" if ct_nz.get(k, 0) == trk_nz.get(k, 0) else "   <--"
            print(f"  {k:>10}  {ct_nz.get(k, 0):>12}  {trk_nz.get(k, 0):>8}{flag}")
        print(f"  {'total':>10}  {sum(ct.values()):>12}  {trk_total:>8}")
        return 1
    print("counts equal: " + (", ".join(f"mark {k}: {v}" for k, v in sorted(ct_nz.items())) or "empty")
          + f" (total {trk_total})")
    return 0


def ct_event_key(line):
    """What a conntrack -E line says of a flow: kind, protocol, both tuples, the TCP state
    it shows and the mark (absent means 0: the kernel leaves mark 0 out)."""
    kind = EVENT_RE.match(line).group(1).lower()
    words = line.split("]", 1)[1].split()
    proto = words[0]
    # `tcp 6 [TIMEOUT] [STATE] src=...`: a TCP state is the upper-case word before src=.
    head = words[2:words.index(next(w for w in words if w.startswith("src=")))]
    state = next((w for w in head if w.isupper()), None) if proto == "tcp" else None
    tuples = re.findall(r"src=(\S+) dst=(\S+)(?: sport=(\d+) dport=(\d+))?"
                        r"(?: type=(\d+) code=(\d+) id=(\d+))?", line)

    def side(t):
        num = lambda v: int(v) if v else None
        return (t[0], t[1]) + tuple(num(v) for v in t[2:])
    m = re.search(r"\bmark=(\d+)", line)
    return (kind, proto, side(tuples[0]), side(tuples[1]), state, int(m.group(1)) if m else 0)


def json_event_key(ev):
    """The same for one JSON event."""
    def side(t):
        return (t["src"], t["dst"]) + tuple(
            t.get(k) for k in ("sport", "dport", "icmp_type", "icmp_code", "icmp_id"))
    return (ev["type"], ev["proto"], side(ev["orig"]), side(ev["reply"]), ev.get("tcp_state"),
            ev["mark"])


def cmd_json(ct_path, json_paths):
    want = [ct_event_key(l) for l in read_lines(ct_path) if EVENT_RE.match(l)]
    got, problems = [], []
    for path in json_paths:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                try:
                    got.append(json_event_key(json.loads(line)))
                except (ValueError, KeyError, TypeError) as e:
                    problems.append(f"{path}:{n}: not a JSON event ({e}): {line.strip()[:200]}")
    cw, cg = collections.Counter(want), collections.Counter(got)
    for k in sorted((cw - cg).elements(), key=repr)[:DIFF_LINES_SHOWN]:
        problems.append(f"only in conntrack -E: {k}")
    for k in sorted((cg - cw).elements(), key=repr)[:DIFF_LINES_SHOWN]:
        problems.append(f"only in JSON: {k}")
    kinds = lambda c: ", ".join(f"{k} {sum(v for x, v in c.items() if x[0] == k)}"
                                for k in sorted({x[0] for x in c})) or "nothing"
    print(f"conntrack -E: {len(want)} events ({kinds(cw)}); JSON: {len(got)} events ({kinds(cg)})")
    for p in problems:
        print("PROBLEM: " + p)
    return 1 if problems else 0


def main(argv):
    if len(argv) >= 4 and argv[0] == "exact":
        return cmd_exact(argv[1], argv[2], argv[3])
    if len(argv) >= 4 and argv[0] == "bulk":
        expect = None
        if len(argv) == 6 and argv[4] == "--expect-new":
            expect = int(argv[5])
        return cmd_bulk(argv[1], argv[2], argv[3], expect)
    if len(argv) >= 3 and argv[0] == "counts":
        expect = argv[4] if len(argv) == 5 and argv[3] == "--expect" else None
        return cmd_counts(argv[1], argv[2], expect)
    if len(argv) >= 4 and argv[0] == "updates":
        return cmd_updates(argv[1], argv[2], argv[3])
    if len(argv) >= 3 and argv[0] == "json":
        return cmd_json(argv[1], argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
