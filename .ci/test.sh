#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need, then checks format,
# lints (with and without the cloud features), builds the docs, and runs every test of the
# workspace. README.md names this script; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."
# rustfmt and clippy come with the toolchain on our machines; add them where they do not.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add rustfmt clippy
fi
# moto (a real EC2 API implementation) for the aws provider's tests.
if ! python3 -c 'import moto.server, boto3' >/dev/null 2>&1; then
  python3 -m pip install --quiet 'moto[server]'
fi
# py-consul, a Consul client library, for the ACL compatibility test (tests/acl_compat.rs).
if ! python3 -c 'import consul.api.acl' >/dev/null 2>&1; then
  python3 -m pip install --quiet py-consul
fi
# openssl makes a throwaway service-account key for the gce provider's tests.
if ! command -v openssl >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    apt-get install -y -qq openssl >/dev/null || sudo apt-get install -y -qq openssl >/dev/null
  else
    echo "the gce tests need the openssl command; install it" >&2
    exit 1
  fi
fi
# nftables: the fault suite (tests/faults) cuts links between agents with nft rules, inside a
# network namespace of its own.
if ! command -v nft >/dev/null 2>&1; then
  apt-get install -y -qq nftables >/dev/null || sudo apt-get install -y -qq nftables >/dev/null
fi
# Prometheus: tests/metrics.rs scrapes a cluster with a real one. Debian's package, without
# its recommended node exporter; the package may start its own daemon on :9090 where services
# may start (no policy-rc.d): stop it, the test runs its own on a loopback address of its block.
if ! command -v prometheus >/dev/null 2>&1; then
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } \
    || sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
    systemctl stop prometheus || sudo systemctl stop prometheus
  fi
  if command -v invoke-rc.d >/dev/null 2>&1; then
    invoke-rc.d prometheus stop >/dev/null 2>&1 || true
  fi
fi
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# The core without the cloud SDKs (the aws and gce features are optional) still builds, lint-free.
# --workspace would pull the SDKs back in through the provider crates themselves: name the core.
cargo clippy -p muster -p muster-provider-core --all-targets --no-default-features -- -D warnings
# Every doc comment's links resolve and no doc warning slips in.
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace
cargo test --workspace
# The README's first command, end to end.
bash examples/local-cluster.sh
