#!/usr/bin/env python3
"""Checks what the upstream received in a load.sh check run.

Usage: check_capture.py MODE ORIGINAL CAPTURED
  MODE      keepall   the body must arrive byte for byte
            rewrite   userId, anonymousId, traits.email changed; context.ip
                      truncated (/24, /48); context.userAgent, traits.phone,
                      traits.address gone; every other field equal
  ORIGINAL  the payload file that was sent
  CAPTURED  the body the upstream logged
Prints one line; exits 1 on a failed check.
"""
import ipaddress
import json
import sys

REWRITTEN = {("userId",), ("anonymousId",), ("traits", "email"), ("context", "ip")}
DROPPED = {("context", "userAgent"), ("traits", "phone"), ("traits", "address")}


def events(doc):
    return doc["batch"] if isinstance(doc, dict) and "batch" in doc else [doc]


def get(d, path):
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def strip(d, paths):
    d = json.loads(json.dumps(d))
    for p in paths:
        parent = get(d, p[:-1]) if len(p) > 1 else d
        if isinstance(parent, dict):
            parent.pop(p[-1], None)
    return d


def main():
    mode, orig_path, cap_path = sys.argv[1:4]
    orig_raw = open(orig_path, "rb").read()
    cap_raw = open(cap_path, "rb").read()
    if mode == "keepall":
        if orig_raw != cap_raw:
            print("FAIL keepall: body changed (%d bytes in, %d out)" % (len(orig_raw), len(cap_raw)))
            return 1
        print("ok   keepall: %d bytes, byte for byte" % len(cap_raw))
        return 0
    orig, cap = json.loads(orig_raw), json.loads(cap_raw)
    problems = []
    oe, ce = events(orig), events(cap)
    if len(oe) != len(ce):
        problems.append("event count %d -> %d" % (len(oe), len(ce)))
    for i, (o, c) in enumerate(zip(oe, ce)):
        for p in DROPPED:
            if get(c, p) is not None:
                problems.append("event %d: %s still present" % (i, ".".join(p)))
        for p in REWRITTEN - {("context", "ip")}:
            ov, cv = get(o, p), get(c, p)
            if not isinstance(cv, str) or cv == ov or (ov and ov.strip().lower() in cv.lower()):
                problems.append("event %d: %s not pseudonymised" % (i, ".".join(p)))
        oip, cip = get(o, ("context", "ip")), get(c, ("context", "ip"))
        want = ipaddress.ip_network(oip + ("/24" if "." in oip else "/48"), strict=False).network_address
        try:
            ok = ipaddress.ip_address(cip) == want
        except (TypeError, ValueError):
            ok = False
        if not ok:
            problems.append("event %d: context.ip %r, want %s" % (i, cip, want))
        if strip(o, REWRITTEN | DROPPED) != strip(c, REWRITTEN | DROPPED):
            problems.append("event %d: kept fields differ" % i)
    if isinstance(orig, dict) and "batch" in orig:
        if strip(orig, {("batch",)}) != strip(cap, {("batch",)}):
            problems.append("batch envelope differs")
    verbatim = b'"revenue":2.750e1' in cap_raw and b"\\u00e9t\\u00e9 \\ud83c\\udf70" in cap_raw
    if problems:
        print("FAIL rewrite: " + "; ".join(problems[:8]))
        return 1
    print("ok   rewrite: %d event(s) checked; kept numbers/escapes verbatim: %s"
          % (len(ce), "yes" if verbatim else "no (re-serialised)"))
    return 0


sys.exit(main())
