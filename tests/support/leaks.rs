//! The suite-wide leak audit.
//!
//! Every test binary that uses [`super::Gateway`] runs with scrim's logs
//! captured at the most verbose level (TRACE, dependencies included). Every
//! value a test sends through [`super::request`] (query values, header values,
//! body strings, form values, decoded and as written) joins a pool. When a
//! gateway is dropped at the end of a test, the captured logs, every error
//! body any test received, that gateway's `/metrics` and `/rules`, are
//! searched for any pooled value and for the gateway's key material (hex and
//! base64). A hit fails the test that dropped the gateway.
//!
//! The pool is shared by all tests of the binary, so a value sent by one test
//! that shows up in a log line written for another is still caught.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex, OnceLock};

use aho_corasick::AhoCorasick;
use base64::Engine as _;

/// Values shorter than this are too likely to match ordinary log words.
const MIN_LEN: usize = 6;
/// Long values are searched for by their first bytes.
const MAX_LEN: usize = 256;
/// Decompressed request bodies are read up to this size (bombs are sent too).
const MAX_INFLATE: u64 = 8 << 20;

/// Headers that carry framing or content negotiation, not anyone's data.
const STRUCTURAL_HEADERS: &[&str] = &[
    "accept",
    "accept-encoding",
    "connection",
    "content-encoding",
    "content-length",
    "content-type",
    "expect",
    "host",
    "te",
    "transfer-encoding",
    "upgrade",
    "user-agent",
];

/// An in-memory log writer for a tracing subscriber.
#[derive(Clone, Default)]
pub struct Capture(pub Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// What the audit has collected for this test binary.
pub struct Audit {
    logs: Capture,
    /// The capture is this binary's global subscriber (a test that installs
    /// its own, such as `no_leaks.rs`, audits its logs itself).
    pub capturing: bool,
    sent: Mutex<BTreeSet<String>>,
    error_bodies: Mutex<Vec<String>>,
}

/// The audit of this test binary; installs the log capture on first use.
pub fn audit() -> &'static Audit {
    static AUDIT: OnceLock<Audit> = OnceLock::new();
    AUDIT.get_or_init(|| {
        let logs = Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(scrim::ops::log_filter("trace"))
            .with_writer(logs.clone())
            .with_ansi(false)
            .finish();
        let capturing = tracing::subscriber::set_global_default(subscriber).is_ok();
        Audit {
            logs,
            capturing,
            sent: Mutex::default(),
            error_bodies: Mutex::default(),
        }
    })
}

impl Audit {
    /// Pools the values of a request a test is about to send.
    pub fn record_request(&self, uri: &str, headers: &[(&str, &str)], body: &[u8]) {
        let mut found = Vec::new();
        if let Some((_, query)) = uri.split_once('?') {
            form_values(query.as_bytes(), &mut found);
        }
        let mut encoding = None;
        let mut form = false;
        for (name, value) in headers {
            let name = name.to_ascii_lowercase();
            match name.as_str() {
                "content-encoding" => encoding = Some(value.trim().to_ascii_lowercase()),
                "content-type" => form = value.contains("form-urlencoded"),
                _ => {}
            }
            if STRUCTURAL_HEADERS.contains(&name.as_str()) {
                continue;
            }
            found.push(value.to_string());
            // `a=1; b=2` and `x, y`: the values, not the parameter names.
            for part in value.split([';', ',']) {
                let part = part.trim();
                match part.split_once('=') {
                    Some((_, v)) => found.push(v.trim().to_string()),
                    None => found.push(part.to_string()),
                }
            }
        }
        let body = match encoding.as_deref() {
            Some("gzip") => inflate(flate2::read::GzDecoder::new(body)),
            Some("deflate") => inflate(flate2::read::ZlibDecoder::new(body)),
            _ => body.to_vec(),
        };
        body_values(&body, form, &mut found);
        let mut sent = self.sent.lock().unwrap();
        for v in found {
            let v = v.trim();
            if v.len() >= MIN_LEN {
                sent.insert(truncate(v).to_string());
            }
        }
    }

    /// Keeps an error body a client received, to be searched.
    pub fn record_error_body(&self, body: &[u8]) {
        self.error_bodies
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(body).into_owned());
    }

    /// Searches logs, error bodies and the given texts for pooled values and
    /// for the key material. Returns one line per finding.
    pub fn findings(&self, texts: &[(&str, String)], secret_hex: &str) -> Vec<String> {
        let mut needles: Vec<(String, String)> = self
            .sent
            .lock()
            .unwrap()
            .iter()
            .map(|v| (v.clone(), format!("sent value {v:?}")))
            .collect();
        for (form, label) in key_forms(secret_hex) {
            needles.push((form, format!("key material ({label})")));
        }
        let matcher =
            AhoCorasick::new(needles.iter().map(|(n, _)| n.as_str())).expect("needle automaton");
        let logs = String::from_utf8_lossy(&self.logs.0.lock().unwrap()).into_owned();
        let mut places: Vec<(&str, &str)> = vec![("logs", logs.as_str())];
        let bodies = self.error_bodies.lock().unwrap().clone();
        places.extend(bodies.iter().map(|b| ("an error body", b.as_str())));
        places.extend(texts.iter().map(|(p, t)| (*p, t.as_str())));
        let mut out = BTreeSet::new();
        for (place, text) in places {
            for m in matcher.find_overlapping_iter(text) {
                let line = line_around(text, m.start());
                out.insert(format!(
                    "{} appears in {place}: {line}",
                    needles[m.pattern().as_usize()].1
                ));
            }
        }
        out.into_iter().collect()
    }

    /// How many values are pooled (for the audit's own test).
    pub fn pooled(&self) -> usize {
        self.sent.lock().unwrap().len()
    }

    /// The captured log output so far (empty when another subscriber is
    /// this binary's global one).
    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&self.logs.0.lock().unwrap()).into_owned()
    }

    /// Bytes of captured log output.
    pub fn log_len(&self) -> usize {
        self.logs.0.lock().unwrap().len()
    }
}

/// Runs the audit over logs, error bodies, `/metrics` and `/rules` when a
/// test's gateway goes away; a finding fails that test.
pub struct AuditOnDrop {
    pub state: Arc<scrim::proxy::State>,
    pub secret_hex: String,
}

impl Drop for AuditOnDrop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let texts = [
            ("/metrics", self.state.metrics.encode()),
            (
                "/rules",
                scrim::ops::admin::rules_json(&scrim::proxy::admin_view(&self.state)),
            ),
        ];
        let findings = audit().findings(&texts, &self.secret_hex);
        assert!(
            findings.is_empty(),
            "leak audit: {} finding(s):\n{}",
            findings.len(),
            findings.join("\n")
        );
    }
}

fn truncate(v: &str) -> &str {
    if v.len() <= MAX_LEN {
        return v;
    }
    let mut end = MAX_LEN;
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    &v[..end]
}

fn line_around(text: &str, at: usize) -> String {
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    truncate(&text[start..end]).to_string()
}

fn inflate(mut r: impl Read) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = (&mut r).take(MAX_INFLATE).read_to_end(&mut out);
    out
}

/// Hex and base64 spellings of a key secret.
fn key_forms(secret_hex: &str) -> Vec<(String, &'static str)> {
    let bytes: Vec<u8> = (0..secret_hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(&secret_hex[2 * i..2 * i + 2], 16).ok())
        .collect();
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&bytes);
    let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
    vec![
        (secret_hex.to_ascii_lowercase(), "hex"),
        (secret_hex.to_ascii_uppercase(), "HEX"),
        (b64, "base64"),
        (b64url, "base64url"),
    ]
}

fn percent_decode(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => {
                match std::str::from_utf8(&s[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn form_values(s: &[u8], out: &mut Vec<String>) {
    for pair in s.split(|&b| b == b'&' || b == b';') {
        let value = match pair.iter().position(|&b| b == b'=') {
            Some(i) => &pair[i + 1..],
            None => pair,
        };
        out.push(String::from_utf8_lossy(value).into_owned());
        out.push(percent_decode(value));
    }
}

fn json_strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => {
            out.push(s.clone());
            // Embedded documents: their values count too.
            if let Ok(inner) = serde_json::from_str::<serde_json::Value>(s) {
                json_strings(&inner, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| json_strings(v, out)),
        serde_json::Value::Object(o) => o.values().for_each(|v| json_strings(v, out)),
        serde_json::Value::Number(n) => out.push(n.to_string()),
        _ => {}
    }
}

fn body_values(body: &[u8], form: bool, out: &mut Vec<String>) {
    if form {
        form_values(body, out);
        return;
    }
    // Valid JSON, or NDJSON line by line: the decoded strings.
    for line in body.split(|&b| b == b'\n') {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) {
            json_strings(&v, out);
        }
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        json_strings(&v, out);
    }
    // Anything (invalid JSON too): the strings as written, keys excepted.
    quoted_values(body, out);
}

/// The contents of `"..."` strings not followed by `:` (not keys).
fn quoted_values(body: &[u8], out: &mut Vec<String>) {
    let mut i = 0;
    while let Some(open) = body[i..].iter().position(|&b| b == b'"') {
        let start = i + open + 1;
        let mut j = start;
        while j < body.len() && body[j] != b'"' {
            j += if body[j] == b'\\' { 2 } else { 1 };
        }
        let end = j.min(body.len());
        let after = body[(end + 1).min(body.len())..]
            .iter()
            .find(|b| !b.is_ascii_whitespace());
        if after != Some(&b':') {
            out.push(String::from_utf8_lossy(&body[start..end]).into_owned());
        }
        i = end + 1;
        if i >= body.len() {
            break;
        }
    }
}
