#!/usr/bin/env bash
# Soak test for scrim: saturation with malformed requests mixed in and a rules
# reload every second. One machine, 127.0.0.1 only, bounded in time.
#
#   benches/soak.sh                 # 60 s
#   DURATION=20 benches/soak.sh     # shorter
#
# Passes when: every valid request got 204 (zero failures), every malformed
# one got 400, no socket errors beyond the connections cut at the end, every
# reload succeeded, and scrim's RSS at the end is within SLACK_KB of its RSS
# after warm-up (flat).
#
# Environment: DURATION [60], CONNS [64], THREADS [2], BAD_EVERY [20] (5%
# malformed), SLACK_KB [8192], SKIP_BUILD [0], SKIP_INSTALL [0].
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-60}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
BAD_EVERY=${BAD_EVERY:-20}
SLACK_KB=${SLACK_KB:-8192}
# Debian installs nginx in /usr/sbin, which a non-login shell may not have.
PATH="$PATH:/usr/sbin:/sbin"
log() { printf '[soak] %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

if [ "${SKIP_INSTALL:-0}" != 1 ] && ! { command -v wrk && command -v nginx; } >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    DEBIAN_FRONTEND=noninteractive timeout 900 $SUDO apt-get install -y wrk nginx-light >/dev/null \
        || DEBIAN_FRONTEND=noninteractive timeout 900 $SUDO apt-get install -y wrk nginx >/dev/null
fi
[ "${SKIP_BUILD:-0}" = 1 ] || (cd "$ROOT" && timeout 3600 cargo build --release --locked >&2)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
SCRIM="$TARGET_DIR/release/scrim"

TMP=$(mktemp -d /tmp/scrim-soak.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -f "$TMP/ng/nginx.pid" ] && kill "$(cat "$TMP/ng/nginx.pid")" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(port); SP=$(port); AP=$(port)

mkdir -p "$TMP/ng" "$TMP/rules" "$TMP/payloads"
cat >"$TMP/ng/nginx.conf" <<NG
worker_processes 1;
daemon off;
pid $TMP/ng/nginx.pid;
error_log $TMP/ng/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $TMP/ng/cb; proxy_temp_path $TMP/ng/p; fastcgi_temp_path $TMP/ng/f;
  uwsgi_temp_path $TMP/ng/u; scgi_temp_path $TMP/ng/s;
  keepalive_requests 10000000; keepalive_timeout 300s; client_max_body_size 0;
  server { listen 127.0.0.1:$UP backlog=4096; location / { return 204; } }
}
NG
nginx -p "$TMP/ng" -c "$TMP/ng/nginx.conf" >"$TMP/ng/out.log" 2>&1 &
PIDS+=($!)

python3 "$ROOT/benches/load/gen_payloads.py" "$TMP/payloads" >/dev/null
sed -e "s/@RECIPIENT@/soak/" -e "s#@UPSTREAM@#http://127.0.0.1:$UP#" \
    "$ROOT/benches/load/realistic.toml.in" >"$TMP/rules/soak.toml"
"$SCRIM" keygen --keys "$TMP/keys.toml" --activate >/dev/null 2>&1
cat >"$TMP/scrim.toml" <<CFG
[listen]
address = "127.0.0.1:$SP"
[admin]
address = "127.0.0.1:$AP"
[rules]
dir = "$TMP/rules"
watch = true
[keys]
file = "$TMP/keys.toml"
allow_ephemeral = false
[log]
level = "warn"
CFG
"$SCRIM" serve --config "$TMP/scrim.toml" >"$TMP/scrim.log" 2>&1 &
SCRIM_PID=$!
PIDS+=($SCRIM_PID)
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$AP/readyz" && curl -s -o /dev/null "http://127.0.0.1:$UP/" && break
    sleep 0.1
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$AP/readyz")" = 200 ] || die "scrim not ready"
rss() { awk '/^VmRSS/{print $2}' "/proc/$SCRIM_PID/status"; }
metric() { curl -s "http://127.0.0.1:$AP/metrics" | awk -v m="$1" '$1==m{print $2}'; }

# Warm-up, then the RSS baseline.
BODY_FILE="$TMP/payloads/event-1k.json" BAD_EVERY=$BAD_EVERY timeout 30 \
    wrk -t"$THREADS" -c"$CONNS" -d3s -s "$ROOT/benches/soak/mixed.lua" "http://127.0.0.1:$SP/soak/v1/track" >/dev/null
RSS_START=$(rss)
RELOADS_START=$(metric 'scrim_rule_reloads_total{result="ok"}')
log "warm; RSS ${RSS_START} kB; soaking ${DURATION}s at ${CONNS} connections, 1 in ${BAD_EVERY} malformed, reload every second"

# A reload every second: alternate a touch of the rule file (watcher) and SIGHUP.
(
    i=0
    end=$(( $(date +%s) + DURATION ))
    while [ "$(date +%s)" -lt "$end" ]; do
        sleep 1
        if [ $((i % 2)) = 0 ]; then
            printf '# reload %d\n' "$i" >>"$TMP/rules/soak.toml"
        else
            kill -HUP "$SCRIM_PID"
        fi
        i=$((i + 1))
    done
    echo "$i" >"$TMP/reloads"
) &
PIDS+=($!)

BODY_FILE="$TMP/payloads/event-1k.json" BAD_EVERY=$BAD_EVERY timeout $((DURATION + 60)) \
    wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s "$ROOT/benches/soak/mixed.lua" \
    "http://127.0.0.1:$SP/soak/v1/track" >"$TMP/wrk.out"
wait "${PIDS[-1]}" 2>/dev/null || true
sleep 1
RSS_END=$(rss)
RELOADS_OK=$(( $(metric 'scrim_rule_reloads_total{result="ok"}') - RELOADS_START ))
RELOADS_ERR=$(metric 'scrim_rule_reloads_total{result="error"}'); RELOADS_ERR=${RELOADS_ERR:-0}
RELOADS_SENT=$(cat "$TMP/reloads" 2>/dev/null || echo 0)
RESULT=$(grep '^RESULT' "$TMP/wrk.out") || { cat "$TMP/wrk.out" >&2; die "no wrk result"; }
RPS=$(awk '/^Requests\/sec/{print $2}' "$TMP/wrk.out")
get() { sed -n "s/.*$1=\([0-9]*\).*/\1/p" <<<"$RESULT"; }
status() { tr ',' '\n' <<<"$(sed -n 's/.*statuses=\([^ ]*\).*/\1/p' <<<"$RESULT")" | awk -F= -v s="$1" '$1==s{print $2}'; }
GOOD=$(get sent_good); BAD=$(get sent_bad); SOCK=$(get socket_errors)
S204=$(status 204); S400=$(status 400); S204=${S204:-0}; S400=${S400:-0}
OTHER=$(tr ',' '\n' <<<"$(sed -n 's/.*statuses=\([^ ]*\).*/\1/p' <<<"$RESULT")" | awk -F= '$1!=204 && $1!=400 && $1!=""{n+=$2} END{print n+0}')

cat <<REPORT
## scrim soak, $(date -u '+%Y-%m-%d %H:%M UTC')

Command: \`DURATION=$DURATION CONNS=$CONNS BAD_EVERY=$BAD_EVERY benches/soak.sh\`

| measure | value |
|---|---|
| duration, connections | ${DURATION} s, ${CONNS} |
| throughput | ${RPS} req/s |
| valid requests sent / answered 204 | ${GOOD} / ${S204} |
| malformed requests sent / answered 400 | ${BAD} / ${S400} |
| other statuses | ${OTHER} |
| socket errors (connections cut at the end included) | ${SOCK} |
| reloads triggered / succeeded / failed | ${RELOADS_SENT} / ${RELOADS_OK} / ${RELOADS_ERR} |
| RSS after warm-up / at the end | ${RSS_START} kB / ${RSS_END} kB |
REPORT

# Requests still in flight when wrk stops are counted as sent, not answered.
[ "$OTHER" = 0 ] || die "$OTHER responses were neither 204 nor 400"
[ $((GOOD - S204)) -le "$CONNS" ] || die "valid requests without a 204: $((GOOD - S204))"
[ $((BAD - S400)) -le "$CONNS" ] || die "malformed requests without a 400: $((BAD - S400))"
[ "$S400" -le "$BAD" ] || die "more 400s than malformed requests: a valid request was refused"
[ "$RELOADS_ERR" = 0 ] || die "$RELOADS_ERR reloads failed"
[ "$RELOADS_OK" -ge $((RELOADS_SENT / 2)) ] || die "too few reloads took effect: $RELOADS_OK of $RELOADS_SENT"
[ $((RSS_END - RSS_START)) -le "$SLACK_KB" ] || die "RSS grew by $((RSS_END - RSS_START)) kB"
log "pass"
