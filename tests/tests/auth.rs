//! MQTT client authentication and authorisation against the real binary: `bridge passwd`,
//! the password file, anonymous access, the ACL file, SIGHUP reloads and bad files, driven
//! with mosquitto_pub / mosquitto_sub.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tests::harness::bridge_bin;
use tests::procs::{mosquitto_pub, poll_log, sighup};
use tests::wire::{self, RawClient};
use tests::{spawn_line_buffered, unique, Bridge, Proc};

const WAIT: Duration = Duration::from_secs(30);

/// A scratch directory, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(unique(&format!("bridge-auth-{name}")));
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `bridge passwd ARGS` with `stdin` as standard input.
fn passwd(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(bridge_bin())
        .arg("passwd")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bridge passwd");
    // A command that reads no password (delete) may have exited already: a broken pipe
    // here is not a failure, its exit status and output say what happened.
    let written = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    if let Err(e) = written {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe,
            "writing to passwd: {e}"
        );
    }
    child.wait_with_output().unwrap()
}

fn passwd_ok(args: &[&str], stdin: &str) {
    let out = passwd(args, stdin);
    assert!(
        out.status.success(),
        "bridge passwd {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A config file with an `[auth]` section.
fn config(dir: &Dir, auth: &str) -> PathBuf {
    dir.write("bridge.toml", &format!("[auth]\n{auth}\n"))
}

fn start(config: &Path) -> Bridge {
    Bridge::start_with(&["--config", config.to_str().unwrap()])
}

fn pub_ok(b: &Bridge, args: &[&str]) -> String {
    let (code, out, err) = mosquitto_pub(b, args);
    assert_eq!(code, 0, "mosquitto_pub {args:?}: {out}\n{err}");
    out
}

/// mosquitto_sub with `-d` and a `MSG topic payload` format, once its SUBACK has come; the
/// SUBACK line (`Subscribed (mid: 1): <granted or failure code>`) is returned too.
fn sub(b: &Bridge, args: &[&str]) -> (Proc, String) {
    let port = b.tcp_port().to_string();
    let mut all = vec!["-h", "127.0.0.1", "-p", &port, "-d", "-F", "MSG %t %p"];
    all.extend_from_slice(args);
    let mut p = spawn_line_buffered("mosquitto_sub", &all);
    let suback = p.wait_line(WAIT, |l| l.starts_with("Subscribed (mid"));
    (p, suback)
}

/// The `MSG ...` lines seen until (and including) the one equal to `last`.
fn messages_until(p: &mut Proc, last: &str) -> Vec<String> {
    p.wait_line(WAIT, |l| l == last);
    p.seen()
        .iter()
        .filter(|l| l.starts_with("MSG "))
        .cloned()
        .collect()
}

/// Polls the bridge's log until it contains `needle`.
fn wait_for_log(b: &Bridge, needle: &str) {
    let every = Duration::from_millis(100);
    if poll_log(b, WAIT, every, |log| log.contains(needle).then_some(())).is_none() {
        panic!("{needle:?} not in the log:\n{}", b.log_tail());
    }
}

/// `-c` creates from standard input, `-b` adds, a second `-b` changes, `-D` deletes: the
/// file holds salted argon2id hashes and never a password.
#[test]
fn passwd_create_add_change_delete() {
    let dir = Dir::new("passwd");
    let file = dir.path("passwords");
    let f = file.to_str().unwrap();

    let out = passwd(&[f, "alice"], "pw-one\n");
    assert_eq!(out.status.code(), Some(1), "a missing file needs -c");
    passwd_ok(&["-c", f, "alice"], "pw-one\n");
    passwd_ok(&["-b", f, "bob", "pw-two"], "");
    passwd_ok(&[f, "carol"], "pw-three\r\n");
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for (line, user) in lines.iter().zip(["alice", "bob", "carol"]) {
        let hash = line
            .strip_prefix(&format!("{user}:"))
            .unwrap_or_else(|| panic!("{line}"));
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{line}"
        );
    }
    for secret in ["pw-one", "pw-two", "pw-three"] {
        assert!(!text.contains(secret), "plaintext {secret} in {text}");
    }
    // Same password, another salt: the hashes differ.
    passwd_ok(&["-b", f, "dave", "pw-two"], "");
    let text = std::fs::read_to_string(&file).unwrap();
    let hash_of = |user: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{user}:")))
            .unwrap()
            .to_owned()
    };
    assert_ne!(hash_of("bob"), hash_of("dave"));

    // Change: bob's line is replaced in place.
    let before = hash_of("bob");
    passwd_ok(&["-b", f, "bob", "pw-new"], "");
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().count(), 4);
    assert!(text.lines().nth(1).unwrap().starts_with("bob:"));
    assert!(!text.contains(&before));

    passwd_ok(&["-D", f, "alice"], "");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("alice:"), "{text}");
    assert_eq!(text.lines().count(), 3);
    let out = passwd(&["-D", f, "alice"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user"));

    // -c starts over.
    passwd_ok(&["-c", "-b", f, "erin", "pw-five"], "");
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().count(), 1);
    assert!(text.starts_with("erin:$argon2id$"));

    // Usage errors exit 2; an empty password is refused.
    assert_eq!(passwd(&["-b", f, "x"], "").status.code(), Some(2));
    assert_eq!(passwd(&["-D", "-c", f, "x"], "").status.code(), Some(2));
    assert_eq!(passwd(&[f, "frank"], "\n").status.code(), Some(1));
}

/// With a password file and anonymous access off: the right password connects, a wrong one
/// or an unknown user gets "bad user name or password" (3.1.1 code 4, 5.0 0x86), no user
/// name gets "not authorised" (3.1.1 code 5, 5.0 0x87).
#[test]
fn passwords_are_checked() {
    let dir = Dir::new("passwords");
    let file = dir.path("passwords");
    passwd_ok(&["-c", "-b", file.to_str().unwrap(), "alice", "s3cret"], "");
    let config = config(
        &dir,
        &format!(
            "allow_anonymous = false\npassword_file = {:?}",
            file.to_str().unwrap()
        ),
    );
    let b = start(&config);
    let topic = unique("pw");

    let (mut s, suback) = sub(&b, &["-u", "alice", "-P", "s3cret", "-t", &topic]);
    assert!(suback.ends_with(": 0"), "{suback}");
    pub_ok(
        &b,
        &["-u", "alice", "-P", "s3cret", "-t", &topic, "-m", "one"],
    );
    // Again, from the verified-password cache.
    pub_ok(
        &b,
        &["-u", "alice", "-P", "s3cret", "-t", &topic, "-m", "two"],
    );
    pub_ok(
        &b,
        &[
            "-u", "alice", "-P", "s3cret", "-t", &topic, "-m", "three", "-V", "mqttv5",
        ],
    );
    let got = messages_until(&mut s, &format!("MSG {topic} three"));
    assert_eq!(
        got,
        [
            format!("MSG {topic} one"),
            format!("MSG {topic} two"),
            format!("MSG {topic} three")
        ]
    );

    for (args, code, words) in [
        (
            &["-u", "alice", "-P", "wrong"][..],
            4,
            "bad user name or password",
        ),
        (&["-u", "alice"], 4, "bad user name or password"),
        (
            &["-u", "mallory", "-P", "s3cret"],
            4,
            "bad user name or password",
        ),
        (&[], 5, "not authorised"),
        (
            &["-u", "alice", "-P", "wrong", "-V", "mqttv5"],
            0x86,
            "Bad User Name or Password",
        ),
        (&["-V", "mqttv5"], 0x87, "Not authorized"),
    ] {
        let mut all = args.to_vec();
        all.extend(["-t", &topic, "-m", "refused"]);
        let (got, out, err) = mosquitto_pub(&b, &all);
        assert_eq!(got, code, "{args:?}: {out}\n{err}");
        assert!(err.contains(words), "{args:?}: {err}");
    }
    // Nothing refused got through.
    pub_ok(
        &b,
        &["-u", "alice", "-P", "s3cret", "-t", &topic, "-m", "end"],
    );
    let got = messages_until(&mut s, &format!("MSG {topic} end"));
    assert_eq!(got.len(), 4, "{got:?}");
}

/// Anonymous access is on by default, with a warning that says how to turn it off; with a
/// password file and anonymous access on, clients without a user name still get in.
#[test]
fn anonymous_access_is_on_by_default_with_a_warning() {
    let b = Bridge::start();
    pub_ok(&b, &["-t", "anon/x", "-m", "hi"]);
    let log = std::fs::read_to_string(b.log_path()).unwrap();
    assert!(
        log.contains("WARN") && log.contains("anyone") && log.contains("allow_anonymous = false"),
        "{log}"
    );

    let dir = Dir::new("anonymous");
    let file = dir.path("passwords");
    passwd_ok(&["-c", "-b", file.to_str().unwrap(), "alice", "s3cret"], "");
    let config = config(
        &dir,
        &format!("password_file = {:?}", file.to_str().unwrap()),
    );
    let b = start(&config);
    pub_ok(&b, &["-t", "anon/x", "-m", "hi"]);
    let (code, _, err) = mosquitto_pub(&b, &["-u", "alice", "-P", "x", "-t", "a", "-m", "b"]);
    assert_eq!(code, 4, "{err}");
    let log = std::fs::read_to_string(b.log_path()).unwrap();
    assert!(!log.contains("anyone who can reach"), "{log}");
}

const ACL: &str = "\
# anonymous clients
topic read public/#

user alice
topic readwrite alice/#

user admin
topic readwrite #

user reader
topic read #
topic deny bob/#

user watcher
topic read alice/#

pattern readwrite clients/%c/#
";

fn acl_bridge(dir: &Dir) -> (Bridge, PathBuf) {
    let file = dir.path("passwords");
    let f = file.to_str().unwrap();
    passwd_ok(&["-c", "-b", f, "alice", "a-pw"], "");
    for user in ["admin", "reader", "watcher"] {
        passwd_ok(&["-b", f, user, &format!("{user}-pw")], "");
    }
    let acl = dir.write("acl", ACL);
    let config = config(
        dir,
        &format!(
            "password_file = {:?}\nacl_file = {:?}",
            f,
            acl.to_str().unwrap()
        ),
    );
    (start(&config), config)
}

fn user(name: &str) -> [String; 4] {
    [
        "-u".into(),
        name.into(),
        "-P".into(),
        if name == "alice" {
            "a-pw".into()
        } else {
            format!("{name}-pw")
        },
    ]
}

fn with<'a>(creds: &'a [String; 4], rest: &[&'a str]) -> Vec<&'a str> {
    creds
        .iter()
        .map(String::as_str)
        .chain(rest.iter().copied())
        .collect()
}

/// The ACL file decides publishes, subscriptions and deliveries.
#[test]
fn acl_rules_apply_to_publish_subscribe_and_delivery() {
    let dir = Dir::new("acl");
    let (b, _config) = acl_bridge(&dir);
    let (alice, admin, reader, watcher) = (
        user("alice"),
        user("admin"),
        user("reader"),
        user("watcher"),
    );

    // admin sees everything (but $SYS); reader reads everything but bob/#.
    let (mut all, suback) = sub(&b, &with(&admin, &["-t", "#", "-q", "1"]));
    assert!(suback.ends_with(": 1"), "{suback}");
    let (mut most, suback) = sub(&b, &with(&reader, &["-t", "#", "-q", "1"]));
    assert!(suback.ends_with(": 1"), "{suback}");

    // alice: her own topics, both ways.
    let (mut own, suback) = sub(&b, &with(&alice, &["-t", "alice/#", "-q", "1"]));
    assert!(suback.ends_with(": 1"), "{suback}");
    pub_ok(
        &b,
        &with(&alice, &["-t", "alice/x", "-m", "mine", "-q", "1"]),
    );
    own.wait_line(WAIT, |l| l == "MSG alice/x mine");

    // Not bob's: the subscription fails (SUBACK 0x80; 5.0: 0x87) ...
    let (mut denied, suback) = sub(&b, &with(&alice, &["-t", "bob/#"]));
    assert!(suback.ends_with(": 128"), "{suback}");
    denied.wait(WAIT);
    assert!(denied.stderr().contains("denied"), "{}", denied.stderr());
    let (_denied, suback) = sub(&b, &with(&alice, &["-t", "bob/#", "-V", "mqttv5"]));
    assert!(suback.ends_with(": 135"), "{suback}");
    // ... a wider filter than her rules cover too ...
    let (_wide, suback) = sub(&b, &with(&alice, &["-t", "+/x"]));
    assert!(suback.ends_with(": 128"), "{suback}");
    // ... and her publish there is acknowledged (3.1.1) but dropped.
    pub_ok(
        &b,
        &with(&alice, &["-t", "bob/x", "-m", "sneaky", "-q", "1"]),
    );
    // 5.0 gets PUBACK 0x87 "not authorized".
    let out = pub_ok(
        &b,
        &with(
            &alice,
            &[
                "-t", "bob/y", "-m", "sneaky5", "-q", "1", "-V", "mqttv5", "-d",
            ],
        ),
    );
    assert!(out.contains("received PUBACK (Mid: 1, RC:135)"), "{out}");

    // watcher may read alice/# only: a subscription to # is refused outright.
    let (_watch, suback) = sub(&b, &with(&watcher, &["-t", "#"]));
    assert!(suback.ends_with(": 128"), "{suback}");

    // admin's bob/x reaches admin, not reader (denied per delivery, although reader's `#`
    // subscription was granted).
    pub_ok(
        &b,
        &with(&admin, &["-t", "bob/x", "-m", "for-admin", "-q", "1"]),
    );
    pub_ok(&b, &with(&admin, &["-t", "end", "-m", "end", "-q", "1"]));
    let got = messages_until(&mut all, "MSG end end");
    assert_eq!(
        got,
        ["MSG alice/x mine", "MSG bob/x for-admin", "MSG end end"],
        "admin"
    );
    let got = messages_until(&mut most, "MSG end end");
    assert_eq!(got, ["MSG alice/x mine", "MSG end end"], "reader");
}

/// `pattern ... clients/%c/#` gives each client its own subtree, anonymous ones included;
/// anonymous rules (before any `user`) let anonymous clients read `public/#` only.
#[test]
fn acl_patterns_and_anonymous_rules() {
    let dir = Dir::new("acl-patterns");
    let (b, _config) = acl_bridge(&dir);
    let admin = user("admin");
    let (mut all, _) = sub(&b, &with(&admin, &["-t", "#", "-q", "1"]));

    // Anonymous, client id dev-1.
    pub_ok(
        &b,
        &[
            "-i",
            "dev-1",
            "-t",
            "clients/dev-1/up",
            "-m",
            "own",
            "-q",
            "1",
        ],
    );
    pub_ok(
        &b,
        &[
            "-i",
            "dev-1",
            "-t",
            "clients/dev-2/up",
            "-m",
            "other",
            "-q",
            "1",
        ],
    );
    pub_ok(
        &b,
        &[
            "-i",
            "dev-1",
            "-t",
            "public/x",
            "-m",
            "read-only",
            "-q",
            "1",
        ],
    );
    // A client id that is a wildcard gets nothing from the pattern.
    pub_ok(
        &b,
        &["-i", "+", "-t", "clients/dev-2/up", "-m", "wild", "-q", "1"],
    );
    let (own, suback) = sub(&b, &["-i", "dev-1", "-t", "clients/dev-1/#"]);
    assert!(suback.ends_with(": 0"), "{suback}");
    drop(own);
    let (_other, suback) = sub(&b, &["-i", "dev-1x", "-t", "clients/+/up"]);
    assert!(suback.ends_with(": 128"), "{suback}");

    let (mut public, suback) = sub(&b, &["-t", "public/#", "-q", "1"]);
    assert!(suback.ends_with(": 1"), "{suback}");
    let (_private, suback) = sub(&b, &["-t", "alice/#"]);
    assert!(suback.ends_with(": 128"), "{suback}");
    pub_ok(
        &b,
        &with(&admin, &["-t", "public/news", "-m", "hello", "-q", "1"]),
    );
    public.wait_line(WAIT, |l| l == "MSG public/news hello");

    pub_ok(&b, &with(&admin, &["-t", "end", "-m", "end", "-q", "1"]));
    let got = messages_until(&mut all, "MSG end end");
    assert_eq!(
        got,
        [
            "MSG clients/dev-1/up own",
            "MSG public/news hello",
            "MSG end end"
        ]
    );
}

/// A bridge that lets in only the users of a new password file (`users`: name and
/// password) and applies `acl`; returns it with the ACL file's path (to rewrite it).
fn closed_bridge(dir: &Dir, users: &[(&str, &str)], acl: &str) -> (Bridge, PathBuf) {
    let file = dir.path("passwords");
    let f = file.to_str().unwrap();
    for (n, (user, password)) in users.iter().enumerate() {
        let create = if n == 0 {
            &["-c", "-b"][..]
        } else {
            &["-b"][..]
        };
        passwd_ok(&[create, &[f, user, password]].concat(), "");
    }
    let acl = dir.write("acl", acl);
    let config = config(
        dir,
        &format!(
            "allow_anonymous = false\npassword_file = {f:?}\nacl_file = {:?}",
            acl.to_str().unwrap()
        ),
    );
    (start(&config), acl)
}

/// SIGHUP re-reads the password and ACL files: a user added since can connect, rights
/// taken away stop deliveries to existing subscriptions, and a broken file is refused with
/// the old policy kept.
#[test]
fn sighup_reloads_passwords_and_acl() {
    let dir = Dir::new("reload");
    let (b, acl) = closed_bridge(
        &dir,
        &[("alice", "a-pw")],
        "user alice\ntopic readwrite #\n",
    );
    let f = dir.path("passwords");
    let f = f.to_str().unwrap();
    let bob = ["-u", "bob", "-P", "b-pw", "-t", "news", "-m", "x"];
    assert_eq!(mosquitto_pub(&b, &bob).0, 4);

    let (mut s, _) = sub(&b, &["-u", "alice", "-P", "a-pw", "-t", "#", "-q", "1"]);
    passwd_ok(&["-b", f, "bob", "b-pw"], "");
    std::fs::write(
        &acl,
        "user alice\ntopic readwrite alice/#\nuser bob\ntopic write news\n",
    )
    .unwrap();
    sighup(&b);
    wait_for_log(&b, "reloaded the access policy");
    pub_ok(&b, &bob);
    // alice's `#` subscription stays, but news is no longer hers to read.
    pub_ok(
        &b,
        &["-u", "alice", "-P", "a-pw", "-t", "alice/end", "-m", "end"],
    );
    let got = messages_until(&mut s, "MSG alice/end end");
    assert_eq!(got, ["MSG alice/end end"]);

    // A broken ACL: the reload fails, the policy in force stays.
    std::fs::write(&acl, "user alice\ntopic readwrite alice/#\nbogus line\n").unwrap();
    passwd_ok(&["-D", f, "bob"], "");
    sighup(&b);
    wait_for_log(&b, "reload failed");
    let log = std::fs::read_to_string(b.log_path()).unwrap();
    assert!(log.contains("line 3"), "{log}");
    pub_ok(&b, &bob);
}

/// Files that cannot be used stop the start with exit code 2 and a message naming the file
/// and the line.
#[test]
fn bad_files_exit_2_naming_file_and_line() {
    let dir = Dir::new("bad");
    let good = dir.path("passwords");
    passwd_ok(&["-c", "-b", good.to_str().unwrap(), "alice", "pw"], "");
    let plaintext = dir.write("plain", "alice:$argon2id$ok\nbob:secret\n");
    let acl = dir.write(
        "acl",
        "user alice\ntopic readwrite alice/#\ntopic read a/#/b\n",
    );
    let missing = dir.path("missing");
    for (auth, words) in [
        (
            format!("password_file = {:?}", plaintext.to_str().unwrap()),
            vec![plaintext.to_str().unwrap(), "line 1"],
        ),
        (
            format!(
                "password_file = {:?}\nacl_file = {:?}",
                good.to_str().unwrap(),
                acl.to_str().unwrap()
            ),
            vec![acl.to_str().unwrap(), "line 3", "a/#/b"],
        ),
        (
            format!("acl_file = {:?}", missing.to_str().unwrap()),
            vec![missing.to_str().unwrap(), "cannot read"],
        ),
    ] {
        let config = config(&dir, &auth);
        let out = Command::new(bridge_bin())
            .args(["--config", config.to_str().unwrap()])
            .args(["--tcp", "127.0.0.1:0", "--ws", "off", "--http", "off"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{auth}: {err}");
        for w in words {
            assert!(err.contains(w), "{auth}: {w:?} not in {err}");
        }
        assert!(
            out.stdout.is_empty(),
            "nothing may listen: {:?}",
            out.stdout
        );
    }
}

/// Issue 12, item 1: a persistent session is resumed only by the user name that left it.
/// bob's `bobdev` session (subscribed to `bob/#`, three QoS 1 messages queued) is not
/// handed to alice when she connects with client id `bobdev` and clean session 0: she
/// gets a new session (session present 0, MQTT-3.2.2-2 allows it for a session the server
/// does not resume), none of bob's messages and none of his subscriptions.
#[test]
fn a_session_left_by_one_user_is_not_resumed_by_another() {
    let dir = Dir::new("resume");
    let (b, _) = closed_bridge(
        &dir,
        &[("alice", "a-pw"), ("bob", "b-pw")],
        "user alice\ntopic readwrite alice/#\nuser bob\ntopic readwrite bob/#\n",
    );
    let port = b.tcp_port();
    let as_user = |id: &str, user: &str, pw: &[u8]| {
        wire::connect(id).clean(false).username(user).password(pw)
    };

    let (mut bob, _) = RawClient::connect(port, &as_user("bobdev", "bob", b"b-pw"));
    assert_eq!(bob.subscribe(1, &[("bob/#", 1)]), vec![1]);
    bob.disconnect();
    let mut publisher = RawClient::connect(
        port,
        &wire::connect("pub").username("bob").password(b"b-pw"),
    )
    .0;
    for (pid, payload) in [(1, "q1"), (2, "q2"), (3, "q3")] {
        publisher.publish("bob/x", payload.as_bytes(), 1, false, pid);
    }

    let (mut alice, present) = RawClient::connect(port, &as_user("bobdev", "alice", b"a-pw"));
    assert!(!present, "alice must not resume bob's session");
    // Nothing queued for bob reaches her, and his subscription is not hers: a live
    // message to bob/x does not either.
    publisher.publish("bob/x", b"live", 1, false, 4);
    alice.expect_silence(Duration::from_secs(1));
    alice.disconnect();
    wait_for_log(&b, "session held by another user name: starting it clean");

    // bob's own resumption of alice's session is refused the same way.
    let (mut bob, present) = RawClient::connect(port, &as_user("bobdev", "bob", b"b-pw"));
    assert!(!present, "the session is alice's now");
    publisher.publish("bob/x", b"after", 1, false, 5);
    bob.expect_silence(Duration::from_secs(1));
}

/// Issue 12, item 1: every delivery passes the reader's ACL at the time it is sent, not
/// only when it was routed. bob leaves one QoS 1 message in flight (never acknowledged) and
/// three queued on `bob/secret/x`; the ACL is then reloaded without his right to read
/// `bob/secret/#`. On resuming, neither the re-send nor the queued ones reach him, while
/// a queued message he may still read does.
#[test]
fn queued_and_in_flight_deliveries_pass_the_acl_of_now() {
    let dir = Dir::new("acl-now");
    let (b, acl) = closed_bridge(
        &dir,
        &[("bob", "b-pw")],
        "user bob\ntopic readwrite bob/#\n",
    );
    let port = b.tcp_port();
    let bobdev = wire::connect("bobdev")
        .clean(false)
        .username("bob")
        .password(b"b-pw");
    let mut publisher = RawClient::connect(
        port,
        &wire::connect("pub").username("bob").password(b"b-pw"),
    )
    .0;

    let (mut bob, _) = RawClient::connect(port, &bobdev);
    assert_eq!(bob.subscribe(1, &[("bob/#", 1)]), vec![1]);
    publisher.publish("bob/secret/x", b"in-flight", 1, false, 1);
    match bob.expect_publish(WAIT) {
        wire::Packet::Publish { topic, .. } => assert_eq!(topic, "bob/secret/x"),
        other => panic!("{other:?}"),
    }
    // Gone without acknowledging it: it is in flight, to be re-sent with DUP.
    bob.drop_abruptly();
    std::thread::sleep(Duration::from_millis(300));
    for (pid, payload) in [(2, "q1"), (3, "q2"), (4, "q3")] {
        publisher.publish("bob/secret/x", payload.as_bytes(), 1, false, pid);
    }
    publisher.publish("bob/open", b"readable", 1, false, 5);

    std::fs::write(
        &acl,
        "user bob\ntopic deny bob/secret/#\ntopic readwrite bob/#\n",
    )
    .unwrap();
    sighup(&b);
    wait_for_log(&b, "reloaded the access policy");

    let (mut bob, present) = RawClient::connect(port, &bobdev);
    assert!(present, "bob resumes his own session");
    let got = bob.receive_all(Duration::from_secs(1), 10);
    let topics: Vec<_> = got
        .iter()
        .filter_map(|p| {
            p.as_publish()
                .map(|(t, p)| format!("{t} {}", String::from_utf8_lossy(p)))
        })
        .collect();
    assert_eq!(topics, ["bob/open readable"], "only what bob may read now");
}

/// Issue 12, item 1 (review): a member of a shared subscription that may not read a topic
/// does not take its turn for that topic's messages; otherwise the send-time ACL check
/// would drop them and they would be lost for the whole group.
#[test]
fn shared_subscription_members_that_may_not_read_are_passed_over() {
    let dir = Dir::new("shared-acl");
    let (b, _) = closed_bridge(
        &dir,
        &[("alice", "a-pw"), ("bob", "b-pw")],
        "user alice\ntopic readwrite work/#\nuser bob\ntopic read work/#\ntopic deny work/secret/#\n",
    );
    let port = b.tcp_port();
    let member = |id: &str, user: &str, pw: &[u8]| {
        let mut c = RawClient::connect(port, &wire::connect(id).username(user).password(pw)).0;
        assert_eq!(c.subscribe(1, &[("$share/g/work/#", 1)]), vec![1]);
        c
    };
    let mut alice = member("alice-w", "alice", b"a-pw");
    let mut bob = member("bob-w", "bob", b"b-pw");
    let publisher = wire::connect("alice-p").username("alice").password(b"a-pw");
    let mut publisher = RawClient::connect(port, &publisher).0;
    for pid in 1..=10u16 {
        publisher.publish("work/secret/x", &pid.to_be_bytes(), 1, false, pid);
    }
    let got = alice.receive_until(|got| got.len() >= 10, Duration::from_millis(500));
    assert_eq!(
        got.len(),
        10,
        "every message reaches the member that may read it"
    );
    bob.expect_silence(Duration::from_millis(500));
}
