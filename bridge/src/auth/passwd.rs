//! The password file, and the `bridge passwd` command that edits it.
//!
//! One user a line, as Mosquitto's `mosquitto_passwd` writes them, but with argon2id
//! hashes (PHC strings: algorithm, parameters, a random salt, the hash):
//!
//! ```text
//! # comments and blank lines are kept by `bridge passwd`
//! alice:$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>
//! ```
//!
//! New hashes use argon2id with m = 19 MiB, t = 2, p = 1 (the OWASP minimum): tens of
//! milliseconds each, which is the point. Checking a CONNECT therefore has a cost, and
//! [`Verifier`] keeps it off the hot path: see there.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::OnceLock;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Argon2, Params};
use clap::Parser;
use parking_lot::Mutex;
use ring::hmac;
use subtle::ConstantTimeEq;

use super::FileError;

/// MQTT carries user names and passwords in 16-bit length-prefixed fields.
pub const MAX_FIELD_LEN: usize = 65_535;

/// A parsed password file: user name → argon2id PHC string.
#[derive(Debug, Clone, Default)]
pub struct PasswordFile {
    users: HashMap<String, String>,
}

impl PasswordFile {
    /// Reads and checks a password file; errors name the file and the line.
    pub fn load(path: &Path) -> Result<PasswordFile, FileError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| FileError::read("password file", path, e))?;
        PasswordFile::parse(&text)
            .map_err(|(line, message)| FileError::parse("password file", path, line, message))
    }

    /// Parses password file text; an error is `(1-based line, message)`.
    pub fn parse(text: &str) -> Result<PasswordFile, (usize, String)> {
        let mut users = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let Some((user, hash)) = parse_line(line).map_err(|m| (number, m))? else {
                continue;
            };
            if users.insert(user.to_owned(), hash.to_owned()).is_some() {
                return Err((number, format!("user {user:?} appears twice")));
            }
        }
        Ok(PasswordFile { users })
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The stored hash of `user`.
    pub fn hash_of(&self, user: &str) -> Option<&str> {
        self.users.get(user).map(String::as_str)
    }
}

/// `Ok(None)` for a blank or comment line, else `(user, hash)` after checking both.
fn parse_line(line: &str) -> Result<Option<(&str, &str)>, String> {
    let trimmed = line.trim_end_matches(['\r', '\n']);
    if trimmed.trim().is_empty() || trimmed.trim_start().starts_with('#') {
        return Ok(None);
    }
    let Some((user, hash)) = trimmed.split_once(':') else {
        return Err("expected `username:$argon2id$...`".to_owned());
    };
    check_username(user)?;
    check_hash(hash)?;
    Ok(Some((user, hash)))
}

/// A user name `bridge passwd` accepts and the file can hold.
pub fn check_username(user: &str) -> Result<(), String> {
    if user.is_empty() {
        return Err("empty user name".to_owned());
    }
    if user.len() > MAX_FIELD_LEN {
        return Err("user name longer than 65535 bytes".to_owned());
    }
    if user.contains(':') {
        return Err(format!("user name {user:?} contains ':'"));
    }
    if user.chars().any(char::is_control) {
        return Err(format!("user name {user:?} contains a control character"));
    }
    Ok(())
}

fn check_hash(hash: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(hash).map_err(|e| format!("bad password hash: {e}"))?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "password hash algorithm {:?} is not supported: expected argon2id (`bridge passwd` writes it)",
            parsed.algorithm.as_str()
        ));
    }
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err("bad password hash: no salt or no hash".to_owned());
    }
    Params::try_from(&parsed).map_err(|e| format!("bad argon2 parameters: {e}"))?;
    Ok(())
}

/// A new argon2id hash (random salt, default parameters m=19 MiB, t=2, p=1).
pub fn hash_password(password: &[u8]) -> Result<String, String> {
    Argon2::default()
        .hash_password(password)
        .map(|hash| hash.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// Whether `password` matches a PHC hash (slow: argon2).
fn hash_matches(hash: &str, password: &[u8]) -> bool {
    match PasswordHash::new(hash) {
        Ok(hash) => Argon2::default().verify_password(password, &hash).is_ok(),
        Err(_) => false,
    }
}

/// Checks passwords against a [`PasswordFile`].
///
/// * The argon2 check ([`Verifier::verify_slow`]) blocks; the broker runs it on a blocking
///   thread under a small fixed limit (`broker::access::CredentialChecks`), so that a storm
///   of bad passwords neither exhausts memory and threads nor takes every core from routing.
/// * A successful check is remembered as HMAC-SHA-256(per-process random key, password)
///   per user, and later CONNECTs with the same password are checked against that in
///   constant time (microseconds): a reconnect storm of legitimate clients costs nothing.
///   The plain password is never kept. The cache belongs to one loaded file, so a reload
///   (SIGHUP) starts with an empty one, and a changed password stops matching at once.
/// * An unknown user is checked against a dummy hash, so timing does not reveal which
///   user names exist.
pub struct Verifier {
    file: PasswordFile,
    key: hmac::Key,
    verified: Mutex<HashMap<String, hmac::Tag>>,
}

impl Verifier {
    pub fn new(file: PasswordFile) -> Verifier {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("the OS random number generator failed");
        Verifier {
            file,
            key: hmac::Key::new(hmac::HMAC_SHA256, &seed),
            verified: Mutex::new(HashMap::new()),
        }
    }

    pub fn file(&self) -> &PasswordFile {
        &self.file
    }

    /// Whether `password` is one already verified for `user` since this file was loaded:
    /// a constant-time comparison of HMAC tags, microseconds.
    pub fn verified_before(&self, user: &str, password: &[u8]) -> bool {
        let tag = hmac::sign(&self.key, password);
        self.verified
            .lock()
            .get(user)
            .is_some_and(|known| bool::from(known.as_ref().ct_eq(tag.as_ref())))
    }

    /// Whether `user` exists and `password` is theirs, by argon2: tens of milliseconds of
    /// a core and 19 MiB. Blocking: run it on a blocking thread, under a limit (the
    /// broker's `CredentialChecks`). An unknown user costs the same time as a known one.
    pub fn verify_slow(&self, user: &str, password: &[u8]) -> bool {
        let Some(hash) = self.file.hash_of(user) else {
            hash_matches(dummy_hash(), password);
            return false;
        };
        let ok = hash_matches(hash, password);
        if ok {
            let tag = hmac::sign(&self.key, password);
            self.verified.lock().insert(user.to_owned(), tag);
        }
        ok
    }

    /// [`Verifier::verified_before`], else [`Verifier::verify_slow`].
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        self.verified_before(user, password) || self.verify_slow(user, password)
    }
}

// By hand: neither hashes nor HMAC tags belong in logs.
impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("users", &self.file.len())
            .field("cached", &self.verified.lock().len())
            .finish_non_exhaustive()
    }
}

/// A hash that no password given to it matches in practice, to spend the same time on an
/// unknown user as on a known one.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).expect("the OS random number generator failed");
        hash_password(&random).expect("argon2 with default parameters")
    })
}

// ---------------------------------------------------------------------------------------
// `bridge passwd`

/// `bridge passwd`: manage the MQTT password file (like mosquitto_passwd).
#[derive(Debug, Parser)]
#[command(
    name = "bridge passwd",
    bin_name = "bridge passwd",
    about = "Adds, changes or deletes a user in an MQTT password file (like mosquitto_passwd).",
    long_about = "Adds, changes or deletes a user in an MQTT password file (like \
        mosquitto_passwd). Each line is `username:$argon2id$...`: a salted argon2id hash, \
        never the password itself.\n\n\
        The password is asked twice when standard input is a terminal; otherwise one line \
        is read from standard input (for scripts: `echo \"$PW\" | bridge passwd FILE USER`). \
        Send SIGHUP to a running bridge to make it re-read the file.\n\n\
        Exit codes: 0 done, 1 failed (file unreadable or damaged, no such user, passwords \
        differ), 2 bad command line.",
    after_help = "Examples:\n  bridge passwd -c passwords alice       create the file with one user\
        \n  bridge passwd passwords bob            add bob, or change his password\
        \n  bridge passwd -D passwords bob         delete bob\
        \n  bridge passwd -b passwords carol PASS  password on the command line (visible to `ps`!)"
)]
pub struct PasswdCli {
    /// Create the file, or overwrite it, with this one user
    #[arg(short = 'c')]
    pub create: bool,

    /// Delete USER from the file
    #[arg(short = 'D', conflicts_with_all = ["create", "batch"])]
    pub delete: bool,

    /// Batch mode: take the password from the command line
    #[arg(short = 'b', requires = "password")]
    pub batch: bool,

    /// The password file
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// The user name
    #[arg(value_name = "USER")]
    pub user: String,

    /// The password (only with -b)
    #[arg(value_name = "PASSWORD", requires = "batch")]
    pub password: Option<String>,
}

/// Runs `bridge passwd ARGS` (`args` starts with the program name, as `std::env::args_os`)
/// and returns its exit code.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match PasswdCli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match run(&cli) {
        Ok(message) => {
            eprintln!("{message}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bridge passwd: error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Does what the command line says; `Ok` carries a one-line report.
pub fn run(cli: &PasswdCli) -> Result<String, String> {
    check_username(&cli.user)?;
    let path = &cli.file;
    let existing = if cli.create {
        None
    } else {
        match std::fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(format!(
                    "{} does not exist (use -c to create it)",
                    path.display()
                ))
            }
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        }
    };
    if let Some(text) = &existing {
        // Refuse to rewrite a damaged file: the damage would be kept, or worse, dropped.
        PasswordFile::parse(text)
            .map_err(|(line, m)| format!("{}, line {line}: {m}", path.display()))?;
    }

    if cli.delete {
        let text = existing.unwrap_or_default();
        let (kept, found) = without_user(&text, &cli.user);
        if !found {
            return Err(format!("no user {:?} in {}", cli.user, path.display()));
        }
        write_file(path, &kept)?;
        return Ok(format!(
            "deleted user {:?} from {}",
            cli.user,
            path.display()
        ));
    }

    let password = match &cli.password {
        Some(password) => password.clone(),
        None => read_password()?,
    };
    if password.is_empty() {
        return Err("empty password".to_owned());
    }
    if password.len() > MAX_FIELD_LEN {
        return Err("password longer than 65535 bytes".to_owned());
    }
    let line = format!("{}:{}\n", cli.user, hash_password(password.as_bytes())?);
    let (mut text, found) = match &existing {
        Some(text) => replace_user(text, &cli.user, &line),
        None => (String::new(), false),
    };
    if !found {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&line);
    }
    write_file(path, &text)?;
    Ok(if found {
        format!(
            "changed the password of {:?} in {}",
            cli.user,
            path.display()
        )
    } else {
        format!("added user {:?} to {}", cli.user, path.display())
    })
}

/// Whether a line of the file is `user`'s.
fn is_line_of(line: &str, user: &str) -> bool {
    line.split_once(':').is_some_and(|(name, _)| name == user)
        && !line.trim_start().starts_with('#')
}

/// The text with `user`'s line removed, and whether there was one.
fn without_user(text: &str, user: &str) -> (String, bool) {
    let mut found = false;
    let mut kept = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if is_line_of(line, user) {
            found = true;
        } else {
            kept.push_str(line);
        }
    }
    (kept, found)
}

/// The text with `user`'s line replaced by `new_line`, and whether there was one.
fn replace_user(text: &str, user: &str, new_line: &str) -> (String, bool) {
    let mut found = false;
    let mut out = String::with_capacity(text.len() + new_line.len());
    for line in text.split_inclusive('\n') {
        if is_line_of(line, user) {
            found = true;
            out.push_str(new_line);
        } else {
            out.push_str(line);
        }
    }
    (out, found)
}

/// Twice without echo on a terminal; otherwise one line of standard input.
fn read_password() -> Result<String, String> {
    if io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")
            .map_err(|e| format!("cannot read the password: {e}"))?;
        let second = rpassword::prompt_password("Reenter password: ")
            .map_err(|e| format!("cannot read the password: {e}"))?;
        if first != second {
            return Err("the passwords do not match".to_owned());
        }
        Ok(first)
    } else {
        let mut line = String::new();
        io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
        let line = line.strip_suffix('\n').unwrap_or(&line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        Ok(line.to_owned())
    }
}

/// Writes the whole file through a temporary file and a rename, so that a broker reading
/// it (SIGHUP) never sees half a file. A new file is readable by its owner only; an
/// existing one keeps its permissions.
fn write_file(path: &Path, text: &str) -> Result<(), String> {
    let fail = |e: io::Error| format!("cannot write {}: {e}", path.display());
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "passwd".to_owned());
    let temp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&temp)?;
        file.write_all(text.as_bytes())?;
        if let Ok(old) = std::fs::metadata(path) {
            file.set_permissions(old.permissions())?;
        }
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("bridge-passwd-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn cli(args: &[&str]) -> PasswdCli {
        PasswdCli::try_parse_from(std::iter::once("bridge passwd").chain(args.iter().copied()))
            .unwrap()
    }

    #[test]
    fn parse_checks_every_line() {
        let hash = hash_password(b"secret").unwrap();
        let text = format!("# users\n\nalice:{hash}\nbob:{hash}\r\n");
        let file = PasswordFile::parse(&text).unwrap();
        assert_eq!(file.len(), 2);
        assert!(file.hash_of("bob").is_some());

        let cases = [
            (format!("alice:{hash}\nalice:{hash}\n"), 2, "twice"),
            ("alice\n".to_owned(), 1, "expected"),
            ("alice:secret\n".to_owned(), 1, "bad password hash"),
            (format!("\n:{hash}\n"), 2, "empty user name"),
            (
                "x:$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$ZmFrZWhhc2hmYWtlaGFzaA\n".to_owned(),
                1,
                "argon2id",
            ),
            (
                "x:$argon2id$v=19$m=1,t=2,p=1$c2FsdHNhbHQ$ZmFrZWhhc2hmYWtlaGFzaA\n".to_owned(),
                1,
                "parameters",
            ),
        ];
        for (text, line, words) in cases {
            let (at, message) = PasswordFile::parse(&text).unwrap_err();
            assert_eq!(at, line, "{text:?}: {message}");
            assert!(message.contains(words), "{text:?}: {message}");
        }
    }

    #[test]
    fn verifier_accepts_the_right_password_only_and_caches() {
        let hash = hash_password(b"right").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        let verifier = Verifier::new(PasswordFile::parse(&format!("alice:{hash}\n")).unwrap());
        assert!(!verifier.verify("alice", b"wrong"));
        assert!(verifier.verified.lock().is_empty());
        assert!(verifier.verify("alice", b"right"));
        assert_eq!(verifier.verified.lock().len(), 1);
        // From the cache now; a wrong password still fails after a right one.
        assert!(verifier.verify("alice", b"right"));
        assert!(!verifier.verify("alice", b"righ"));
        assert!(!verifier.verify("alice", b""));
        assert!(!verifier.verify("bob", b"right"));
        // Debug output (logs) shows neither hashes nor tags.
        let debug = format!("{verifier:?}");
        assert!(
            !debug.contains("argon2") && !debug.contains("Tag"),
            "{debug}"
        );
    }

    #[test]
    fn create_add_change_delete_round_trip() {
        let dir = temp_dir("round-trip");
        let file = dir.join("passwords");
        let f = file.to_str().unwrap();

        assert!(run(&cli(&[f, "alice"])).unwrap_err().contains("-c"));
        run(&cli(&["-c", "-b", f, "alice", "one"])).unwrap();
        run(&cli(&["-b", f, "bob", "two"])).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains("one") && !text.contains("two"), "{text}");
        let users = PasswordFile::parse(&text).unwrap();
        assert_eq!(users.len(), 2);
        let verifier = Verifier::new(users);
        assert!(verifier.verify("alice", b"one"));
        assert!(verifier.verify("bob", b"two"));

        // Change keeps the order and the other lines.
        std::fs::write(&file, format!("# keep me\n{text}")).unwrap();
        let report = run(&cli(&["-b", f, "alice", "three"])).unwrap();
        assert!(report.contains("changed"), "{report}");
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.starts_with("# keep me\nalice:$argon2id$"), "{text}");
        let verifier = Verifier::new(PasswordFile::parse(&text).unwrap());
        assert!(verifier.verify("alice", b"three"));
        assert!(!verifier.verify("alice", b"one"));

        run(&cli(&["-D", f, "alice"])).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains("alice"), "{text}");
        assert!(run(&cli(&["-D", f, "alice"]))
            .unwrap_err()
            .contains("no user"));

        // -c starts over.
        run(&cli(&["-c", "-b", f, "carol", "four"])).unwrap();
        let users = PasswordFile::parse(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(users.len(), 1);
        assert!(users.hash_of("carol").is_some());

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "mode {mode:o}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_command_lines_and_names_are_refused() {
        for args in [
            &["-D", "-c", "f", "u"][..],
            &["-b", "f", "u"],
            &["f", "u", "password-without-b"],
            &["f"],
        ] {
            let all = std::iter::once("bridge passwd").chain(args.iter().copied());
            assert!(PasswdCli::try_parse_from(all).is_err(), "{args:?} accepted");
        }
        let dir = temp_dir("names");
        let f = dir.join("p");
        let f = f.to_str().unwrap();
        assert!(run(&cli(&["-c", "-b", f, "a:b", "x"])).is_err());
        assert!(run(&cli(&["-c", "-b", f, "a", ""])).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damaged_files_are_not_rewritten() {
        let dir = temp_dir("damaged");
        let file = dir.join("p");
        std::fs::write(&file, "alice:plaintext\n").unwrap();
        let error = run(&cli(&["-b", file.to_str().unwrap(), "bob", "x"])).unwrap_err();
        assert!(error.contains("line 1"), "{error}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "alice:plaintext\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
