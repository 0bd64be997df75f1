#!/usr/bin/env python3
"""Turns an h2load run into the RESULT line that post.lua prints for wrk.

    h2load_result.py H2LOAD_STDOUT LOG_FILE SECONDS

h2load reports requests and req/s but no percentiles; its --log-file has one
line per request (start time in microseconds since the epoch, status code,
microseconds until the response ended), from which p50/p90/p99/max are
taken. Non-2xx statuses are counted by class, as h2load reports them.
"""
import re
import sys

out_path, log_path, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
text = open(out_path, errors="replace").read()

m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", text)
req = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", text)
codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
if not (m and req and codes):
    sys.stdout.write("h2load output not understood: %s\n" % text[-400:].replace("\n", " "))
    sys.exit(1)

lat = []
try:
    for line in open(log_path):
        f = line.split("\t")
        if len(f) >= 3:
            lat.append(int(f[2]))
except FileNotFoundError:
    pass
lat.sort()


def pct(p):
    if not lat:
        return 0
    return lat[min(len(lat) - 1, int(len(lat) * p / 100.0))]


done = int(req.group(2))
duration_us = int(float(m.group(1)) * (1000 if m.group(2) == "ms" else 1_000_000))
rps = float(m.group(3))
c2, c3, c4, c5 = (int(x) for x in codes.groups())
non2xx = c3 + c4 + c5
statuses = ",".join("%s:%d" % (k, v) for k, v in (("3xx", c3), ("4xx", c4), ("5xx", c5)) if v) or "-"
failed, errored, timeout = int(req.group(4)), int(req.group(5)), int(req.group(6))
sys.stdout.write(
    "RESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d "
    "non2xx=%d statuses=%s err_connect=%d err_read=%d err_write=0 err_timeout=%d err_status=0\n"
    % (done, duration_us, rps, pct(50), pct(90), pct(99), lat[-1] if lat else 0,
       non2xx, statuses, errored, failed - errored if failed > errored else 0, timeout)
)
