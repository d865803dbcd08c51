#!/usr/bin/env bash
# muster's main job on one machine: three servers on 127.0.0.1-3, started at once with
# -bootstrap-expect 3, find each other, form exactly one Raft cluster and elect a leader.
# Builds muster if needed (installing nothing else), prints `muster members` and the Raft
# peers, then leaves gracefully. KEEP=1 leaves the servers running (stop them with
# `muster leave -http-addr 127.0.0.N:8500`).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --bin muster
BIN="$PWD/target/debug/muster"
WORK="$(mktemp -d)"
pids=()
cleanup() {
  if [ "${KEEP:-0}" != 1 ]; then
    for i in 1 2 3; do "$BIN" leave -http-addr "127.0.0.$i:8500" >/dev/null 2>&1 || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

for i in 1 2 3; do
  "$BIN" agent -server -bootstrap-expect 3 -node "server-$i" \
    -bind "127.0.0.$i" -client "127.0.0.$i" -data-dir "$WORK/server-$i" \
    -retry-join 127.0.0.1 -retry-join 127.0.0.2 -retry-join 127.0.0.3 \
    >"$WORK/server-$i.log" 2>&1 &
  pids+=($!)
done

# The leader a server names in `muster info` (empty while there is none).
leader_of() { "$BIN" info -http-addr "127.0.0.$1:8500" 2>/dev/null | sed -n 's/^\tleader_addr = //p' || true; }
# Wait (at most 30 s) until every server names the same leader.
leader=""
for _ in $(seq 1 300); do
  l1=$(leader_of 1); l2=$(leader_of 2); l3=$(leader_of 3)
  if [ -n "$l1" ] && [ "$l1" = "$l2" ] && [ "$l2" = "$l3" ]; then leader=$l1; break; fi
  sleep 0.1
done
"$BIN" members -http-addr 127.0.0.1:8500
echo
"$BIN" operator raft list-peers -http-addr 127.0.0.1:8500
echo
grep -h "Found expected number of peers\|cluster leadership acquired" "$WORK"/server-*.log | sed 's/^[^ ]* *//'
[ -n "$leader" ] || { echo "no leader elected; logs in $WORK" >&2; KEEP=1; exit 1; }
echo "leader: $leader"
