//! Deterministic corpus of Segment-style analytics events for the benches.
//!
//! Everything is generated from a seeded xorshift64* generator, so every run
//! (and every machine) benches the same bytes. The JSON is written by hand,
//! not through serde, so it carries what real clients send and a
//! re-serialiser would not produce: `12.50`, `1e3`, `-2.5E-1`, escapes
//! (`\"`, `\\`, `\n`, `\u00e9`, `\/`), raw UTF-8 (`Café – Über`, emoji).
//!
//! Lives in `benches/corpus/mod.rs` (not `benches/corpus.rs`) so that cargo
//! does not auto-discover it as a bench target of its own.

use std::fmt::Write as _;

/// xorshift64* (Vigna). Tiny, fast, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Never zero (a fixed point of xorshift).
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15 | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `0..n` (modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A generated body and the raw values that the realistic rules must
/// pseudonymise (`userId`, `anonymousId`, `traits.email`): none of them may
/// appear in scrim's output.
pub struct Body {
    pub bytes: Vec<u8>,
    pub secrets: Vec<String>,
}

// Word lists. Entries are JSON string *contents*, already escaped where needed.
const FIRST: &[&str] = &[
    "Alice", "Bob", "Zoe", "Chloe", "Jonas", "Mateo", "Aiko", "Noah", "Lea", "Omar", "Ines",
    "Yusuf",
];
const LAST: &[&str] = &[
    "Smith", "Mueller", "Dubois", "Rossi", "Tanaka", "Garcia", "Novak", "Berg", "Okafor", "Silva",
];
const FULL_NAMES: &[&str] = &[
    "Zoë Müller",
    "Chloé Dubois",
    "Jürgen O\\u0027Brien",
    "Aiko 田中",
    "Mateo García",
    "Ines Ångström",
    "Bob \\\"Bobby\\\" Smith",
    "Léa Ørsted",
];
const DOMAINS: &[&str] = &[
    "Example.com",
    "example.org",
    "MAIL.example.net",
    "posteo.example.de",
    "exämple.ch",
];
const PLANS: &[&str] = &["free", "pro", "premium", "enterprise"];
const LOCALES: &[&str] = &["de-CH", "fr-FR", "en-US", "ja-JP", "pt-BR", "sv-SE"];
const TITLES: &[&str] = &[
    "Café – Über uns",
    "Checkout · Schritt 2/3",
    "Crème brûlée \\u0026 Co.",
    "Warenkorb (3) – Boutique Zürich",
    "ご注文の確認",
    "Angebote 🎉 Black Friday",
];
const PATHS: &[&str] = &[
    "/de/checkout",
    "/fr/panier",
    "/en/products/espresso-doppio",
    "/ja/cart",
    "/pricing",
    "/blog/2025/11/caf%C3%A9-guide",
];
const EVENTS: &[&str] = &[
    "Order Completed",
    "Product Viewed",
    "Product Added",
    "Checkout Step Viewed",
    "Signed Up",
    "Coupon Applied",
];
const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
];
const PRODUCTS: &[&str] = &[
    "Espresso \\\"Doppio\\\" – 250 g",
    "Café crème, Bohnen",
    "Milchschäumer 2\\u00d7",
    "Mug ☕ 350 ml",
    "Filter papers \\\\ size 4",
    "Grinder\\/Mühle Pro",
];
const CATEGORIES: &[&str] = &["Coffee", "Equipment", "Accessories", "Gifts"];
const NOTES: &[&str] = &[
    "He said \\\"hi\\\" \\\\ then left.\\nSecond line: caf\\u00e9 🎉",
    "Lieferung bitte an die Rezeption\\tEG – danke! 🚀",
    "path C:\\\\Users\\\\cafe\\\\order.txt\\r\\n",
    "emoji soup 😀😃😄 and a surrogate pair \\ud83d\\ude00",
    "",
];
const CITIES: &[(&str, &str, &str)] = &[
    ("Zürich", "8001", "CH"),
    ("Genève", "1204", "CH"),
    ("München", "80331", "DE"),
    ("Lyon", "69002", "FR"),
    ("São Paulo", "01310-100", "BR"),
];

fn hex(rng: &mut Rng, out: &mut String, n: usize) {
    const H: &[u8; 16] = b"0123456789abcdef";
    for _ in 0..n {
        out.push(H[rng.below(16) as usize] as char);
    }
}

fn uuid(rng: &mut Rng) -> String {
    let mut s = String::with_capacity(36);
    for (i, n) in [8, 4, 4, 4, 12].iter().enumerate() {
        if i > 0 {
            s.push('-');
        }
        hex(rng, &mut s, *n);
    }
    s
}

/// An RFC 3339 time on 2025-11-30, `seq` seconds after 08:00, some with
/// fractional seconds, some with an offset.
fn timestamp(rng: &mut Rng, seq: u64) -> String {
    let secs = 8 * 3600 + seq % (15 * 3600);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match rng.below(3) {
        0 => format!("2025-11-30T{h:02}:{m:02}:{s:02}.{:03}Z", rng.below(1000)),
        1 => format!("2025-11-30T{h:02}:{m:02}:{s:02}Z"),
        _ => format!(
            "2025-11-30T{:02}:{m:02}:{s:02}.{:06}+01:00",
            (h + 1) % 24,
            rng.below(1_000_000)
        ),
    }
}

/// A price with two decimals, written as text (`12.50`, not `12.5`).
fn price(rng: &mut Rng) -> String {
    let cents = 99 + rng.below(20_000);
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Writes one event object.
///
/// `seq` makes ids unique; `track` picks the message type; `products` is the
/// number of line items; `sent_at` adds a per-event `sentAt` (single events
/// and NDJSON lines carry it, batch elements do not); `lean` leaves out the
/// optional extras (a lean track event with one product is about 1 KB, a full
/// one about 2 KB).
#[allow(clippy::too_many_arguments)]
pub fn event(
    rng: &mut Rng,
    seq: u64,
    track: bool,
    products: usize,
    sent_at: bool,
    lean: bool,
    out: &mut String,
    secrets: &mut Vec<String>,
) {
    let user_id = format!("user-{:06}-{:04}", seq, rng.below(10_000));
    let anon = uuid(rng);
    let first = *rng.pick(FIRST);
    let last = *rng.pick(LAST);
    let mut email = format!("{first}.{last}{}@{}", rng.below(1000), rng.pick(DOMAINS));
    if rng.chance(10) {
        email = format!("  {email} ");
    }
    secrets.push(user_id.clone());
    secrets.push(anon.clone());
    // The trimmed raw address and its normalised form must both be absent.
    secrets.push(email.trim().to_string());
    secrets.push(email.trim().to_lowercase());

    let ts = timestamp(rng, seq);
    let mut mid = String::from("ajs-next-17330");
    hex(rng, &mut mid, 24);

    out.push('{');
    let kind = if track { "track" } else { "identify" };
    let _ = write!(out, r#""type":"{kind}","#);
    if track {
        let _ = write!(out, r#""event":"{}","#, rng.pick(EVENTS));
    }
    let _ = write!(
        out,
        r#""userId":"{user_id}","anonymousId":"{anon}","messageId":"{mid}","timestamp":"{ts}","channel":"client","#
    );

    // context
    let ip = if rng.chance(80) {
        format!("203.0.{}.{}", rng.below(256), 1 + rng.below(254))
    } else {
        format!(
            "2001:db8:{:x}:{:x}::{:x}",
            rng.below(65536),
            rng.below(65536),
            rng.below(65536)
        )
    };
    let path = *rng.pick(PATHS);
    let camp =
        ["winter_sale", "newsletter_48", "retarget%20q4", "caf%C3%A9"][rng.below(4) as usize];
    let _ = write!(
        out,
        r#""context":{{"ip":"{ip}","library":{{"name":"analytics.js","version":"npm:next-1.{}.{}"}},"locale":"{}","page":{{"#,
        rng.below(80),
        rng.below(10),
        rng.pick(LOCALES),
    );
    let (w, h) = [(1920, 1080), (1440, 900), (390, 844), (2560, 1440)][rng.below(4) as usize];
    let title = rng.pick(TITLES);
    if lean {
        let _ = write!(
            out,
            concat!(
                r#""referrer":"https://www.google.com/","title":"{title}","#,
                r#""url":"https://shop.example.com{path}?utm_campaign={camp}"}},"#,
                r#""screen":{{"width":{w},"height":{h}}},"userAgent":"{ua}"}},"#
            ),
            title = title,
            path = path,
            camp = camp,
            w = w,
            h = h,
            ua = USER_AGENTS[3],
        );
    } else {
        let _ = write!(
            out,
            concat!(
                r#""path":"{path}","referrer":"https://www.google.com/search?q=caf%C3%A9+%C3%BCber&hl=de","#,
                r#""search":"?utm_source=newsletter&utm_medium=email&utm_campaign={camp}","title":"{title}","#,
                r#""url":"https://shop.example.com{path}?utm_source=newsletter&utm_medium=email&utm_campaign={camp}&cart=c-{cart}"}},"#,
                r#""screen":{{"width":{w},"height":{h},"density":{d}}},"timezone":"Europe/Zurich","userAgent":"{ua}"}},"#
            ),
            path = path,
            camp = camp,
            title = title,
            cart = rng.below(100_000),
            w = w,
            h = h,
            d = ["1", "2", "1.5", "3"][rng.below(4) as usize],
            ua = rng.pick(USER_AGENTS),
        );
    }

    // traits
    let (city, zip, country) = *rng.pick(CITIES);
    let _ = write!(
        out,
        concat!(
            r#""traits":{{"email":"{email}","name":"{name}","plan":"{plan}","phone":"+41 44 {a} {b} {c}","#,
            r#""address":{{"street":"Bahnhofstrasse {no}","city":"{city}","postalCode":"{zip}","country":"{country}"}}"#
        ),
        email = email,
        name = rng.pick(FULL_NAMES),
        plan = rng.pick(PLANS),
        a = 100 + rng.below(900),
        b = 10 + rng.below(90),
        c = 10 + rng.below(90),
        no = 1 + rng.below(120),
        city = city,
        zip = zip,
        country = country,
    );
    if !lean {
        let _ = write!(
            out,
            r#","createdAt":"2023-0{}-1{}T08:00:00Z","logins":{},"verified":{},"referrer":null"#,
            1 + rng.below(9),
            rng.below(10),
            rng.below(500),
            rng.chance(50),
        );
    }
    if !track {
        let _ = write!(
            out,
            r#","company":{{"name":"Kaffee & Co. AG","employees":{},"industry":"Retail"}},"age":{},"ltv":{}"#,
            5 + rng.below(5000),
            18 + rng.below(60),
            price(rng),
        );
    }
    out.push_str("},");

    // properties
    if track {
        let _ = write!(
            out,
            r#""properties":{{"order_id":"ord-{}","revenue":{},"total":1e3,"discount":-2.5E-1,"coupon":null,"currency":"CHF","is_gift":{},"#,
            rng.below(1_000_000_000),
            ["12.50", "99.00", "0.99", "1049.95"][rng.below(4) as usize],
            rng.chance(20),
        );
        if !lean {
            let _ = write!(
                out,
                concat!(
                    r#""subtotal":{sub},"shipping":4.90,"tax":0.0,"items":{items},"score":{score},"#,
                    r#""ratio":3.14159,"big":1234567890123,"tiny":2.5e-7,"#
                ),
                sub = price(rng),
                items = products,
                score = rng.below(100),
            );
        }
        out.push_str(r#""products":["#);
        for p in 0..products {
            if p > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                concat!(
                    r#"{{"product_id":"p-{pid}","sku":"SKU-{sku}","name":"{name}","price":{price},"quantity":{q},"#,
                    r#""category":"{cat}","in_stock":{stock},"variant":null,"tags":["roast","{tag}"],"#,
                    r#""dims":[[{x},{y}],[30.5,{z}]],"image_url":"https:\/\/cdn.example.com\/img\/{pid}.jpg?w=640&h=480"}}"#
                ),
                pid = rng.below(100_000),
                sku = rng.below(1_000_000),
                name = rng.pick(PRODUCTS),
                price = price(rng),
                q = 1 + rng.below(5),
                cat = rng.pick(CATEGORIES),
                stock = rng.chance(90),
                tag = ["dark", "single-origin", "décaféiné", "bio"][rng.below(4) as usize],
                x = rng.below(100),
                y = rng.below(100),
                z = rng.below(100),
            );
        }
        let _ = write!(out, r#"],"note":"{}","emoji":"🎉🚀☕""#, rng.pick(NOTES));
        if lean {
            out.push_str(r#","matrix":[[1,2],[3,[4,5e2]],[]]"#);
        } else {
            let _ = write!(
                out,
                concat!(
                    r#","matrix":[[1,2],[3,[4,5e2]],[],[true,false,null]],"#,
                    r#""experiments":{{"checkout_v2":"treatment","price_test":{{"bucket":{},"weight":0.25}}}},"meta":{{}}"#
                ),
                rng.below(10),
            );
        }
        out.push_str("},");
    }
    if lean {
        out.push_str(r#""integrations":{"All":true}"#);
    } else {
        let _ = write!(
            out,
            r#""integrations":{{"All":true,"Mixpanel":false,"Google Analytics":{{"clientId":"GA1.2.{}.{}"}}}}"#,
            rng.below(1_000_000_000),
            1_733_000_000 + seq
        );
    }
    if sent_at {
        let _ = write!(out, r#","sentAt":"{}""#, timestamp(rng, seq + 1));
    }
    out.push('}');
}

fn one_event(rng: &mut Rng, seq: u64, sent_at: bool, out: &mut String, secrets: &mut Vec<String>) {
    let track = rng.chance(75);
    let products = if track { rng.below(4) as usize } else { 0 };
    let lean = rng.chance(30);
    event(rng, seq, track, products, sent_at, lean, out, secrets);
}

/// One lean track event of about 1 KB (the first of the seeded stream in
/// 1000..=1200 bytes whose `note` is not empty, so it has escapes and emoji).
pub fn single_1k(seed: u64) -> Body {
    let mut rng = Rng::new(seed);
    for seq in 0..10_000 {
        let (mut out, mut secrets) = (String::new(), Vec::new());
        event(&mut rng, seq, true, 0, true, true, &mut out, &mut secrets);
        if (1000..=1200).contains(&out.len()) && !out.contains(r#""note":"""#) {
            return Body {
                bytes: out.into_bytes(),
                secrets,
            };
        }
    }
    panic!("corpus: no event of about 1 KB in the seeded stream");
}

/// `{"batch":[...],"sentAt":"..."}` with events appended until the body
/// reaches `target` bytes (so it ends a little above it).
pub fn batch(seed: u64, target: usize) -> Body {
    let mut rng = Rng::new(seed);
    let mut out = String::with_capacity(target + 4096);
    let mut secrets = Vec::new();
    out.push_str(r#"{"batch":["#);
    let mut seq = 0;
    // 60 bytes for the closing `],"sentAt":"..."}`.
    while out.len() + 60 < target {
        if seq > 0 {
            out.push(',');
        }
        one_event(&mut rng, seq, false, &mut out, &mut secrets);
        seq += 1;
    }
    let _ = write!(out, r#"],"sentAt":"{}"}}"#, timestamp(&mut rng, seq));
    Body {
        bytes: out.into_bytes(),
        secrets,
    }
}

/// NDJSON: one event per line (each with its own `sentAt`), `\n` after each,
/// until the body reaches `target` bytes.
pub fn ndjson(seed: u64, target: usize) -> Body {
    let mut rng = Rng::new(seed);
    let mut out = String::with_capacity(target + 4096);
    let mut secrets = Vec::new();
    let mut seq = 0;
    while out.len() < target {
        one_event(&mut rng, seq, true, &mut out, &mut secrets);
        out.push('\n');
        seq += 1;
    }
    Body {
        bytes: out.into_bytes(),
        secrets,
    }
}
