//! The listeners: binds TCP, WebSocket and HTTP sockets and feeds accepted connections to
//! [`connection::serve`] (MQTT) or [`http::serve_connection`] (HTTP, at most
//! `[http] max_connections` at once).
//!
//! [`Server::start`] is what tests use (port 0, bound addresses returned); [`run`] is the
//! binary's whole life: start, announce, wait for Ctrl-C or SIGTERM, stop.

use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{
    self, accounts::Accounts, auth::Auth, ApiOptions, ApiState, BrokerInfo, ListenerInfo,
};
use crate::auth;
use crate::broker::Broker;
use crate::config::{self as settings, Config, Listen};
use crate::connection::{self, Transport};
use crate::http::{self, Endpoints};
use crate::logsafe::untrusted_message;
use crate::store::Store;
use crate::sys::{self, Stats};
use crate::tls::{self, TlsListener};
use crate::ws;

/// A client that connects to the WebSocket port must finish the HTTP upgrade within this
/// time; otherwise idle sockets would pile up before any MQTT keep-alive applies.
const WS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// After a failed `accept` that is not the client's fault (EMFILE, ENOBUFS…), wait this
/// long before trying again instead of spinning on the same error.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// How long [`Server::shutdown`] lets HTTP requests in progress finish.
const HTTP_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Running listeners. Dropping it leaves them running; call [`Server::shutdown`].
pub struct Server {
    /// Bound address of the MQTT-over-TCP listener, if enabled.
    pub tcp: Option<SocketAddr>,
    /// Bound address of the MQTT-over-WebSocket listener, if enabled.
    pub ws: Option<SocketAddr>,
    /// Bound address of the HTTP listener, if enabled.
    pub http: Option<SocketAddr>,
    /// Bound address of the MQTT-over-TLS listener, if enabled.
    pub tls: Option<SocketAddr>,
    /// Bound address of the MQTT-over-WebSocket-over-TLS listener, if enabled.
    pub wss: Option<SocketAddr>,
    /// The broker core every connection of this server shares.
    pub broker: Arc<Broker>,
    /// Counters and their history, shared by the admin API and `$SYS`.
    pub stats: Arc<Stats>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    /// What [`Server::reload`] re-reads.
    auth: settings::Auth,
    tls_listener: Option<Arc<TlsListener>>,
}

/// Reads the password, ACL and TLS files that `config` names, as [`Server::start`] will,
/// so that the binary can refuse a bad one with a message naming the file (and line)
/// before it binds anything.
pub fn check_files(config: &Config) -> Result<(), String> {
    auth::load(&config.auth).map_err(|e| e.to_string())?;
    if uses_tls(config) {
        tls::load(&config.tls).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn uses_tls(config: &Config) -> bool {
    config.tls_listener() != Listen::Off || config.wss_listener() != Listen::Off
}

impl Server {
    /// Binds every enabled listener (port 0 allowed), spawns the accept loops on the
    /// current tokio runtime and returns the bound addresses.
    ///
    /// All sockets are bound before anything is spawned, so an error (which names the
    /// listener and address) leaves nothing running.
    pub async fn start(config: &Config) -> io::Result<Server> {
        // Read before binding: a damaged password file must stop the start, not fall back
        // to the configured password.
        let accounts = match config.listeners.http {
            Listen::On(addr) => {
                let accounts = Accounts::load(&config.dashboard, &config.data_dir)?;
                if accounts.uses_default_password() {
                    tracing::warn!(
                        %addr,
                        "the dashboard account {:?} still has the default password: change \
                         it in the dashboard, or set [dashboard] password in the config",
                        accounts.username()
                    );
                }
                Some(accounts)
            }
            Listen::Off => None,
        };
        let policy = auth::load(&config.auth)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        let tls_listener = if uses_tls(config) {
            let listener = TlsListener::new(&config.tls)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            Some(Arc::new(listener))
        } else {
            None
        };
        let tcp = bind("tcp", config.listeners.tcp).await?;
        let ws = bind("ws", config.listeners.ws).await?;
        let http = bind("http", config.listeners.http).await?;
        let tls = bind("tls", config.tls_listener()).await?;
        let wss = bind("wss", config.wss_listener()).await?;

        let broker = if config.persistence {
            let (store, snapshot) = Store::open(&config.data_dir)
                .map_err(|e| io::Error::other(format!("persistence: {e}")))?;
            tracing::info!(path = %store.path().display(), "persisting sessions and retained messages");
            Broker::with_store(config.broker_settings(), store, snapshot)
        } else {
            Broker::new(config.broker_settings())
        };
        // Certificate users need neither anonymous access nor a password file.
        let cert_users = uses_tls(config) && config.tls.use_identity_as_username;
        auth::log_summary(&config.auth, &policy, cert_users);
        broker.set_config_warnings(auth::warnings(&config.auth, &policy));
        broker.set_access(policy.into_access());
        let stats = Stats::new(broker.clone());
        let stop = CancellationToken::new();
        let mut server = Server {
            tcp: local_addr(&tcp)?,
            ws: local_addr(&ws)?,
            http: local_addr(&http)?,
            tls: local_addr(&tls)?,
            wss: local_addr(&wss)?,
            broker: broker.clone(),
            stats: stats.clone(),
            stop: stop.clone(),
            tasks: Vec::new(),
            auth: config.auth.clone(),
            tls_listener: tls_listener.clone(),
        };

        server
            .tasks
            .push(tokio::spawn(sys::run_sampler(stats.clone(), stop.clone())));
        server
            .tasks
            .push(tokio::spawn(sweep_keep_alive(broker.clone(), stop.clone())));
        if config.sys_interval > 0 {
            server.tasks.push(tokio::spawn(sys::run_sys(
                stats.clone(),
                Duration::from_secs(config.sys_interval),
                stop.clone(),
            )));
        }

        if let Some(listener) = tcp {
            let broker = broker.clone();
            server.tasks.push(tokio::spawn(accept_loop(
                "tcp",
                listener,
                stop.clone(),
                move |stream: TcpStream, peer| {
                    tokio::spawn(connection::serve_tcp(stream, peer, broker.clone()));
                },
            )));
        }

        if let Some(listener) = ws {
            let broker = broker.clone();
            let path: Arc<str> = config.listeners.ws_path.as_str().into();
            server.tasks.push(tokio::spawn(accept_loop(
                "ws",
                listener,
                stop.clone(),
                move |stream, peer| {
                    tokio::spawn(serve_websocket(stream, peer, path.clone(), broker.clone()));
                },
            )));
        }

        if let (Some(listener), Some(tls_listener)) = (tls, &tls_listener) {
            let broker = broker.clone();
            let tls_listener = tls_listener.clone();
            server.tasks.push(tokio::spawn(accept_loop(
                "tls",
                listener,
                stop.clone(),
                move |stream, peer| {
                    tokio::spawn(serve_tls(
                        stream,
                        peer,
                        tls_listener.clone(),
                        broker.clone(),
                    ));
                },
            )));
        }

        if let (Some(listener), Some(tls_listener)) = (wss, &tls_listener) {
            let broker = broker.clone();
            let tls_listener = tls_listener.clone();
            let path: Arc<str> = config.listeners.ws_path.as_str().into();
            server.tasks.push(tokio::spawn(accept_loop(
                "wss",
                listener,
                stop.clone(),
                move |stream, peer| {
                    tokio::spawn(serve_wss(
                        stream,
                        peer,
                        path.clone(),
                        tls_listener.clone(),
                        broker.clone(),
                    ));
                },
            )));
        }

        if let (Some(listener), Some(accounts)) = (http, accounts) {
            let state = ApiState {
                broker: broker.clone(),
                stats: stats.clone(),
                auth: Arc::new(Auth::new(
                    accounts,
                    Duration::from_secs(config.dashboard.token_ttl),
                )),
                info: Arc::new(BrokerInfo {
                    listeners: listener_info(&server, &config.listeners.ws_path),
                    sys_interval: config.sys_interval,
                }),
                token_ttl: Duration::from_secs(config.dashboard.token_ttl),
            };
            let options = ApiOptions {
                prometheus_public: config.dashboard.prometheus_public,
            };
            let app = http::with_security_headers(
                http::router(config.web.root.clone())
                    .merge(api::router(state, options))
                    .layer(Extension(Endpoints {
                        tcp: server.tcp,
                        ws: server.ws,
                        ws_path: config.listeners.ws_path.clone(),
                    })),
            );
            let mut limits = http::Limits::from(&config.http);
            if let Some(files) = open_files_limit() {
                let cap = http_cap(limits.max_connections, files);
                if cap != limits.max_connections && limits.max_connections != 0 {
                    tracing::warn!(
                        "[http] max_connections lowered from {} to {cap}, half the limit on \
                         open files ({files}), so that HTTP clients cannot take the \
                         descriptors MQTT clients need",
                        limits.max_connections
                    );
                }
                limits.max_connections = cap;
            }
            let connections = TaskTracker::new();
            let accept = accept_loop(
                "http",
                listener,
                stop.clone(),
                http_acceptor(app, limits, connections.clone(), stop.clone()),
            );
            server.tasks.push(tokio::spawn(async move {
                accept.await;
                // Stopped: each connection finishes the request in progress, if any, and
                // closes; wait for them (Server::shutdown bounds the wait).
                connections.close();
                connections.wait().await;
            }));
        }

        Ok(server)
    }

    /// Re-reads the password file, the ACL file and the TLS certificate (SIGHUP). What
    /// fails to load is logged and the old one stays in force; connections already
    /// established keep their identity, later checks use the new policy.
    pub fn reload(&self) {
        match auth::load(&self.auth) {
            Ok(policy) => {
                tracing::info!(
                    users = policy.user_count(),
                    rules = policy.rule_count(),
                    "reloaded the access policy"
                );
                let warnings = auth::warnings(&self.auth, &policy);
                for warning in &warnings {
                    tracing::warn!("{warning}");
                }
                self.broker.set_config_warnings(warnings);
                self.broker.set_access(policy.into_access());
            }
            Err(e) => tracing::error!("reload failed, keeping the old access policy: {e}"),
        }
        if let Some(tls) = &self.tls_listener {
            match tls.reload() {
                Ok(()) => tracing::info!("reloaded the TLS certificate"),
                Err(e) => tracing::error!("reload failed, keeping the old TLS certificate: {e}"),
            }
        }
    }

    /// Stops accepting and ends the accept loops; the listening sockets are closed when it
    /// returns. Connections already established are not touched.
    pub async fn shutdown(self) {
        self.stop.cancel();
        // Tell every connected client (5.0 clients get DISCONNECT 0x8B), then give the
        // connections a moment to send that and hand their sessions back (which writes
        // persistent sessions to the store) before the runtime goes away.
        self.broker.shutdown();
        let deadline = tokio::time::Instant::now() + CONNECTION_DRAIN_TIMEOUT;
        while self.broker.connection_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for task in self.tasks {
            let abort = task.abort_handle();
            // The MQTT loops end at once; only HTTP may wait for requests in progress,
            // and a stuck client must not hold up the exit.
            if tokio::time::timeout(HTTP_DRAIN_TIMEOUT, task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

/// How long a shutdown waits for connections to say goodbye.
const CONNECTION_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// The bound listeners, as `GET /api/v1/broker` shows them.
fn listener_info(server: &Server, ws_path: &str) -> Vec<ListenerInfo> {
    [
        ("tcp", server.tcp),
        ("ws", server.ws),
        ("tls", server.tls),
        ("wss", server.wss),
        ("http", server.http),
    ]
    .into_iter()
    .filter_map(|(kind, address)| {
        Some(ListenerInfo {
            kind,
            address: address?,
            path: matches!(kind, "ws" | "wss").then(|| ws_path.to_owned()),
        })
    })
    .collect()
}

async fn bind(name: &str, listen: Listen) -> io::Result<Option<TcpListener>> {
    let Some(addr) = listen.addr() else {
        return Ok(None);
    };
    match TcpListener::bind(addr).await {
        Ok(listener) => Ok(Some(listener)),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot bind the {name} listener to {addr}: {e}"),
        )),
    }
}

fn local_addr(listener: &Option<TcpListener>) -> io::Result<Option<SocketAddr>> {
    listener.as_ref().map(TcpListener::local_addr).transpose()
}

/// The HTTP listener's `on_accept`: serves each connection on its own task (tracked by
/// `connections`) while fewer than `[http] max_connections` are open; answers the others
/// 503 and closes them at once, so that they hold no descriptor. Reaching the cap is
/// logged once per episode, with the count of refused connections when it ends.
fn http_acceptor(
    app: axum::Router,
    limits: http::Limits,
    connections: TaskTracker,
    stop: CancellationToken,
) -> impl FnMut(TcpStream, SocketAddr) + Send + 'static {
    let cap = (limits.max_connections > 0).then(|| {
        Arc::new(Semaphore::new(
            limits.max_connections.min(Semaphore::MAX_PERMITS),
        ))
    });
    let mut refusing: Option<(Instant, u64)> = None;
    move |stream: TcpStream, peer: SocketAddr| {
        let permit = match &cap {
            None => None,
            Some(cap) => match cap.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    match &mut refusing {
                        Some((_, refused)) => *refused += 1,
                        None => {
                            tracing::warn!(
                                max_connections = limits.max_connections,
                                "HTTP connections reached the cap ([http] max_connections); \
                                 more are answered 503 and closed until some close"
                            );
                            refusing = Some((Instant::now(), 1));
                        }
                    }
                    tracing::debug!(%peer, "HTTP connection over the cap refused");
                    // Best effort and never waiting: the socket is new, its send buffer
                    // empty. Dropping it closes it.
                    let _ = stream.try_write(&http::over_capacity_response());
                    return;
                }
            },
        };
        if let Some((since, refused)) = refusing.take() {
            tracing::info!(
                refused,
                after = ?since.elapsed(),
                "HTTP connections below the cap again"
            );
        }
        let app = app.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            http::serve_connection(stream, peer, app, limits, stop).await;
            drop(permit);
        });
    }
}

/// Accepts connections until `stop` is cancelled, handing each to `on_accept`.
///
/// A failed accept never ends the loop: errors caused by one client (it reset the
/// connection before we got to it) are skipped, each having used up that connection;
/// others (out of file descriptors or memory: the connection stays in the backlog, and
/// `accept` would fail again at once) are retried after [`ACCEPT_ERROR_BACKOFF`], so the
/// loop never spins, and the broker recovers once connections close. Such an episode is
/// logged when it starts and when it ends, not at every retry.
async fn accept_loop(
    name: &'static str,
    listener: TcpListener,
    stop: CancellationToken,
    mut on_accept: impl FnMut(TcpStream, SocketAddr) + Send + 'static,
) {
    // While accept keeps failing: since when, and how many times.
    let mut failing: Option<(Instant, u64)> = None;
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                if let Some((since, failures)) = failing.take() {
                    tracing::info!(
                        listener = name,
                        failures,
                        after = ?since.elapsed(),
                        "accepting connections again"
                    );
                }
                // MQTT packets are small and latency-sensitive (PUBACKs, PINGRESPs).
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(listener = name, %peer, error = %e, "cannot set TCP_NODELAY");
                }
                on_accept(stream, peer);
            }
            Err(e) if is_per_connection(&e) => {
                tracing::debug!(listener = name, error = %e, "accept failed for one connection");
            }
            Err(e) => {
                match &mut failing {
                    Some((_, failures)) => *failures += 1,
                    None => {
                        tracing::warn!(
                            listener = name,
                            error = %e,
                            "accept failed (out of file descriptors or memory?); new \
                             connections wait in the backlog; retrying every {:?}, logged \
                             again when it works",
                            ACCEPT_ERROR_BACKOFF
                        );
                        failing = Some((Instant::now(), 1));
                    }
                }
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_ERROR_BACKOFF) => {}
                }
            }
        }
    }
    tracing::debug!(listener = name, "accept loop ended");
}

fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

async fn serve_websocket(stream: TcpStream, peer: SocketAddr, path: Arc<str>, broker: Arc<Broker>) {
    // One message may carry several packets: allow two maximum-size packets, at least 1 MiB.
    let max_message = (2 * broker.settings.max_packet_size).max(1024 * 1024);
    match tokio::time::timeout(WS_HANDSHAKE_TIMEOUT, ws::accept(stream, &path, max_message)).await {
        Ok(Ok(ws_stream)) => {
            connection::serve(ws_stream, peer, Transport::WebSocket, broker).await;
        }
        // Failed handshakes are the client's business (port scanners, wrong URLs); they
        // are worth seeing when debugging a client, not in normal operation.
        Ok(Err(e)) => {
            let error = e.to_string();
            tracing::debug!(%peer, error = %untrusted_message(&error), "WebSocket handshake failed")
        }
        Err(_) => tracing::debug!(%peer, "WebSocket handshake timed out"),
    }
}

/// MQTT over TLS: the handshake, then the connection (with the certificate's identity,
/// when `use_identity_as_username` is on).
async fn serve_tls(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Arc<TlsListener>,
    broker: Arc<Broker>,
) {
    match tls.accept(stream).await {
        Ok(accepted) => {
            serve_identified(
                accepted.stream,
                peer,
                Transport::Tls,
                accepted.identity,
                broker,
            )
            .await
        }
        // Like WebSocket handshakes: the client's business, seen when debugging.
        Err(e) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
    }
}

/// MQTT over WebSocket over TLS.
async fn serve_wss(
    stream: TcpStream,
    peer: SocketAddr,
    path: Arc<str>,
    tls: Arc<TlsListener>,
    broker: Arc<Broker>,
) {
    let accepted = match tls.accept(stream).await {
        Ok(accepted) => accepted,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
    };
    let max_message = (2 * broker.settings.max_packet_size).max(1024 * 1024);
    let upgrade = ws::accept(accepted.stream, &path, max_message);
    match tokio::time::timeout(WS_HANDSHAKE_TIMEOUT, upgrade).await {
        Ok(Ok(ws_stream)) => {
            serve_identified(ws_stream, peer, Transport::Wss, accepted.identity, broker).await
        }
        Ok(Err(e)) => {
            let error = e.to_string();
            tracing::debug!(%peer, error = %untrusted_message(&error), "WebSocket handshake failed")
        }
        Err(_) => tracing::debug!(%peer, "WebSocket handshake timed out"),
    }
}

/// Serves a TLS client: with the identity its verified certificate gives, if any
/// ([`tls::Accepted::identity`]), which is then its user name and stands in for a password.
async fn serve_identified<S>(
    stream: S,
    peer: SocketAddr,
    transport: Transport,
    identity: Option<String>,
    broker: Arc<Broker>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    match identity {
        Some(identity) => {
            connection::serve_certified(stream, peer, transport, identity, broker).await
        }
        None => connection::serve(stream, peer, transport, broker).await,
    }
}

/// The binary's life: starts the listeners, prints one `listening KIND ADDR` line per
/// enabled listener to stdout, waits for Ctrl-C or SIGTERM, then stops them.
///
/// Fails if a listener cannot be bound (the error names it and its address) or if the
/// signal handlers cannot be installed.
pub async fn run(config: Config) -> io::Result<()> {
    // Install the handlers before announcing: whoever reads the `listening` lines may
    // send SIGTERM right away, and it must cause a clean exit, not the default death.
    let mut signals = Signals::new()?;
    raise_open_files_limit(&config);
    let server = Server::start(&config).await?;

    announce(&server);
    let url_host = |addr: SocketAddr| {
        if addr.ip().is_unspecified() {
            format!("localhost:{}", addr.port())
        } else {
            addr.to_string()
        }
    };
    tracing::info!(
        tcp = server
            .tcp
            .map(|a| format!("mqtt://{}", url_host(a)))
            .as_deref()
            .unwrap_or("off"),
        ws = server
            .ws
            .map(|a| format!("ws://{}{}", url_host(a), config.listeners.ws_path))
            .as_deref()
            .unwrap_or("off"),
        http = server
            .http
            .map(|a| format!("http://{}", url_host(a)))
            .as_deref()
            .unwrap_or("off"),
        tls = server
            .tls
            .map(|a| format!("mqtts://{}", url_host(a)))
            .as_deref()
            .unwrap_or("off"),
        wss = server
            .wss
            .map(|a| format!("wss://{}{}", url_host(a), config.listeners.ws_path))
            .as_deref()
            .unwrap_or("off"),
        "broker ready"
    );
    if server.http.is_some() && !config.web.root.join("index.html").is_file() {
        tracing::warn!(
            root = %config.web.root.display(),
            "the web app is not built (no index.html); ./scripts/run builds it"
        );
    }

    let signal = loop {
        match signals.recv().await {
            "SIGHUP" => server.reload(),
            signal => break signal,
        }
    };
    tracing::info!(signal, "shutting down");
    server.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Descriptors the broker needs beside its connections: listeners, the store, the
/// runtime's own, the web app's files being served.
const FILES_RESERVE: u64 = 64;

/// Raises the soft open-files limit (RLIMIT_NOFILE, often 1024) to the hard one, and warns
/// when even that is below what the connection limits allow: `accept` would then fail
/// (EMFILE) before `max_connections` is reached, for MQTT and HTTP alike.
fn raise_open_files_limit(config: &Config) {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open files limit (RLIMIT_NOFILE)");
            match open_files_limit() {
                Some(soft) => soft,
                None => return,
            }
        }
    };
    match files_needed(config) {
        Some(needed) if limit < needed => tracing::warn!(
            "the limit on open files ({limit}, RLIMIT_NOFILE) is below what the connection \
             limits need ({needed}: max_connections {} + [http] max_connections {} + \
             {FILES_RESERVE}); accept will fail before max_connections is reached: raise \
             the hard limit (ulimit -Hn, systemd LimitNOFILE=) or lower max_connections",
            config.limits.max_connections,
            http_connections(config),
        ),
        _ => tracing::debug!(limit, "open files limit (RLIMIT_NOFILE)"),
    }
}

/// The soft open-files limit, where there is one.
fn open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rlimit::getrlimit(rlimit::Resource::NOFILE)
            .ok()
            .map(|(soft, _)| soft)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// HTTP connections the configuration allows at once (0: none or no limit).
fn http_connections(config: &Config) -> u64 {
    match config.listeners.http {
        Listen::On(_) => config.http.max_connections as u64,
        Listen::Off => 0,
    }
}

/// The HTTP connection cap: `configured` (0: none), but never above half of `open_files`
/// (the soft RLIMIT_NOFILE), so that however many HTTP clients come, MQTT clients still
/// find descriptors for their connections.
fn http_cap(configured: usize, open_files: u64) -> usize {
    let half = usize::try_from(open_files / 2).unwrap_or(usize::MAX).max(1);
    match configured {
        0 => half,
        configured => configured.min(half),
    }
}

/// Descriptors the configured connection limits may need; `None` without an MQTT
/// connection limit (then no limit is enough).
fn files_needed(config: &Config) -> Option<u64> {
    match config.limits.max_connections {
        0 => None,
        mqtt => Some(
            (mqtt as u64)
                .saturating_add(http_connections(config))
                .saturating_add(FILES_RESERVE),
        ),
    }
}

/// Prints the bound addresses in the fixed `listening KIND ADDR` format that scripts and
/// tests parse, and flushes: stdout is a pipe there, and a buffered line would never come.
fn announce(server: &Server) {
    let mut out = io::stdout().lock();
    for (kind, addr) in [
        ("tcp", server.tcp),
        ("ws", server.ws),
        ("tls", server.tls),
        ("wss", server.wss),
        ("http", server.http),
    ] {
        if let Some(addr) = addr {
            // A closed stdout must not stop the broker; the log says the same thing.
            let _ = writeln!(out, "listening {kind} {addr}");
        }
    }
    let _ = out.flush();
}

/// Ctrl-C and SIGTERM (how service managers and `docker stop` ask for an exit), and
/// SIGHUP (reload the access policy and certificate).
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
                hangup: signal(SignalKind::hangup())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// Waits for the first signal and names it.
    async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => "SIGINT",
                _ = self.terminate.recv() => "SIGTERM",
                _ = self.hangup.recv() => "SIGHUP",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

/// Disconnects clients whose keep-alive ran out, every [`crate::broker::KEEP_ALIVE_SWEEP`], until
/// `stop`.
async fn sweep_keep_alive(broker: Arc<Broker>, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(crate::broker::KEEP_ALIVE_SWEEP);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => broker.sweep_keep_alive(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use futures_util::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::{header, HeaderValue};

    const LIMIT: Duration = Duration::from_secs(20);

    fn loopback_config() -> Config {
        // Tests run servers side by side; a store is exercised by the e2e tests.
        let mut config = Config {
            persistence: false,
            ..Config::default()
        };
        let any = Listen::On("127.0.0.1:0".parse().unwrap());
        config.listeners.tcp = any;
        config.listeners.ws = any;
        config.listeners.http = any;
        config.web.root = std::env::temp_dir().join("bridge-server-test-no-such-dir");
        // Never written unless a test changes the password.
        config.data_dir = std::env::temp_dir().join("bridge-server-test-data");
        config
    }

    async fn http_get(addr: SocketAddr, path: &str) -> String {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        tcp.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn all_listeners_serve_then_stop() {
        tokio::time::timeout(LIMIT, async {
            let server = Server::start(&loopback_config()).await.unwrap();
            let (tcp, ws, http) = (
                server.tcp.unwrap(),
                server.ws.unwrap(),
                server.http.unwrap(),
            );
            for addr in [tcp, ws, http] {
                assert_ne!(addr.port(), 0);
            }

            TcpStream::connect(tcp).await.unwrap();

            let mut request = format!("ws://{ws}/mqtt").into_client_request().unwrap();
            request.headers_mut().insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static("mqtt"),
            );
            let (_client, response) = tokio_tungstenite::connect_async(request).await.unwrap();
            assert_eq!(response.headers()[header::SEC_WEBSOCKET_PROTOCOL], "mqtt");

            let response = http_get(http, "/").await;
            assert!(response.starts_with("HTTP/1.1 200"), "{response}");
            assert!(response.contains("./scripts/run"), "{response}");
            // The hint page lists the real MQTT endpoints.
            assert!(response.contains(&format!("ws://{ws}/mqtt")), "{response}");

            server.shutdown().await;
            for addr in [tcp, ws, http] {
                let refused = TcpStream::connect(addr).await.unwrap_err();
                assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused, "{addr}");
            }
        })
        .await
        .expect("timed out");
    }

    #[tokio::test]
    async fn admin_api_is_served_beside_the_web_app() {
        tokio::time::timeout(LIMIT, async {
            let server = Server::start(&loopback_config()).await.unwrap();
            let http = server.http.unwrap();
            let response = http_get(http, "/api/v1/stats").await;
            assert!(response.starts_with("HTTP/1.1 401"), "{response}");
            assert!(response.contains("\"code\":\"UNAUTHORIZED\""), "{response}");
            let response = http_get(http, "/api/v1/no-such-endpoint").await;
            assert!(response.starts_with("HTTP/1.1 404"), "{response}");
            assert!(response.contains("application/json"), "{response}");
            let response = http_get(http, "/metrics").await;
            assert!(response.starts_with("HTTP/1.1 401"), "{response}");
            // The web app keeps everything else.
            let response = http_get(http, "/").await;
            assert!(response.starts_with("HTTP/1.1 200"), "{response}");
            server.shutdown().await;
        })
        .await
        .expect("timed out");
    }

    #[test]
    fn http_cap_leaves_half_the_descriptors() {
        assert_eq!(http_cap(1024, 1_048_576), 1024);
        assert_eq!(http_cap(1024, 1024), 512);
        assert_eq!(http_cap(0, 1024), 512);
        assert_eq!(http_cap(0, 1), 1);
        assert_eq!(http_cap(10, u64::MAX), 10);
    }

    #[test]
    fn files_needed_counts_both_caps() {
        let mut config = loopback_config();
        config.limits.max_connections = 1000;
        config.http.max_connections = 100;
        assert_eq!(files_needed(&config), Some(1000 + 100 + FILES_RESERVE));
        config.listeners.http = Listen::Off;
        assert_eq!(files_needed(&config), Some(1000 + FILES_RESERVE));
        config.limits.max_connections = 0;
        assert_eq!(files_needed(&config), None);
    }

    #[tokio::test]
    async fn disabled_listeners_are_not_bound() {
        let mut config = loopback_config();
        config.listeners.tcp = Listen::Off;
        config.listeners.http = Listen::Off;
        let server = Server::start(&config).await.unwrap();
        assert!(server.tcp.is_none());
        assert!(server.http.is_none());
        assert!(server.ws.is_some());
        server.shutdown().await;
    }

    #[tokio::test]
    async fn websocket_on_a_wrong_path_is_refused() {
        tokio::time::timeout(LIMIT, async {
            let server = Server::start(&loopback_config()).await.unwrap();
            let url = format!("ws://{}/other", server.ws.unwrap());
            match tokio_tungstenite::connect_async(url).await {
                Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                    assert_eq!(response.status(), 404)
                }
                Err(other) => panic!("expected HTTP 404, got {other}"),
                Ok((mut ws, _)) => panic!("expected HTTP 404, got {:?}", ws.next().await),
            }
            server.shutdown().await;
        })
        .await
        .expect("timed out");
    }

    #[tokio::test]
    async fn bind_failure_names_listener_and_address() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let mut config = loopback_config();
        config.listeners.ws = Listen::On(addr);
        let error = Server::start(&config)
            .await
            .err()
            .expect("bind should fail");
        let message = error.to_string();
        assert!(message.contains("ws listener"), "{message}");
        assert!(message.contains(&addr.to_string()), "{message}");
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
    }
}
