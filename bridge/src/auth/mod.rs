//! MQTT client authentication and authorisation: who may connect (anonymous access, the
//! password file, client certificates) and what each client may publish, subscribe to and
//! receive (the ACL file).
//!
//! * [`passwd`]: the password file (`user:$argon2id$...` lines) and `bridge passwd`.
//! * [`acl`]: the Mosquitto-like ACL file.
//! * [`policy`]: [`AuthPolicy`], which puts both behind the broker's
//!   [`Policy`](crate::broker::access::Policy) seam.
//!
//! [`load`] builds the policy from the `[auth]` configuration; the server installs it with
//! `broker.set_access` at start and again on SIGHUP.

pub mod acl;
pub mod passwd;
pub mod policy;

use std::fmt;
use std::path::{Path, PathBuf};

pub use policy::AuthPolicy;

use crate::config;

/// A password or ACL file that cannot be used: one line naming the file and, for content
/// errors, the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// `password file` or `ACL file`.
    pub what: &'static str,
    pub path: PathBuf,
    /// 1-based line of a content error.
    pub line: Option<usize>,
    pub message: String,
}

impl FileError {
    pub fn read(what: &'static str, path: &Path, error: std::io::Error) -> FileError {
        FileError {
            what,
            path: path.to_owned(),
            line: None,
            message: format!("cannot read: {error}"),
        }
    }

    pub fn parse(what: &'static str, path: &Path, line: usize, message: String) -> FileError {
        FileError {
            what,
            path: path.to_owned(),
            line: Some(line),
            message,
        }
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.what, self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for FileError {}

/// Reads the files named in `[auth]` and builds the policy.
pub fn load(settings: &config::Auth) -> Result<AuthPolicy, FileError> {
    let passwords = settings
        .password_file
        .as_deref()
        .map(passwd::PasswordFile::load)
        .transpose()?;
    let acl = settings
        .acl_file
        .as_deref()
        .map(acl::Acl::load)
        .transpose()?;
    Ok(AuthPolicy::new(settings.allow_anonymous, passwords, acl))
}

/// What in the loaded files probably does not mean what it says, one line each naming the
/// file and the line: logged at every (re)load and shown in the dashboard.
pub fn warnings(settings: &config::Auth, policy: &AuthPolicy) -> Vec<String> {
    let Some(path) = &settings.acl_file else {
        return Vec::new();
    };
    policy
        .acl_warnings()
        .iter()
        .map(|(line, message)| format!("ACL file {}, line {line}: {message}", path.display()))
        .collect()
}

/// Logs what the policy means for whoever runs the broker: loud when anyone can connect.
pub fn log_summary(settings: &config::Auth, policy: &AuthPolicy, cert_users: bool) {
    if let (Some(path), Some(users)) = (&settings.password_file, policy.user_count()) {
        tracing::info!(file = %path.display(), users, "password file loaded");
    }
    if let (Some(path), Some(rules)) = (&settings.acl_file, policy.rule_count()) {
        tracing::info!(file = %path.display(), rules, "ACL file loaded");
    }
    for warning in warnings(settings, policy) {
        tracing::warn!("{warning}");
    }
    match (settings.allow_anonymous, settings.password_file.is_some()) {
        (true, false) => tracing::warn!(
            "anonymous access is on and there is no password file: anyone who can reach \
             the MQTT ports can connect{}; to require passwords, create one with \
             `bridge passwd -c FILE USER` and set [auth] password_file = \"FILE\" and \
             allow_anonymous = false",
            if settings.acl_file.is_some() {
                " (and claim any user name in the ACL file)"
            } else {
                ", publish and subscribe"
            }
        ),
        (true, true) => tracing::info!(
            "clients without a user name are let in (anonymous access is on); set [auth] \
             allow_anonymous = false to refuse them"
        ),
        (false, false) if !cert_users => tracing::warn!(
            "anonymous access is off and there is no password file: no client can connect; \
             set [auth] password_file"
        ),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_errors_are_one_line_naming_file_and_line() {
        let e = FileError::parse("ACL file", Path::new("/etc/acl"), 3, "bad".into());
        assert_eq!(e.to_string(), "ACL file /etc/acl, line 3: bad");
        let e = FileError::read(
            "password file",
            Path::new("/nope"),
            std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert!(e
            .to_string()
            .starts_with("password file /nope: cannot read"));
    }
}
