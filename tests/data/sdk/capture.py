#!/usr/bin/env python3
"""Captures the HTTP requests that partners' official Python SDKs send, as
fixtures for tests/sdk_replay.rs.

Each SDK is pointed at a capture server on 127.0.0.1 (a random port); every
request it makes is stored under tests/data/sdk/<partner>/ as two files:

  NAME.json  {"sdk": ..., "method": ..., "path": ..., "query": ...,
              "headers": [[name, value], ...]}   (as received, in order)
  NAME.body  the body bytes exactly as received (gzip included)

Every identifier below is made up (example.com, 555 numbers, 192.0.2.0/24,
198.51.100.0/24): no real personal data.

Usage (Python 3.11, one venv):
  python -m venv /tmp/sdkvenv
  /tmp/sdkvenv/bin/pip install mixpanel==5.4.1 snowplow-tracker==1.1.0 \
      segment-analytics-python==2.4.0 amplitude-analytics==1.3.0 \
      facebook-business==26.0.3
  /tmp/sdkvenv/bin/python tests/data/sdk/capture.py [partner ...]

TikTok's Events API and GA4's Measurement Protocol have no official Python
SDK on PyPI: their fixtures are the vendors' documented example requests,
written by `tiktok()` and `ga4()` below.
"""

import http.server
import json
import os
import sys
import threading
import urllib.parse
from importlib import metadata

HERE = os.path.dirname(os.path.abspath(__file__))

# What the capture server answers, per partner: the SDKs check the answer.
ANSWERS = {
    "mixpanel": b'{"status":1,"error":null}',
    "segment": b'{"success":true}',
    "amplitude": b'{"code":200,"events_ingested":1,"payload_size_bytes":10,"server_upload_time":1}',
    "meta_capi": b'{"events_received":1,"messages":[],"fbtrace_id":"AbCdEf"}',
    "snowplow": b"",
}


class Capture:
    """A capture server on 127.0.0.1; `requests` holds what it received."""

    def __init__(self, partner):
        self.partner = partner
        self.requests = []
        capture = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _record(self):
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n) if n else b""
                url = urllib.parse.urlsplit(self.path)
                capture.requests.append(
                    {
                        "method": self.command,
                        "path": url.path,
                        "query": url.query,
                        "headers": [[k, v] for k, v in self.headers.items()],
                        "body": body,
                    }
                )
                answer = ANSWERS.get(capture.partner, b"{}")
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = _record
            do_POST = _record

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def save(self, names, sdk):
        """Writes the captured requests as NAME.json + NAME.body, in order."""
        assert len(names) == len(self.requests), (names, len(self.requests))
        out = os.path.join(HERE, self.partner)
        os.makedirs(out, exist_ok=True)
        for name, r in zip(names, self.requests):
            # The port is random: write it as the partner's host would be.
            head = {k: v for k, v in r.items() if k != "body"}
            head["headers"] = [
                [k, "127.0.0.1" if k.lower() == "host" else v] for k, v in r["headers"]
            ]
            head["sdk"] = sdk
            with open(os.path.join(out, name + ".json"), "w") as f:
                json.dump(head, f, indent=1, ensure_ascii=False)
                f.write("\n")
            with open(os.path.join(out, name + ".body"), "wb") as f:
                f.write(r["body"])
        self.server.shutdown()


def version(dist):
    return f"{dist} {metadata.version(dist)}"


def mixpanel():
    import mixpanel as mp

    cap = Capture("mixpanel")
    host = cap.url.removeprefix("http://")
    consumer = mp.Consumer(
        events_url=cap.url + "/track",
        import_url=cap.url + "/import",
        api_host=host,
    )
    # http:// is mounted with the same retrying adapter as https:// in real
    # use; the SDK only mounts https://, which does not matter here.
    m = mp.Mixpanel("fake-project-token-0001", consumer=consumer)
    m._make_insert_id = lambda: "4f2d1c3b-0000-4000-8000-00000000a001"
    m._now = lambda: 1713270051.123
    m.track(
        "user-8841",
        "Signup Completed",
        {
            "$email": "jo.tester@example.com",
            "$name": "Jo Tester",
            "plan": "pro",
            "$os": "Linux",
            "$browser": "Firefox",
            "$current_url": "https://shop.example/welcome?ref=mail&email=jo.tester%40example.com",
            "$device_id": "dev-7c1e-0000-fake",
            "ip": "198.51.100.23",
            "mp_country_code": "DE",
            "$phone": "+1 555 010 0199",
            "order_total": 27.5,
        },
    )
    # The buffered consumer sends several events as one JSON array.
    buf = mp.BufferedConsumer(max_size=2, events_url=cap.url + "/track")
    mb = mp.Mixpanel("fake-project-token-0001", consumer=buf)
    mb._make_insert_id = lambda: "4f2d1c3b-0000-4000-8000-00000000a002"
    mb._now = lambda: 1713270052.5
    mb.track("user-8841", "Page Viewed", {"page": "/pricing", "$email": "jo.tester@example.com"})
    mb.track("anon-42f1-fake", "Page Viewed", {"page": "/docs", "$user_id": "user-0007"})
    buf.flush()
    # /import with the legacy API secret (basic auth, api_key in the body).
    mi = mp.Mixpanel("fake-project-token-0001", consumer=mp.Consumer(import_url=cap.url + "/import"))
    mi._make_insert_id = lambda: "4f2d1c3b-0000-4000-8000-00000000a003"
    mi.import_data(
        "fake-api-key-0003",
        "user-8841",
        "Order Shipped",
        1712000000,
        {"order_id": "ord-1001", "$email": "jo.tester@example.com", "carrier": "DHL"},
        api_secret="fake-api-secret-0003",
    )
    # /import with service-account credentials (basic auth, project_id query).
    creds = mp.ServiceAccountCredentials("fake-sa.user", "fake-sa-secret-0004", "3141592")
    ms = mp.Mixpanel(
        "fake-project-token-0001",
        consumer=mp.Consumer(import_url=cap.url + "/import", credentials=creds),
    )
    ms._make_insert_id = lambda: "4f2d1c3b-0000-4000-8000-00000000a004"
    ms.import_data(None, "user-8842", "Refund Issued", 1712000100, {"amount": 9.99})
    cap.save(["track", "track_batch", "import_api_secret", "import_service_account"], version("mixpanel"))


def segment():
    import segment.analytics as analytics
    from segment.analytics import Client

    cap = Capture("segment")
    for gzip in (False, True):
        c = Client(
            write_key="fake-write-key-0001",
            host=cap.url,
            sync_mode=True,
            gzip=gzip,
            max_retries=0,
        )
        c.identify(
            "user-8841",
            {"email": "jo.tester@example.com", "name": "Jo Tester", "plan": "pro", "phone": "+1 555 010 0199"},
            context={"ip": "198.51.100.23", "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Fake/1.0"},
            timestamp=None,
            anonymous_id="anon-42f1-fake",
            message_id="msg-0000-0001" if not gzip else "msg-0000-0003",
        )
        c.track(
            "user-8841",
            "Order Completed",
            {"total": 27.5, "currency": "EUR", "email": "jo.tester@example.com", "phone": "+1 555 010 0199"},
            context={"ip": "198.51.100.23"},
            message_id="msg-0000-0002" if not gzip else "msg-0000-0004",
        )
    _ = analytics
    cap.save(["identify", "track", "identify_gzip", "track_gzip"], version("segment-analytics-python"))


def amplitude():
    from amplitude import Amplitude, BaseEvent, Config, Identify, EventOptions

    cap = Capture("amplitude")
    cfg = Config(server_url=cap.url + "/2/httpapi", flush_queue_size=1, flush_max_retries=1)
    client = Amplitude("fake-amplitude-api-key-0001", configuration=cfg)
    client.track(
        BaseEvent(
            event_type="Song Played",
            user_id="user-8841",
            device_id="dev-7c1e-0000-fake",
            time=1713270051123,
            ip="198.51.100.23",
            insert_id="4f2d1c3b-0000-4000-8000-00000000b001",
            platform="Linux",
            event_properties={"genre": "jazz", "email": "jo.tester@example.com"},
            user_properties={"plan": "pro", "email": "jo.tester@example.com", "phone": "+1 555 010 0199"},
            location_lat=52.52,
            location_lng=13.40,
        )
    )
    client.flush()
    client.shutdown()
    _ = (Identify, EventOptions)
    cap.save(["track"], version("amplitude-analytics"))


def meta_capi():
    from facebook_business.api import FacebookAdsApi, FacebookSession
    from facebook_business.adobjects.serverside.event import Event
    from facebook_business.adobjects.serverside.event_request import EventRequest
    from facebook_business.adobjects.serverside.user_data import UserData
    from facebook_business.adobjects.serverside.custom_data import CustomData
    from facebook_business.adobjects.serverside.action_source import ActionSource

    cap = Capture("meta_capi")
    FacebookSession.GRAPH = cap.url
    FacebookAdsApi.init(access_token="fake-access-token-0001", crash_log=False)
    user = UserData(
        emails=["jo.tester@example.com"],
        phones=["+1 555 010 0199"],
        external_ids=["user-8841"],
        client_ip_address="198.51.100.23",
        client_user_agent="Mozilla/5.0 (X11; Linux x86_64) Fake/1.0",
        fbp="fb.1.1596403881668.1116446470",
        first_name="Jo",
        last_name="Tester",
    )
    event = Event(
        event_name="Purchase",
        event_time=1713270051,
        user_data=user,
        custom_data=CustomData(currency="eur", value=27.5),
        event_source_url="https://shop.example/checkout/done?order=ord-1001&email=jo.tester%40example.com",
        action_source=ActionSource.WEBSITE,
        event_id="evt-0001",
    )
    EventRequest(events=[event], pixel_id="1234567890123").execute()
    cap.save(["purchase"], version("facebook-business"))


def snowplow():
    from snowplow_tracker import Emitter, SelfDescribingJson, Snowplow, Subject, Tracker, StructuredEvent, PageView

    cap = Capture("snowplow")
    host = cap.url.removeprefix("http://")
    subject = Subject().set_user_id("user-8841").set_ip_address("198.51.100.23").set_lang("de").set_platform("srv")
    subject.set_useragent("Mozilla/5.0 (X11; Linux x86_64) Fake/1.0").set_domain_user_id("duid-0000-fake")
    subject.set_network_user_id("nuid-0000-fake")
    ctx = SelfDescribingJson(
        "iglu:com.example/user_context/jsonschema/1-0-0",
        {"email": "jo.tester@example.com", "plan": "pro"},
    )
    for method, name in (("get", "get"), ("post", "post")):
        emitter = Emitter(host, protocol="http", method=method, batch_size=1)
        tracker = Tracker(
            namespace="sdk-capture",
            emitters=emitter,
            app_id="shop",
            encode_base64=True,
            subject=subject,
        )
        tracker.track(
            PageView(
                page_url="https://shop.example/account?email=jo.tester%40example.com",
                page_title="Jo Tester's account",
                context=[ctx],
            )
        )
        tracker.track(
            StructuredEvent(category="cart", action="add-to-basket", label="sku-45790", value=27.5, context=[ctx])
        )
        tracker.flush()
        _ = (Snowplow, name)
    # 4 requests: 2 GET, then 2 POST
    cap.save(["get_page_view", "get_struct", "post_page_view", "post_struct"], version("snowplow-tracker"))


def write_fixture(partner, name, head, body):
    out = os.path.join(HERE, partner)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, name + ".json"), "w") as f:
        json.dump(head, f, indent=1, ensure_ascii=False)
        f.write("\n")
    with open(os.path.join(out, name + ".body"), "wb") as f:
        f.write(body)


def tiktok():
    """TikTok Events API 1.3: no official Python SDK on PyPI. The request of
    TikTok's documented curl example (POST /open_api/v1.3/event/track/,
    Access-Token header, JSON body), its placeholders filled with fake values.
    The match keys are raw, not hashed: scrim hashes them (rules/tiktok.toml)."""
    body = {
        "event_source": "web",
        "event_source_id": "CFAKEPIXEL0000000001",
        "test_event_code": "TEST12345",
        "data": [
            {
                "event": "CompletePayment",
                "event_time": 1697783008,
                "event_id": "1616318632825_357",
                "user": {
                    "ttclid": "E.C.P.fake0000000000000000000000000000",
                    "external_id": "user-8841",
                    "phone": "+1 555 010 0199",
                    "email": "jo.tester@example.com",
                    "ttp": "2F7h37YkS1j57AYSKTI7IHhJPYH",
                    "ip": "198.51.100.23",
                    "user_agent": "Chrome/91.0.4472.124",
                },
                "page": {
                    "url": "http://demo.mywebsite.com/purchase?email=jo.tester%40example.com",
                    "referrer": "http://demo.mywebsite.com/cart?session=fake0001",
                },
                "properties": {
                    "contents": [
                        {"content_id": "1077218", "content_type": "product", "content_name": "shirt", "price": 8, "quantity": 2}
                    ],
                    "content_type": "product",
                    "value": 16,
                    "currency": "USD",
                    "description": "gift for Jo Tester, call +1 555 010 0199",
                },
            }
        ],
    }
    head = {
        "method": "POST",
        "path": "/open_api/v1.3/event/track/",
        "query": "",
        "headers": [["Access-Token", "fake-caller-access-token-0001"], ["Content-Type", "application/json"]],
        "sdk": "documented example (TikTok Events API 1.3 curl example; no official Python SDK used)",
    }
    write_fixture("tiktok", "complete_payment", head, json.dumps(body, indent=2).encode())


def ga4():
    """GA4 Measurement Protocol: no official Python SDK on PyPI. The request
    of Google's documented example (POST /mp/collect?measurement_id=...&
    api_secret=..., JSON body), with fake ids and a page_location added."""
    body = {
        "client_id": "123456.7654321",
        "user_id": "user-8841",
        "events": [
            {
                "name": "tutorial_begin",
                "params": {
                    "session_id": "123",
                    "engagement_time_msec": "100",
                    "page_location": "https://shop.example/start?email=jo.tester%40example.com&utm_source=newsletter",
                },
            }
        ],
    }
    head = {
        "method": "POST",
        "path": "/mp/collect",
        "query": "measurement_id=G-FAKE000001&api_secret=fake-api-secret-0001",
        "headers": [["Content-Type", "application/json"]],
        "sdk": "documented example (GA4 Measurement Protocol; no official Python SDK)",
    }
    write_fixture("ga4", "tutorial_begin", head, json.dumps(body, indent=2).encode())


PARTNERS = {
    "mixpanel": mixpanel,
    "segment": segment,
    "amplitude": amplitude,
    "meta_capi": meta_capi,
    "snowplow": snowplow,
    "tiktok": tiktok,
    "ga4": ga4,
}

if __name__ == "__main__":
    for p in sys.argv[1:] or PARTNERS:
        PARTNERS[p]()
        print("captured", p)
