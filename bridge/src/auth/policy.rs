//! [`AuthPolicy`]: anonymous access, the password file, client certificates and the ACL
//! file behind the broker's [`Policy`] seam.

use std::sync::Arc;

use protocol::reason;

use super::acl::Acl;
use super::passwd::{PasswordFile, Verifier};
use crate::broker::access::{Policy, Verdict};
use crate::broker::{Access, Action, Identity};

/// The access policy built from `[auth]` (and the TLS listener's certificate identities).
///
/// CONNECT:
/// * no user name: accepted if `allow_anonymous`, else refused "not authorized" (0x87;
///   3.1.1 code 5);
/// * a user name, with a password file: accepted only with that user's password, else
///   "bad user name or password" (0x86; 3.1.1 code 4);
/// * a user name, no password file: accepted (unverified, as Mosquitto does) if
///   `allow_anonymous`, else refused 0x86.
///
/// A client a TLS listener identified by its certificate (`use_identity_as_username`,
/// [`Policy::authenticate_certified`]) is accepted: the handshake verified the certificate
/// against `[tls] ca`, and its identity is the user name, with no password (as Mosquitto
/// does), whether anonymous access is on or not and whether the password file names it.
///
/// PUBLISH, SUBSCRIBE and deliveries: everything is allowed without an ACL file; with one,
/// [`Acl::allows`] decides and deliveries are checked one by one.
#[derive(Debug)]
pub struct AuthPolicy {
    allow_anonymous: bool,
    passwords: Option<Arc<Verifier>>,
    acl: Option<Acl>,
}

impl AuthPolicy {
    pub fn new(
        allow_anonymous: bool,
        passwords: Option<PasswordFile>,
        acl: Option<Acl>,
    ) -> AuthPolicy {
        AuthPolicy {
            allow_anonymous,
            passwords: passwords.map(|file| Arc::new(Verifier::new(file))),
            acl,
        }
    }

    /// Users in the password file, if there is one.
    pub fn user_count(&self) -> Option<usize> {
        self.passwords.as_ref().map(|v| v.file().len())
    }

    /// Lines of the ACL file that load but probably do not mean what they say.
    pub fn acl_warnings(&self) -> &[(usize, String)] {
        self.acl.as_ref().map_or(&[], Acl::warnings)
    }

    /// Rules in the ACL file, if there is one.
    pub fn rule_count(&self) -> Option<usize> {
        self.acl.as_ref().map(Acl::rule_count)
    }

    /// Whether the policy lets everyone do everything (the default `[auth]`).
    pub fn is_open(&self) -> bool {
        self.allow_anonymous && self.passwords.is_none() && self.acl.is_none()
    }

    /// The broker's [`Access`] for this policy: [`Access::allow_all`] when it is open, so
    /// that the broker can skip the checks altogether.
    pub fn into_access(self) -> Access {
        if self.is_open() {
            Access::allow_all()
        } else {
            Access::with_policy(Box::new(self))
        }
    }
}

impl Policy for AuthPolicy {
    fn authenticate(&self, username: Option<&str>, password: Option<&[u8]>) -> Verdict {
        let Some(username) = username else {
            return Verdict::Decided(if self.allow_anonymous {
                Ok(())
            } else {
                Err(reason::NOT_AUTHORIZED)
            });
        };
        match &self.passwords {
            Some(verifier) => {
                let password = password.unwrap_or_default();
                if verifier.verified_before(username, password) {
                    return Verdict::Decided(Ok(()));
                }
                let (verifier, username, password) =
                    (verifier.clone(), username.to_owned(), password.to_owned());
                Verdict::Slow(Box::new(move || verifier.verify_slow(&username, &password)))
            }
            None if self.allow_anonymous => Verdict::Decided(Ok(())),
            None => Verdict::Decided(Err(reason::BAD_USER_NAME_OR_PASSWORD)),
        }
    }

    fn authenticate_certified(&self, _username: &str) -> Verdict {
        Verdict::Decided(Ok(()))
    }

    fn authorize(&self, who: Identity<'_>, action: Action, topic: &str) -> bool {
        match &self.acl {
            Some(acl) => acl.allows(who, action, topic),
            None => true,
        }
    }

    fn checks_reads(&self) -> bool {
        self.acl.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::passwd::hash_password;

    /// The policy's verdict, a slow check run here and now.
    fn decide(policy: &AuthPolicy, user: Option<&str>, password: Option<&[u8]>) -> Result<(), u8> {
        match policy.authenticate(user, password) {
            Verdict::Decided(result) => result,
            Verdict::Slow(check) => match check() {
                true => Ok(()),
                false => Err(reason::BAD_USER_NAME_OR_PASSWORD),
            },
        }
    }

    #[test]
    fn a_verified_password_is_decided_at_once_the_first_check_is_slow() {
        let policy = AuthPolicy::new(false, Some(passwords()), None);
        let verdict = policy.authenticate(Some("alice"), Some(b"secret"));
        assert!(matches!(verdict, Verdict::Slow(_)), "{verdict:?}");
        assert_eq!(decide(&policy, Some("alice"), Some(b"secret")), Ok(()));
        let verdict = policy.authenticate(Some("alice"), Some(b"secret"));
        assert!(matches!(verdict, Verdict::Decided(Ok(()))), "{verdict:?}");
        let verdict = policy.authenticate(Some("alice"), Some(b"other"));
        assert!(matches!(verdict, Verdict::Slow(_)), "{verdict:?}");
    }

    fn passwords() -> PasswordFile {
        let hash = hash_password(b"secret").unwrap();
        PasswordFile::parse(&format!("alice:{hash}\n")).unwrap()
    }

    #[test]
    fn anonymous_access() {
        let open = AuthPolicy::new(true, None, None);
        assert_eq!(decide(&open, None, None), Ok(()));
        assert_eq!(decide(&open, Some("anyone"), Some(b"x")), Ok(()));
        assert!(open.authorize(
            Identity {
                client_id: "c",
                username: None
            },
            Action::Publish,
            "a"
        ));
        assert!(!open.checks_reads());
        assert!(open.is_open());
        assert!(!AuthPolicy::new(false, None, None).is_open());

        let closed = AuthPolicy::new(false, None, None);
        assert_eq!(decide(&closed, None, None), Err(reason::NOT_AUTHORIZED));
        assert_eq!(
            decide(&closed, Some("anyone"), Some(b"x")),
            Err(reason::BAD_USER_NAME_OR_PASSWORD)
        );
    }

    #[test]
    fn password_file() {
        for anonymous in [true, false] {
            let policy = AuthPolicy::new(anonymous, Some(passwords()), None);
            assert_eq!(decide(&policy, Some("alice"), Some(b"secret")), Ok(()));
            assert_eq!(
                decide(&policy, Some("alice"), Some(b"wrong")),
                Err(reason::BAD_USER_NAME_OR_PASSWORD)
            );
            assert_eq!(
                decide(&policy, Some("alice"), None),
                Err(reason::BAD_USER_NAME_OR_PASSWORD)
            );
            assert_eq!(
                decide(&policy, Some("bob"), Some(b"secret")),
                Err(reason::BAD_USER_NAME_OR_PASSWORD)
            );
            let expected = if anonymous {
                Ok(())
            } else {
                Err(reason::NOT_AUTHORIZED)
            };
            assert_eq!(decide(&policy, None, None), expected);
        }
    }

    fn certified(policy: &AuthPolicy, user: &str) -> Result<(), u8> {
        match policy.authenticate_certified(user) {
            Verdict::Decided(result) => result,
            Verdict::Slow(_) => panic!("a certificate needs no slow check"),
        }
    }

    #[test]
    fn a_certificate_stands_for_a_password() {
        for anonymous in [true, false] {
            for passwords in [None, Some(passwords())] {
                let policy = AuthPolicy::new(anonymous, passwords, None);
                // Not in the password file, and no password: the certificate vouches.
                assert_eq!(certified(&policy, "device-7"), Ok(()));
                // A user of the password file too.
                assert_eq!(certified(&policy, "alice"), Ok(()));
            }
        }
        // Without a certificate, the same name needs its password (or anonymous access).
        let policy = AuthPolicy::new(false, Some(passwords()), None);
        assert_eq!(
            decide(&policy, Some("device-7"), None),
            Err(reason::BAD_USER_NAME_OR_PASSWORD)
        );
        let policy = AuthPolicy::new(false, None, None);
        assert_eq!(
            decide(&policy, Some("device-7"), None),
            Err(reason::BAD_USER_NAME_OR_PASSWORD)
        );
    }

    #[test]
    fn acl_decides_and_checks_reads() {
        let acl = Acl::parse("user alice\ntopic readwrite alice/#\n").unwrap();
        let policy = AuthPolicy::new(true, None, Some(acl));
        assert!(policy.checks_reads());
        let alice = Identity {
            client_id: "c",
            username: Some("alice"),
        };
        assert!(policy.authorize(alice, Action::Publish, "alice/x"));
        assert!(!policy.authorize(alice, Action::Publish, "bob/x"));
        assert!(!policy.authorize(alice, Action::Read, "bob/x"));
        assert!(!policy.authorize(alice, Action::Subscribe, "#"));
    }
}
