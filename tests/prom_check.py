#!/usr/bin/env python3
"""Checks `tracker serve` through a Prometheus server's HTTP API against
conntrack's own output (python3 stdlib only).

  prom_check.py wait PROM EXPR MIN SECS
      until the instant query EXPR (one series) is >= MIN; exit 1 on timeout
  prom_check.py connections PROM LISTING
      sum by mark of conntrack_tracker_connections == `conntrack -L` grouped by mark
  prom_check.py closed PROM EVENTS
      per mark: closed flows, bytes and packets (both directions) == the DESTROY
      lines of `conntrack -E` (count, sum of bytes=, sum of packets=)
"""
import json
import re
import sys
import time
import urllib.parse
import urllib.request
from collections import Counter, defaultdict


def query(prom, expr):
    """{mark or '': float} of an instant query (labels other than mark dropped)."""
    url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise SystemExit(f"query {expr!r} failed: {body}")
    return {
        s["metric"].get("mark", ""): float(s["value"][1]) for s in body["data"]["result"]
    }


def mark_of(line):
    m = re.search(r"\bmark=(\d+)", line)
    return m.group(1) if m else "0"


def wait(prom, expr, minimum, secs):
    deadline = time.time() + float(secs)
    last = None
    while time.time() < deadline:
        try:
            values = query(prom, expr)
            last = values
            if values and max(values.values()) >= float(minimum):
                return 0
        except OSError as e:
            last = str(e)
        time.sleep(0.5)
    print(f"timeout: {expr} stayed below {minimum} (last: {last})")
    return 1


def show(name, want, got):
    ok = want == got
    print(f"{name}: conntrack {dict(sorted(want.items()))} / prometheus "
          f"{dict(sorted(got.items()))} {'equal' if ok else 'DIFFER'}")
    return ok


def connections(prom, listing):
    want = Counter(mark_of(l) for l in open(listing) if l.strip())
    got = {m: int(v) for m, v in query(
        prom, "sum by (mark) (conntrack_tracker_connections)").items() if v}
    return 0 if show("connections per mark", dict(want), got) else 1


def closed(prom, events):
    flows, nbytes, packets = Counter(), defaultdict(int), defaultdict(int)
    for line in open(events):
        if "[DESTROY]" not in line:
            continue
        m = mark_of(line)
        flows[m] += 1
        nbytes[m] += sum(int(b) for b in re.findall(r"\bbytes=(\d+)", line))
        packets[m] += sum(int(p) for p in re.findall(r"\bpackets=(\d+)", line))
    if not flows:
        print("no DESTROY lines from conntrack -E: nothing to compare")
        return 1
    if not any(nbytes.values()):
        print("conntrack -E printed no bytes=: accounting is off, nothing to compare")
        return 1
    ok = show("closed flows per mark", dict(flows), {
        m: int(v) for m, v in query(
            prom, "sum by (mark) (conntrack_tracker_closed_flows_total)").items()})
    ok &= show("closed bytes per mark", dict(nbytes), {
        m: int(v) for m, v in query(
            prom, "sum by (mark) (conntrack_tracker_closed_bytes_total)").items()})
    ok &= show("closed packets per mark", dict(packets), {
        m: int(v) for m, v in query(
            prom, "sum by (mark) (conntrack_tracker_closed_packets_total)").items()})
    return 0 if ok else 1


def main(argv):
    if len(argv) >= 2 and argv[0] == "wait" and len(argv) == 5:
        return wait(*argv[1:])
    if len(argv) == 3 and argv[0] == "connections":
        return connections(argv[1], argv[2])
    if len(argv) == 3 and argv[0] == "closed":
        return closed(argv[1], argv[2])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
