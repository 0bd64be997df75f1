//! The key ring: parsing, secrets, per-scope key derivation and the HMAC hot path.

use std::fmt;
use std::io::{self, Read as _};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest as _, Sha256};
use toml::de::{DeTable, DeValue};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

type HmacSha256 = Hmac<Sha256>;

/// The smallest secret a key ring accepts, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// The longest key id, in bytes. Ids match `[A-Za-z0-9_-]{1,32}`.
pub const MAX_KEY_ID_LEN: usize = 32;

/// The largest key ring file [`KeyRing::load`] reads (1 MiB).
pub const MAX_KEY_RING_BYTES: u64 = 1 << 20;

/// The id of the key in [`KeyRing::ephemeral`].
pub const EPHEMERAL_KEY_ID: &str = "ephemeral";

/// The id of the key in [`KeyRing::test_ring`].
pub const TEST_KEY_ID: &str = "test";

/// The ASCII string whose SHA-256 is the secret of [`KeyRing::test_ring`].
pub const TEST_KEY_SEED: &str = "scrim rule-file test key v1";

/// Truncation used by `pseudonymise` when a rule does not say: 128 bits.
pub const DEFAULT_BITS: u16 = 128;

/// The label in front of the scope when a per-scope key is derived:
/// `HMAC-SHA256(secret, LABEL || scope)`.
const DERIVE_LABEL: &[u8] = b"scrim/pseudonymise/v1\0";

/// The label of the key that suppression-list entries are made with:
/// `HMAC-SHA256(secret, LIST_LABEL)`. It is not a prefix of
/// [`DERIVE_LABEL`] nor the other way round, so no pseudonym scope can
/// derive the same key, and a list entry never equals a pseudonym.
const LIST_LABEL: &[u8] = b"scrim/suppress/v1\0";

/// Bytes of a suppression-list entry: a keyed hash truncated to 128 bits.
pub const LIST_ENTRY_BYTES: usize = 16;

/// Standard base64 alphabet; padding optional when decoding (`=` present or
/// not, but if present it must be right), trailing bits must be zero.
const SECRET_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Whether `bits` is a valid pseudonym truncation: a multiple of 8 in `64..=256`.
#[must_use]
pub fn is_valid_bits(bits: u16) -> bool {
    (64..=256).contains(&bits) && bits.is_multiple_of(8)
}

/// Whether `id` is a valid key id: 1 to 32 characters of `A-Z a-z 0-9 _ -`.
///
/// The alphabet is base64url's, without `.`, so the `.` in `<id>.<tag>`
/// separates a pseudonym unambiguously.
#[must_use]
pub fn is_valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_KEY_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// A 1-based line and column (in characters) in a key ring file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// Line, counting from 1.
    pub line: usize,
    /// Column in Unicode scalar values, counting from 1.
    pub col: usize,
}

impl Location {
    /// The location of byte `offset` in `text` (clamped to the text).
    #[must_use]
    pub fn of(text: &str, offset: usize) -> Location {
        let mut line = 1;
        let mut col = 1;
        for (i, c) in text.char_indices() {
            if i >= offset {
                break;
            }
            if c == '\n' {
                line += 1;
                col = 1;
            } else {
                col += 1;
            }
        }
        Location { line, col }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// `:line:col` or nothing, for messages.
struct LocSuffix<'a>(&'a Option<Location>);

impl fmt::Display for LocSuffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(loc) => write!(f, ":{loc}"),
            None => Ok(()),
        }
    }
}

/// An error reading, parsing or writing a key ring.
///
/// Messages name the file, the `line:col` where one applies, and the problem.
/// They never contain key material: not the secret, not a fragment of it, not
/// a character of it, and not a key name that might be a misplaced secret.
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum KeyError {
    /// The key ring file could not be read.
    #[error("{file}: cannot read key ring: {source}")]
    Read {
        /// The file.
        file: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The key ring file could not be written (by [`keygen`](super::keygen())).
    #[error("{file}: cannot write key ring: {source}")]
    Write {
        /// The file.
        file: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The key ring text is not a valid key ring.
    #[error("{file}{}: {message}", LocSuffix(location))]
    Invalid {
        /// The file (the `origin` given to [`KeyRing::parse`]).
        file: String,
        /// Where in the file, when the problem has a place.
        location: Option<Location>,
        /// What is wrong.
        message: String,
    },
    /// [`keygen`](super::keygen()) was asked for an id the key ring already has.
    #[error("{file}: key id `{id}` already exists; key ids are never reused")]
    DuplicateId {
        /// The file.
        file: String,
        /// The id asked for.
        id: String,
    },
    /// [`keygen`](super::keygen()) was given an invalid key id.
    #[error(
        "invalid key id: ids are 1 to {MAX_KEY_ID_LEN} characters of A-Z, a-z, 0-9, `_` and `-`"
    )]
    InvalidId,
    /// The operating system's random number generator failed.
    #[error("cannot get random bytes from the operating system: {0}")]
    Rng(getrandom::Error),
}

impl KeyError {
    /// Where in the key ring file the error applies, if it has a place.
    #[must_use]
    pub fn location(&self) -> Option<Location> {
        match self {
            KeyError::Invalid { location, .. } => *location,
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------
// Secret
// ---------------------------------------------------------------------------

/// A secret of at least 32 bytes ([`MIN_SECRET_BYTES`]).
///
/// Zeroized on drop. `Debug` and `Display` print `Secret(redacted)`. It is not
/// `Clone`, so it cannot be copied by accident; the bytes are reachable only
/// from inside this module.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Secret(Box<[u8]>);

impl Secret {
    /// Copies `bytes` into a new secret, or `None` if there are fewer than
    /// [`MIN_SECRET_BYTES`]. The caller still owns (and should zeroize) `bytes`.
    #[must_use]
    pub fn from_bytes(bytes: &[u8]) -> Option<Secret> {
        (bytes.len() >= MIN_SECRET_BYTES).then(|| Secret(Box::from(bytes)))
    }

    /// The length in bytes (not secret).
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always `false`: a secret has at least [`MIN_SECRET_BYTES`].
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

// ---------------------------------------------------------------------------
// KeyRing
// ---------------------------------------------------------------------------

struct Entry {
    id: Arc<str>,
    secret: Secret,
}

/// Key ring: key ids mapped to secrets, plus the active id.
///
/// Only the active key makes pseudonyms ([`KeyRing::scoped`]); the others stay
/// for reference ([`KeyRing::scoped_for`]). Not `Clone` (it holds secrets):
/// share it behind an `Arc`. `Debug` prints the ids only.
pub struct KeyRing {
    /// In file order.
    entries: Vec<Entry>,
    active: usize,
    ephemeral: bool,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("active", &self.active_id())
            .field("ids", &self.ids().collect::<Vec<_>>())
            .field("ephemeral", &self.ephemeral)
            .finish()
    }
}

impl KeyRing {
    /// Parses key ring TOML (format in the [module documentation](super)).
    /// `origin` names the file in error messages.
    ///
    /// # Errors
    /// [`KeyError::Invalid`] with `origin`, a `line:col` where there is one,
    /// and the problem: TOML syntax, an unknown top-level key, a missing or
    /// dangling `active`, an invalid key id, a secret without a `base64:` /
    /// `hex:` prefix, not decodable, or shorter than 32 bytes.
    pub fn parse(text: &str, origin: &str) -> Result<KeyRing, KeyError> {
        let invalid = |span: Option<Range<usize>>, message: String| KeyError::Invalid {
            file: origin.to_owned(),
            location: span.map(|s| Location::of(text, s.start)),
            message,
        };
        let mut doc = DeTable::parse(text).map_err(|e| {
            // The parser's message is grammar only ("invalid basic string,
            // expected ..."); `Display` would quote the source line, so it is
            // not used.
            invalid(e.span(), format!("invalid TOML: {}", e.message()))
        })?;
        let result = Self::from_table(doc.get_ref(), text, &invalid);
        scrub_table(doc.get_mut());
        result
    }

    fn from_table(
        root: &DeTable<'_>,
        text: &str,
        invalid: &dyn Fn(Option<Range<usize>>, String) -> KeyError,
    ) -> Result<KeyRing, KeyError> {
        let mut active: Option<(&str, Range<usize>)> = None;
        let mut keys: Option<(&DeTable<'_>, Range<usize>)> = None;
        for (k, v) in sorted(root) {
            match k.get_ref().as_ref() {
                "active" => match v.get_ref() {
                    DeValue::String(s) => active = Some((s, v.span())),
                    other => {
                        return Err(invalid(
                            Some(v.span()),
                            format!(
                                "`active` must be a string naming a key id, not {}",
                                a_type(other)
                            ),
                        ));
                    }
                },
                "keys" => match v.get_ref() {
                    DeValue::Table(t) => keys = Some((t, k.span())),
                    other => {
                        return Err(invalid(
                            Some(v.span()),
                            format!(
                                "`keys` must be a table of `<id> = \"base64:...\"` entries, not {}",
                                a_type(other)
                            ),
                        ));
                    }
                },
                name => {
                    let hint = if v.get_ref().is_str() {
                        " (key entries belong under [keys])"
                    } else {
                        ""
                    };
                    return Err(invalid(
                        Some(k.span()),
                        format!(
                            "unknown key {}; a key ring has only `active` and `[keys]`{hint}",
                            show_name(name)
                        ),
                    ));
                }
            }
        }

        let Some((keys, keys_span)) = keys else {
            return Err(invalid(
                None,
                "no [keys] table; add one with at least one `<id> = \"base64:...\"` entry"
                    .to_owned(),
            ));
        };
        let mut entries = Vec::with_capacity(keys.len());
        for (k, v) in sorted(keys) {
            let id: &str = k.get_ref();
            if !is_valid_key_id(id) {
                // The name is not quoted: it could be a secret written on the
                // wrong side of `=`.
                return Err(invalid(
                    Some(k.span()),
                    format!(
                        "invalid key id: ids are 1 to {MAX_KEY_ID_LEN} characters of A-Z, a-z, 0-9, `_` and `-`"
                    ),
                ));
            }
            let DeValue::String(s) = v.get_ref() else {
                return Err(invalid(
                    Some(v.span()),
                    format!(
                        "key `{id}`: the secret must be a string `\"base64:...\"` or `\"hex:...\"`, not {}",
                        a_type(v.get_ref())
                    ),
                ));
            };
            let secret = decode_secret(s).map_err(|(offset, problem)| {
                let at = offset
                    .and_then(|o| literal_offset(text, v.span(), s, o))
                    .unwrap_or(v.span().start);
                invalid(Some(at..at), format!("key `{id}`: {problem}"))
            })?;
            if secret.len() < MIN_SECRET_BYTES {
                return Err(invalid(
                    Some(v.span()),
                    format!(
                        "key `{id}`: the secret is {} bytes; at least {MIN_SECRET_BYTES} random bytes are required",
                        secret.len()
                    ),
                ));
            }
            entries.push(Entry {
                id: Arc::from(id),
                secret: Secret(Box::from(&secret[..])),
            });
        }
        if entries.is_empty() {
            return Err(invalid(
                Some(keys_span),
                "[keys] is empty; add at least one `<id> = \"base64:...\"` entry".to_owned(),
            ));
        }

        let Some((active, active_span)) = active else {
            return Err(invalid(
                None,
                "missing `active = \"<key id>\"`, naming the key that makes pseudonyms".to_owned(),
            ));
        };
        let Some(index) = entries.iter().position(|e| &*e.id == active) else {
            let message = if is_valid_key_id(active) {
                format!("`active` names `{active}`, which is not in [keys]")
            } else {
                "`active` is not a key id (it must name an entry of [keys])".to_owned()
            };
            return Err(invalid(Some(active_span), message));
        };
        Ok(KeyRing {
            entries,
            active: index,
            ephemeral: false,
        })
    }

    /// Reads and parses the key ring file at `path` (at most
    /// [`MAX_KEY_RING_BYTES`]). The file's text is zeroized after parsing.
    ///
    /// The file should be mode `0600` (or mounted read-only from a secret
    /// store); this is documented, not enforced, since operators mount secrets
    /// in many ways.
    ///
    /// # Errors
    /// [`KeyError::Read`] if the file cannot be read, is too large or is not
    /// UTF-8; otherwise as [`KeyRing::parse`], with the path as the origin.
    pub fn load(path: &Path) -> Result<KeyRing, KeyError> {
        let file = path.display().to_string();
        let text = read_secret_file(path).map_err(|source| KeyError::Read {
            file: file.clone(),
            source,
        })?;
        KeyRing::parse(&text, &file)
    }

    /// A key ring with one random 32-byte secret from the OS RNG, id
    /// `"ephemeral"`. Pseudonyms made with it do not survive a restart.
    ///
    /// # Errors
    /// [`KeyError::Rng`] if the operating system's RNG fails.
    pub fn ephemeral() -> Result<KeyRing, KeyError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut bytes[..]).map_err(KeyError::Rng)?;
        Ok(KeyRing {
            entries: vec![Entry {
                id: Arc::from(EPHEMERAL_KEY_ID),
                secret: Secret(Box::from(&bytes[..])),
            }],
            active: 0,
            ephemeral: true,
        })
    }

    /// The fixed, public key under which rule-file `[[tests]]` run, so that an
    /// expected output can spell out pseudonyms.
    ///
    /// * id: `test`
    /// * secret: the 32 bytes of SHA-256 of the ASCII string
    ///   `scrim rule-file test key v1` ([`TEST_KEY_SEED`]), that is, in hex,
    ///   `243fe53f73c9a02dd6fedd33bc62ef1378c80390b698029f965f79ea4ba77873`.
    ///
    /// It is public by design: never use it for real traffic.
    #[must_use]
    pub fn test_ring() -> KeyRing {
        let mut digest = Sha256::digest(TEST_KEY_SEED.as_bytes());
        let secret = Secret(Box::from(&digest[..]));
        digest[..].zeroize();
        KeyRing {
            entries: vec![Entry {
                id: Arc::from(TEST_KEY_ID),
                secret,
            }],
            active: 0,
            ephemeral: false,
        }
    }

    /// The id of the active key, the one that makes pseudonyms.
    #[must_use]
    pub fn active_id(&self) -> &str {
        &self.entries[self.active].id
    }

    /// All key ids, in file order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| &*e.id)
    }

    /// Whether this is the ring from [`KeyRing::ephemeral`].
    #[must_use]
    pub fn is_ephemeral(&self) -> bool {
        self.ephemeral
    }

    /// The per-scope key derived from the ACTIVE secret:
    /// `HMAC-SHA256(secret, "scrim/pseudonymise/v1\0" || scope)`, an HMAC with
    /// a fixed label as the spec allows. A different scope gives an unrelated
    /// key, so two recipients' pseudonyms cannot be joined.
    #[must_use]
    pub fn scoped(&self, scope: &str) -> ScopedKey {
        ScopedKey::derive(&self.entries[self.active], scope)
    }

    /// As [`KeyRing::scoped`], for the key `id` whether active or not (to
    /// recompute pseudonyms made before a rotation); `None` if there is no
    /// such id.
    #[must_use]
    pub fn scoped_for(&self, id: &str, scope: &str) -> Option<ScopedKey> {
        self.entries
            .iter()
            .find(|e| &*e.id == id)
            .map(|e| ScopedKey::derive(e, scope))
    }

    /// The suppression-list key derived from the key `id` (active or not,
    /// so a list keeps working across a rotation); `None` if there is no
    /// such id.
    #[must_use]
    pub fn list_key(&self, id: &str) -> Option<ListKey> {
        let entry = self.entries.iter().find(|e| &*e.id == id)?;
        let mac = derived_mac(entry, &[LIST_LABEL]);
        Some(ListKey {
            key_id: Arc::clone(&entry.id),
            mac,
        })
    }
}

/// The key of suppression-list entries (see [`KeyRing::list_key`]).
/// `Debug` prints the key id only.
#[derive(Clone)]
pub struct ListKey {
    key_id: Arc<str>,
    mac: HmacSha256,
}

impl fmt::Debug for ListKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListKey")
            .field("key_id", &&*self.key_id)
            .finish_non_exhaustive()
    }
}

impl ListKey {
    /// The id of the key this was derived from.
    #[must_use]
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The entry of a normalised identifier: HMAC-SHA256 under the list
    /// key, truncated to 128 bits.
    #[must_use]
    pub fn entry(&self, normalised: &[u8]) -> [u8; LIST_ENTRY_BYTES] {
        let tag = self
            .mac
            .clone()
            .chain_update(normalised)
            .finalize()
            .into_bytes();
        let mut out = [0u8; LIST_ENTRY_BYTES];
        out.copy_from_slice(&tag[..LIST_ENTRY_BYTES]);
        out
    }
}

/// Entries of a table in file order (the map itself is sorted by name).
fn sorted<'a, 'i>(
    table: &'a DeTable<'i>,
) -> Vec<(
    &'a toml::Spanned<toml::de::DeString<'i>>,
    &'a toml::Spanned<DeValue<'i>>,
)> {
    let mut v: Vec<_> = table.iter().collect();
    v.sort_by_key(|(k, _)| k.span().start);
    v
}

/// "a string", "an integer"... for messages (never the value).
fn a_type(v: &DeValue<'_>) -> String {
    let t = v.type_str();
    let article = if t.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {t}")
}

/// A top-level name, quoted only when it cannot be a misplaced secret.
fn show_name(name: &str) -> String {
    if is_valid_key_id(name) {
        format!("`{name}`")
    } else {
        "(not shown)".to_owned()
    }
}

/// Zeroizes every string the TOML parser had to copy (those with escapes).
fn scrub_table(table: &mut DeTable<'_>) {
    for (_, v) in table.iter_mut() {
        scrub_value(v.get_mut());
    }
}

fn scrub_value(v: &mut DeValue<'_>) {
    match v {
        DeValue::String(std::borrow::Cow::Owned(s)) => s.zeroize(),
        DeValue::Table(t) => scrub_table(t),
        DeValue::Array(a) => {
            for item in a.iter_mut() {
                scrub_value(item.get_mut());
            }
        }
        _ => {}
    }
}

/// Decodes `base64:...` or `hex:...`. On error: the byte offset in `s` of the
/// bad character when there is one, and a message that quotes nothing of `s`.
fn decode_secret(s: &str) -> Result<Zeroizing<Vec<u8>>, (Option<usize>, String)> {
    if let Some(b64) = s.strip_prefix("base64:") {
        let prefix = "base64:".len();
        let mut out = Zeroizing::new(Vec::with_capacity(base64::decoded_len_estimate(b64.len())));
        SECRET_BASE64.decode_vec(b64, &mut out).map_err(|e| {
            use base64::DecodeError as E;
            match e {
                E::InvalidByte(at, _) => (
                    Some(prefix + at),
                    format!(
                        "the secret is not valid standard base64 (bad character at position {} of the value)",
                        prefix + at + 1
                    ),
                ),
                E::InvalidLastSymbol(at, _) => (
                    Some(prefix + at),
                    "the secret is not valid base64 (its last character has stray bits: truncated or corrupted?)"
                        .to_owned(),
                ),
                E::InvalidLength(_) => (
                    None,
                    "the secret is not valid base64 (wrong length: truncated or corrupted?)"
                        .to_owned(),
                ),
                E::InvalidPadding => (
                    None,
                    "the secret is not valid base64 (wrong `=` padding)".to_owned(),
                ),
            }
        })?;
        Ok(out)
    } else if let Some(hex) = s.strip_prefix("hex:") {
        let prefix = "hex:".len();
        let bytes = hex.as_bytes();
        if let Some(at) = bytes.iter().position(|b| !b.is_ascii_hexdigit()) {
            return Err((
                Some(prefix + at),
                format!(
                    "the secret is not valid hex (bad character at position {} of the value)",
                    prefix + at + 1
                ),
            ));
        }
        if bytes.len() % 2 != 0 {
            return Err((
                None,
                "the secret is not valid hex (odd number of digits)".to_owned(),
            ));
        }
        let mut out = Zeroizing::new(Vec::with_capacity(bytes.len() / 2));
        for pair in bytes.chunks_exact(2) {
            out.push((hex_val(pair[0]) << 4) | hex_val(pair[1]));
        }
        Ok(out)
    } else {
        Err((
            None,
            "the secret must start with `base64:` or `hex:`".to_owned(),
        ))
    }
}

fn hex_val(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

/// Maps byte offset `o` in the decoded string `s` back to the source text,
/// when the literal at `span` is a one-line string without escapes (then the
/// source is the quote followed by `s` verbatim).
fn literal_offset(text: &str, span: Range<usize>, s: &str, o: usize) -> Option<usize> {
    let raw = text.get(span.clone())?;
    let inner = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .or_else(|| raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')))?;
    (inner == s && o <= s.len()).then_some(span.start + 1 + o)
}

/// Reads a secret-bearing file, at most [`MAX_KEY_RING_BYTES`], into a buffer
/// that is zeroized when dropped.
pub(super) fn read_secret_file(path: &Path) -> io::Result<Zeroizing<String>> {
    let file = std::fs::File::open(path)?;
    let hint = file.metadata().map(|m| m.len()).unwrap_or(0);
    let cap = usize::try_from(hint.min(MAX_KEY_RING_BYTES) + 1).unwrap_or(4096);
    let mut bytes = Zeroizing::new(Vec::with_capacity(cap));
    file.take(MAX_KEY_RING_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_KEY_RING_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {MAX_KEY_RING_BYTES} bytes; not a key ring"),
        ));
    }
    if std::str::from_utf8(&bytes).is_err() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not valid UTF-8",
        ));
    }
    let vec = std::mem::take(&mut *bytes);
    match String::from_utf8(vec) {
        Ok(s) => Ok(Zeroizing::new(s)),
        Err(e) => {
            e.into_bytes().zeroize();
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not valid UTF-8",
            ))
        }
    }
}

// ---------------------------------------------------------------------------
// ScopedKey
// ---------------------------------------------------------------------------

/// A derived per-scope key, holding a precomputed keyed HMAC-SHA256 state.
///
/// The hot path clones that state instead of re-keying, so one pseudonym of a
/// short input (up to 55 bytes) costs two SHA-256 compressions. The derived key
/// bytes are zeroized once the state is built. `Debug` prints only the key id
/// and the scope. `Send + Sync + Clone`: build one per recipient and share it.
#[derive(Clone)]
pub struct ScopedKey {
    key_id: Arc<str>,
    scope: Arc<str>,
    mac: HmacSha256,
}

impl fmt::Debug for ScopedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopedKey")
            .field("key_id", &&*self.key_id)
            .field("scope", &&*self.scope)
            .finish_non_exhaustive()
    }
}

/// An HMAC-SHA256 state keyed by HMAC(secret, the `parts` in order): the
/// one derivation of every key made from a ring entry (scoped pseudonym
/// keys, the suppression-list key). The derived bytes are zeroed.
fn derived_mac(entry: &Entry, parts: &[&[u8]]) -> HmacSha256 {
    let mut kdf = HmacSha256::new_from_slice(entry.secret.expose())
        .expect("HMAC-SHA256 accepts keys of any length");
    for part in parts {
        kdf.update(part);
    }
    let mut derived = kdf.finalize().into_bytes();
    let mac =
        HmacSha256::new_from_slice(&derived[..]).expect("HMAC-SHA256 accepts keys of any length");
    derived[..].zeroize();
    mac
}

impl ScopedKey {
    fn derive(entry: &Entry, scope: &str) -> ScopedKey {
        let mac = derived_mac(entry, &[DERIVE_LABEL, scope.as_bytes()]);
        ScopedKey {
            key_id: Arc::clone(&entry.id),
            scope: Arc::from(scope),
            mac,
        }
    }

    /// The id of the key this was derived from (the prefix of its pseudonyms).
    #[must_use]
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The scope this key was derived for.
    #[must_use]
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// Appends the pseudonym of `normalised` to `out`:
    /// `<key id>.<base64url, no padding, of the first bits/8 bytes of
    /// HMAC-SHA256(key, normalised)>`, for example `k2026a.3q2-7wAbCdEfGhIjKlMnOp`
    /// (shape only; a real test vector is in the [module documentation](super)).
    ///
    /// `bits` must be a multiple of 8 in `64..=256` (default
    /// [`DEFAULT_BITS`] = 128, giving 22 characters after the `.`; 64 bits give
    /// 11). The caller validates it ([`is_valid_bits`]); an invalid value is a
    /// bug, caught by a debug assertion, and in release builds is rounded down
    /// to a multiple of 8 and clamped into the range.
    ///
    /// Allocates nothing besides growing `out`: the tag is encoded into a stack
    /// buffer and appended.
    pub fn pseudonymise_into(&self, normalised: &[u8], bits: u16, out: &mut Vec<u8>) {
        let mut buf = [0u8; B64_MAX];
        let len = self.tag(normalised, bits, &mut buf);
        out.reserve(self.key_id.len() + 1 + len);
        out.extend_from_slice(self.key_id.as_bytes());
        out.push(b'.');
        out.extend_from_slice(&buf[..len]);
    }

    /// As [`ScopedKey::pseudonymise_into`], returning a new `String`.
    #[must_use]
    pub fn pseudonymise(&self, normalised: &[u8], bits: u16) -> String {
        let mut buf = [0u8; B64_MAX];
        let len = self.tag(normalised, bits, &mut buf);
        let mut s = String::with_capacity(self.key_id.len() + 1 + len);
        s.push_str(&self.key_id);
        s.push('.');
        s.extend(buf[..len].iter().copied().map(char::from));
        s
    }

    /// Computes the truncated tag and base64url-encodes it into `buf`.
    #[inline]
    fn tag(&self, normalised: &[u8], bits: u16, buf: &mut [u8; B64_MAX]) -> usize {
        debug_assert!(
            is_valid_bits(bits),
            "pseudonym bits must be a multiple of 8 in 64..=256, got {bits}"
        );
        let n = usize::from(bits / 8).clamp(8, 32);
        let tag = self
            .mac
            .clone()
            .chain_update(normalised)
            .finalize()
            .into_bytes();
        base64url_encode(&tag[..n], buf)
    }
}

/// Base64url characters for 32 bytes, unpadded.
const B64_MAX: usize = 43;

const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Unpadded base64url of `input` (at most 32 bytes) into `out`; returns the
/// number of characters written.
fn base64url_encode(input: &[u8], out: &mut [u8; B64_MAX]) -> usize {
    let sym = |v: u32| B64URL[(v & 63) as usize];
    let mut o = 0;
    let mut chunks = input.chunks_exact(3);
    for c in &mut chunks {
        let v = (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]);
        out[o] = sym(v >> 18);
        out[o + 1] = sym(v >> 12);
        out[o + 2] = sym(v >> 6);
        out[o + 3] = sym(v);
        o += 4;
    }
    match *chunks.remainder() {
        [a] => {
            let v = u32::from(a) << 16;
            out[o] = sym(v >> 18);
            out[o + 1] = sym(v >> 12);
            o += 2;
        }
        [a, b] => {
            let v = (u32::from(a) << 16) | (u32::from(b) << 8);
            out[o] = sym(v >> 18);
            out[o + 1] = sym(v >> 12);
            out[o + 2] = sym(v >> 6);
            o += 3;
        }
        _ => {}
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

    const SECRET_A: [u8; 32] = [0x11; 32];
    const SECRET_B: [u8; 32] = [0x22; 32];

    fn b64(bytes: &[u8]) -> String {
        STANDARD.encode(bytes)
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn ring_text(entries: &[(&str, &[u8])], active: &str) -> String {
        let mut t = format!("active = \"{active}\"\n\n[keys]\n");
        for (id, s) in entries {
            t.push_str(&format!("{id} = \"base64:{}\"\n", b64(s)));
        }
        t
    }

    fn make_ring(entries: &[(&str, &[u8])], active: &str) -> KeyRing {
        KeyRing::parse(&ring_text(entries, active), "keys.toml").expect("valid ring")
    }

    fn err(text: &str) -> KeyError {
        KeyRing::parse(text, "keys.toml").expect_err("should be refused")
    }

    /// Every way the secret could leak into text: hex, base64 (padded or not,
    /// either alphabet), and a long-enough fragment of the base64.
    fn assert_no_secret(s: &str, secret: &[u8]) {
        let forms = [
            hex(secret),
            hex(secret).to_uppercase(),
            STANDARD.encode(secret),
            URL_SAFE_NO_PAD.encode(secret),
            format!("{secret:?}"),
        ];
        for form in forms {
            assert!(!s.contains(&form), "secret leaked into {s:?}");
            assert!(
                !s.contains(&form[..12]),
                "secret fragment leaked into {s:?}"
            );
        }
    }

    #[test]
    fn hmac_matches_rfc_4231_test_case_2() {
        // RFC 4231 section 4.3.
        let mut mac = HmacSha256::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn hmac_matches_rfc_4231_test_case_6_long_key() {
        // RFC 4231 section 4.7: a 131-byte key, hashed first.
        let key = [0xaau8; 131];
        let mut mac = HmacSha256::new_from_slice(&key).unwrap();
        mac.update(b"Test Using Larger Than Block-Size Key - Hash Key First");
        assert_eq!(
            hex(&mac.finalize().into_bytes()),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn precomputed_state_equals_fresh_hmac_and_derivation_is_as_documented() {
        let ring = make_ring(&[("k1", &SECRET_A)], "k1");
        let key = ring.scoped("analytics");
        // Recompute by hand: derived = HMAC(secret, label || scope).
        let mut kdf = HmacSha256::new_from_slice(&SECRET_A).unwrap();
        kdf.update(b"scrim/pseudonymise/v1\0analytics");
        let derived = kdf.finalize().into_bytes();
        for value in [&b""[..], b"alice", &[7u8; 55], &[9u8; 56], &[1u8; 1000]] {
            let mut mac = HmacSha256::new_from_slice(&derived).unwrap();
            mac.update(value);
            let full = mac.finalize().into_bytes();
            for bits in [64u16, 128, 200, 256] {
                let expected = format!(
                    "k1.{}",
                    URL_SAFE_NO_PAD.encode(&full[..usize::from(bits / 8)])
                );
                assert_eq!(key.pseudonymise(value, bits), expected);
            }
        }
    }

    #[test]
    fn deterministic() {
        let a = make_ring(&[("k1", &SECRET_A)], "k1");
        let b = make_ring(&[("k1", &SECRET_A)], "k1");
        let p1 = a
            .scoped("analytics")
            .pseudonymise(b"alice@example.com", 128);
        let p2 = a
            .scoped("analytics")
            .pseudonymise(b"alice@example.com", 128);
        let p3 = b
            .scoped("analytics")
            .pseudonymise(b"alice@example.com", 128);
        assert_eq!(p1, p2);
        assert_eq!(p1, p3);
        // Cloning the key (the hot path clones the state) changes nothing.
        let k = a.scoped("analytics");
        let k2 = k.clone();
        assert_eq!(k.pseudonymise(b"x", 128), k2.pseudonymise(b"x", 128));
        assert_eq!(k.pseudonymise(b"x", 128), k.pseudonymise(b"x", 128));
    }

    #[test]
    fn scope_value_and_key_all_matter() {
        let a = make_ring(&[("k1", &SECRET_A)], "k1");
        let b = make_ring(&[("k1", &SECRET_B)], "k1");
        let base = a.scoped("analytics").pseudonymise(b"alice", 128);
        assert_ne!(base, a.scoped("ads").pseudonymise(b"alice", 128));
        assert_ne!(base, a.scoped("analytics").pseudonymise(b"bob", 128));
        assert_ne!(base, b.scoped("analytics").pseudonymise(b"alice", 128));
        // Scope "" vs value boundary: ("a", "bc") and ("ab", "c") differ.
        assert_ne!(
            a.scoped("a").pseudonymise(b"bc", 128),
            a.scoped("ab").pseudonymise(b"c", 128)
        );
    }

    #[test]
    fn truncation_lengths_and_format() {
        let key = make_ring(&[("k2026a", &SECRET_A)], "k2026a").scoped("s");
        for bits in (64u16..=256).step_by(8) {
            let p = key.pseudonymise(b"alice", bits);
            let (id, tag) = p.split_once('.').unwrap();
            assert_eq!(id, "k2026a");
            assert_eq!(tag.len(), (usize::from(bits / 8) * 4).div_ceil(3), "{bits}");
            assert!(
                tag.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            );
        }
        assert_eq!(key.pseudonymise(b"alice", 64).len(), "k2026a.".len() + 11);
        assert_eq!(key.pseudonymise(b"alice", 128).len(), "k2026a.".len() + 22);
        assert_eq!(key.pseudonymise(b"alice", 256).len(), "k2026a.".len() + 43);
        // Shorter is a prefix of longer (same HMAC, truncated).
        let long = key.pseudonymise(b"alice", 256);
        let short = key.pseudonymise(b"alice", 192);
        assert!(long.starts_with(&short));
        assert!(key.pseudonymise(b"alice", 128).starts_with("k2026a."));
    }

    #[test]
    fn into_appends_and_matches_string_form() {
        let key = KeyRing::test_ring().scoped("analytics");
        let mut out = b"prefix:".to_vec();
        key.pseudonymise_into(b"alice", 128, &mut out);
        assert_eq!(
            out,
            format!("prefix:{}", key.pseudonymise(b"alice", 128)).into_bytes()
        );
        // With capacity already there, nothing is reallocated.
        let mut out = Vec::with_capacity(64);
        let ptr = out.as_ptr();
        key.pseudonymise_into(b"alice", 256, &mut out);
        assert_eq!(out.as_ptr(), ptr);
    }

    #[test]
    fn base64url_encoder_matches_base64_crate() {
        let data: Vec<u8> = (0u8..32)
            .map(|i| i.wrapping_mul(37).wrapping_add(250))
            .collect();
        for n in 0..=32 {
            let mut buf = [0u8; B64_MAX];
            let len = base64url_encode(&data[..n], &mut buf);
            assert_eq!(
                std::str::from_utf8(&buf[..len]).unwrap(),
                URL_SAFE_NO_PAD.encode(&data[..n])
            );
        }
        let ff = [0xffu8; 32];
        let mut buf = [0u8; B64_MAX];
        let len = base64url_encode(&ff, &mut buf);
        assert_eq!(&buf[..len], URL_SAFE_NO_PAD.encode(ff).as_bytes());
    }

    #[test]
    fn test_ring_is_the_documented_constant() {
        let ring = KeyRing::test_ring();
        assert_eq!(ring.active_id(), "test");
        assert_eq!(ring.ids().collect::<Vec<_>>(), ["test"]);
        assert!(!ring.is_ephemeral());
        assert_eq!(
            hex(ring.entries[0].secret.expose()),
            "243fe53f73c9a02dd6fedd33bc62ef1378c80390b698029f965f79ea4ba77873"
        );
        let same = KeyRing::parse(
            "active = \"test\"\n[keys]\ntest = \"hex:243fe53f73c9a02dd6fedd33bc62ef1378c80390b698029f965f79ea4ba77873\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(
            ring.scoped("r").pseudonymise(b"v", 128),
            same.scoped("r").pseudonymise(b"v", 128)
        );
        // Pin one value: a change here changes every rule file's expectations.
        assert_eq!(
            ring.scoped("analytics")
                .pseudonymise(b"alice@example.com", 128),
            PINNED_TEST_PSEUDONYM
        );
    }

    /// `test_ring().scoped("analytics").pseudonymise(b"alice@example.com", 128)`,
    /// cross-checked with Python's `hmac` module.
    const PINNED_TEST_PSEUDONYM: &str = "test.WMu8o4R2pzTOgr8wScJGSA";

    #[test]
    fn ephemeral_rings_are_random() {
        let a = KeyRing::ephemeral().unwrap();
        let b = KeyRing::ephemeral().unwrap();
        assert!(a.is_ephemeral());
        assert_eq!(a.active_id(), "ephemeral");
        let pa = a.scoped("s").pseudonymise(b"v", 128);
        assert!(pa.starts_with("ephemeral."));
        assert_ne!(pa, b.scoped("s").pseudonymise(b"v", 128));
        assert_ne!(a.entries[0].secret.expose(), &[0u8; 32][..]);
    }

    #[test]
    fn parses_base64_and_hex_and_keeps_file_order() {
        let text = format!(
            "# comment\nactive = \"k20261201\"\n\n[keys]\nk20261201 = \"base64:{}\" # new\nk20260601 = 'hex:{}'\nA_old-1 = \"hex:{}\"\n",
            b64(&[3u8; 48]),
            hex(&SECRET_B),
            hex(&SECRET_A).to_uppercase()
        );
        let ring = KeyRing::parse(&text, "keys.toml").unwrap();
        assert_eq!(ring.active_id(), "k20261201");
        assert_eq!(
            ring.ids().collect::<Vec<_>>(),
            ["k20261201", "k20260601", "A_old-1"]
        );
        assert_eq!(ring.entries[0].secret.len(), 48);
        assert_eq!(ring.entries[1].secret.expose(), &SECRET_B[..]);
        assert_eq!(ring.entries[2].secret.expose(), &SECRET_A[..]);
        // Old keys stay usable for reference.
        let old = ring.scoped_for("k20260601", "s").unwrap();
        assert_eq!(old.key_id(), "k20260601");
        assert_eq!(old.scope(), "s");
        let other = make_ring(&[("k20260601", &SECRET_B)], "k20260601");
        assert_eq!(
            old.pseudonymise(b"v", 128),
            other.scoped("s").pseudonymise(b"v", 128)
        );
        assert!(ring.scoped_for("nope", "s").is_none());
        // Unpadded base64 is accepted too; inline table form too.
        let unpadded = STANDARD.encode([5u8; 32]).trim_end_matches('=').to_owned();
        let r = KeyRing::parse(
            &format!("keys = {{ a = \"base64:{unpadded}\" }}\nactive = \"a\"\n"),
            "x",
        )
        .unwrap();
        assert_eq!(r.entries[0].secret.expose(), &[5u8; 32][..]);
    }

    #[test]
    fn short_secret_refused() {
        let e = err(&ring_text(&[("k1", &[7u8; 31])], "k1"));
        let msg = e.to_string();
        assert!(msg.contains("keys.toml:4:6:"), "{msg}");
        assert!(
            msg.contains("31 bytes") && msg.contains("at least 32"),
            "{msg}"
        );
        assert_no_secret(&msg, &[7u8; 31]);
        let e = err("active = \"k\"\n[keys]\nk = \"hex:00ff\"\n");
        assert!(e.to_string().contains("2 bytes"), "{e}");
    }

    #[test]
    fn bad_base64_refused_with_location_and_no_secret() {
        let secret = [0x5au8; 32];
        let good = b64(&secret);
        // Corrupt one character in the middle.
        let bad = format!("{}${}", &good[..20], &good[21..]);
        let text = format!("active = \"k1\"\n[keys]\nk1 = \"base64:{bad}\"\n");
        let e = err(&text);
        let msg = e.to_string();
        // `k1 = "` is 6 columns, `base64:` 7 more, then 20 good characters.
        assert_eq!(e.location(), Some(Location { line: 3, col: 34 }));
        assert!(msg.starts_with("keys.toml:3:34: key `k1`: "), "{msg}");
        assert!(msg.contains("not valid standard base64"), "{msg}");
        assert!(!msg.contains('$'), "{msg}");
        assert!(!msg.contains(&bad[..8]), "{msg}");
        assert_no_secret(&msg, &secret);
        assert_no_secret(&format!("{e:?}"), &secret);

        // Truncated: a length error, located at the value.
        let text = format!("active = \"k1\"\n[keys]\nk1 = \"base64:{}\"\n", &good[..41]);
        let e = err(&text);
        assert_eq!(e.location(), Some(Location { line: 3, col: 6 }));
        assert!(!e.to_string().contains(&good[..12]));

        // Escaped strings: location falls back to the start of the value.
        let text = format!("active = \"k1\"\n[keys]\nk1 = \"base64:\\u0041{bad}\"\n");
        let e = err(&text);
        assert_eq!(e.location(), Some(Location { line: 3, col: 6 }));
        assert_no_secret(&e.to_string(), &secret);
    }

    #[test]
    fn bad_hex_and_prefix_refused() {
        let secret = [0xabu8; 32];
        let text = format!("active = \"k1\"\n[keys]\nk1 = \"hex:{}g\"\n", hex(&secret));
        let e = err(&text);
        assert_eq!(e.location(), Some(Location { line: 3, col: 75 }));
        assert_no_secret(&e.to_string(), &secret);
        let e = err(&format!(
            "active = \"k1\"\n[keys]\nk1 = \"hex:{}a\"\n",
            hex(&secret)
        ));
        assert!(e.to_string().contains("odd number"), "{e}");
        let e = err(&format!(
            "active = \"k1\"\n[keys]\nk1 = \"{}\"\n",
            b64(&secret)
        ));
        let msg = e.to_string();
        assert!(msg.contains("must start with `base64:` or `hex:`"), "{msg}");
        assert!(msg.starts_with("keys.toml:3:6:"), "{msg}");
        assert_no_secret(&msg, &secret);
    }

    #[test]
    fn unknown_keys_and_structure_refused() {
        let good = ring_text(&[("k1", &SECRET_A)], "k1");
        let e = err(&format!("{good}\n[extra]\nx = 1\n"));
        assert!(
            e.to_string()
                .starts_with("keys.toml:6:2: unknown key `extra`"),
            "{e}"
        );
        // A secret placed at top level (forgot [keys]): the name is shown,
        // the value is not.
        let text = format!("active = \"k1\"\nk1 = \"base64:{}\"\n", b64(&SECRET_A));
        let e = err(&text);
        let msg = e.to_string();
        assert!(msg.starts_with("keys.toml:2:1: unknown key `k1`"), "{msg}");
        assert!(msg.contains("belong under [keys]"), "{msg}");
        assert_no_secret(&msg, &SECRET_A);
        // A secret used as a key name is not quoted.
        let text = format!(
            "active = \"k1\"\n[keys]\n\"base64:{}\" = \"k1\"\n",
            b64(&SECRET_A)
        );
        let e = err(&text);
        assert!(
            e.to_string().starts_with("keys.toml:3:1: invalid key id"),
            "{e}"
        );
        assert_no_secret(&e.to_string(), &SECRET_A);
        // Also at top level.
        let e = err(&format!("\"{}\" = 1\n{good}", b64(&SECRET_A)));
        assert!(e.to_string().contains("(not shown)"), "{e}");
        assert_no_secret(&e.to_string(), &SECRET_A);
        // `active` misuse.
        let e = err(&ring_text(&[("k1", &SECRET_A)], "k2"));
        assert_eq!(
            e.to_string(),
            "keys.toml:1:10: `active` names `k2`, which is not in [keys]"
        );
        let text = format!(
            "active = \"base64:{}\"\n[keys]\nk1 = \"base64:{}\"\n",
            b64(&SECRET_A),
            b64(&SECRET_A)
        );
        let e = err(&text);
        assert!(e.to_string().contains("`active` is not a key id"), "{e}");
        assert_no_secret(&e.to_string(), &SECRET_A);
        let e = err(&format!("[keys]\nk1 = \"base64:{}\"\n", b64(&SECRET_A)));
        assert_eq!(
            e.to_string(),
            "keys.toml: missing `active = \"<key id>\"`, naming the key that makes pseudonyms"
        );
        assert!(
            err("active = \"k\"\n")
                .to_string()
                .contains("no [keys] table")
        );
        assert!(
            err("active = \"k\"\n[keys]\n")
                .to_string()
                .starts_with("keys.toml:2:2: [keys] is empty")
        );
        assert!(err("active = 1\n").to_string().contains("not an integer"));
        assert!(err("keys = 1\n").to_string().contains("not an integer"));
        let e = err(&format!(
            "active = \"k1\"\n[keys]\nk1 = [\"base64:{}\"]\n",
            b64(&SECRET_A)
        ));
        assert!(e.to_string().contains("not an array"), "{e}");
        assert_no_secret(&e.to_string(), &SECRET_A);
        let e = err("active = \"k1\"\n[keys.k1]\nsecret = \"x\"\n");
        assert!(
            e.to_string()
                .contains("key `k1`: the secret must be a string"),
            "{e}"
        );
        // Invalid id.
        let e = err(&format!(
            "active = \"k1\"\n[keys]\n\"a.b\" = \"base64:{}\"\n",
            b64(&SECRET_A)
        ));
        assert!(
            e.to_string().starts_with("keys.toml:3:1: invalid key id"),
            "{e}"
        );
        let long = "a".repeat(33);
        let e = err(&ring_text(&[(&long, &SECRET_A)], &long));
        assert!(e.to_string().contains("invalid key id"), "{e}");
    }

    #[test]
    fn toml_syntax_errors_have_location_and_no_secret() {
        let secret = [0x42u8; 32];
        // Unterminated string holding the secret.
        let text = format!("active = \"k1\"\n[keys]\nk1 = \"base64:{}\n", b64(&secret));
        let e = err(&text);
        let msg = e.to_string();
        assert!(msg.starts_with("keys.toml:3:"), "{msg}");
        assert!(msg.contains("invalid TOML"), "{msg}");
        assert_no_secret(&msg, &secret);
        assert_no_secret(&format!("{e:?}"), &secret);
        // Duplicate key.
        let text = format!(
            "active = \"k1\"\n[keys]\nk1 = \"base64:{0}\"\nk1 = \"base64:{0}\"\n",
            b64(&secret)
        );
        let e = err(&text);
        assert!(
            e.to_string()
                .starts_with("keys.toml:4:1: invalid TOML: duplicate key"),
            "{e}"
        );
        assert_no_secret(&e.to_string(), &secret);
    }

    #[test]
    fn debug_never_shows_secrets() {
        let secret = [0xc3u8; 40];
        let ring = make_ring(&[("k1", &secret), ("k0", &SECRET_A)], "k1");
        let dbg = format!("{ring:?} {ring:#?}");
        assert!(dbg.contains("k1") && dbg.contains("k0"), "{dbg}");
        assert_no_secret(&dbg, &secret);
        assert_no_secret(&dbg, &SECRET_A);
        let key = ring.scoped("analytics");
        let dbg = format!("{key:?} {key:#?}");
        assert_eq!(
            format!("{key:?}"),
            "ScopedKey { key_id: \"k1\", scope: \"analytics\", .. }"
        );
        assert_no_secret(&dbg, &secret);
        let s = Secret::from_bytes(&secret).unwrap();
        assert_eq!(format!("{s:?}"), "Secret(redacted)");
        assert_eq!(format!("{s}"), "Secret(redacted)");
        assert_eq!(format!("{s:#?}"), "Secret(redacted)");
        assert_eq!(s.len(), 40);
        assert!(!s.is_empty());
        assert!(Secret::from_bytes(&secret[..31]).is_none());
    }

    #[test]
    fn secrets_zeroize() {
        fn zeroize_on_drop<T: ZeroizeOnDrop>() {}
        zeroize_on_drop::<Secret>();
        // What `Drop` runs, observed without dropping.
        let mut s = Secret::from_bytes(&[0x99u8; 32]).unwrap();
        s.zeroize();
        assert!(s.expose().iter().all(|&b| b == 0));
    }

    #[test]
    fn scoped_key_is_send_sync_clone() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<ScopedKey>();
        fn check_ring<T: Send + Sync>() {}
        check_ring::<KeyRing>();
    }

    #[test]
    fn bits_validation() {
        assert!(is_valid_bits(64) && is_valid_bits(128) && is_valid_bits(256));
        assert!(!is_valid_bits(56) && !is_valid_bits(65) && !is_valid_bits(264));
        assert!(!is_valid_bits(0));
        assert_eq!(DEFAULT_BITS, 128);
    }

    #[test]
    fn key_id_validation() {
        for ok in ["a", "k20261201", "A-b_9", &"x".repeat(32)] {
            assert!(is_valid_key_id(ok), "{ok}");
        }
        for bad in ["", "a.b", "a b", "é", "a:b", &"x".repeat(33)] {
            assert!(!is_valid_key_id(bad), "{bad}");
        }
    }

    #[test]
    fn location_counts_chars() {
        let t = "ab\nçd\nef";
        assert_eq!(Location::of(t, 0), Location { line: 1, col: 1 });
        assert_eq!(Location::of(t, 3), Location { line: 2, col: 1 });
        assert_eq!(Location::of(t, 5), Location { line: 2, col: 2 });
        assert_eq!(Location::of(t, 1000), Location { line: 3, col: 3 });
    }

    #[test]
    fn load_reads_files_and_names_them() {
        let dir = std::env::temp_dir().join(format!("scrim-keyring-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys.toml");
        std::fs::write(&path, ring_text(&[("k1", &SECRET_A)], "k1")).unwrap();
        let ring = KeyRing::load(&path).unwrap();
        assert_eq!(ring.active_id(), "k1");
        std::fs::write(&path, "active = 3\n").unwrap();
        let e = KeyRing::load(&path).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("{}:1:10:", path.display())),
            "{e}"
        );
        std::fs::write(&path, b"\xff\xfe").unwrap();
        let e = KeyRing::load(&path).unwrap_err();
        assert!(e.to_string().contains("not valid UTF-8"), "{e}");
        let missing = dir.join("missing.toml");
        let e = KeyRing::load(&missing).unwrap_err();
        assert!(matches!(e, KeyError::Read { .. }));
        assert!(
            e.to_string().starts_with(&missing.display().to_string()),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
