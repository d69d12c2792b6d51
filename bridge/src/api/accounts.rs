//! The dashboard account: its initial password from the configuration, and a changed one
//! kept hashed (argon2id, PHC string) in a file under the data directory, so that it
//! survives restarts and the configured password stops working once it is changed.
//!
//! Hashing is slow on purpose: call [`Accounts::verify`] and
//! [`Accounts::change_password`] from a blocking thread.

use std::collections::BTreeMap;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::config::Dashboard;

/// The password the configuration ships with; logging in with it makes the API say
/// `default_password: true`, so the dashboard can ask for a change.
pub const DEFAULT_PASSWORD: &str = "public";
/// The shortest new password accepted.
pub const MIN_PASSWORD_LEN: usize = 8;
/// The file, inside the data directory, holding changed passwords.
pub const USERS_FILE: &str = "dashboard_users.json";

/// The file's contents: username → stored account. Entries for other names (an old
/// `[dashboard] username`) are kept when the file is rewritten.
#[derive(Debug, Default, Serialize, Deserialize)]
struct UsersFile {
    users: BTreeMap<String, StoredUser>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredUser {
    /// An argon2id PHC string (`$argon2id$v=19$...`).
    password_hash: String,
    /// RFC 3339, for the operator's information.
    changed_at: String,
}

/// A successful login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedIn {
    /// Whether the account still has the well-known default password.
    pub default_password: bool,
}

/// Why a password change was refused.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("no user {0:?}")]
    UnknownUser(String),
    #[error("the old password is wrong")]
    WrongOldPassword,
    #[error("the new password must have at least {MIN_PASSWORD_LEN} characters")]
    TooShort,
    #[error("the new password must differ from the old one")]
    Unchanged,
    #[error("cannot store the new password: {0}")]
    Storage(String),
}

/// The admin account (one user, as configured).
pub struct Accounts {
    username: String,
    initial_password: String,
    file: PathBuf,
    /// The changed password's hash, if it was ever changed.
    stored: Mutex<Option<String>>,
    /// Held across a whole change (check old, hash, write), so two changes at once cannot
    /// both pass the old-password check.
    changing: Mutex<()>,
}

impl Accounts {
    /// The account of `config`, reading a changed password from `data_dir` if there is
    /// one. A file that exists but cannot be read or parsed is an error: falling back to
    /// the configured password would quietly undo a password change.
    pub fn load(config: &Dashboard, data_dir: &Path) -> io::Result<Accounts> {
        let file = data_dir.join(USERS_FILE);
        let stored = read_users(&file)?
            .users
            .remove(&config.username)
            .map(|user| user.password_hash);
        if let Some(hash) = &stored {
            PasswordHash::new(hash).map_err(|e| {
                invalid_data(format!(
                    "{}: bad password hash for {:?}: {e}",
                    file.display(),
                    config.username
                ))
            })?;
        }
        Ok(Accounts {
            username: config.username.clone(),
            initial_password: config.password.clone(),
            file,
            stored: Mutex::new(stored),
            changing: Mutex::new(()),
        })
    }

    /// Whether anyone can log in with the well-known default password right now.
    pub fn uses_default_password(&self) -> bool {
        self.stored.lock().is_none() && self.initial_password == DEFAULT_PASSWORD
    }

    /// The account's name.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// Checks a login. Slow when the password was changed (argon2).
    pub fn verify(&self, username: &str, password: &str) -> Option<LoggedIn> {
        // Check the password even for a wrong name, so that timing does not tell names.
        let stored = self.stored.lock().clone();
        let password_ok = self.password_matches(stored.as_deref(), password);
        if !password_ok || username != self.username {
            return None;
        }
        Some(LoggedIn {
            default_password: stored.is_none() && password == DEFAULT_PASSWORD,
        })
    }

    fn password_matches(&self, stored: Option<&str>, password: &str) -> bool {
        match stored {
            Some(hash) => match PasswordHash::new(hash) {
                Ok(hash) => Argon2::default()
                    .verify_password(password.as_bytes(), &hash)
                    .is_ok(),
                // Checked at load and written by us; never expected.
                Err(_) => false,
            },
            None => constant_time_eq(password.as_bytes(), self.initial_password.as_bytes()),
        }
    }

    /// Changes the password after checking the old one, and stores the new one's hash.
    pub fn change_password(
        &self,
        username: &str,
        old: &str,
        new: &str,
    ) -> Result<(), PasswordError> {
        if username != self.username {
            return Err(PasswordError::UnknownUser(username.to_owned()));
        }
        let _changing = self.changing.lock();
        let stored = self.stored.lock().clone();
        if !self.password_matches(stored.as_deref(), old) {
            return Err(PasswordError::WrongOldPassword);
        }
        if new.chars().count() < MIN_PASSWORD_LEN {
            return Err(PasswordError::TooShort);
        }
        if new == old {
            return Err(PasswordError::Unchanged);
        }
        let hash = Argon2::default()
            .hash_password(new.as_bytes())
            .map_err(|e| PasswordError::Storage(e.to_string()))?
            .to_string();
        let mut users =
            read_users(&self.file).map_err(|e| PasswordError::Storage(e.to_string()))?;
        users.users.insert(
            self.username.clone(),
            StoredUser {
                password_hash: hash.clone(),
                changed_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                    .to_string(),
            },
        );
        write_users(&self.file, &users).map_err(|e| PasswordError::Storage(e.to_string()))?;
        *self.stored.lock() = Some(hash);
        Ok(())
    }
}

fn invalid_data(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// The users file, or an empty one if it does not exist.
fn read_users(file: &Path) -> io::Result<UsersFile> {
    match std::fs::read(file) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| invalid_data(format!("{}: {e}", file.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(UsersFile::default()),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot read {}: {e}", file.display()),
        )),
    }
}

/// Writes the users file whole, through a temporary file and a rename, so that a crash
/// mid-write leaves the old file, never half of one. Creates the data directory if needed.
fn write_users(file: &Path, users: &UsersFile) -> io::Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", dir.display())))?;
    let temporary = file.with_extension("json.tmp");
    let mut json = serde_json::to_vec_pretty(users).map_err(io::Error::other)?;
    json.push(b'\n');
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        // Hashes are not passwords, but there is no reason for anyone else to read them.
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options.open(&temporary).and_then(|mut f| {
        f.write_all(&json)?;
        f.sync_all()
    });
    written
        .and_then(|()| std::fs::rename(&temporary, file))
        .map_err(|e| io::Error::new(e.kind(), format!("cannot write {}: {e}", file.display())))
}

/// Compares without stopping at the first difference, so the time taken does not tell how
/// much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        difference |= x ^ y;
    }
    difference == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicUsize, Ordering};

    fn temp_dir() -> PathBuf {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        std::env::temp_dir().join(format!(
            "bridge-accounts-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ))
    }

    #[test]
    fn change_persists_and_replaces_the_initial_password() {
        let dir = temp_dir();
        let config = Dashboard::default();
        let accounts = Accounts::load(&config, &dir).unwrap();
        assert_eq!(
            accounts.verify("admin", "public"),
            Some(LoggedIn {
                default_password: true
            })
        );
        assert_eq!(accounts.verify("admin", "wrong"), None);
        assert_eq!(accounts.verify("root", "public"), None);

        assert!(matches!(
            accounts.change_password("admin", "wrong", "long enough"),
            Err(PasswordError::WrongOldPassword)
        ));
        assert!(matches!(
            accounts.change_password("admin", "public", "short"),
            Err(PasswordError::TooShort)
        ));
        assert!(matches!(
            accounts.change_password("root", "public", "long enough"),
            Err(PasswordError::UnknownUser(_))
        ));
        // The directory is created on the first write.
        assert!(!dir.exists());
        accounts
            .change_password("admin", "public", "long enough")
            .unwrap();
        assert_eq!(accounts.verify("admin", "public"), None);
        assert_eq!(
            accounts.verify("admin", "long enough"),
            Some(LoggedIn {
                default_password: false
            })
        );

        let text = std::fs::read_to_string(dir.join(USERS_FILE)).unwrap();
        assert!(text.contains("$argon2id$"), "{text}");
        assert!(!text.contains("long enough"), "{text}");

        let reloaded = Accounts::load(&config, &dir).unwrap();
        assert_eq!(reloaded.verify("admin", "public"), None);
        assert!(reloaded.verify("admin", "long enough").is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_corrupt_file_is_an_error() {
        let dir = temp_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(USERS_FILE), "not json").unwrap();
        let error = Accounts::load(&Dashboard::default(), &dir)
            .err()
            .expect("corrupt file accepted");
        assert!(error.to_string().contains(USERS_FILE), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abc\0"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }
}
