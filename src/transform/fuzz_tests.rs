//! Property-style tests: no function panics on arbitrary input, and a few
//! invariants hold. A tiny xorshift keeps the runs deterministic without
//! extra dependencies.

use super::*;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % (n as u64)).unwrap_or(0)
    }
}

/// Characters biased towards the syntax the transforms care about.
const ALPHABET: &[char] = &[
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '0', '1', '9', 'a', 'b', 'e', 'f', 'x', 'y',
    'z', 'A', 'B', 'G', 'K', 'I', 'S', 'T', 'Z', 't', 'J', '.', '.', ':', ':', '-', '-', '+', ' ',
    ' ', '@', '%', '/', '?', '#', '&', '=', '_', '(', ')', '[', ']', ',', '\\', '\n', '\u{0}', 'é',
    '✓', '日', '\u{a0}',
];

fn random_string(rng: &mut XorShift) -> String {
    let len = rng.below(48);
    if rng.below(4) == 0 {
        // Plain printable ASCII.
        (0..len)
            .map(|_| char::from(u8::try_from(32 + rng.below(95)).unwrap_or(b'?')))
            .collect()
    } else {
        (0..len)
            .map(|_| ALPHABET[rng.below(ALPHABET.len())])
            .collect()
    }
}

/// Mutates a known-interesting seed so that the validators see near misses.
fn mutate(rng: &mut XorShift, seed: &str) -> String {
    let mut chars: Vec<char> = seed.chars().collect();
    for _ in 0..=rng.below(3) {
        if chars.is_empty() {
            break;
        }
        let i = rng.below(chars.len());
        match rng.below(3) {
            0 => chars[i] = ALPHABET[rng.below(ALPHABET.len())],
            1 => {
                chars.remove(i);
            }
            _ => chars.insert(i, ALPHABET[rng.below(ALPHABET.len())]),
        }
    }
    chars.into_iter().collect()
}

const SEEDS: &[&str] = &[
    "203.0.113.77",
    "2001:db8:abcd:12::1",
    "::ffff:203.0.113.77",
    "2024-05-01T13:45:12.123+02:00",
    "2024-02-29t23:59:60z",
    "1700000000123",
    "-1.5e3",
    "24.999",
    "Alice@Example.COM",
    "https://user:pass@host:8443/p/a?x=1&v=2#f",
    "card 4111 1111 1111 1111 ip 10.0.0.1 tel +44 20 7946 0958",
    "GB82 WEST 1234 5698 7654 32",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig",
    "AKIAIOSFODNN7EXAMPLE bob%40example.org",
];

fn exercise(rng: &mut XorShift, s: &str, scanner: &Scanner, keep: &[String]) {
    let p4 = u8::try_from(rng.below(40)).unwrap_or(0);
    let p6 = u8::try_from(rng.below(140)).unwrap_or(0);
    if let Some(t) = truncate_ip(s, p4, p6) {
        assert_eq!(truncate_ip(&t, p4, p6).as_deref(), Some(t.as_str()));
    }
    for unit in [TimeUnit::Minute, TimeUnit::Hour, TimeUnit::Day] {
        if let Some(t) = coarsen_time_str(s, unit) {
            assert_eq!(coarsen_time_str(&t, unit).as_deref(), Some(t.as_str()));
        }
        if let Some(t) = coarsen_time_number(s, unit) {
            assert_eq!(coarsen_time_number(&t, unit).as_deref(), Some(t.as_str()));
        }
    }
    let _ = bucket(s, &[18, 25, 35, 45, 55, 65]);
    let _ = bucket_str(s, &[-5, 0, 5]);
    let _ = bucket(s, &[]);
    if let Some(m) = mask_email(s) {
        assert!(!m.contains('@'));
    }
    if let Some(u) = strip_query(s, keep) {
        assert_eq!(strip_query(&u, keep).as_deref(), Some(u.as_str()));
        assert!(!u.contains('#'));
    }
    if let Some(out) = scanner.scan(s, &mut |_, m| m.to_owned()) {
        assert_eq!(out, s);
    }
    let _ = scanner.scan(s, &mut |d, _| format!("<{}>", d.name()));
}

#[test]
fn never_panics_on_random_input() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let scanner = Scanner::new(DetectorSet::all());
    let keep = vec!["v".to_owned(), "x".to_owned()];
    for _ in 0..40_000 {
        let s = random_string(&mut rng);
        exercise(&mut rng, &s, &scanner, &keep);
    }
    for _ in 0..40_000 {
        let seed = SEEDS[rng.below(SEEDS.len())];
        let s = mutate(&mut rng, seed);
        exercise(&mut rng, &s, &scanner, &keep);
    }
}
