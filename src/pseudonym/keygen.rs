//! `scrim keygen`: new key entries, written without disturbing the rest of the file.

use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use toml_edit::{DocumentMut, Item, Value};
use zeroize::Zeroizing;

use super::keyring::{KeyError, KeyRing, Location, is_valid_key_id, read_secret_file};

/// Bytes of randomness in a generated secret.
const GENERATED_SECRET_BYTES: usize = 32;

/// Generates a new key entry with a 32-byte secret from the OS RNG and returns
/// the id used.
///
/// * `id`: `Some(id)` (must match `[A-Za-z0-9_-]{1,32}`), or `None` for an id
///   made from today's UTC date, `k20261201`, with a suffix `-2`, `-3`, ... if
///   that is taken.
/// * If `path` exists, it must be a valid key ring: the entry is added at the
///   end of its `[keys]`, preserving comments and formatting (`toml_edit`); a
///   duplicate id is refused; with `activate`, `active` is set to the new id
///   (otherwise the active key is unchanged, so a key can be distributed
///   before it is switched on). The file is replaced atomically (temporary
///   file in the same directory, `fsync`, rename) and keeps its permissions;
///   a symbolic link is followed and its target replaced.
/// * If `path` does not exist, it is created (mode `0600` on Unix) with the
///   entry as the active key; `activate` does not matter.
///
/// # Errors
/// [`KeyError::InvalidId`], [`KeyError::DuplicateId`], errors of
/// [`KeyRing::parse`] for an existing file that is not a valid key ring,
/// [`KeyError::Read`] / [`KeyError::Write`] for I/O, [`KeyError::Rng`].
pub fn keygen(path: &Path, id: Option<&str>, activate: bool) -> Result<String, KeyError> {
    if id.is_some_and(|id| !is_valid_key_id(id)) {
        return Err(KeyError::InvalidId);
    }
    let file = path.display().to_string();
    match fs::metadata(path) {
        Ok(_) => add_to_existing(path, &file, id, activate),
        Err(e) if e.kind() == io::ErrorKind::NotFound => create_new(path, &file, id),
        Err(source) => Err(KeyError::Read { file, source }),
    }
}

/// Returns `(id, text)`: a fresh key ring, one new key, active, as TOML, for
/// printing to stdout when no file is given. `id` as in [`keygen`].
///
/// # Errors
/// [`KeyError::InvalidId`], [`KeyError::Rng`].
pub fn keygen_text(id: Option<&str>) -> Result<(String, String), KeyError> {
    if id.is_some_and(|id| !is_valid_key_id(id)) {
        return Err(KeyError::InvalidId);
    }
    let date = Date::today();
    let id = id.map_or_else(|| default_id(date, |_| false), str::to_owned);
    let secret = new_secret_value()?;
    let text = new_ring_text(&id, &secret, date);
    Ok((id, String::clone(&text)))
}

fn create_new(path: &Path, file: &str, id: Option<&str>) -> Result<String, KeyError> {
    let date = Date::today();
    let id = id.map_or_else(|| default_id(date, |_| false), str::to_owned);
    let secret = new_secret_value()?;
    let text = new_ring_text(&id, &secret, date);
    // Paranoia: never write something that would not load.
    KeyRing::parse(&text, file)?;
    write_new(path, text.as_bytes()).map_err(|source| KeyError::Write {
        file: file.to_owned(),
        source,
    })?;
    Ok(id)
}

fn add_to_existing(
    path: &Path,
    file: &str,
    id: Option<&str>,
    activate: bool,
) -> Result<String, KeyError> {
    let text = read_secret_file(path).map_err(|source| KeyError::Read {
        file: file.to_owned(),
        source,
    })?;
    let ring = KeyRing::parse(&text, file)?;
    let taken = |candidate: &str| ring.ids().any(|x| x == candidate);
    let date = Date::today();
    let id = match id {
        Some(id) if taken(id) => {
            return Err(KeyError::DuplicateId {
                file: file.to_owned(),
                id: id.to_owned(),
            });
        }
        Some(id) => id.to_owned(),
        None => default_id(date, taken),
    };
    let old_active = ring.active_id().to_owned();
    drop(ring);

    let invalid = |span: Option<std::ops::Range<usize>>, message: String| KeyError::Invalid {
        file: file.to_owned(),
        location: span.map(|s| Location::of(&text, s.start)),
        message,
    };
    // `TomlError`'s `Display` quotes the source line; only its message is used.
    let mut doc: DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        invalid(e.span(), format!("invalid TOML: {}", e.message()))
    })?;

    let secret = new_secret_value()?;
    let Some(keys) = doc.get_mut("keys") else {
        return Err(invalid(None, "no [keys] table".to_owned()));
    };
    let comment_ok = keys.is_table() && !keys.as_table().is_some_and(toml_edit::Table::is_dotted);
    let Some(keys) = keys.as_table_like_mut() else {
        return Err(invalid(None, "`keys` is not a table".to_owned()));
    };
    keys.insert(&id, Item::Value(Value::from(secret.as_str())));
    if comment_ok && let Some(mut key) = keys.key_mut(&id) {
        key.leaf_decor_mut()
            .set_prefix(format!("# added by scrim keygen on {date}\n"));
    }
    if activate {
        let Some(active) = doc.get_mut("active").and_then(Item::as_value_mut) else {
            return Err(invalid(None, "missing `active`".to_owned()));
        };
        let decor = active.decor().clone();
        *active = Value::from(id.as_str());
        *active.decor_mut() = decor;
    }
    let new_text = Zeroizing::new(doc.to_string());
    drop(doc);

    // Never write something that would not load, or that lost a key.
    let check = KeyRing::parse(&new_text, file)?;
    let expected_active = if activate {
        id.as_str()
    } else {
        old_active.as_str()
    };
    if check.active_id() != expected_active || !check.ids().any(|x| x == id) {
        return Err(invalid(
            None,
            "internal error: the updated key ring did not read back as written; file left unchanged"
                .to_owned(),
        ));
    }
    drop(check);

    replace_atomically(path, new_text.as_bytes()).map_err(|source| KeyError::Write {
        file: file.to_owned(),
        source,
    })?;
    Ok(id)
}

/// `base64:<32 random bytes>`, in a buffer zeroized on drop.
fn new_secret_value() -> Result<Zeroizing<String>, KeyError> {
    let mut bytes = Zeroizing::new([0u8; GENERATED_SECRET_BYTES]);
    getrandom::fill(&mut bytes[..]).map_err(KeyError::Rng)?;
    // Sized up front so that encoding never reallocates (and leaves a copy).
    let mut s = Zeroizing::new(String::with_capacity(
        "base64:".len() + base64::encoded_len(GENERATED_SECRET_BYTES, true).unwrap_or(64),
    ));
    s.push_str("base64:");
    STANDARD.encode_string(&bytes[..], &mut s);
    Ok(s)
}

fn new_ring_text(id: &str, secret: &str, date: Date) -> Zeroizing<String> {
    let mut t = Zeroizing::new(String::with_capacity(512));
    t.push_str(
        "# scrim key ring. Keep it secret: mode 0600, or mounted read-only from a\n\
         # secret store. `active` names the key that makes pseudonyms; older keys\n\
         # stay for reference. Never reuse or edit a secret: add a new key instead\n\
         # (`scrim keygen`).\n",
    );
    t.push_str("active = \"");
    t.push_str(id);
    t.push_str("\"\n\n[keys]\n# added by scrim keygen on ");
    t.push_str(&date.to_string());
    t.push('\n');
    t.push_str(id);
    t.push_str(" = \"");
    t.push_str(secret);
    t.push_str("\"\n");
    t
}

/// `k<YYYYMMDD>`, then `k<YYYYMMDD>-2`, `-3`, ... until one is not taken.
fn default_id(date: Date, taken: impl Fn(&str) -> bool) -> String {
    let base = format!("k{:04}{:02}{:02}", date.year, date.month, date.day);
    if !taken(&base) {
        return base;
    }
    (2u32..)
        .map(|n| format!("{base}-{n}"))
        .find(|c| !taken(c))
        .unwrap_or(base)
}

/// Creates `path` (which must not exist) with mode 0600 and writes `contents`.
fn write_new(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut f = private_create(path)?;
    let result = f.write_all(contents).and_then(|()| f.sync_all());
    if result.is_err() {
        drop(f);
        let _ = fs::remove_file(path);
    }
    result?;
    sync_parent(path);
    Ok(())
}

/// Replaces the file at `path` (following symlinks) with `contents`, keeping
/// its permissions: temp file beside it, fsync, rename.
fn replace_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let target = fs::canonicalize(path)?;
    let permissions = fs::metadata(&target)?.permissions();
    let tmp = temp_path_beside(&target)?;
    let result = (|| {
        let mut f = private_create(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        drop(f);
        fs::set_permissions(&tmp, permissions)?;
        fs::rename(&tmp, &target)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_parent(&target);
    Ok(())
}

fn temp_path_beside(target: &Path) -> io::Result<PathBuf> {
    let name = target
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
    let mut rnd = [0u8; 6];
    getrandom::fill(&mut rnd).map_err(|e| io::Error::other(e.to_string()))?;
    let suffix: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{suffix}.tmp"));
    Ok(target.with_file_name(tmp_name))
}

fn private_create(path: &Path) -> io::Result<fs::File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)
}

/// Best effort: make the directory entry durable too.
fn sync_parent(path: &Path) {
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// A UTC calendar date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Date {
    year: i64,
    month: u32,
    day: u32,
}

impl Date {
    fn today() -> Date {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Date::from_unix_days(i64::try_from(secs / 86_400).unwrap_or(0))
    }

    /// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    fn from_unix_days(days: i64) -> Date {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097); // [0, 146096]
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
        let mp = (5 * doy + 2) / 153; // [0, 11]
        let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
        let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
        let year = yoe + era * 400 + i64::from(month <= 2);
        Date {
            year,
            month: u32::try_from(month).unwrap_or(1),
            day: u32::try_from(day).unwrap_or(1),
        }
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let mut rnd = [0u8; 8];
            getrandom::fill(&mut rnd).unwrap();
            let dir = std::env::temp_dir().join(format!(
                "scrim-keygen-{name}-{}-{}",
                std::process::id(),
                u64::from_le_bytes(rnd)
            ));
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn today_id() -> String {
        default_id(Date::today(), |_| false)
    }

    #[test]
    fn dates() {
        let d = |n| Date::from_unix_days(n).to_string();
        assert_eq!(d(0), "1970-01-01");
        assert_eq!(d(-1), "1969-12-31");
        assert_eq!(d(11_016), "2000-02-29");
        assert_eq!(d(20_513), "2026-03-01");
        assert_eq!(d(20_788), "2026-12-01");
        assert_eq!(d(47_541), "2100-03-01");
    }

    #[test]
    fn default_ids() {
        let date = Date::from_unix_days(20_788);
        assert_eq!(default_id(date, |_| false), "k20261201");
        assert_eq!(default_id(date, |c| c == "k20261201"), "k20261201-2");
        assert_eq!(
            default_id(date, |c| c == "k20261201" || c == "k20261201-2"),
            "k20261201-3"
        );
    }

    #[test]
    fn keygen_text_is_a_valid_ring() {
        let (id, text) = keygen_text(None).unwrap();
        assert_eq!(id, today_id());
        let ring = KeyRing::parse(&text, "stdout").unwrap();
        assert_eq!(ring.active_id(), id);
        assert!(text.starts_with("# scrim key ring."));
        let (id2, text2) = keygen_text(Some("mine")).unwrap();
        assert_eq!(id2, "mine");
        assert_eq!(
            KeyRing::parse(&text2, "stdout").unwrap().active_id(),
            "mine"
        );
        // Fresh randomness each time.
        let (_, text3) = keygen_text(Some("mine")).unwrap();
        assert_ne!(text2, text3);
        assert!(matches!(
            keygen_text(Some("bad id")),
            Err(KeyError::InvalidId)
        ));
        assert!(matches!(keygen_text(Some("")), Err(KeyError::InvalidId)));
    }

    #[test]
    fn create_add_duplicate_activate() {
        let dir = TempDir::new("flow");
        let path = dir.0.join("keys.toml");

        // Create.
        let first = keygen(&path, None, false).unwrap();
        assert_eq!(first, today_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let ring = KeyRing::load(&path).unwrap();
        assert_eq!(ring.active_id(), first);
        let p1 = ring.scoped("s").pseudonymise(b"v", 128);

        // Add a second (not activated): same id base gets a suffix.
        let second = keygen(&path, None, false).unwrap();
        assert_eq!(second, format!("{first}-2"));
        let ring = KeyRing::load(&path).unwrap();
        assert_eq!(ring.active_id(), first);
        assert_eq!(
            ring.ids().collect::<Vec<_>>(),
            [first.as_str(), second.as_str()]
        );
        // The existing key is untouched.
        assert_eq!(ring.scoped("s").pseudonymise(b"v", 128), p1);

        // Duplicate refused, file unchanged.
        let before = fs::read(&path).unwrap();
        let e = keygen(&path, Some(&second), true).unwrap_err();
        assert!(matches!(e, KeyError::DuplicateId { .. }), "{e}");
        assert!(e.to_string().contains("already exists"), "{e}");
        assert_eq!(fs::read(&path).unwrap(), before);
        assert!(matches!(
            keygen(&path, Some("no.dots"), true),
            Err(KeyError::InvalidId)
        ));

        // Activate a named one.
        let third = keygen(&path, Some("k-next"), true).unwrap();
        assert_eq!(third, "k-next");
        let ring = KeyRing::load(&path).unwrap();
        assert_eq!(ring.active_id(), "k-next");
        assert_eq!(ring.ids().count(), 3);
        assert_ne!(ring.scoped("s").pseudonymise(b"v", 128), p1);
        assert_eq!(
            ring.scoped_for(&first, "s")
                .unwrap()
                .pseudonymise(b"v", 128),
            p1
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // No temporary files left behind.
        assert_eq!(fs::read_dir(&dir.0).unwrap().count(), 1);
    }

    #[test]
    fn preserves_comments_and_formatting() {
        let dir = TempDir::new("fmt");
        let path = dir.0.join("keys.toml");
        let secret = STANDARD.encode([1u8; 32]);
        let original = format!(
            "# scrim key ring. Keep it secret; mount it read-only.\n\
             active   =   \"old\"   # the live one\n\
             \n\
             [keys]\n\
             # from the 2026 rotation\n\
             old = \"base64:{secret}\"  # keep\n"
        );
        fs::write(&path, &original).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        }
        let id = keygen(&path, Some("new"), true).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        let expected_prefix = original.replace("\"old\"   #", "\"new\"   #");
        assert!(text.starts_with(&expected_prefix), "{text}");
        let rest = &text[expected_prefix.len()..];
        assert!(
            rest.starts_with("# added by scrim keygen on ") && rest.contains("\nnew = \"base64:"),
            "{rest}"
        );
        assert_eq!(KeyRing::load(&path).unwrap().active_id(), id);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o640, "permissions kept");
        }
    }

    #[test]
    fn other_table_layouts() {
        let dir = TempDir::new("layouts");
        let secret = STANDARD.encode([1u8; 32]);
        for (n, original) in [
            format!("active = \"a\"\nkeys = {{ a = \"base64:{secret}\" }}\n"),
            format!("active = \"a\"\nkeys.a = \"base64:{secret}\"\n"),
            // No final newline.
            format!("active = \"a\"\n[keys]\na = \"base64:{secret}\""),
        ]
        .into_iter()
        .enumerate()
        {
            let path = dir.0.join(format!("k{n}.toml"));
            fs::write(&path, &original).unwrap();
            let id = keygen(&path, Some("b"), n % 2 == 0).unwrap();
            let ring = KeyRing::load(&path).unwrap_or_else(|e| panic!("{n}: {e}"));
            assert_eq!(ring.ids().collect::<Vec<_>>(), ["a", "b"], "{n}");
            assert_eq!(ring.active_id(), if n % 2 == 0 { id.as_str() } else { "a" });
        }
    }

    #[test]
    fn invalid_existing_file_is_refused_and_untouched() {
        let dir = TempDir::new("invalid");
        let path = dir.0.join("keys.toml");
        let secret = STANDARD.encode([1u8; 31]);
        let original = format!("active = \"a\"\n[keys]\na = \"base64:{secret}\"\n");
        fs::write(&path, &original).unwrap();
        let e = keygen(&path, None, true).unwrap_err();
        assert!(e.to_string().contains("31 bytes"), "{e}");
        assert!(!e.to_string().contains(&secret[..12]), "{e}");
        assert_eq!(fs::read_to_string(&path).unwrap(), original);
        // Missing directory: a write error naming the file.
        let missing = dir.0.join("nope").join("keys.toml");
        let e = keygen(&missing, None, true).unwrap_err();
        assert!(matches!(e, KeyError::Write { .. }), "{e}");
        assert!(
            e.to_string().starts_with(&missing.display().to_string()),
            "{e}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn follows_symlinks() {
        let dir = TempDir::new("symlink");
        let real = dir.0.join("real.toml");
        let link = dir.0.join("link.toml");
        keygen(&real, Some("a"), true).unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        keygen(&link, Some("b"), true).unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(KeyRing::load(&real).unwrap().active_id(), "b");
        // A dangling link is not written through.
        let dangling = dir.0.join("dangling.toml");
        std::os::unix::fs::symlink(dir.0.join("absent.toml"), &dangling).unwrap();
        assert!(keygen(&dangling, None, true).is_err());
        assert!(!dir.0.join("absent.toml").exists());
    }
}
