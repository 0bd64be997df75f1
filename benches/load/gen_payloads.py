#!/usr/bin/env python3
"""Writes the load-test payloads (deterministic: fixed seed).

  event-1k.json   one Segment-style identify+track event, about 1 KB
  batch-16k.json  a Segment /v1/batch body of such events, about 16 KB
  event.ndjson-line  the 1 KB event on one line (for the NDJSON streaming test)

Usage: gen_payloads.py OUTDIR
Every event carries the fields the benchmark rule sets act on (userId,
anonymousId, context.ip, context.userAgent, traits.email, traits.phone,
traits.address) plus properties with numbers (ints, decimals, exponents,
negatives), strings with JSON escapes (\\" \\n \\t \\\\ \\u00e9 \\ud83c\\udf70)
and raw non-ASCII UTF-8.
"""
import json
import random
import sys
import uuid

rng = random.Random(20240315)

FIRST = ["Zoé", "Bérangère", "Jürgen", "Søren", "Łukasz", "Ana", "Siobhán", "José", "Mei", "Olu"]
LAST = ["Dupont", "Müller", "Østergaard", "Nowak", "García", "Ó Briain", "Nakamura", "Okafor"]
AGENTS = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:124.0) Gecko/20100101 Firefox/124.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36",
]


def hexid(n):
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def ip():
    if rng.random() < 0.8:
        return "203.0.%d.%d" % (rng.randrange(256), rng.randrange(1, 255))
    return "2001:db8:85a3:%x:%x:8a2e:370:%x" % (rng.randrange(65536), rng.randrange(65536), rng.randrange(65536))


def event(i):
    fn, ln = rng.choice(FIRST), rng.choice(LAST)
    u = uuid.UUID(int=rng.getrandbits(128))
    return {
        "type": "track",
        "event": "Commande passée",
        "messageId": "ajs-" + hexid(32),
        "userId": "usr_" + hexid(13),
        "anonymousId": str(u),
        "timestamp": "2024-03-15T14:%02d:%02d.%03dZ" % (rng.randrange(60), rng.randrange(60), rng.randrange(1000)),
        "context": {
            "ip": ip(),
            "userAgent": rng.choice(AGENTS),
            "library": {"name": "analytics.js", "version": "2.11.1"},
            "os": {"name": "iOS", "version": "17.3"},
            "screen": {"width": 390, "height": 844, "density": 3},
            "locale": "fr-FR",
            "page": {"path": "/compte/réglages", "url": "https://shop.example/compte/r%C3%A9glages?ref=mail&utm_source=news"},
        },
        "traits": {
            "email": "  %s.%s%d@Example.FR " % (fn, ln.replace(" ", ""), i),
            "phone": "+33 6 %02d %02d %02d %02d" % tuple(rng.randrange(100) for _ in range(4)),
            "address": {"street": "12 rue de l'Église", "city": "Lyon", "postalCode": "69002"},
            "plan": rng.choice(["Premium", "free", "team"]),
        },
        "properties": {
            "order_id": hexid(24),
            "total": round(rng.uniform(1, 500), 2),
            "revenue": 2.750e1,
            "discount": -0.15,
            "quantity": rng.randrange(1, 9),
            "currency": "EUR",
            "name": 'Café "crème" ☕ \u00e9t\u00e9 \U0001F370',
            "note": "line one\nline two\ttabbed \\ backslash / slash",
            "coupon": None,
            "gift": rng.random() < 0.5,
            "tags": ["été", "promo", 42, 1.5e-3],
        },
    }


def main():
    out = sys.argv[1]
    one = event(0)
    # ensure_ascii=False keeps raw UTF-8 for most text; the escapes in
    # "name"/"note" become \" \n \t \\ as JSON requires. Add explicit \u
    # escapes too (json.dumps would write them raw), so both spellings occur.
    def dump(obj):
        s = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
        s = s.replace("été \U0001F370", "\\u00e9t\\u00e9 \\ud83c\\udf70")
        # Number spellings a float round trip would change: scrim must pass
        # kept numbers verbatim.
        return s.replace('"revenue":27.5', '"revenue":2.750e1').replace(",0.0015]", ",1.5E-3]")

    with open(out + "/event-1k.json", "w", encoding="utf-8") as f:
        f.write(dump(one))
    with open(out + "/event.ndjson-line", "w", encoding="utf-8") as f:
        f.write(dump(one))  # no newline: the caller repeats it with `yes`
    batch = {"batch": [], "sentAt": "2024-03-15T14:38:09.550Z",
             "context": {"library": {"name": "analytics-node", "version": "1.3.0"}}}
    i = 1
    # Grow to the event count closest to 16 KiB.
    while True:
        batch["batch"].append(event(i))
        i += 1
        if len(dump(batch).encode()) > 16 * 1024:
            longer = len(dump(batch).encode()) - 16 * 1024
            batch["batch"].pop()
            if 16 * 1024 - len(dump(batch).encode()) > longer:
                batch["batch"].append(event(i))
            break
    with open(out + "/batch-16k.json", "w", encoding="utf-8") as f:
        f.write(dump(batch))


main()
