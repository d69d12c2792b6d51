//! The `bridge` binary: parses the command line, loads the configuration, sets up logging
//! and runs the server until Ctrl-C or SIGTERM.
//!
//! Stdout carries only the `listening KIND ADDR` lines (see [`bridge::server::run`]);
//! everything else goes to stderr. Exit codes: 0 after a signal, 1 when the server cannot
//! start (a listener cannot be bound), 2 for a bad command line or configuration (or a
//! password, ACL or certificate file it names).
//!
//! `bridge passwd ...` manages the MQTT password file instead (see
//! [`bridge::auth::passwd`]).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use bridge::config::{Cli, Config};

fn main() -> ExitCode {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == "passwd")
    {
        return bridge::auth::passwd::main(std::env::args_os().skip(1));
    }
    // clap prints its own message and exits with 2 on a bad command line.
    let cli = Cli::parse();
    let config = match Config::load(&cli) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("bridge: error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = bridge::server::check_files(&config) {
        eprintln!("bridge: error: {e}");
        return ExitCode::from(2);
    }
    init_logging(&config.log.level);
    give_large_blocks_back();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("bridge: error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(bridge::server::run(config));
    // Client connections still open are dropped here; do not wait on them for long.
    runtime.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bridge: error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Allocations of at least this many bytes get their own pages, returned on free.
const MMAP_THRESHOLD: libc::c_int = 4 << 20;

/// glibc's malloc serves a large block from an arena once a block of that size was freed
/// (its threshold adapts), and an arena keeps what it got: every thread that ever ran an
/// argon2 check (19 MiB) or held a multi-megabyte message kept that much resident for good.
/// A fixed threshold makes such blocks mmap'd pages that go back to the system on free, so
/// memory taken by an attack is given back when it ends.
fn give_large_blocks_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any other thread runs.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// RUST_LOG, when set, wins over `--log` / `[log] level` (already validated at load).
fn init_logging(level: &str) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.trim().is_empty() => EnvFilter::try_new(&env).unwrap_or_else(|e| {
            eprintln!("bridge: warning: ignoring RUST_LOG={env:?} ({e}); using {level:?}");
            EnvFilter::new(level)
        }),
        _ => EnvFilter::new(level),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
