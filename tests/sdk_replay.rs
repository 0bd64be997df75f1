//! Requests captured from partners' official SDKs (tests/data/sdk/, see its
//! README), replayed byte for byte through the gateway with the shipped rule
//! files: the partner gets the request, with the identifiers in pseudonymous
//! form, the event names kept, the credentials the gateway injects, and
//! nothing the rules do not allow. No raw identifier of a fixture may appear
//! in anything forwarded, also inside percent-encoding, gzip, base64 or JSON
//! embedded in a string.

mod support;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Once;

use base64::Engine as _;
use serde_json::Value;
use sha2::Digest as _;
use support::*;

/// Credentials the gateway injects (set in its environment here).
const MIXPANEL_AUTH: &str = "Basic aW5qZWN0ZWQtc2EtdXNlcjppbmplY3RlZC1zZWNyZXQ=";
const TIKTOK_TOKEN: &str = "injected-tiktok-access-token-5e1d";
const SEGMENT_AUTH: &str = "Basic aW5qZWN0ZWQtd3JpdGUta2V5Og==";
const META_AUTH: &str = "Bearer injected-meta-token-7b2c";

/// Raw identifiers and caller-held secrets used in the fixtures: none may
/// leave the gateway in any form.
const RAW: &[&str] = &[
    "user-8841",
    "user-8842",
    "user-0007",
    "anon-42f1-fake",
    "dev-7c1e-0000-fake",
    "duid-0000-fake",
    "nuid-0000-fake",
    "jo.tester@example.com",
    "+1 555 010 0199",
    "15550100199",
    "Jo Tester",
    "198.51.100.23",
    "Mozilla/5.0 (X11; Linux x86_64) Fake/1.0",
    "fake-api-secret-0003",
    "fake-api-key-0003",
    "fake-sa-secret-0004",
    "fake-write-key-0001",
    "fake-access-token-0001",
    "fake-caller-access-token-0001",
    "session=fake0001",
];

fn sdk_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/sdk")
}

/// One captured request.
struct Fixture {
    name: String,
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn fixtures(partner: &str) -> Vec<Fixture> {
    let dir = sdk_dir().join(partner);
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no fixtures for {partner}");
    names
        .iter()
        .map(|p| {
            let head: Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
            let s = |k: &str| head[k].as_str().unwrap().to_string();
            Fixture {
                name: p.file_stem().unwrap().to_str().unwrap().to_string(),
                method: s("method"),
                path: s("path"),
                query: s("query"),
                headers: head["headers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| {
                        (
                            h[0].as_str().unwrap().to_string(),
                            h[1].as_str().unwrap().to_string(),
                        )
                    })
                    .collect(),
                body: std::fs::read(p.with_extension("body")).unwrap(),
            }
        })
        .collect()
}

/// The shipped rule file of `recipient`, sending to `upstream`.
fn shipped_rule(recipient: &str, upstream: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("rules/{recipient}.toml"));
    let text = std::fs::read_to_string(&path).unwrap();
    let mut replaced = 0;
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with("upstream ") || l.starts_with("upstream=") {
                replaced += 1;
                format!("upstream = \"{upstream}\"")
            } else {
                l.to_string()
            }
        })
        .collect();
    assert_eq!(replaced, 1, "{recipient}: one upstream line");
    out.join("\n")
}

/// What the partner received, every layer decoded.
struct Forwarded {
    rec: Recorded,
    /// The body after Content-Encoding.
    body: Vec<u8>,
    /// The body's documents: the JSON body, or the form parameters as an
    /// object (string values; JSON in a string stays a string).
    doc: Value,
    /// Every string the partner could read: path, query (decoded), header
    /// values, body, and recursively each string value, its base64 decoding
    /// and its embedded JSON document.
    haystack: String,
}

impl Forwarded {
    fn header(&self, name: &str) -> Option<&str> {
        self.rec.header(name)
    }

    /// A form parameter (or JSON member) holding a JSON document, parsed.
    fn embedded(&self, key: &str) -> Value {
        let s = self.doc[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} missing: {}", self.doc));
        serde_json::from_str(s).unwrap()
    }

    fn assert_clean(&self, what: &str) {
        for raw in RAW {
            assert!(
                !self.haystack.contains(raw),
                "{what}: raw {raw:?} was forwarded:\n{}",
                self.haystack
            );
        }
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn parse_form(s: &str) -> Value {
    let mut m = serde_json::Map::new();
    for pair in s.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        m.insert(percent_decode(k), Value::String(percent_decode(v)));
    }
    Value::Object(m)
}

/// Appends every string in `v`, and what each decodes to, to `out`.
fn unwrap_strings(v: &Value, out: &mut String, depth: usize) {
    match v {
        Value::String(s) => {
            out.push_str(s);
            out.push('\n');
            if depth > 8 {
                return;
            }
            if let Ok(inner) = serde_json::from_str::<Value>(s) {
                unwrap_strings(&inner, out, depth + 1);
            }
            for engine in [
                &base64::engine::general_purpose::STANDARD,
                &base64::engine::general_purpose::URL_SAFE,
                &base64::engine::general_purpose::STANDARD_NO_PAD,
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ] {
                if let Ok(bytes) = engine.decode(s)
                    && let Ok(text) = String::from_utf8(bytes)
                {
                    out.push_str(&text);
                    out.push('\n');
                    if let Ok(inner) = serde_json::from_str::<Value>(&text) {
                        unwrap_strings(&inner, out, depth + 1);
                    }
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| unwrap_strings(x, out, depth)),
        Value::Object(o) => o.iter().for_each(|(k, x)| {
            out.push_str(k);
            out.push('\n');
            unwrap_strings(x, out, depth)
        }),
        _ => {}
    }
}

fn decode_forwarded(rec: Recorded) -> Forwarded {
    let body = match rec.header("content-encoding") {
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&rec.body[..])
                .read_to_end(&mut out)
                .unwrap();
            out
        }
        None => rec.body.clone(),
        Some(other) => panic!("unexpected content-encoding {other}"),
    };
    let text = String::from_utf8(body.clone()).expect("utf-8 body");
    let form = rec
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let doc = if text.is_empty() {
        Value::Null
    } else if form {
        parse_form(&text)
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("forwarded JSON: {e}: {text}"))
    };
    let (path, query) = rec.path.split_once('?').unwrap_or((&rec.path, ""));
    let mut haystack = format!("{}\n{}\n", percent_decode(path), percent_decode(query));
    for (_, v) in rec.headers.iter() {
        haystack.push_str(v.to_str().unwrap_or(""));
        haystack.push('\n');
    }
    haystack.push_str(&text);
    haystack.push('\n');
    unwrap_strings(&doc, &mut haystack, 0);
    unwrap_strings(&parse_form(query), &mut haystack, 0);
    Forwarded {
        rec,
        body,
        doc,
        haystack,
    }
}

fn set_credentials() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY (the std reason set_var is unsafe): set once, before any
        // gateway of this binary reads its environment.
        unsafe {
            std::env::set_var("MIXPANEL_IMPORT_AUTHORIZATION", MIXPANEL_AUTH);
            std::env::set_var("TIKTOK_ACCESS_TOKEN", TIKTOK_TOKEN);
            std::env::set_var("SEGMENT_WRITE_KEY_AUTH", SEGMENT_AUTH);
            std::env::set_var("META_CAPI_AUTHORIZATION", META_AUTH);
        }
    });
}

/// Sends fixture `f` to `recipient` through `gw`, as the SDK sent it (less
/// the headers the client sets itself).
async fn send_fixture(gw: &Gateway, recipient: &str, f: &Fixture) -> Resp {
    let headers: Vec<(&str, &str)> = f
        .headers
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.to_ascii_lowercase().as_str(),
                "host" | "content-length" | "connection"
            )
        })
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let q = if f.query.is_empty() {
        String::new()
    } else {
        format!("?{}", f.query)
    };
    let url = gw.url(&format!("/{recipient}{}{q}", f.path));
    send(
        &client(),
        request(&f.method, &url, &headers, f.body.clone()),
    )
    .await
}

/// Starts the gateway with the shipped rule file of `recipient` and replays
/// each of its fixtures; returns the gateway and, per fixture, what the
/// partner received.
async fn replay(recipient: &str) -> (Gateway, Vec<(String, Forwarded)>) {
    replay_with(recipient, |_| {}).await
}

/// [`replay`], each fixture changed by `patch` first (a consent value the
/// SDK request did not carry).
async fn replay_with(
    recipient: &str,
    patch: fn(&mut Fixture),
) -> (Gateway, Vec<(String, Forwarded)>) {
    set_credentials();
    let up = Upstream::ok().await;
    let rule = shipped_rule(recipient, &up.url());
    let gw = Gateway::start(&[(&format!("{recipient}.toml"), &rule)], Opts::default()).await;
    let mut out = Vec::new();
    for mut f in fixtures(recipient) {
        patch(&mut f);
        let before = up.records().len();
        let resp = send_fixture(&gw, recipient, &f).await;
        assert!(
            (200..300).contains(&resp.status),
            "{recipient}/{}: {} {}",
            f.name,
            resp.status,
            resp.text()
        );
        let recs = up.records();
        assert_eq!(
            recs.len(),
            before + 1,
            "{recipient}/{}: one request",
            f.name
        );
        let fwd = decode_forwarded(recs[before].clone());
        assert_eq!(fwd.rec.method, f.method, "{}", f.name);
        fwd.assert_clean(&format!("{recipient}/{}", f.name));
        out.push((f.name, fwd));
    }
    (gw, out)
}

fn get<'a>(all: &'a [(String, Forwarded)], name: &str) -> &'a Forwarded {
    &all.iter().find(|(n, _)| n == name).unwrap().1
}

fn sha256_hex(s: &str) -> String {
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn assert_absent(v: &Value, keys: &[&str], what: &str) {
    for k in keys {
        assert!(v.get(*k).is_none(), "{what}: {k} leaked: {v}");
    }
}

// ---------------------------------------------------------------------------

#[tokio::test]
async fn mixpanel_python_track_and_import() {
    let (gw, all) = replay("mixpanel").await;
    let p = |v: &str| gw.pseudonym("mixpanel", v);

    // /track, one event.
    let t = get(&all, "track");
    assert_eq!(t.rec.path, "/track");
    assert_eq!(t.doc["verbose"], "1");
    assert_eq!(t.doc["ip"], "0");
    let ev = t.embedded("data");
    assert_eq!(ev["event"], "Signup Completed");
    let props = &ev["properties"];
    assert_eq!(props["token"], "fake-project-token-0001");
    assert_eq!(props["distinct_id"], p("user-8841").as_str());
    assert_eq!(props["$device_id"], p("dev-7c1e-0000-fake").as_str());
    assert_eq!(props["$email"], p("jo.tester@example.com").as_str());
    assert_eq!(props["$phone"], p("15550100199").as_str());
    assert_eq!(props["ip"], "198.51.100.0");
    assert_eq!(props["$current_url"], "https://shop.example/welcome");
    assert_eq!(props["time"], 1713268800);
    assert_eq!(props["plan"], "pro");
    assert_eq!(props["order_total"], 27.5);
    assert_eq!(props["mp_country_code"], "DE");
    assert_eq!(props["$insert_id"], "4f2d1c3b-0000-4000-8000-00000000a001");
    assert_absent(props, &["$name"], "track");
    assert_eq!(t.header("authorization"), Some(MIXPANEL_AUTH));

    // /track, a batch from the BufferedConsumer (a JSON array).
    let b = get(&all, "track_batch").embedded("data");
    let evs = b.as_array().unwrap();
    assert_eq!(evs.len(), 2);
    assert_eq!(evs[0]["event"], "Page Viewed");
    assert_eq!(evs[0]["properties"]["distinct_id"], p("user-8841").as_str());
    assert_eq!(evs[0]["properties"]["page"], "/pricing");
    assert_eq!(
        evs[1]["properties"]["distinct_id"],
        p("anon-42f1-fake").as_str()
    );
    assert_eq!(evs[1]["properties"]["$user_id"], p("user-0007").as_str());

    // /import with the legacy API secret: the caller's basic auth and the
    // api_key in the body stay behind, the injected credentials go.
    let i = get(&all, "import_api_secret");
    assert_eq!(i.rec.path, "/import");
    assert_eq!(i.header("authorization"), Some(MIXPANEL_AUTH));
    assert_absent(&i.doc, &["api_key"], "import");
    let ev = i.embedded("data");
    assert_eq!(ev["event"], "Order Shipped");
    assert_eq!(ev["properties"]["carrier"], "DHL");
    assert_eq!(ev["properties"]["time"], 1711998000);

    // /import with a service account: project_id passes in the query.
    let s = get(&all, "import_service_account");
    assert_eq!(s.rec.path, "/import?project_id=3141592");
    assert_eq!(s.header("authorization"), Some(MIXPANEL_AUTH));
    assert_eq!(s.embedded("data")["event"], "Refund Issued");
    assert_eq!(
        s.embedded("data")["properties"]["distinct_id"],
        p("user-8842").as_str()
    );
}

#[tokio::test]
async fn mixpanel_profile_updates_are_not_a_path_that_leaves() {
    set_credentials();
    let up = Upstream::ok().await;
    let gw = Gateway::start(
        &[("mixpanel.toml", &shipped_rule("mixpanel", &up.url()))],
        Opts::default(),
    )
    .await;
    let resp = send(
        &client(),
        request(
            "POST",
            &gw.url("/mixpanel/engage"),
            &[("content-type", "application/x-www-form-urlencoded")],
            "data=%7B%22%24distinct_id%22%3A%22user-8841%22%7D",
        ),
    )
    .await;
    assert_eq!(resp.status, 404);
    up.assert_untouched();
}

#[tokio::test]
async fn tiktok_documented_example() {
    let (gw, all) = replay("tiktok").await;
    let f = get(&all, "complete_payment");
    assert_eq!(f.rec.path, "/open_api/v1.3/event/track/");
    assert_eq!(f.header("access-token"), Some(TIKTOK_TOKEN));
    let d = &f.doc;
    assert_eq!(d["event_source"], "web");
    assert_eq!(d["event_source_id"], "CFAKEPIXEL0000000001");
    assert_absent(d, &["test_event_code"], "tiktok");
    let ev = &d["data"][0];
    assert_eq!(ev["event"], "CompletePayment");
    assert_eq!(ev["event_id"], "1616318632825_357");
    assert_eq!(ev["event_time"], 1697782980);
    let u = &ev["user"];
    assert_eq!(u["email"], sha256_hex("jo.tester@example.com").as_str());
    assert_eq!(u["phone"], sha256_hex("15550100199").as_str());
    assert_eq!(
        u["external_id"],
        gw.pseudonym("tiktok", "user-8841").as_str()
    );
    assert_eq!(u["ip"], "198.51.100.0");
    assert_eq!(u["ttp"], "2F7h37YkS1j57AYSKTI7IHhJPYH");
    assert_absent(u, &["user_agent"], "tiktok user");
    assert_eq!(ev["page"]["url"], "http://demo.mywebsite.com/purchase");
    assert_eq!(ev["properties"]["value"], 16);
    assert_eq!(ev["properties"]["contents"][0]["content_id"], "1077218");
    assert_absent(&ev["properties"], &["description"], "tiktok properties");
}

#[tokio::test]
async fn snowplow_python_tracker_get_and_post() {
    let (gw, all) = replay("snowplow").await;
    let p = |v: &str| gw.pseudonym("snowplow", v);

    // GET /i: the event in the query string.
    for name in ["get_page_view", "get_struct"] {
        let g = get(&all, name);
        let (path, query) = g.rec.path.split_once('?').unwrap();
        assert_eq!(path, "/i");
        assert!(g.body.is_empty());
        let q = parse_form(query);
        assert_eq!(q["uid"], p("user-8841").as_str(), "{name}");
        assert_eq!(q["duid"], p("duid-0000-fake").as_str(), "{name}");
        assert_eq!(q["tnuid"], p("nuid-0000-fake").as_str(), "{name}");
        assert_eq!(q["ip"], "198.51.100.0", "{name}");
        assert_eq!(q["aid"], "shop", "{name}");
        // No embedded_json in [query]: contexts, user agent and title stay
        // behind.
        assert_absent(&q, &["ua", "cx", "co", "page"], name);
        let dtm = q["dtm"].as_str().unwrap().parse::<u64>().unwrap();
        assert_eq!(dtm % 3_600_000, 0, "{name}: dtm coarsened to the hour");
    }
    let g = parse_form(
        get(&all, "get_page_view")
            .rec
            .path
            .split_once('?')
            .unwrap()
            .1,
    );
    assert_eq!(g["e"], "pv");
    assert_eq!(g["url"], "https://shop.example/account");
    let g = parse_form(get(&all, "get_struct").rec.path.split_once('?').unwrap().1);
    assert_eq!(g["e"], "se");
    assert_eq!(g["se_ca"], "cart");
    assert_eq!(g["se_ac"], "add-to-basket");

    // POST tp2: payload_data; contexts kept with the email pseudonymised.
    for name in ["post_page_view", "post_struct"] {
        let f = get(&all, name);
        assert_eq!(f.rec.path, "/com.snowplowanalytics.snowplow/tp2");
        assert_eq!(
            f.doc["schema"],
            "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
        );
        let ev = &f.doc["data"][0];
        assert_eq!(ev["uid"], p("user-8841").as_str(), "{name}");
        assert_eq!(ev["ip"], "198.51.100.0", "{name}");
        assert_absent(ev, &["ua", "page"], name);
        let cx = base64::engine::general_purpose::STANDARD
            .decode(ev["cx"].as_str().unwrap())
            .unwrap();
        let cx: Value = serde_json::from_slice(&cx).unwrap();
        assert_eq!(
            cx["data"][0]["schema"],
            "iglu:com.example/user_context/jsonschema/1-0-0"
        );
        assert_eq!(cx["data"][0]["data"]["plan"], "pro");
        assert_eq!(
            cx["data"][0]["data"]["email"],
            p("jo.tester@example.com").as_str()
        );
    }
    assert_eq!(get(&all, "post_page_view").doc["data"][0]["e"], "pv");
    assert_eq!(
        get(&all, "post_struct").doc["data"][0]["se_ac"],
        "add-to-basket"
    );
}

#[tokio::test]
async fn segment_analytics_python_plain_and_gzip() {
    let (gw, all) = replay("segment").await;
    let p = |v: &str| gw.pseudonym("segment", v);
    for name in ["identify", "identify_gzip", "track", "track_gzip"] {
        let f = get(&all, name);
        assert_eq!(f.rec.path, "/v1/batch", "{name}");
        assert_eq!(f.header("authorization"), Some(SEGMENT_AUTH), "{name}");
        assert_absent(&f.doc, &["writeKey"], name);
        let m = &f.doc["batch"][0];
        assert_eq!(m["userId"], p("user-8841").as_str(), "{name}");
        assert_eq!(m["context"]["ip"], "198.51.100.0", "{name}");
        assert_absent(&m["context"], &["userAgent"], name);
    }
    let id = &get(&all, "identify_gzip").doc["batch"][0];
    assert_eq!(id["type"], "identify");
    assert_eq!(id["anonymousId"], p("anon-42f1-fake").as_str());
    assert_eq!(id["traits"]["email"], p("jo.tester@example.com").as_str());
    assert_eq!(id["traits"]["plan"], "pro");
    assert_absent(&id["traits"], &["name", "phone"], "identify traits");
    let tr = &get(&all, "track").doc["batch"][0];
    assert_eq!(tr["event"], "Order Completed");
    assert_eq!(tr["properties"]["total"], 27.5);
    assert_eq!(
        tr["properties"]["email"],
        p("jo.tester@example.com").as_str()
    );
    assert_absent(&tr["properties"], &["phone"], "track properties");
}

#[tokio::test]
async fn amplitude_python_sdk() {
    let (gw, all) = replay("amplitude").await;
    let f = get(&all, "track");
    assert_eq!(f.rec.path, "/2/httpapi");
    let ev = &f.doc["events"][0];
    assert_eq!(ev["event_type"], "Song Played");
    assert_eq!(
        ev["user_id"],
        gw.pseudonym("amplitude", "user-8841").as_str()
    );
    assert_eq!(
        ev["device_id"],
        gw.pseudonym("amplitude", "dev-7c1e-0000-fake").as_str()
    );
    assert_eq!(ev["ip"], "198.51.100.0");
    assert_eq!(ev["time"], 1713268800000u64);
    assert_eq!(ev["event_properties"]["genre"], "jazz");
    assert_eq!(
        ev["user_properties"]["email"],
        gw.pseudonym("amplitude", "jo.tester@example.com").as_str()
    );
    assert_absent(ev, &["location_lat", "location_lng"], "amplitude event");
    assert_absent(&ev["user_properties"], &["phone"], "amplitude user");
}

#[tokio::test]
async fn ga4_documented_example() {
    // The documented example carries no consent; GA4's own `consent` member
    // says the user granted ad_user_data.
    let (gw, all) = replay_with("ga4", |f| {
        let at = f.body.iter().position(|&b| b == b'{').unwrap() + 1;
        let consent = br#""consent":{"ad_user_data":"GRANTED"},"#;
        f.body.splice(at..at, consent.iter().copied());
    })
    .await;
    let f = get(&all, "tutorial_begin");
    let (path, query) = f.rec.path.split_once('?').unwrap();
    assert_eq!(path, "/mp/collect");
    let q = parse_form(query);
    assert_eq!(q["measurement_id"], "G-FAKE000001");
    assert_eq!(
        f.doc["client_id"],
        gw.pseudonym("ga4", "123456.7654321").as_str()
    );
    assert_eq!(f.doc["user_id"], gw.pseudonym("ga4", "user-8841").as_str());
    let ev = &f.doc["events"][0];
    assert_eq!(ev["name"], "tutorial_begin");
    assert_eq!(ev["params"]["session_id"], "123");
    assert_eq!(
        ev["params"]["page_location"],
        "https://shop.example/start?utm_source=newsletter"
    );
}

/// facebook-business posts a form whose `data` is a JSON array of JSON
/// strings, with match keys it already hashed. meta_capi.toml describes the
/// JSON body of the Conversions API and asks for advertising consent per
/// event; a form body names no consent parameter, so its events count as
/// without consent and are withheld: 202, and nothing reaches Meta.
#[tokio::test]
async fn meta_capi_facebook_business_form_is_withheld() {
    withheld("meta_capi").await;
}

/// The raw SDK requests of the advertising recipients carry no consent for
/// advertising: each is answered 202 `{"forwarded":0,"withheld":N}` and the
/// partner receives nothing.
#[tokio::test]
async fn ga4_documented_example_without_consent_is_withheld() {
    withheld("ga4").await;
}

async fn withheld(recipient: &str) {
    set_credentials();
    let up = Upstream::ok().await;
    let rule = shipped_rule(recipient, &up.url());
    let gw = Gateway::start(&[(&format!("{recipient}.toml"), &rule)], Opts::default()).await;
    for f in fixtures(recipient) {
        let resp = send_fixture(&gw, recipient, &f).await;
        assert_eq!(resp.status, 202, "{recipient}/{}: {}", f.name, resp.text());
        let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(v["forwarded"], 0, "{recipient}/{}", f.name);
        assert!(
            v["withheld"].as_u64().unwrap_or(0) >= 1,
            "{recipient}/{}",
            f.name
        );
    }
    assert!(
        up.records().is_empty(),
        "{recipient}: something was forwarded"
    );
}

/// Every fixture directory is replayed by a test above, and every shipped
/// forwarding rule file has fixtures.
#[test]
fn every_shipped_rule_file_has_fixtures() {
    let mut dirs: Vec<String> = std::fs::read_dir(sdk_dir())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    dirs.sort();
    let mut rules: Vec<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .map(|p| p.file_stem().unwrap().to_str().unwrap().to_string())
            .filter(|n| n != "example" && n != "stats")
            .collect();
    rules.sort();
    assert_eq!(dirs, rules);
    for d in &dirs {
        let readme = sdk_dir().join(d).join("README.md");
        assert!(readme.exists(), "{d} has no README naming its source");
    }
}

/// The raw-identifier check sees through the layers a partner decodes:
/// percent-encoding, base64 and JSON embedded in strings, gzip.
#[test]
fn the_leak_check_sees_through_encodings() {
    let inner = base64::engine::general_purpose::STANDARD
        .encode(r#"{"data":[{"data":{"email":"jo.tester@example.com"}}]}"#);
    let plain = format!(r#"{{"data":[{{"cx":"{inner}"}}]}}"#);
    let form = format!(
        "data={}",
        plain
            .bytes()
            .map(|b| format!("%{b:02X}"))
            .collect::<String>()
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, form.as_bytes()).unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "content-type",
        "application/x-www-form-urlencoded".parse().unwrap(),
    );
    headers.insert("content-encoding", "gzip".parse().unwrap());
    let rec = Recorded {
        method: "POST".into(),
        path: "/t?u=user%2D8841".into(),
        version: http::Version::HTTP_11,
        headers,
        body: gz.finish().unwrap(),
        complete: true,
        body_error: false,
    };
    let fwd = decode_forwarded(rec);
    assert!(fwd.haystack.contains("jo.tester@example.com"));
    assert!(fwd.haystack.contains("user-8841"));
    let caught = std::panic::catch_unwind(|| fwd.assert_clean("self-check"));
    assert!(caught.is_err());
}
