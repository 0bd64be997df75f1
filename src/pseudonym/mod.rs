//! Pseudonyms: the key ring, per-scope key derivation, HMAC and normalisation.
//!
//! # Pseudonyms
//!
//! The `pseudonymise` action replaces a value by
//!
//! ```text
//! <key id>.<base64url, no padding, of the first bits/8 bytes of HMAC-SHA256(scope key, normalised value)>
//! ```
//!
//! (128 bits, the default, give 22 characters after the `.`; 64 bits give 11).
//! For example, under [`KeyRing::test_ring`], scope `analytics`, the value
//! `alice@example.com` becomes `test.WMu8o4R2pzTOgr8wScJGSA`. The scope key is
//! derived from the active secret of the key ring:
//!
//! ```text
//! scope key = HMAC-SHA256(active secret, "scrim/pseudonymise/v1" || 0x00 || scope)
//! ```
//!
//! so pseudonyms are deterministic for one key, scope and normalised value
//! (partners can still count distinct users), unrelated across scopes (two
//! recipients cannot join their data), and carry the key id so that a
//! rotation is visible. See [`KeyRing::scoped`] and [`ScopedKey`].
//!
//! `hash_sha256` is different: an unkeyed SHA-256 in lowercase hex
//! ([`sha256_hex_into`]), for ad partners whose match keys require it. Anyone
//! can compute it from a guessed value, so it is pseudonymous, not anonymous.
//!
//! Both actions hash the value after [`normalise`].
//!
//! # Key ring file
//!
//! A TOML file (path from the config or `SCRIM_KEYS_FILE`):
//!
//! ```toml
//! # scrim key ring. Keep it secret; mount it read-only.
//! active = "k20261201"
//!
//! [keys]
//! k20261201 = "base64:3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
//! k20260601 = "hex:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
//! ```
//!
//! (The secrets above are examples only: generate real ones with
//! `scrim keygen`, which uses the operating system's RNG.)
//!
//! * `active` (required) names the key that makes pseudonyms. The other keys
//!   stay for reference, e.g. to recompute pseudonyms made before a rotation
//!   ([`KeyRing::scoped_for`]).
//! * `[keys]` (required, not empty) maps key ids to secrets. Ids match
//!   `[A-Za-z0-9_-]{1,32}`. A secret is a string prefixed `base64:` (standard
//!   alphabet, `=` padding optional) or `hex:` (either case), and decodes to
//!   at least 32 bytes, which should be random.
//! * Nothing else is allowed: an unknown top-level key is an error.
//!
//! Errors read `file:line:col: problem` (or `file: problem` when the problem
//! has no place, like a missing `active`), and never contain key material. The
//! file should be mode `0600`, or mounted read-only from a secret store; this
//! is documented rather than enforced, since operators mount secrets in many
//! ways.
//!
//! Rotation: `scrim keygen` adds a key (see [`keygen()`]), with
//! activation either at once or as a later edit of `active`. A key's secret is
//! never edited or reused: changing it silently changes every pseudonym made
//! under its id.
//!
//! # Secrets in memory
//!
//! Secrets are held in [`Secret`], zeroized on drop; the text of a key ring
//! file and decoded secret bytes live in zeroizing buffers. Derived scope keys
//! are zeroized as soon as their HMAC state is built. The precomputed HMAC
//! states themselves (and short-lived hash states inside `hmac`/`sha2`) are
//! zeroized on drop only if the `zeroize` feature of `sha2` is enabled.

mod keygen;
mod keyring;
mod normalise;

pub use keygen::{keygen, keygen_text};
pub use keyring::{
    DEFAULT_BITS, EPHEMERAL_KEY_ID, KeyError, KeyRing, LIST_ENTRY_BYTES, ListKey, Location,
    MAX_KEY_ID_LEN, MAX_KEY_RING_BYTES, MIN_SECRET_BYTES, ScopedKey, Secret, TEST_KEY_ID,
    TEST_KEY_SEED, is_valid_bits, is_valid_key_id,
};
pub use normalise::{Normalise, normalise};

use sha2::{Digest as _, Sha256};

/// Appends the lowercase hex SHA-256 of `data` (64 characters) to `out`.
///
/// Unkeyed, for partners that require it (`hash_sha256`). Allocates nothing
/// besides growing `out`.
pub fn sha256_hex_into(data: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(data);
    let mut buf = [0u8; 64];
    for (pair, byte) in buf.chunks_exact_mut(2).zip(digest.iter()) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0x0f)];
    }
    out.extend_from_slice(&buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(data: &[u8]) -> String {
        let mut out = Vec::new();
        sha256_hex_into(data, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn sha256_known_answers() {
        // FIPS 180-2 examples.
        assert_eq!(
            sha(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
    }

    #[test]
    fn sha256_appends() {
        let mut out = b"x=".to_vec();
        sha256_hex_into(b"abc", &mut out);
        assert_eq!(out.len(), 66);
        assert!(out.starts_with(b"x=ba7816bf"));
    }

    #[test]
    fn normalise_then_hash_like_ad_partners() {
        // Meta CAPI style: normalised email, then SHA-256 hex.
        let email = normalise(Normalise::Email, "  Alice@Example.COM ");
        assert_eq!(sha(email.as_bytes()), sha(b"alice@example.com"));
        let phone = normalise(Normalise::Phone, "+1 (650) 555-1234");
        assert_eq!(sha(phone.as_bytes()), sha(b"16505551234"));
    }

    #[test]
    fn module_doc_example_parses() {
        let text = "# scrim key ring. Keep it secret; mount it read-only.\n\
             active = \"k20261201\"\n\n[keys]\n\
             k20261201 = \"base64:3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"\n\
             k20260601 = \"hex:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\"\n";
        let ring = KeyRing::parse(text, "example.toml").unwrap();
        assert_eq!(ring.active_id(), "k20261201");
        assert_eq!(ring.ids().collect::<Vec<_>>(), ["k20261201", "k20260601"]);
    }
}
