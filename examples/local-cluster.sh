#!/usr/bin/env bash
# muster's main job on one machine: three agents on 127.0.0.1-3 find each other and list the
# cluster. Builds muster if needed (installing nothing else), prints `muster members`, then
# leaves gracefully. KEEP=1 leaves the agents running (stop them with `muster leave`).
#
# Once servers exist (servers issue) this becomes the three-server -bootstrap-expect 3 cluster.
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
  join=()
  [ "$i" -gt 1 ] && join=(-retry-join 127.0.0.1 -retry-interval 2s)
  "$BIN" agent -node "agent-$i" -bind "127.0.0.$i" -client "127.0.0.$i" \
    -data-dir "$WORK/agent-$i" "${join[@]}" >"$WORK/agent-$i.log" 2>&1 &
  pids+=($!)
done

# Wait (at most 20 s) until agent-3 sees all three alive.
for _ in $(seq 1 200); do
  n=$("$BIN" members -http-addr 127.0.0.3:8500 -status alive 2>/dev/null | tail -n +2 | wc -l || true)
  [ "$n" = 3 ] && break
  sleep 0.1
done
"$BIN" members -http-addr 127.0.0.3:8500
[ "$n" = 3 ] || { echo "agents did not converge; logs in $WORK" >&2; KEEP=1; exit 1; }
