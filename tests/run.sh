#!/usr/bin/env bash
# The test command of the README: installs what the tests need when it is missing, then runs every
# test — unit, codec and property tests, the deterministic simulation, process tests with real scd
# binaries, and interop tests with real clients (redis-cli, PHP with phpredis and php-memcached,
# libmemcached's tools). Under CI=true a missing tool is a failure, never a skip.
#
#   bash tests/run.sh            everything
#   bash tests/run.sh -- <args>  extra arguments for `cargo test` (e.g. a test name filter)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }

# Debian packages and a command each provides (checked by that command).
packages=(
  "php-cli:php"
  "php-redis:php -m|grep -qx redis"
  "php-memcached:php -m|grep -qx memcached"
  "redis-tools:redis-cli"
  "redis-server:redis-server"
  "memcached:memcached"
  "libmemcached-tools:memcstat"
  "netcat-openbsd:nc"
  "haproxy:test -x /usr/sbin/haproxy"
  "nginx-light:test -x /usr/sbin/nginx"
  "apache2:test -x /usr/sbin/apache2"
)

missing=()
for entry in "${packages[@]}"; do
  package=${entry%%:*}
  check=${entry#*:}
  if [[ $check == *" "* ]]; then
    bash -c "$check" >/dev/null 2>&1 || missing+=("$package")
  else
    command -v "$check" >/dev/null 2>&1 || missing+=("$package")
  fi
done

if ((${#missing[@]})); then
  say "installing missing packages: ${missing[*]}"
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  if ! { $sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"; }; then
    echo "could not install ${missing[*]}" >&2
    [[ ${CI:-} == true ]] && exit 1
    echo "continuing: tests that need them will say they are skipped" >&2
  fi
fi

# The process and interop tests start their own servers; Debian's packages may have started
# system-wide ones on the default ports, which the tests do not use, so they are left alone.

export RUST_BACKTRACE=1
# The tests need a release build of scd (process tests measure real behaviour, the simulation runs
# more seeds); building everything once in release mode serves both.
say "cargo test --release --workspace"
cargo test --release --workspace "$@"

say "all tests passed"
