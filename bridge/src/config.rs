//! Configuration: an optional TOML file, overridden by command-line flags.
//!
//! Every key has a default, so the broker runs with no file at all. The file is strict:
//! an unknown key, a wrong type or an out-of-range value is an error that names the file
//! and the key, because a silently ignored typo in a broker config is worse than a refusal.
//!
//! ```toml
//! data_dir = "data"         # top-level keys come before the first [section]
//! sys_interval = 10         # seconds between $SYS updates; 0 turns them off
//! persistence = true        # sessions and retained messages in data_dir/bridge.redb
//!
//! [listeners]
//! tcp = "0.0.0.0:1883"      # or "off"
//! ws = "0.0.0.0:8083"       # or "off"
//! ws_path = "/mqtt"
//! http = "0.0.0.0:18083"    # or "off"
//! tls = "0.0.0.0:8883"      # MQTT over TLS; default: this when [tls] cert and key are set, else "off"
//! wss = "0.0.0.0:8084"      # WebSocket over TLS; default as for tls
//!
//! [limits]
//! max_packet_size = 1048576
//! max_inflight = 32
//! max_queued_messages = 100000
//! max_queued_bytes = 268435456
//! max_queued_bytes_total = 1073741824 # all sessions together; 0: no limit
//! queue_full_policy = "drop_newest"   # or "drop_oldest", "disconnect"
//! queue_qos0_messages = false
//! max_connections = 100000           # 0: no limit
//! max_connection_rate = 0             # new connections per second; 0: no limit
//! receive_maximum = 1024              # MQTT 5.0
//! topic_alias_maximum = 64            # MQTT 5.0
//! max_keepalive = 65535               # seconds; 65535: no limit
//! max_retained_messages = 100000      # retained topics; 0: no limit
//! max_retained_bytes = 268435456      # topic + payload bytes of all retained; 0: no limit
//! max_subscriptions_per_client = 10000 # 0: no limit
//!
//! [web]
//! root = "www/dist"
//!
//! [http]                    # the HTTP listener (web app, admin API, /metrics)
//! header_timeout = 10       # seconds to send a request's line and headers
//! idle_timeout = 60         # seconds a connection may sit with nothing moving
//! max_connections = 1024    # HTTP connections at once; more get 503; 0: no limit
//!
//! [log]
//! level = "info"
//!
//! [dashboard]
//! username = "admin"
//! password = "public"       # initial password only; changed ones live in data_dir
//! token_ttl = 43200         # seconds an admin API token lives unused
//! prometheus_public = false # true: GET /metrics needs no token
//!
//! [auth]                    # MQTT clients; see the README
//! allow_anonymous = true    # false: a CONNECT without a user name is refused
//! password_file = "passwords"   # `bridge passwd` writes it; none by default
//! acl_file = "acl"          # Mosquitto-like topic rules; none by default (all allowed)
//!
//! [tls]                     # for the tls and wss listeners
//! cert = "server.pem"       # PEM certificate chain
//! key = "server-key.pem"    # PEM private key
//! ca = "ca.pem"             # PEM CAs that sign client certificates (optional)
//! require_client_cert = false
//! use_identity_as_username = false  # client certificate CN becomes the user name
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use clap::Parser;
use serde::Deserialize;

use crate::broker::{BrokerSettings, QueuePolicy};

/// Smallest packet MQTT has: a fixed header with a zero remaining length (PINGREQ).
pub const MIN_PACKET_SIZE: u32 = 2;
/// Largest packet MQTT can encode: 268,435,455 bytes of remaining length plus a 5-byte
/// fixed header.
pub const MAX_PACKET_SIZE: u32 = 268_435_460;

/// The longest `$SYS` interval: a day. Longer ones are surely mistakes (and a timer
/// that far out is not worth the overflow checks).
pub const MAX_SYS_INTERVAL: u64 = 86_400;

/// The command line. Every flag but `--config` overrides the matching key of the file.
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "bridge",
    version,
    about = "An MQTT 3.1.1 / 5 broker with TCP and WebSocket listeners and a web app.",
    long_about = "An MQTT 3.1.1 / 5 broker with TCP and WebSocket listeners and a web app.\n\n\
        Settings come from built-in defaults, then the TOML file given by --config, then the \
        flags below. On start, one line per enabled listener is printed to stdout:\n\n    \
        listening tcp 127.0.0.1:1883\n    listening ws 127.0.0.1:8083\n    \
        listening http 127.0.0.1:18083\n\n\
        (and `listening tls ADDR`, `listening wss ADDR` when TLS is configured).\n\n\
        Logs go to stderr; RUST_LOG (e.g. RUST_LOG=bridge=debug) overrides --log.\n\
        SIGHUP re-reads the password file, the ACL file and the TLS certificate.\n\
        `bridge passwd --help` tells how to manage the password file.\n\
        Exit codes: 0 after Ctrl-C or SIGTERM, 1 if a listener cannot be bound, \
        2 for a bad command line, configuration, password, ACL or certificate file."
)]
pub struct Cli {
    /// TOML configuration file (keys: data_dir, sys_interval; [listeners] tcp, ws, ws_path,
    /// http, tls, wss; [limits] max_packet_size, max_inflight, max_queued_messages,
    /// queue_qos0_messages; [web] root; [log] level; [dashboard] username, password,
    /// token_ttl, prometheus_public; [http] header_timeout, idle_timeout,
    /// max_connections; [auth] allow_anonymous, password_file, acl_file;
    /// [tls] cert, key, ca, require_client_cert, use_identity_as_username).
    #[arg(long, short = 'c', value_name = "FILE", env = "BRIDGE_CONFIG")]
    pub config: Option<PathBuf>,

    /// MQTT over TCP: IP:PORT to listen on, or "off" [default: 0.0.0.0:1883]
    #[arg(long, value_name = "ADDR|off")]
    pub tcp: Option<Listen>,

    /// MQTT over WebSocket: IP:PORT to listen on, or "off" [default: 0.0.0.0:8083]
    #[arg(long, value_name = "ADDR|off")]
    pub ws: Option<Listen>,

    /// MQTT over TLS: IP:PORT to listen on, or "off" [default: 0.0.0.0:8883 when [tls] cert
    /// and key are configured, else off]
    #[arg(long, value_name = "ADDR|off")]
    pub tls: Option<Listen>,

    /// MQTT over WebSocket over TLS: IP:PORT to listen on, or "off" [default: 0.0.0.0:8084
    /// when [tls] cert and key are configured, else off]
    #[arg(long, value_name = "ADDR|off")]
    pub wss: Option<Listen>,

    /// HTTP path of the WebSocket endpoint [default: /mqtt]
    #[arg(long, value_name = "PATH", value_parser = parse_ws_path)]
    pub ws_path: Option<String>,

    /// HTTP, serving the web app: IP:PORT to listen on, or "off" [default: 0.0.0.0:18083]
    #[arg(long, value_name = "ADDR|off")]
    pub http: Option<Listen>,

    /// Directory of the built web app, served over HTTP [default: www/dist]
    #[arg(long, value_name = "DIR")]
    pub web_root: Option<PathBuf>,

    /// Largest MQTT packet accepted from a client, in bytes [default: 1048576]
    #[arg(
        long,
        value_name = "BYTES",
        value_parser = clap::value_parser!(u32).range(MIN_PACKET_SIZE as i64..=MAX_PACKET_SIZE as i64)
    )]
    pub max_packet_size: Option<u32>,

    /// Clients connected at once; more are refused (5.0: 0x97), 0 for no limit
    /// [default: 100000]
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,

    /// New connections accepted per second (a burst of as many is allowed); more are
    /// refused (5.0: 0x9F), 0 for no limit [default: 0]
    #[arg(long, value_name = "PER_SECOND")]
    pub max_connection_rate: Option<u32>,

    /// Longest keep-alive a client may ask for, in seconds (1..=65535): a 5.0 client asking
    /// for more, or for 0, is told this one (Server Keep Alive); a 3.1.x client is refused
    /// (CONNACK 2). 65535: no limit [default: 65535]
    #[arg(
        long,
        value_name = "SECONDS",
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    pub max_keepalive: Option<u16>,

    /// Retained messages kept at most (one per topic); a retained publish for a new topic
    /// beyond it is refused (5.0: 0x97), 0 for no limit [default: 100000]
    #[arg(long, value_name = "N")]
    pub max_retained_messages: Option<usize>,

    /// Bytes (topic + payload) of all retained messages together; a retained publish
    /// beyond it is refused (5.0: 0x97), 0 for no limit [default: 268435456]
    #[arg(long, value_name = "BYTES")]
    pub max_retained_bytes: Option<usize>,

    /// Subscriptions one client may hold; more are refused in SUBACK (5.0: 0x97), 0 for no
    /// limit [default: 10000]
    #[arg(long, value_name = "N")]
    pub max_subscriptions_per_client: Option<usize>,

    /// Log filter: a level (error, warn, info, debug, trace) or directives such as
    /// "info,bridge=debug" [default: info]; RUST_LOG, if set, wins
    #[arg(long, value_name = "LEVEL", value_parser = parse_log_filter)]
    pub log: Option<String>,

    /// Directory for state that survives restarts (the dashboard password); created when
    /// first written [default: data]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Seconds between $SYS topic updates, 0 for none [default: 10]
    #[arg(
        long,
        value_name = "SECONDS",
        value_parser = clap::value_parser!(u64).range(0..=MAX_SYS_INTERVAL)
    )]
    pub sys_interval: Option<u64>,

    /// Keep sessions and retained messages on disk in the data directory: on or off
    /// [default: on]
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    pub persistence: Option<bool>,

    /// Seconds an HTTP client has to send a request's line and headers, from the moment
    /// the connection opens or the first byte of a later request arrives [default: 10]
    #[arg(
        long,
        value_name = "SECONDS",
        value_parser = clap::value_parser!(u64).range(1..=MAX_HTTP_TIMEOUT)
    )]
    pub http_header_timeout: Option<u64>,

    /// Seconds an HTTP connection may sit with nothing read or written (between
    /// keep-alive requests, or a body or response that stopped moving) [default: 60]
    #[arg(
        long,
        value_name = "SECONDS",
        value_parser = clap::value_parser!(u64).range(1..=MAX_HTTP_TIMEOUT)
    )]
    pub http_idle_timeout: Option<u64>,

    /// HTTP connections open at once; more are answered 503 and closed, 0 for no limit
    /// [default: 1024]
    #[arg(long, value_name = "N")]
    pub http_max_connections: Option<usize>,
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        other => Err(format!("expected on or off, not {other:?}")),
    }
}

/// Where a listener binds, or that it is disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum Listen {
    /// The listener is not started.
    Off,
    /// Bind this address; port 0 picks a free port.
    On(SocketAddr),
}

impl Listen {
    /// The address to bind, if the listener is enabled.
    pub fn addr(self) -> Option<SocketAddr> {
        match self {
            Listen::Off => None,
            Listen::On(addr) => Some(addr),
        }
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Off => f.write_str("off"),
            Listen::On(addr) => addr.fmt(f),
        }
    }
}

impl FromStr for Listen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("off") {
            return Ok(Listen::Off);
        }
        // Only literal IPs: resolving a host name at bind time would make the bound address
        // depend on DNS, and "localhost" can mean ::1 or 127.0.0.1 depending on the machine.
        s.parse().map(Listen::On).map_err(|_| {
            format!("invalid listener address {s:?}: expected IP:PORT (e.g. 0.0.0.0:1883, [::]:1883) or \"off\"")
        })
    }
}

impl TryFrom<String> for Listen {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// The whole configuration; see the module docs for the file format.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory for state that survives restarts (the dashboard password file); default
    /// `data`. Created when first written. A relative path is taken from the current
    /// directory.
    pub data_dir: PathBuf,
    /// Seconds between updates of the `$SYS/broker/...` topics; 0 turns them off.
    /// Default 10.
    pub sys_interval: u64,
    /// Keep persistent sessions and retained messages in `data_dir/bridge.redb` so they
    /// survive a restart or a crash. Default true.
    pub persistence: bool,
    /// `[listeners]`: which sockets the broker binds.
    pub listeners: Listeners,
    /// `[limits]`: per-client limits of the broker core.
    pub limits: Limits,
    /// `[web]`: the web app served over HTTP.
    pub web: Web,
    /// `[log]`: logging.
    pub log: Log,
    /// `[dashboard]`: the admin API's account and options.
    pub dashboard: Dashboard,
    /// `[auth]`: who may connect over MQTT and what they may do.
    pub auth: Auth,
    /// `[tls]`: certificates for the `tls` and `wss` listeners.
    pub tls: Tls,
    /// `[http]`: timeouts and the connection cap of the HTTP listener.
    pub http: Http,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("data"),
            sys_interval: 10,
            persistence: true,
            listeners: Listeners::default(),
            limits: Limits::default(),
            web: Web::default(),
            log: Log::default(),
            dashboard: Dashboard::default(),
            auth: Auth::default(),
            tls: Tls::default(),
            http: Http::default(),
        }
    }
}

/// `[auth]` section: MQTT client authentication and authorisation (see [`crate::auth`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// Whether a client that sends no user name may connect; default true (a first start
    /// is open, with a warning in the log).
    pub allow_anonymous: bool,
    /// Password file (`user:$argon2id$...` lines, written by `bridge passwd`). When set, a
    /// client that gives a user name must give that user's password. Re-read on SIGHUP.
    pub password_file: Option<PathBuf>,
    /// ACL file (Mosquitto-like `user`, `topic` and `pattern` lines). When set, whatever
    /// it does not allow is refused. Re-read on SIGHUP.
    pub acl_file: Option<PathBuf>,
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            allow_anonymous: true,
            password_file: None,
            acl_file: None,
        }
    }
}

/// `[tls]` section: the server certificate of the `tls` and `wss` listeners, and client
/// certificates (see [`crate::tls`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// PEM file with the server certificate, then any intermediates.
    pub cert: Option<PathBuf>,
    /// PEM file with the server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// PEM file of the CA certificates that client certificates must chain to. With it,
    /// a client certificate, if presented, is verified.
    pub ca: Option<PathBuf>,
    /// Refuse TLS clients without a valid certificate (needs `ca`); default false.
    pub require_client_cert: bool,
    /// Take the MQTT user name from the client certificate's subject CN, and let the
    /// certificate stand for the password, as Mosquitto does (needs
    /// `require_client_cert`); default false.
    pub use_identity_as_username: bool,
}

impl Tls {
    /// Whether a server certificate and key are configured.
    pub fn is_configured(&self) -> bool {
        self.cert.is_some() && self.key.is_some()
    }
}

/// `[dashboard]` section: who may use the admin API (`/api/v1`) and Prometheus scraping.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dashboard {
    /// The admin account's name; default `admin`.
    pub username: String,
    /// The admin account's initial password; default `public`. Once changed through the
    /// API, the new one (hashed) is kept in `data_dir` and this one no longer works.
    pub password: String,
    /// Seconds an API token stays valid without being used (1..); default 43200 (12 h).
    pub token_ttl: u64,
    /// Whether `GET /metrics` (Prometheus) is served without a token; default false.
    pub prometheus_public: bool,
}

impl Default for Dashboard {
    fn default() -> Self {
        Dashboard {
            username: "admin".to_owned(),
            password: "public".to_owned(),
            token_ttl: 12 * 60 * 60,
            prometheus_public: false,
        }
    }
}

// Hand-written so that the password never ends up in a log line.
impl fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dashboard")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .field("token_ttl", &self.token_ttl)
            .field("prometheus_public", &self.prometheus_public)
            .finish()
    }
}

/// `[listeners]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listeners {
    /// MQTT over plain TCP (`"IP:PORT"` or `"off"`); default `0.0.0.0:1883`.
    pub tcp: Listen,
    /// MQTT over WebSocket (`"IP:PORT"` or `"off"`); default `0.0.0.0:8083`.
    pub ws: Listen,
    /// HTTP path on which the WebSocket listener accepts upgrades; default `/mqtt`.
    /// Requests for any other path are answered 404.
    pub ws_path: String,
    /// HTTP for the web app (`"IP:PORT"` or `"off"`); default `0.0.0.0:18083`.
    pub http: Listen,
    /// MQTT over TLS (`"IP:PORT"` or `"off"`); unset: `0.0.0.0:8883` when `[tls]` cert and
    /// key are configured, else off. See [`Config::tls_listener`].
    pub tls: Option<Listen>,
    /// MQTT over WebSocket over TLS, on `ws_path`; unset: `0.0.0.0:8084` when `[tls]` cert
    /// and key are configured, else off. See [`Config::wss_listener`].
    pub wss: Option<Listen>,
}

impl Default for Listeners {
    fn default() -> Self {
        Listeners {
            tcp: Listen::On(SocketAddr::from(([0, 0, 0, 0], 1883))),
            ws: Listen::On(SocketAddr::from(([0, 0, 0, 0], 8083))),
            ws_path: "/mqtt".to_owned(),
            http: Listen::On(SocketAddr::from(([0, 0, 0, 0], 18083))),
            tls: None,
            wss: None,
        }
    }
}

/// `[limits]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest packet a client may send, fixed header included, in bytes
    /// (2..=268435460); default 1048576 (1 MiB). A larger packet closes the connection.
    pub max_packet_size: u32,
    /// QoS 1/2 messages sent to one client and not yet acknowledged (1..=65535); default 32.
    pub max_inflight: u16,
    /// Messages queued per session beyond the in-flight window, for offline or slow
    /// clients; past it `queue_full_policy` applies. Default 100000.
    pub max_queued_messages: usize,
    /// Bytes (topic + payload) queued per session; past it `queue_full_policy` applies.
    /// Default 268435456 (256 MiB).
    pub max_queued_bytes: usize,
    /// Bytes queued in all sessions together; past it the policy of the session a message
    /// is for applies. 0 for no limit; default 1073741824 (1 GiB).
    pub max_queued_bytes_total: usize,
    /// What a full queue does with a new message: "drop_newest" (default), "drop_oldest"
    /// or "disconnect" (the slow client; 5.0 reason 0x97). Every drop is counted.
    pub queue_full_policy: QueuePolicy,
    /// Whether QoS 0 messages are also queued for offline persistent sessions; default false.
    pub queue_qos0_messages: bool,
    /// MQTT 5.0: incoming QoS 2 exchanges a client may have open (our receive maximum,
    /// 1..=65535); default 1024.
    pub receive_maximum: u16,
    /// MQTT 5.0: topic aliases a client may define towards us (0..=65535); default 64.
    pub topic_alias_maximum: u16,
    /// Clients connected at once; more are refused with CONNACK "quota exceeded" (5.0,
    /// 0x97; 3.1.1: server unavailable). 0 for no limit; default 100000.
    pub max_connections: usize,
    /// New connections accepted per second, with a burst of as many; more are refused with
    /// CONNACK "connection rate exceeded" (5.0, 0x9F; 3.1.1: server unavailable). 0 for no
    /// limit (the default).
    pub max_connection_rate: u32,
    /// Longest keep-alive a client may ask for, in seconds (1..=65535); default 65535, no
    /// limit. A 5.0 client asking for more, or for 0 (none), is given this one as Server
    /// Keep Alive and held to it; a 3.1.x client is refused with CONNACK 2, as Mosquitto's
    /// `max_keepalive` does.
    pub max_keepalive: u16,
    /// Retained messages kept at most (one per topic); a retained publish to a new topic
    /// beyond it is refused (5.0: PUBACK/PUBREC 0x97; 3.1.1: dropped, as it has no way to
    /// say so). Replacing or clearing one is always allowed; `$SYS` topics do not count.
    /// 0 for no limit; default 100000.
    pub max_retained_messages: usize,
    /// Bytes (topic + payload) of all retained messages together, refused past it as for
    /// `max_retained_messages`. 0 for no limit; default 268435456 (256 MiB).
    pub max_retained_bytes: usize,
    /// Subscriptions one client may hold; a SUBSCRIBE's filters beyond it are refused in
    /// SUBACK (5.0: 0x97; 3.1.1: 0x80). 0 for no limit; default 10000.
    pub max_subscriptions_per_client: usize,
}

impl Default for Limits {
    fn default() -> Self {
        let core = BrokerSettings::default();
        Limits {
            max_packet_size: core.max_packet_size as u32,
            max_inflight: core.max_inflight as u16,
            max_queued_messages: core.max_queued_messages,
            max_queued_bytes: core.max_queued_bytes,
            max_queued_bytes_total: core.max_queued_bytes_total,
            queue_full_policy: core.queue_full_policy,
            queue_qos0_messages: core.queue_qos0_messages,
            receive_maximum: core.receive_maximum,
            topic_alias_maximum: core.topic_alias_maximum,
            max_connections: core.max_connections,
            max_connection_rate: core.max_connection_rate,
            max_keepalive: core.max_keepalive,
            max_retained_messages: core.max_retained_messages,
            max_retained_bytes: core.max_retained_bytes,
            max_subscriptions_per_client: core.max_subscriptions_per_client,
        }
    }
}

/// The longest `[http]` timeout: a day (longer ones are surely mistakes).
pub const MAX_HTTP_TIMEOUT: u64 = 86_400;

/// `[http]` section: how the HTTP listener (web app, admin API, `/metrics`) bounds what
/// clients may hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Seconds a client has to send a request's line and headers (1..=86400): counted
    /// from the connection's opening for the first request, from the first byte of each
    /// later one. Default 10. Slowloris clients are closed after it.
    pub header_timeout: u64,
    /// Seconds a connection may sit with nothing read or written (1..=86400): between
    /// keep-alive requests, or while a request body or a response stopped moving.
    /// Default 60.
    pub idle_timeout: u64,
    /// HTTP connections open at once; more are answered 503 and closed. 0 for no limit;
    /// default 1024.
    pub max_connections: usize,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            header_timeout: 10,
            idle_timeout: 60,
            max_connections: 1024,
        }
    }
}

/// `[web]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Web {
    /// Directory of the built web app (holding `index.html`); default `www/dist`.
    /// A relative path is taken from the current directory, not from the config file.
    pub root: PathBuf,
}

impl Default for Web {
    fn default() -> Self {
        Web {
            root: PathBuf::from("www/dist"),
        }
    }
}

/// `[log]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// Log filter: a level (`error`, `warn`, `info`, `debug`, `trace`) or
    /// `tracing` directives such as `"info,bridge=debug"`; default `info`.
    /// The `RUST_LOG` environment variable and `--log` override it.
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            level: "info".to_owned(),
        }
    }
}

/// Why the configuration could not be loaded. Each variant displays as one line that names
/// the file and, where there is one, the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a key is unknown or of the wrong type.
    #[error("config file {}{}{}: {message}", path.display(), key_part(key), location_part(*location))]
    Parse {
        path: PathBuf,
        /// Dotted key such as `limits.max_inflight`; empty for a TOML syntax error.
        key: String,
        /// 1-based line and column, when the parser knows them.
        location: Option<(usize, usize)>,
        message: String,
    },
    /// A key parsed but its value is out of range.
    #[error("config file {}, key {key}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
    /// The flags ask for something the configuration cannot give (`--tls` without a
    /// certificate).
    #[error("{message}")]
    Conflict { message: String },
}

fn key_part(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!(", key {key}")
    }
}

fn location_part(location: Option<(usize, usize)>) -> String {
    match location {
        Some((line, column)) => format!(" (line {line}, column {column})"),
        None => String::new(),
    }
}

impl Config {
    /// Defaults, then the file named by `--config` (if any), then the other flags.
    pub fn load(cli: &Cli) -> Result<Config, ConfigError> {
        let mut config = match &cli.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        config.apply(cli);
        config.web.root = absolute(&config.web.root);
        config.data_dir = absolute(&config.data_dir);
        for path in [
            &mut config.auth.password_file,
            &mut config.auth.acl_file,
            &mut config.tls.cert,
            &mut config.tls.key,
            &mut config.tls.ca,
        ]
        .into_iter()
        .flatten()
        {
            *path = absolute(path);
        }
        for (flag, listen) in [("--tls", cli.tls), ("--wss", cli.wss)] {
            if let Some(Listen::On(addr)) = listen {
                if !config.tls.is_configured() {
                    return Err(ConfigError::Conflict {
                        message: format!(
                            "{flag} {addr} needs a certificate: set [tls] cert and key in the \
                             config file (--config)"
                        ),
                    });
                }
            }
        }
        Ok(config)
    }

    /// The MQTT-over-TLS listener: as configured, else `0.0.0.0:8883` when a certificate is
    /// configured, else off.
    pub fn tls_listener(&self) -> Listen {
        self.listeners.tls.unwrap_or_else(|| self.tls_default(8883))
    }

    /// The WebSocket-over-TLS listener: as configured, else `0.0.0.0:8084` when a
    /// certificate is configured, else off.
    pub fn wss_listener(&self) -> Listen {
        self.listeners.wss.unwrap_or_else(|| self.tls_default(8084))
    }

    fn tls_default(&self, port: u16) -> Listen {
        if self.tls.is_configured() {
            Listen::On(SocketAddr::from(([0, 0, 0, 0], port)))
        } else {
            Listen::Off
        }
    }

    /// Reads and validates one TOML file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text, path)
    }

    /// Parses and validates TOML text; `path` is only used in error messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let parse_error = |key: String, error: &toml::de::Error| ConfigError::Parse {
            path: path.to_owned(),
            key,
            location: error.span().map(|span| line_column(text, span.start)),
            // toml's Display adds a multi-line source excerpt; the message alone is one line.
            message: error.message().trim().replace('\n', " "),
        };
        let deserializer =
            toml::Deserializer::parse(text).map_err(|e| parse_error(String::new(), &e))?;
        let config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let key = e.path().to_string();
            // serde_path_to_error writes "." for the root.
            let key = if key == "." { String::new() } else { key };
            parse_error(key, e.inner())
        })?;
        config.validate(path)?;
        Ok(config)
    }

    /// Range checks that the types alone do not express.
    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            message,
        };
        let size = self.limits.max_packet_size;
        if !(MIN_PACKET_SIZE..=MAX_PACKET_SIZE).contains(&size) {
            return Err(invalid(
                "limits.max_packet_size",
                format!("{size} is out of range {MIN_PACKET_SIZE}..={MAX_PACKET_SIZE}"),
            ));
        }
        if self.limits.max_inflight == 0 {
            return Err(invalid(
                "limits.max_inflight",
                "0 is out of range 1..=65535".to_owned(),
            ));
        }
        if self.limits.max_keepalive == 0 {
            return Err(invalid(
                "limits.max_keepalive",
                "0 is out of range 1..=65535 (65535 means no limit)".to_owned(),
            ));
        }
        parse_ws_path(&self.listeners.ws_path).map_err(|m| invalid("listeners.ws_path", m))?;
        parse_log_filter(&self.log.level).map_err(|m| invalid("log.level", m))?;
        if self.dashboard.username.is_empty() {
            return Err(invalid(
                "dashboard.username",
                "must not be empty".to_owned(),
            ));
        }
        if self.dashboard.password.is_empty() {
            return Err(invalid(
                "dashboard.password",
                "must not be empty".to_owned(),
            ));
        }
        if self.sys_interval > MAX_SYS_INTERVAL {
            return Err(invalid(
                "sys_interval",
                format!(
                    "{} is out of range 0..={MAX_SYS_INTERVAL}",
                    self.sys_interval
                ),
            ));
        }
        if self.dashboard.token_ttl == 0 {
            return Err(invalid(
                "dashboard.token_ttl",
                "0 is out of range 1..".to_owned(),
            ));
        }
        for (key, seconds) in [
            ("http.header_timeout", self.http.header_timeout),
            ("http.idle_timeout", self.http.idle_timeout),
        ] {
            if !(1..=MAX_HTTP_TIMEOUT).contains(&seconds) {
                return Err(invalid(
                    key,
                    format!("{seconds} is out of range 1..={MAX_HTTP_TIMEOUT}"),
                ));
            }
        }
        self.validate_tls(path)
    }

    /// `[tls]` keys that only make sense together.
    fn validate_tls(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| ConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            message: message.to_owned(),
        };
        let tls = &self.tls;
        if tls.cert.is_some() && tls.key.is_none() {
            return Err(invalid("tls.cert", "needs tls.key too"));
        }
        if tls.key.is_some() && tls.cert.is_none() {
            return Err(invalid("tls.key", "needs tls.cert too"));
        }
        if tls.require_client_cert && tls.ca.is_none() {
            return Err(invalid(
                "tls.require_client_cert",
                "needs tls.ca, the CA certificates that sign client certificates",
            ));
        }
        if tls.use_identity_as_username && !tls.require_client_cert {
            return Err(invalid(
                "tls.use_identity_as_username",
                "needs tls.require_client_cert = true",
            ));
        }
        for (key, listen) in [
            ("listeners.tls", self.listeners.tls),
            ("listeners.wss", self.listeners.wss),
        ] {
            if matches!(listen, Some(Listen::On(_))) && !tls.is_configured() {
                return Err(invalid(key, "needs [tls] cert and key"));
            }
        }
        Ok(())
    }

    /// Overrides keys with the flags that were given (clap has already validated them).
    fn apply(&mut self, cli: &Cli) {
        if let Some(tcp) = cli.tcp {
            self.listeners.tcp = tcp;
        }
        if let Some(ws) = cli.ws {
            self.listeners.ws = ws;
        }
        if let Some(http) = cli.http {
            self.listeners.http = http;
        }
        if let Some(tls) = cli.tls {
            self.listeners.tls = Some(tls);
        }
        if let Some(wss) = cli.wss {
            self.listeners.wss = Some(wss);
        }
        if let Some(path) = &cli.ws_path {
            self.listeners.ws_path = path.clone();
        }
        if let Some(root) = &cli.web_root {
            self.web.root = root.clone();
        }
        if let Some(size) = cli.max_packet_size {
            self.limits.max_packet_size = size;
        }
        if let Some(n) = cli.max_connections {
            self.limits.max_connections = n;
        }
        if let Some(rate) = cli.max_connection_rate {
            self.limits.max_connection_rate = rate;
        }
        if let Some(secs) = cli.max_keepalive {
            self.limits.max_keepalive = secs;
        }
        if let Some(n) = cli.max_retained_messages {
            self.limits.max_retained_messages = n;
        }
        if let Some(n) = cli.max_retained_bytes {
            self.limits.max_retained_bytes = n;
        }
        if let Some(n) = cli.max_subscriptions_per_client {
            self.limits.max_subscriptions_per_client = n;
        }
        if let Some(level) = &cli.log {
            self.log.level = level.clone();
        }
        if let Some(dir) = &cli.data_dir {
            self.data_dir = dir.clone();
        }
        if let Some(interval) = cli.sys_interval {
            self.sys_interval = interval;
        }
        if let Some(persistence) = cli.persistence {
            self.persistence = persistence;
        }
        if let Some(seconds) = cli.http_header_timeout {
            self.http.header_timeout = seconds;
        }
        if let Some(seconds) = cli.http_idle_timeout {
            self.http.idle_timeout = seconds;
        }
        if let Some(n) = cli.http_max_connections {
            self.http.max_connections = n;
        }
    }

    /// The broker core's share of the configuration.
    pub fn broker_settings(&self) -> BrokerSettings {
        BrokerSettings {
            max_packet_size: self.limits.max_packet_size as usize,
            max_inflight: usize::from(self.limits.max_inflight),
            max_queued_messages: self.limits.max_queued_messages,
            max_queued_bytes: self.limits.max_queued_bytes,
            max_queued_bytes_total: self.limits.max_queued_bytes_total,
            queue_full_policy: self.limits.queue_full_policy,
            queue_qos0_messages: self.limits.queue_qos0_messages,
            receive_maximum: self.limits.receive_maximum,
            topic_alias_maximum: self.limits.topic_alias_maximum,
            max_connections: self.limits.max_connections,
            max_connection_rate: self.limits.max_connection_rate,
            max_keepalive: self.limits.max_keepalive,
            max_retained_messages: self.limits.max_retained_messages,
            max_retained_bytes: self.limits.max_retained_bytes,
            max_subscriptions_per_client: self.limits.max_subscriptions_per_client,
        }
    }
}

/// A WebSocket path is matched exactly against the request path, so it must look like one.
fn parse_ws_path(s: &str) -> Result<String, String> {
    if !s.starts_with('/') {
        return Err(format!("{s:?} must start with '/'"));
    }
    if s.contains(['?', '#']) || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{s:?} must be a plain path (no query, fragment or spaces)"
        ));
    }
    Ok(s.to_owned())
}

/// Accepts what `tracing_subscriber::EnvFilter` accepts, so a typo fails at load time
/// rather than silently logging nothing.
fn parse_log_filter(s: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::builder()
        .parse(s)
        .map(|_| s.to_owned())
        .map_err(|e| format!("invalid log filter {s:?}: {e}"))
}

/// Relative paths are resolved once, at load, so that logs and the operator hint page show
/// the directory actually looked at.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("bridge.toml"))
    }

    fn error(text: &str) -> String {
        let e = parse(text).expect_err("config should be rejected");
        let line = e.to_string();
        assert!(!line.contains('\n'), "error is not one line: {line}");
        assert!(
            line.contains("bridge.toml"),
            "error does not name the file: {line}"
        );
        line
    }

    #[test]
    fn empty_file_gives_defaults() {
        let config = parse("").unwrap();
        assert_eq!(config.listeners.tcp.to_string(), "0.0.0.0:1883");
        assert_eq!(config.listeners.ws.to_string(), "0.0.0.0:8083");
        assert_eq!(config.listeners.http.to_string(), "0.0.0.0:18083");
        assert_eq!(config.listeners.ws_path, "/mqtt");
        assert_eq!(config.web.root, PathBuf::from("www/dist"));
        assert_eq!(config.log.level, "info");
        assert_eq!(config.data_dir, PathBuf::from("data"));
        assert_eq!(config.sys_interval, 10);
        assert_eq!(config.dashboard.username, "admin");
        assert_eq!(config.dashboard.password, "public");
        assert_eq!(config.dashboard.token_ttl, 43200);
        assert!(!config.dashboard.prometheus_public);
        let settings = config.broker_settings();
        let core = BrokerSettings::default();
        assert_eq!(settings.max_packet_size, core.max_packet_size);
        assert_eq!(settings.max_inflight, core.max_inflight);
        assert_eq!(settings.max_queued_messages, core.max_queued_messages);
        assert_eq!(settings.queue_qos0_messages, core.queue_qos0_messages);
    }

    #[test]
    fn http_section_defaults_flags_and_ranges() {
        let config = parse("").unwrap();
        assert_eq!(config.http.header_timeout, 10);
        assert_eq!(config.http.idle_timeout, 60);
        assert_eq!(config.http.max_connections, 1024);
        let config =
            parse("[http]\nheader_timeout = 3\nidle_timeout = 7\nmax_connections = 0\n").unwrap();
        assert_eq!(
            (config.http.header_timeout, config.http.idle_timeout),
            (3, 7)
        );
        assert_eq!(config.http.max_connections, 0);
        assert!(error("[http]\nheader_timeout = 0\n").contains("http.header_timeout"));
        assert!(error("[http]\nidle_timeout = 86401\n").contains("http.idle_timeout"));
        assert!(error("[http]\ntimeout = 1\n").contains("http"));

        let cli = Cli::try_parse_from([
            "bridge",
            "--http-header-timeout",
            "2",
            "--http-idle-timeout",
            "5",
            "--http-max-connections",
            "20",
        ])
        .unwrap();
        let config = Config::load(&cli).unwrap();
        assert_eq!(config.http.header_timeout, 2);
        assert_eq!(config.http.idle_timeout, 5);
        assert_eq!(config.http.max_connections, 20);
        assert!(Cli::try_parse_from(["bridge", "--http-header-timeout", "0"]).is_err());
    }

    #[test]
    fn full_file_is_read() {
        let config = parse(
            r#"
            data_dir = "/var/lib/bridge"
            sys_interval = 0
            [listeners]
            tcp = "127.0.0.1:1884"
            ws = "off"
            ws_path = "/ws"
            http = "[::1]:8080"
            [limits]
            max_packet_size = 4096
            max_inflight = 65535
            max_queued_messages = 0
            queue_qos0_messages = true
            [web]
            root = "/srv/www"
            [log]
            level = "warn,bridge=debug"
            [dashboard]
            username = "root"
            password = "s3cret-pass"
            token_ttl = 60
            prometheus_public = true
            "#,
        )
        .unwrap();
        assert_eq!(
            config.listeners.tcp,
            Listen::On("127.0.0.1:1884".parse().unwrap())
        );
        assert_eq!(config.listeners.ws, Listen::Off);
        assert_eq!(config.listeners.ws_path, "/ws");
        assert_eq!(
            config.listeners.http.addr(),
            Some("[::1]:8080".parse().unwrap())
        );
        let settings = config.broker_settings();
        assert_eq!(settings.max_packet_size, 4096);
        assert_eq!(settings.max_inflight, 65535);
        assert_eq!(settings.max_queued_messages, 0);
        assert!(settings.queue_qos0_messages);
        assert_eq!(config.web.root, PathBuf::from("/srv/www"));
        assert_eq!(config.log.level, "warn,bridge=debug");
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/bridge"));
        assert_eq!(config.sys_interval, 0);
        assert_eq!(config.dashboard.username, "root");
        assert_eq!(config.dashboard.password, "s3cret-pass");
        assert_eq!(config.dashboard.token_ttl, 60);
        assert!(config.dashboard.prometheus_public);
        // The password stays out of debug output (and so out of logs).
        assert!(!format!("{config:?}").contains("s3cret-pass"));
    }

    #[test]
    fn unknown_keys_are_named() {
        let line = error("[limits]\nmax_inflight = 4\nmax_inflite = 5\n");
        assert!(line.contains("max_inflite"), "{line}");
        assert!(line.contains("line 3"), "{line}");
        let line = error("[listener]\ntcp = \"off\"\n");
        assert!(line.contains("listener"), "{line}");
    }

    #[test]
    fn wrong_types_name_the_key() {
        let line = error("[limits]\nmax_inflight = \"many\"\n");
        assert!(line.contains("key limits.max_inflight"), "{line}");
        assert!(line.contains("line 2"), "{line}");
        let line = error("[listeners]\ntcp = 1883\n");
        assert!(line.contains("key listeners.tcp"), "{line}");
        let line = error("[limits]\nmax_queued_messages = -1\n");
        assert!(line.contains("key limits.max_queued_messages"), "{line}");
    }

    #[test]
    fn bad_addresses_name_the_key() {
        let line = error("[listeners]\nws = \"localhost:8083\"\n");
        assert!(line.contains("key listeners.ws"), "{line}");
        assert!(line.contains("localhost:8083"), "{line}");
    }

    #[test]
    fn out_of_range_values_name_the_key() {
        let line = error("[limits]\nmax_packet_size = 1\n");
        assert!(line.contains("key limits.max_packet_size"), "{line}");
        let line = error("[limits]\nmax_packet_size = 268435461\n");
        assert!(line.contains("key limits.max_packet_size"), "{line}");
        let line = error("[limits]\nmax_inflight = 0\n");
        assert!(line.contains("key limits.max_inflight"), "{line}");
        let line = error("[limits]\nmax_inflight = 65536\n");
        assert!(line.contains("key limits.max_inflight"), "{line}");
        let line = error("[listeners]\nws_path = \"mqtt\"\n");
        assert!(line.contains("key listeners.ws_path"), "{line}");
        let line = error("[log]\nlevel = \"info,=[\"\n");
        assert!(line.contains("key log.level"), "{line}");
        let line = error("[dashboard]\npassword = \"\"\n");
        assert!(line.contains("key dashboard.password"), "{line}");
        let line = error("[dashboard]\ntoken_ttl = 0\n");
        assert!(line.contains("key dashboard.token_ttl"), "{line}");
        let line = error("sys_interval = -1\n");
        assert!(line.contains("key sys_interval"), "{line}");
        let line = error("sys_interval = 86401\n");
        assert!(line.contains("key sys_interval"), "{line}");
        let line = error("[limits]\nmax_keepalive = 0\n");
        assert!(line.contains("key limits.max_keepalive"), "{line}");
        let line = error("[limits]\nmax_keepalive = 65536\n");
        assert!(line.contains("key limits.max_keepalive"), "{line}");
        assert!(parse("[limits]\nmax_packet_size = 268435460\n").is_ok());
        assert!(parse("[limits]\nmax_packet_size = 2\n").is_ok());
    }

    #[test]
    fn syntax_errors_give_a_location() {
        let line = error("[limits\n");
        assert!(line.contains("line 1"), "{line}");
    }

    #[test]
    fn missing_file_is_named() {
        let e = Config::from_file(Path::new("/nonexistent/bridge.toml")).unwrap_err();
        let line = e.to_string();
        assert!(line.contains("/nonexistent/bridge.toml"), "{line}");
    }

    #[test]
    fn flags_override_the_file() {
        let dir = std::env::temp_dir().join(format!("bridge-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bridge.toml");
        std::fs::write(
            &file,
            "[listeners]\ntcp = \"127.0.0.1:1000\"\nws = \"127.0.0.1:1001\"\n[limits]\nmax_packet_size = 100\n",
        )
        .unwrap();
        let cli = Cli::try_parse_from([
            "bridge",
            "--config",
            file.to_str().unwrap(),
            "--tcp",
            "off",
            "--http",
            "127.0.0.1:0",
            "--ws-path",
            "/other",
            "--web-root",
            "relative/dir",
            "--log",
            "debug",
            "--data-dir",
            "state",
            "--sys-interval",
            "1",
            "--max-keepalive",
            "30",
        ])
        .unwrap();
        let config = Config::load(&cli).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(config.listeners.tcp, Listen::Off);
        assert_eq!(config.listeners.ws.to_string(), "127.0.0.1:1001");
        assert_eq!(config.listeners.http.to_string(), "127.0.0.1:0");
        assert_eq!(config.listeners.ws_path, "/other");
        assert_eq!(config.limits.max_packet_size, 100);
        assert_eq!(config.log.level, "debug");
        assert!(config.web.root.is_absolute());
        assert!(config.web.root.ends_with("relative/dir"));
        assert!(config.data_dir.is_absolute());
        assert!(config.data_dir.ends_with("state"));
        assert_eq!(config.sys_interval, 1);
        assert_eq!(config.broker_settings().max_keepalive, 30);
    }

    #[test]
    fn bad_flags_are_rejected() {
        for args in [
            &["bridge", "--tcp", "nowhere"][..],
            &["bridge", "--max-packet-size", "1"],
            &["bridge", "--max-packet-size", "268435461"],
            &["bridge", "--ws-path", "mqtt"],
            &["bridge", "--log", "info,=["],
            &["bridge", "--sys-interval", "86401"],
            &["bridge", "--max-keepalive", "0"],
            &["bridge", "--max-keepalive", "65536"],
            &["bridge", "--no-such-flag"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?} accepted");
        }
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn auth_and_tls_sections() {
        let config = parse("").unwrap();
        assert!(config.auth.allow_anonymous);
        assert!(config.auth.password_file.is_none() && config.auth.acl_file.is_none());
        assert_eq!(config.tls_listener(), Listen::Off);
        assert_eq!(config.wss_listener(), Listen::Off);

        let config = parse(
            "[auth]\nallow_anonymous = false\npassword_file = \"p\"\nacl_file = \"a\"\n\
             [tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nca = \"ca.pem\"\n\
             require_client_cert = true\nuse_identity_as_username = true\n",
        )
        .unwrap();
        assert!(!config.auth.allow_anonymous);
        assert_eq!(config.auth.password_file, Some(PathBuf::from("p")));
        assert_eq!(config.auth.acl_file, Some(PathBuf::from("a")));
        assert!(config.tls.require_client_cert && config.tls.use_identity_as_username);
        // A certificate turns the TLS listeners on by default.
        assert_eq!(config.tls_listener().to_string(), "0.0.0.0:8883");
        assert_eq!(config.wss_listener().to_string(), "0.0.0.0:8084");

        let config = parse(
            "[listeners]\ntls = \"127.0.0.1:1\"\nwss = \"off\"\n[tls]\ncert = \"c\"\nkey = \"k\"\n",
        )
        .unwrap();
        assert_eq!(config.tls_listener().to_string(), "127.0.0.1:1");
        assert_eq!(config.wss_listener(), Listen::Off);
    }

    #[test]
    fn tls_keys_that_need_each_other() {
        for (text, key) in [
            ("[tls]\ncert = \"c\"\n", "tls.cert"),
            ("[tls]\nkey = \"k\"\n", "tls.key"),
            (
                "[tls]\ncert = \"c\"\nkey = \"k\"\nrequire_client_cert = true\n",
                "tls.require_client_cert",
            ),
            (
                "[tls]\ncert = \"c\"\nkey = \"k\"\nca = \"a\"\nuse_identity_as_username = true\n",
                "tls.use_identity_as_username",
            ),
            ("[listeners]\ntls = \"127.0.0.1:0\"\n", "listeners.tls"),
            ("[listeners]\nwss = \"127.0.0.1:0\"\n", "listeners.wss"),
        ] {
            let line = error(text);
            assert!(line.contains(&format!("key {key}")), "{text}: {line}");
        }
        let line = error("[auth]\nallow_anonymous = \"no\"\n");
        assert!(line.contains("key auth.allow_anonymous"), "{line}");
        let line = error("[auth]\npassword = \"x\"\n");
        assert!(line.contains("password"), "{line}");
        // `off` needs no certificate.
        assert!(parse("[listeners]\ntls = \"off\"\n").is_ok());
    }

    #[test]
    fn tls_flags() {
        let cli = Cli::try_parse_from(["bridge", "--tls", "127.0.0.1:0"]).unwrap();
        let e = Config::load(&cli).unwrap_err().to_string();
        assert!(
            e.contains("--tls 127.0.0.1:0") && e.contains("[tls] cert"),
            "{e}"
        );
        let cli = Cli::try_parse_from(["bridge", "--tls", "off", "--wss", "off"]).unwrap();
        let config = Config::load(&cli).unwrap();
        assert_eq!(config.tls_listener(), Listen::Off);
        assert!(Cli::try_parse_from(["bridge", "--wss", "nowhere"]).is_err());
    }

    #[test]
    fn listen_parses() {
        assert_eq!("off".parse::<Listen>().unwrap(), Listen::Off);
        assert_eq!("OFF".parse::<Listen>().unwrap(), Listen::Off);
        assert_eq!(
            "127.0.0.1:0".parse::<Listen>().unwrap().addr(),
            Some("127.0.0.1:0".parse().unwrap())
        );
        assert!("1883".parse::<Listen>().is_err());
        assert!("".parse::<Listen>().is_err());
    }
}
