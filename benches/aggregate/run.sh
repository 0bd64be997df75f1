#!/usr/bin/env bash
# Folds events into an aggregate recipient through `scrim serve` with wrk
# (BENCHMARKS.md, "Aggregate recipients"). Uses the release build from
# CARGO_TARGET_DIR (default target/); REDIS=redis://127.0.0.1:PORT runs it on
# the Redis store instead of the embedded one (a redis-server you started).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${CARGO_TARGET_DIR:-$here/../../target}/release/scrim"
work="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
cp -r "$here/rules" "$here/scrim.toml" "$work/"
if [[ -n "${REDIS:-}" ]]; then
  sed -i "s|^dir = \"spool\"|dir = \"spool\"\nstore = \"$REDIS\"|" "$work/scrim.toml"
fi
(cd "$work" && exec "$bin" serve --config scrim.toml --log-format json 2>"$work/serve.log") &
pid=$!
for _ in $(seq 50); do curl -sf http://127.0.0.1:19090/readyz >/dev/null && break; sleep 0.1; done
wrk -t1 -c16 -d"${DURATION:-10}"s -s "$here/post.lua" http://127.0.0.1:18080
sleep 2
curl -s http://127.0.0.1:19090/metrics | grep '^scrim_aggregate_'
grep -c '"aggregate report"' "$work/serve.log" | sed 's/^/reports sent: /'
