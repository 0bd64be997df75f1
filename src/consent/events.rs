//! Where the events of a body are, as byte ranges, so withheld events can
//! be cut out of the caller's bytes before the engine reads them: what
//! stays passes on byte for byte (numbers, escapes, key order), and the
//! engine then validates and rewrites it as it would any body.
//!
//! The scan here only finds boundaries. Every event is parsed strictly
//! ([`serde_json`]) to be decided; what is kept (the events and the bytes
//! around them) is parsed again, strictly, by the engine, so a body the
//! scan misjudges is refused, never forwarded differently.

use std::ops::Range;

use crate::policy::aggregate::FieldPath;
use crate::policy::selector::canonical;

use super::DecideError;

/// Where a document's events are.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// The document is one event.
    Whole,
    /// The events are the elements of the `records` array: `items` are
    /// their ranges, `open` is just after its `[`, `close` is at its `]`.
    Array {
        /// The byte after `[`.
        open: usize,
        /// Each element.
        items: Vec<Range<usize>>,
        /// The `]`.
        close: usize,
    },
}

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scan<'_> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), DecideError> {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(DecideError::Unreadable)
        }
    }

    /// A string from its opening quote; its range with the quotes.
    fn string(&mut self) -> Result<Range<usize>, DecideError> {
        let start = self.i;
        if self.peek() != Some(b'"') {
            return Err(DecideError::Unreadable);
        }
        self.i += 1;
        loop {
            match self.peek().ok_or(DecideError::Unreadable)? {
                b'"' => {
                    self.i += 1;
                    return Ok(start..self.i);
                }
                b'\\' => self.i += 2,
                _ => self.i += 1,
            }
        }
    }

    /// Skips one value (without recursion, whatever its depth).
    fn value(&mut self) -> Result<(), DecideError> {
        let mut depth = 0usize;
        loop {
            self.ws();
            match self.peek().ok_or(DecideError::Unreadable)? {
                b'"' => {
                    self.string()?;
                }
                b'{' | b'[' => {
                    depth += 1;
                    self.i += 1;
                    continue;
                }
                b'}' | b']' => {
                    depth = depth.checked_sub(1).ok_or(DecideError::Unreadable)?;
                    self.i += 1;
                }
                b',' | b':' => {
                    if depth == 0 {
                        return Err(DecideError::Unreadable);
                    }
                    self.i += 1;
                    continue;
                }
                _ => {
                    let start = self.i;
                    while let Some(c) = self.peek() {
                        if b" \t\r\n,:[]{}\"".contains(&c) {
                            break;
                        }
                        self.i += 1;
                    }
                    if self.i == start {
                        return Err(DecideError::Unreadable);
                    }
                }
            }
            if depth == 0 {
                return Ok(());
            }
        }
    }

    /// In an object (at its `{`), finds the member whose key is `key` in
    /// canonical form; leaves the scan at its value. `None`: no such
    /// member, or not an object. Two such members: refused.
    fn member(&mut self, key: &str) -> Result<Option<usize>, DecideError> {
        self.ws();
        if self.peek() != Some(b'{') {
            return Ok(None);
        }
        self.i += 1;
        self.ws();
        if self.peek() == Some(b'}') {
            return Ok(None);
        }
        let mut found = None;
        loop {
            self.ws();
            let k = self.string()?;
            let name: String =
                serde_json::from_slice(&self.b[k]).map_err(|_| DecideError::Unreadable)?;
            self.expect(b':')?;
            self.ws();
            if canonical(&name) == key {
                // Parsers disagree on which of two equal keys wins.
                if found.is_some() {
                    return Err(DecideError::Unreadable);
                }
                found = Some(self.i);
            }
            self.value()?;
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => break,
                _ => return Err(DecideError::Unreadable),
            }
        }
        if let Some(at) = found {
            self.i = at;
        }
        Ok(found)
    }
}

/// The layout of one JSON document: with `records`, the elements of the
/// array at that path when the document has it (400 when it is not an
/// array); otherwise the document is one event.
pub(crate) fn layout(doc: &[u8], records: Option<&FieldPath>) -> Result<Layout, DecideError> {
    let Some(records) = records else {
        return Ok(Layout::Whole);
    };
    let mut s = Scan { b: doc, i: 0 };
    for key in &records.keys {
        if s.member(key)?.is_none() {
            return Ok(Layout::Whole);
        }
    }
    s.ws();
    if s.peek() != Some(b'[') {
        return Err(DecideError::RecordsNotArray(records.text.clone()));
    }
    s.i += 1;
    let open = s.i;
    let mut items = Vec::new();
    s.ws();
    if s.peek() == Some(b']') {
        return Ok(Layout::Array {
            open,
            items,
            close: s.i,
        });
    }
    loop {
        s.ws();
        let start = s.i;
        s.value()?;
        items.push(start..s.i);
        s.ws();
        match s.peek() {
            Some(b',') => s.i += 1,
            Some(b']') => {
                return Ok(Layout::Array {
                    open,
                    items,
                    close: s.i,
                });
            }
            _ => return Err(DecideError::Unreadable),
        }
    }
}

/// The parameters of a form body or query string, names and values
/// percent-decoded (`+` is a space).
pub(crate) fn form_params(b: &[u8]) -> Result<Vec<(String, String)>, DecideError> {
    let mut out = Vec::new();
    for pair in b.split(|c| *c == b'&').filter(|p| !p.is_empty()) {
        let (k, v) = match pair.iter().position(|c| *c == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        out.push((percent_decode(k)?, percent_decode(v)?));
    }
    Ok(out)
}

fn percent_decode(b: &[u8]) -> Result<String, DecideError> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(DecideError::Unreadable)?;
                out.push(hex);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| DecideError::Unreadable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(keys: &[&str]) -> FieldPath {
        FieldPath {
            text: keys.join("."),
            keys: keys.iter().map(|k| canonical(k)).collect(),
            span: 0..0,
        }
    }

    fn items(doc: &str, keys: &[&str]) -> Vec<String> {
        match layout(doc.as_bytes(), Some(&path(keys))).unwrap() {
            Layout::Array { items, .. } => items.into_iter().map(|r| doc[r].to_string()).collect(),
            Layout::Whole => vec!["<whole>".into()],
        }
    }

    #[test]
    fn finds_the_elements_of_the_records_array() {
        let doc = r#"{"sentAt":"x","batch":[{"a":[1,{"b":"]"}]}, 2 ,"s\"]"],"z":{}}"#;
        assert_eq!(
            items(doc, &["batch"]),
            [r#"{"a":[1,{"b":"]"}]}"#, "2", r#""s\"]""#]
        );
        assert_eq!(
            items(r#"{"B\u0061tch": [ ]}"#, &["batch"]),
            Vec::<String>::new()
        );
        assert_eq!(items(r#"{"d":{"events":[1]}}"#, &["d", "events"]), ["1"]);
        assert_eq!(items(r#"{"other":[1]}"#, &["batch"]), ["<whole>"]);
        assert_eq!(items(r#"[1,2]"#, &["batch"]), ["<whole>"]);
    }

    #[test]
    fn refuses_what_it_cannot_split_with_certainty() {
        let p = path(&["batch"]);
        for bad in [
            r#"{"batch":[1,2}"#,
            r#"{"batch":[1 2]}"#,
            r#"{"batch":[1],"batch":[2]}"#,
            r#"{"batch":[1,,2]}"#,
            r#"{"batch":[1,"#,
            r#"{"batch" [1]}"#,
        ] {
            assert!(layout(bad.as_bytes(), Some(&p)).is_err(), "{bad}");
        }
        assert_eq!(
            layout(br#"{"batch":{"a":1}}"#, Some(&p)),
            Err(DecideError::RecordsNotArray("batch".into()))
        );
    }

    #[test]
    fn form_parameters_are_decoded() {
        assert_eq!(
            form_params(b"a=1&consent=ads%2Cx+y&&b").unwrap(),
            [
                ("a".into(), "1".into()),
                ("consent".into(), "ads,x y".into()),
                ("b".into(), String::new())
            ]
        );
        assert!(form_params(b"a=%zz").is_err());
    }
}
