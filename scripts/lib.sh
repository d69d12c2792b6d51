# shellcheck shell=bash
# Helpers shared by scripts/install, scripts/run and scripts/test. Source it; it runs nothing
# by itself except setting ROOT and PATH.

# The repository root, wherever the caller was started from.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT

# trunk finds wasm-bindgen and wasm-opt only on PATH (it takes no tool paths): cargo-installed
# tools live in ~/.cargo/bin, wasm-opt comes from npm's binaryen in node_modules/.bin.
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
case ":$PATH:" in *":$CARGO_BIN:"*) ;; *) PATH="$CARGO_BIN:$PATH" ;; esac
case ":$PATH:" in *":$ROOT/node_modules/.bin:"*) ;; *) PATH="$ROOT/node_modules/.bin:$PATH" ;; esac
export PATH

# Print a banner that stands out in long CI logs.
banner() {
  printf '\n==> %s\n' "$*"
}

# "3m07s" from a number of seconds.
human_time() {
  printf '%dm%02ds' $(($1 / 60)) $(($1 % 60))
}

# True when COMMAND's `--version` output contains WANT (a fixed string).
has_version() {
  local want=$1
  shift
  command -v "$1" >/dev/null 2>&1 && "$@" --version 2>/dev/null | grep -qF -- "$want"
}

# The version Cargo.lock pins for crate NAME (the first entry, if several).
locked_version() {
  awk -v name="$1" '
    $0 == "name = \"" name "\"" { found = 1; next }
    found && /^version = / { gsub(/"/, "", $3); print $3; exit }
  ' "$ROOT/Cargo.lock"
}

# Build the web app into www/dist (trunk, release: the size-tuned wasm-release profile and
# wasm-opt). Trunk.toml sets `offline = true`, which makes cargo run with --offline, so the
# crates are fetched first: that is a no-op when they are already in ~/.cargo/registry.
build_www() {
  (cd "$ROOT" && cargo fetch --quiet) || return
  (cd "$ROOT/www" && trunk build --release "$@")
}
