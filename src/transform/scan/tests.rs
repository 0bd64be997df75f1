use super::*;

fn tag(d: Detector, _: &str) -> String {
    format!("[{}]", d.name())
}

fn scan_all(text: &str) -> Option<String> {
    Scanner::new(DetectorSet::all()).scan(text, &mut tag)
}

fn scan_with(set: DetectorSet, text: &str) -> Option<String> {
    Scanner::new(set).scan(text, &mut tag)
}

fn kinds(text: &str) -> Vec<Detector> {
    let mut v = Vec::new();
    Scanner::new(DetectorSet::all()).scan(text, &mut |d, _| {
        v.push(d);
        String::new()
    });
    v
}

#[track_caller]
fn check(text: &str, expected: &str) {
    assert_eq!(scan_all(text).as_deref(), Some(expected), "input {text:?}");
}

#[track_caller]
fn none(text: &str) {
    assert_eq!(scan_all(text), None, "input {text:?}");
}

#[test]
fn names_and_sets() {
    for n in Detector::KIND_NAMES {
        assert_eq!(Detector::parse(n).map(Detector::name), Some(*n));
    }
    assert_eq!(Detector::NAMES, DetectorSet::NAMES);
    let mut set = DetectorSet::default();
    assert!(set.is_empty());
    assert!(set.parse_name("ip") && set.parse_name("email"));
    assert!(!set.parse_name("mac"));
    assert_eq!(
        set,
        DetectorSet::empty()
            .with(Detector::Ipv4)
            .with(Detector::Ipv6)
            .with(Detector::Email)
    );
    assert_eq!(Detector::parse("ip"), None);
    assert_eq!(Detector::parse("Email"), None);
    let ip = DetectorSet::parse("ip").unwrap_or_default();
    assert!(ip.contains(Detector::Ipv4) && ip.contains(Detector::Ipv6));
    assert_eq!(ip.iter().count(), 2);
    for n in DetectorSet::NAMES {
        assert!(DetectorSet::parse(n).is_some(), "{n}");
    }
    assert_eq!(DetectorSet::parse("mac"), None);
    assert_eq!(DetectorSet::all().iter().count(), 7);
    assert!(DetectorSet::empty().is_empty());
    let s: DetectorSet = [Detector::Email, Detector::Card].into_iter().collect();
    assert_eq!(format!("{s:?}"), r#"{"email", "card"}"#);
    assert_eq!(s.union(ip).iter().count(), 4);
    assert_eq!(Detector::SecretToken.to_string(), "secret");
}

#[test]
fn scanner_is_send_sync_debug() {
    fn assert_traits<T: Send + Sync + fmt::Debug + Clone>() {}
    assert_traits::<Scanner>();
    assert!(format!("{:?}", Scanner::new(DetectorSet::all())).contains("Scanner"));
}

#[test]
fn no_pii() {
    none("");
    none("hello world, nothing to see here (v1.2) -- 42 items, 3.5 stars!");
    none("The quick brown fox jumps over the lazy dog.");
    none("std::vector<int> and Foo::bar() are C++");
    none("at 12:30:45 on 2024-05-01 and 2024-05-01T13:45:12Z");
    none("pi is 3.14159265, e is 2.7182818");
    none("1.234.567 visitors in 1990-2024, order 1700000000");
    none("user@localhost and @handle and a@b");
    none("sk_live_short and ghp_abc");
    none("price: $1,234,567.89");
    none("uuid 123e4567-e89b-12d3-a456-426614174000");
    none("über straße café ✓ 日本語");
}

#[test]
fn emails() {
    check("mail alice@example.com now", "mail [email] now");
    check("Bob.Smith+tag@Mail.Example.co.uk.", "[email].");
    check("<a@b.de>, (x_y@z-q.org)", "<[email]>, ([email])");
    check("email=bob%40example.com&x=1", "email=[email]&x=1");
    check("mailto:jörg@bücher.de", "mailto:[email]");
    check(".alice@example.com", ".[email]");
    check("a@b@example.com", "a@[email]");
    // RFC 5322 punctuation inside the local part is part of the address;
    // quotes and braces around it are not.
    check("mary.o'neil@example.com", "[email]");
    check("alice!bob@example.com and a#b@x.io", "[email] and [email]");
    check("'alice@example.com'", "'[email]'");
    check("{alice@example.com}", "{[email]}");
    check("x=alice@example.com&y", "x=[email]&y");
    check("?email=alice@example.com", "?email=[email]");
    none("alice@example");
    none("alice@example.c");
    none("alice@192.168.1.1x");
}

#[test]
fn ipv4() {
    check("client 192.168.1.20 connected", "client [ipv4] connected");
    check("10.0.0.1:8080", "[ipv4]:8080");
    check("(10.0.0.1)", "([ipv4])");
    check("from 1.2.3.4.", "from [ipv4].");
    check("host 10.0.0.1.nip.io", "host [ipv4].nip.io");
    check("ip=010.001.002.003", "ip=[ipv4]");
    check("10.0.0.1-10.0.0.9", "[ipv4]-[ipv4]");
    // Version strings and longer dotted numbers are not addresses.
    check("Chrome/1.2.3.4 ok", "Chrome/[ipv4] ok");
    none("build1.2.3.4");
    none("version 1.2.3.4.5");
    none("v10.0.0.1");
    none("release 10.0.0.1.2");
    none("x.1.2.3.4");
    none("256.1.1.1 and 1.2.3 and 1.2.3.1000");
    none("1.2.3.4a");
}

#[test]
fn ipv6() {
    check("from 2001:db8::1 ok", "from [ipv6] ok");
    check("[2001:db8::1]:443", "[[ipv6]]:443");
    check("fe80::1%eth0", "[ipv6]%eth0");
    check("mapped ::ffff:192.0.2.1.", "mapped [ipv6].");
    check(
        "full 2001:0db8:85a3:0000:0000:8a2e:0370:7334",
        "full [ipv6]",
    );
    check("addr 2001:DB8::A:", "addr [ipv6]:");
    check("lo ::1", "lo [ipv6]");
    // A label and a colon in front: `ip:` is not part of the address.
    check("ip:2001:db8:1234:5678::abcd", "ip:[ipv6]");
    check("host:fe80::1%eth0", "host:[ipv6]%eth0");
    check("src:2001:db8::2 dst:2001:db8::3", "src:[ipv6] dst:[ipv6]");
    none("12:34:56 and 00:1a:2b:3c:4d:5e and a::: and ::");
    none("at 12:30:45:99");
    none("gfe80::1");
}

#[test]
fn cards() {
    check("card 4111 1111 1111 1111 exp", "card [card] exp");
    check("4111-1111-1111-1111", "[card]");
    check("4111111111111111", "[card]");
    check("amex 3782 822463 10005.", "amex [card].");
    check("4111111111111111 12/26", "[card] 12/26");
    // Card, expiry and code written together.
    check("4111111111111111:123", "[card]:123");
    check("4111111111111111/12", "[card]/12");
    check("4111111111111111,12/25,123", "[card],12/25,123");
    check("4111 1111 1111 1111:123", "[card]:123");
    check("4111-1111-1111-1111/0925", "[card]/0925");
    assert_eq!(kinds("pay 5555 5555 5555 4444 now"), vec![Detector::Card]);
    // Luhn-invalid 16 digits: neither a card nor (too long) a phone.
    none("4111 1111 1111 1112");
    none("1234 5678 9012 3456");
    none("1234567890123456");
    // Glued to other text.
    none("x4111111111111111");
    none("4111111111111111.5");
}

#[test]
fn ibans() {
    check(
        "IBAN GB82 WEST 1234 5698 7654 32 thanks",
        "IBAN [iban] thanks",
    );
    check("GB82WEST12345698765432", "[iban]");
    check("gb82west12345698765432", "[iban]");
    check("DE89 3704 0044 0532 0130 00.", "[iban].");
    check("to: NL91ABNA0417164300, ok", "to: [iban], ok");
    check("BE68 5390 0754 7034 then", "[iban] then");
    assert!(!kinds("GB83 WEST 1234 5698 7654 32").contains(&Detector::Iban));
    assert!(!kinds("QQ82 WEST 1234 5698 7654 32").contains(&Detector::Iban));
    none("XGB82WEST12345698765432");
}

#[test]
fn secrets() {
    let jwt =
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    check(
        &format!("Authorization: Bearer {jwt}"),
        "Authorization: Bearer [secret]",
    );
    check(&format!("t={jwt}."), "t=[secret].");
    check(
        "unsecured eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0. end",
        "unsecured [secret] end",
    );
    check("key AKIAIOSFODNN7EXAMPLE.", "key [secret].");
    check(
        "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE",
        "AWS_ACCESS_KEY_ID=[secret]",
    );
    check(
        "token ghp_abcdefghijklmnopqrstuvwxyz0123456789 here",
        "token [secret] here",
    );
    check("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "[secret]");
    check("xoxb-123456789012-abcdefghij", "[secret]");
    check("glpat-abcdefghij1234567890", "[secret]");
    check("AIzaSyA-1234567890abcdefghijklmno", "[secret]");
    none("xAKIAIOSFODNN7EXAMPLE");
    none("AKIA1234");
    // eyJ without the JWT structure is not reported.
    none("eyJhbGciOiJIUzI1NiJ9 alone");
    none("eyJhbGciOiJIUzI1NiJ9.only-two");
}

#[test]
fn phones() {
    check("call +44 20 7946 0958 now", "call [phone] now");
    check("call (020) 7946 0958 now", "call [phone] now");
    check("+1 (555) 123-4567", "[phone]");
    check("555-123-4567", "[phone]");
    check("555.123.4567", "[phone]");
    check("tel:+15551234567", "tel:[phone]");
    check("Phone:555-123-4567", "Phone:[phone]");
    check("+44 (0)20 7946 0958", "[phone]");
    check("+44 20 7946 0958 12:00", "[phone] 12:00");
    check("06 12 34 56 78", "[phone]");
    check("(call 555-1234)", "(call [phone])");
    check("(555-1234", "([phone]");
    check("1-800-555-0199", "[phone]");
    check("555-123-4567-ext", "[phone]-ext");
    check(
        "Tel. 0171/1234567 oder 030/12345678",
        "Tel. [phone] oder [phone]",
    );
    none("on 01/02/2024 and 2024/01/02 and 12/26");
    none("2024-05-01");
    none("01.05.2024");
    none("2024-05-01 13:45");
    none("1990-2024");
    none("order 1700000000");
    none("3.14159265");
    none("1.234.567");
    none("v1.2.3.4567");
    none("abc-555-1234");
    none("555-1234x");
    none("+12345");
    none("+1234567890123456");
}

#[test]
fn items_inside_longer_digit_runs() {
    check("10.1.2.3 4111 1111 1111 1111", "[ipv4] [card]");
    check("4111 1111 1111 1111 2024", "[card] 2024");
    check("10.1.2.3 555-123-4567", "[ipv4] [phone]");
    check("ref 123456789 555-123-4567", "ref 123456789 [phone]");
    check("555-123-4567 123456789", "[phone] 123456789");
    check("+44 20 7946 0958 12345", "[phone] 12345");
    check("2024-05-01 +44 20 7946 0958", "2024-05-01 [phone]");
    check("12345 (020) 7946 0958", "12345 [phone]");
    none("0.4111111111111111");
    none("12 34 56 78 90 12 34 56 78");
}

#[test]
fn overlaps_merge() {
    // The card-like digits are the local part of an email: one email.
    check("mail 4111111111111111@example.com", "mail [email]");
    // An IP inside a token is part of the token.
    check("ghp_aaaaaaaaaaaaaaaaaaaa/10.0.0.1", "[secret]");
    // A phone followed by an overlapping email: merged into one span.
    let mut seen = Vec::new();
    let out =
        Scanner::new(DetectorSet::all()).scan("x +1 555 123 4567@example.com y", &mut |d, m| {
            seen.push((d, m.to_owned()));
            "#".to_owned()
        });
    assert_eq!(out.as_deref(), Some("x # y"));
    assert_eq!(
        seen,
        vec![(Detector::Phone, "+1 555 123 4567@example.com".to_owned())]
    );
}

#[test]
fn mixed_text_and_counts() {
    let text = "From alice@example.com (10.1.2.3) to bob@example.org, card 4111 1111 1111 1111, \
                call +44 20 7946 0958, IBAN GB82 WEST 1234 5698 7654 32, key AKIAIOSFODNN7EXAMPLE, ip 2001:db8::7.";
    let (out, counts) = Scanner::new(DetectorSet::all())
        .scan_counted(text, &mut tag)
        .unwrap_or_default();
    assert_eq!(
        out,
        "From [email] ([ipv4]) to [email], card [card], call [phone], IBAN [iban], key [secret], ip [ipv6]."
    );
    assert_eq!(counts.get(Detector::Email), 2);
    assert_eq!(counts.get(Detector::Ipv4), 1);
    assert_eq!(counts.get(Detector::Ipv6), 1);
    assert_eq!(counts.get(Detector::Card), 1);
    assert_eq!(counts.get(Detector::Phone), 1);
    assert_eq!(counts.get(Detector::Iban), 1);
    assert_eq!(counts.get(Detector::SecretToken), 1);
    assert_eq!(counts.total(), 8);
}

#[test]
fn detector_subsets() {
    let text = "alice@example.com 10.1.2.3 4111 1111 1111 1111";
    assert_eq!(
        scan_with(Detector::Email.into(), text).as_deref(),
        Some("[email] 10.1.2.3 4111 1111 1111 1111")
    );
    assert_eq!(
        scan_with(DetectorSet::parse("ip").unwrap_or_default(), text).as_deref(),
        Some("alice@example.com [ipv4] 4111 1111 1111 1111")
    );
    assert_eq!(
        scan_with(Detector::Card.into(), text).as_deref(),
        Some("alice@example.com 10.1.2.3 [card]")
    );
    assert_eq!(scan_with(DetectorSet::empty(), text), None);
    assert_eq!(scan_with(Detector::Phone.into(), "alice@example.com"), None);
}

#[test]
fn fallback_without_automaton_matches() {
    let fast = Scanner::new(DetectorSet::all());
    let mut slow = fast.clone();
    slow.automaton = None;
    for text in [
        "mail alice@example.com and bob%40example.org",
        "key AKIAIOSFODNN7EXAMPLE and ghp_abcdefghijklmnopqrstuvwxyz0123",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig-sig_sig",
        "nothing here",
    ] {
        assert_eq!(
            fast.scan(text, &mut tag),
            slow.scan(text, &mut tag),
            "{text}"
        );
    }
}

#[test]
fn identity_replacement_round_trips() {
    let text = "a@b.cd 1.2.3.4 ::1 +44 20 7946 0958 4111111111111111 GB82WEST12345698765432 AKIAIOSFODNN7EXAMPLE é";
    let out = Scanner::new(DetectorSet::all()).scan(text, &mut |_, m| m.to_owned());
    assert_eq!(out.as_deref(), Some(text));
}

#[test]
fn pathological_inputs_stay_linear() {
    let s = Scanner::new(DetectorSet::all());
    let n = 200_000;
    let inputs = [
        "%40".repeat(n / 3),
        "a%40".repeat(n / 4),
        "eyJ-".repeat(n / 4),
        "eyJ.".repeat(n / 4),
        "ghp_.".repeat(n / 5),
        "AKIA".repeat(n / 4),
        "1 ".repeat(n / 2),
        "1.".repeat(n / 2),
        "1:".repeat(n / 2),
        "a:".repeat(n / 2),
        "GB82 ".repeat(n / 5),
        "(1) ".repeat(n / 4),
        "+1 ".repeat(n / 3),
        "x@".repeat(n / 2),
        "a.".repeat(n / 2) + "@",
        "@a.".repeat(n / 3),
        "9".repeat(n),
    ];
    let started = std::time::Instant::now();
    for text in &inputs {
        let _ = s.scan(text, &mut tag);
    }
    // Generous bound: quadratic behaviour would take minutes.
    assert!(
        started.elapsed().as_secs() < 20,
        "took {:?}",
        started.elapsed()
    );
}
