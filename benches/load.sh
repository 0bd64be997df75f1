#!/usr/bin/env bash
# Load harness for scrim: one machine, one run, bounded in time, 127.0.0.1 only.
#
#   benches/load.sh                     # 10 s per measurement
#   DURATION=5 benches/load.sh          # shorter
#   SIZE=268435456 benches/load.sh      # 256 MiB instead of 1 GiB for the streaming check
#
# What it does (helpers in benches/load/):
#   1. installs wrk, nginx and the njs module if missing (Debian packages) and
#      builds scrim with `cargo build --release`;
#   2. starts an nginx that answers 204 to everything (the upstream), a second
#      nginx for the baselines (passthrough, njs rewriting) and scrim, each
#      with its config, logs and pid under one temp dir;
#   3. writes the payloads (~1 KB Segment-style event, ~16 KB /v1/batch body);
#   4. checks every target once (status, and what the upstream received);
#   5. drives each target with wrk for DURATION seconds at each connection
#      count and body size: req/s, p50, p99 and peak RSS of the proxy;
#   6. sends 1 KB events at a constant rate (half of nginx passthrough's
#      saturated rate; benches/rate.rs, open-loop, latency counted from when
#      each request was due) to nginx passthrough and both scrim targets: p99
#      below saturation;
#   7. streams a SIZE-byte NDJSON body through scrim and reports its peak RSS;
#   8. prints a Markdown report, with every target of the gateway issue met
#      or missed, and writes it to benches/results/load-<date>.md.
#
# Targets:
#   direct            wrk -> upstream (nginx, 204)
#   nginx-passthrough wrk -> nginx proxy_pass (keepalive 64) -> upstream
#   nginx-njs         wrk -> nginx + njs (JSON.parse, 3 HMAC-SHA256, ip /24,
#                     3 deletes, JSON.stringify) -> subrequest proxy_pass -> upstream
#   scrim-keepall     wrk -> scrim, rule `"**" = "keep"` -> upstream
#   scrim-realistic   wrk -> scrim, 3 pseudonymised, ip truncated, 3 dropped,
#                     rest kept (benches/load/realistic.toml.in) -> upstream
# HTTP/2 (rows of their own, compared with each other):
#   nginx-h2c         h2load (h2c, prior knowledge) -> nginx (listen http2)
#                     -> proxy_pass keepalive -> upstream
#   scrim-h2c         h2load (h2c, prior knowledge) -> scrim, realistic rules -> upstream
#   nginx-tls         wrk -> nginx proxy_pass https (verified, keepalive; nginx
#                     speaks HTTP/1.1 to upstreams) -> TLS upstream (nginx, 204)
#   scrim-tls-h2      wrk -> scrim, realistic rules -> TLS upstream, ALPN h2
#                     (checked: the upstream logs HTTP/2.0 for scrim's requests)
#
# Environment (defaults in brackets):
#   DURATION [10]  seconds per wrk measurement     WARMUP [1]  seconds of warm-up before each row
#   THREADS [2]    wrk threads                     CONNS ["32 64"]  connection counts
#   TARGETS ["direct nginx-passthrough nginx-njs scrim-keepall scrim-realistic
#            nginx-h2c scrim-h2c nginx-tls scrim-tls-h2"]
#   H2_STREAMS [1]  concurrent streams per h2load connection
#   SIZE [1073741824]  bytes of the NDJSON stream (0 skips it)
#   STREAM_TIMEOUT [120]  seconds for the stream    NGINX_WORKERS [nproc]  proxy nginx workers
#   ACCESS_LOGS [1]  1: scrim logs at info (one audit line per request) and the
#                  proxy nginx keeps a buffered access log; 0: both off (scrim at warn)
#   SKIP_INSTALL [0], SKIP_BUILD [0]   RESULTS_DIR [benches/results]   KEEP_TMP [0]
#   RATE_SECONDS [5]  seconds per constant-rate latency row (0 skips them)
#   RATE [half of nginx-passthrough's best 1k req/s]  requests/s of those rows
#   MAX_SECONDS    hard limit for the measuring part (default from the above)
set -euo pipefail

T0=$(date +%s)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOAD_DIR="$ROOT/benches/load"

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-1}
THREADS=${THREADS:-2}
CONNS=${CONNS:-"32 64"}
TARGETS=${TARGETS:-"direct nginx-passthrough nginx-njs scrim-keepall scrim-realistic nginx-h2c scrim-h2c nginx-tls scrim-tls-h2"}
H2_STREAMS=${H2_STREAMS:-1}
SIZE=${SIZE:-1073741824}
RATE_SECONDS=${RATE_SECONDS:-5}
RATE=${RATE:-}
STREAM_TIMEOUT=${STREAM_TIMEOUT:-120}
NGINX_WORKERS=${NGINX_WORKERS:-$(nproc)}
ACCESS_LOGS=${ACCESS_LOGS:-1}
SKIP_INSTALL=${SKIP_INSTALL:-0}
SKIP_BUILD=${SKIP_BUILD:-0}
RESULTS_DIR=${RESULTS_DIR:-"$ROOT/benches/results"}
KEEP_TMP=${KEEP_TMP:-0}
NJS_MODULE=/usr/lib/nginx/modules/ngx_http_js_module.so

log() { printf '[load %3ds] %s\n' "$(($(date +%s) - T0))" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- 1. install
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
install_missing() {
    local pkgs=()
    command -v wrk >/dev/null || pkgs+=(wrk)
    command -v h2load >/dev/null || pkgs+=(nghttp2-client)
    command -v openssl >/dev/null || pkgs+=(openssl)
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || pkgs+=(nginx)
    [ -f "$NJS_MODULE" ] || pkgs+=(libnginx-mod-http-js)
    command -v curl >/dev/null || pkgs+=(curl)
    command -v python3 >/dev/null || pkgs+=(python3)
    command -v ps >/dev/null || pkgs+=(procps)
    [ ${#pkgs[@]} -eq 0 ] && return 0
    log "installing: ${pkgs[*]}"
    # Keep the packages' init scripts from starting a system nginx on :80
    # (policy-rc.d exit 101 = "action forbidden"), unless a policy is in place.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
        $SUDO chmod +x "$policy"
        added_policy=1
    fi
    local rc=0
    $SUDO env DEBIAN_FRONTEND=noninteractive timeout 900 apt-get update -qq || rc=$?
    [ $rc -eq 0 ] && { $SUDO env DEBIAN_FRONTEND=noninteractive timeout 900 \
        apt-get install -y -q "${pkgs[@]}" >&2 || rc=$?; }
    [ $added_policy -eq 1 ] && $SUDO rm -f "$policy"
    [ $rc -eq 0 ] || die "apt-get failed ($rc)"
}
[ "$SKIP_INSTALL" = 1 ] || install_missing
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -f "$NJS_MODULE" ] || die "$NJS_MODULE missing (libnginx-mod-http-js)"

if [ "$SKIP_BUILD" != 1 ]; then
    log "cargo build --release (in $ROOT)"
    (cd "$ROOT" && timeout 3600 cargo build --release >&2) || die "cargo build failed"
fi
# The constant-rate load generator (benches/rate.rs), for the latency rows.
RATE_BIN=""
if [ "$RATE_SECONDS" -gt 0 ]; then
    RATE_BIN=$(cd "$ROOT" && timeout 3600 cargo bench --bench rate --no-run --message-format=json 2>/dev/null |
        python3 -c 'import sys, json
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "rate" and m.get("executable"):
        print(m["executable"])' | tail -n 1) || true
    [ -x "$RATE_BIN" ] || die "cannot build the constant-rate generator (cargo bench --bench rate --no-run)"
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
SCRIM="$TARGET_DIR/release/scrim"
[ -x "$SCRIM" ] || die "$SCRIM not found"
T_BUILT=$(date +%s)

# ------------------------------------------------------- temp dir and cleanup
TMP=$(mktemp -d "${TMPDIR:-/tmp}/scrim-load.XXXXXX")
PIDS=()          # every process started below, stopped in reverse order
WATCHDOG=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill -TERM "${PIDS[$i]}" 2>/dev/null || true
    done
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        local n=0
        while kill -0 "${PIDS[$i]}" 2>/dev/null && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
        kill -KILL "${PIDS[$i]}" 2>/dev/null || true
        wait "${PIDS[$i]}" 2>/dev/null || true
    done
    if [ -n "$WATCHDOG" ]; then kill "$WATCHDOG" 2>/dev/null || true; wait "$WATCHDOG" 2>/dev/null || true; fi
    if [ "$KEEP_TMP" = 1 ] || [ $rc -ne 0 ]; then
        log "temp dir kept: $TMP"
    else
        rm -rf "$TMP"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated (time limit?)"; exit 143' TERM

n_runs=0
for _t in $TARGETS; do n_runs=$((n_runs + 2 * $(echo $CONNS | wc -w))); done
MAX_SECONDS=${MAX_SECONDS:-$((n_runs * (DURATION + WARMUP + 15) + STREAM_TIMEOUT + 240))}
(
    sleep "$MAX_SECONDS" &
    sp=$!
    trap 'kill "$sp" 2>/dev/null; exit 0' TERM
    wait "$sp"
    echo "[load] time limit of ${MAX_SECONDS}s reached, stopping" >&2
    kill -TERM $$
) &
WATCHDOG=$!

# ------------------------------------------------------------------- ports
USED_PORTS=" "
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
next_port() {
    local p=$(( (RANDOM % 20000) + 20000 )) tries=0
    while [[ "$USED_PORTS" == *" $p "* ]] || ! port_free "$p"; do
        p=$(( (RANDOM % 20000) + 20000 )); tries=$((tries + 1))
        [ $tries -lt 500 ] || die "no free port"
    done
    USED_PORTS+="$p "
    echo "$p"
}
UP_PORT=$(next_port); CAP_PORT=$(next_port)
PASS_PORT=$(next_port); NJS_PORT=$(next_port); NJS_CHECK_PORT=$(next_port)
SCRIM_PORT=$(next_port); ADMIN_PORT=$(next_port)
H2C_PORT=$(next_port); TLS_UP_PORT=$(next_port); TLS_PASS_PORT=$(next_port)

wait_http() { # URL [seconds]: until it answers at all
    local n=0 lim=$(( ${2:-20} * 10 ))
    until curl -s -o /dev/null --max-time 1 "$1"; do
        sleep 0.1; n=$((n + 1)); [ $n -lt $lim ] || return 1
    done
}
children() { ps -o pid= --ppid "$1" | tr -d ' ' | tr '\n' ' '; }

# ---------------------------------------------------------------- payloads
mkdir -p "$TMP/payloads" "$TMP/wrk" "$TMP/check"
python3 "$LOAD_DIR/gen_payloads.py" "$TMP/payloads"
P1K="$TMP/payloads/event-1k.json"
P16K="$TMP/payloads/batch-16k.json"
log "payloads: 1k=$(wc -c <"$P1K") B, 16k=$(wc -c <"$P16K") B"

# ------------------------------------------------------------ TLS partner
# A throw-away CA and a certificate for localhost / 127.0.0.1, for the TLS
# upstream; both nginx (proxy_ssl_trusted_certificate) and scrim (the rule
# file's ca_file) verify against the CA.
TLS_DIR="$TMP/tls"
mkdir -p "$TLS_DIR"
(
    cd "$TLS_DIR"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj "/CN=scrim load CA" -keyout ca.key -out ca.pem
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj "/CN=localhost" -keyout partner.key -out partner.csr
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >ext.cnf
    openssl x509 -req -in partner.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile ext.cnf -out partner.pem
) >"$TMP/tls.log" 2>&1 || { cat "$TMP/tls.log" >&2; die "openssl could not make the test certificates"; }

# ------------------------------------------------------------------- nginx
fill() { # template out key=value...
    local tpl=$1 out=$2; shift 2
    local args=() kv
    for kv in "$@"; do args+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
    sed "${args[@]}" "$tpl" >"$out"
    if grep -q '@[A-Z_]*@' "$out"; then die "unfilled placeholder in $out"; fi
}
start_nginx() { # name: runs $TMP/name/nginx.conf in the foreground (daemon off), sets NGINX_PID
    local dir="$TMP/$1"
    "$NGINX" -t -q -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" 2>"$dir/t.err" \
        || { cat "$dir/t.err" >&2; die "nginx config $1 invalid"; }
    "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/stdout.log" 2>&1 &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
}
mkdir -p "$TMP/upstream" "$TMP/proxy"
fill "$LOAD_DIR/nginx-upstream.conf.in" "$TMP/upstream/nginx.conf" \
    DIR="$TMP/upstream" UP_PORT="$UP_PORT" CAP_PORT="$CAP_PORT" TLS_UP_PORT="$TLS_UP_PORT" TLS_DIR="$TLS_DIR" \
    NJS_MODULE="$NJS_MODULE" LOAD_DIR="$LOAD_DIR"
NJS_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
if [ "$ACCESS_LOGS" = 1 ]; then
    ACCESS_LOG="$TMP/proxy/access.log combined buffer=64k flush=1s"
else
    ACCESS_LOG=off
fi
fill "$LOAD_DIR/nginx-proxy.conf.in" "$TMP/proxy/nginx.conf" \
    DIR="$TMP/proxy" LOAD_DIR="$LOAD_DIR" NJS_MODULE="$NJS_MODULE" WORKERS="$NGINX_WORKERS" \
    ACCESS_LOG="$ACCESS_LOG" UP_PORT="$UP_PORT" CAP_PORT="$CAP_PORT" PASS_PORT="$PASS_PORT" \
    NJS_PORT="$NJS_PORT" NJS_CHECK_PORT="$NJS_CHECK_PORT" NJS_KEY="$NJS_KEY" \
    H2C_PORT="$H2C_PORT" TLS_UP_PORT="$TLS_UP_PORT" TLS_PASS_PORT="$TLS_PASS_PORT" TLS_DIR="$TLS_DIR"
start_nginx upstream; UP_MASTER=$NGINX_PID
start_nginx proxy; PROXY_MASTER=$NGINX_PID

# ------------------------------------------------------------------- scrim
mkdir -p "$TMP/scrim/rules"
"$SCRIM" keygen --keys "$TMP/scrim/keys.toml" --activate 2>>"$TMP/scrim/keygen.log" >/dev/null \
    || die "scrim keygen failed"
mkrule() { # template recipient upstream-port
    fill "$LOAD_DIR/$1.toml.in" "$TMP/scrim/rules/$2.toml" RECIPIENT="$2" UPSTREAM="http://127.0.0.1:$3"
}
mkrule keepall keepall "$UP_PORT"
mkrule realistic realistic "$UP_PORT"
mkrule keepall keepall_check "$CAP_PORT"
mkrule realistic realistic_check "$CAP_PORT"
# The TLS partner: the same rules, an https upstream verified against the
# throw-away CA.
fill "$LOAD_DIR/realistic.toml.in" "$TMP/scrim/rules/realistic_tls.toml" RECIPIENT=realistic_tls \
    UPSTREAM="https://localhost:$TLS_UP_PORT"
sed -i "s|^upstream  = .*|&\nca_file   = \"$TLS_DIR/ca.pem\"|" "$TMP/scrim/rules/realistic_tls.toml"
"$SCRIM" check "$TMP/scrim/rules" >"$TMP/scrim/check.log" 2>&1 \
    || { cat "$TMP/scrim/check.log" >&2; die "scrim check refused the benchmark rules"; }
SCRIM_LOG_LEVEL=info
[ "$ACCESS_LOGS" = 1 ] || SCRIM_LOG_LEVEL=warn
cat >"$TMP/scrim/scrim.toml" <<EOF
[listen]
address = "127.0.0.1:$SCRIM_PORT"
[admin]
address = "127.0.0.1:$ADMIN_PORT"
[rules]
dir = "$TMP/scrim/rules"
watch = false
[keys]
file = "$TMP/scrim/keys.toml"
allow_ephemeral = false
[limits]
# The streaming check sends SIZE bytes in one request; bodies above 1 MiB
# stream (by default nothing streams: bodies are buffered up to body_bytes).
body_bytes = $(( SIZE > 2147483648 ? SIZE * 2 : 2147483648 ))
stream_threshold_bytes = 1048576
[log]
level = "$SCRIM_LOG_LEVEL"
EOF
env -u RUST_LOG "$SCRIM" serve --config "$TMP/scrim/scrim.toml" >"$TMP/scrim/scrim.log" 2>&1 &
SCRIM_PID=$!
PIDS+=($SCRIM_PID)

for u in "http://127.0.0.1:$UP_PORT/" "http://127.0.0.1:$CAP_PORT/" "http://127.0.0.1:$PASS_PORT/" \
    "http://127.0.0.1:$NJS_PORT/" "http://127.0.0.1:$TLS_PASS_PORT/" "http://127.0.0.1:$ADMIN_PORT/readyz"; do
    wait_http "$u" 20 || { tail -n 20 "$TMP"/*/error.log "$TMP/scrim/scrim.log" >&2 || true; die "$u not up"; }
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/readyz")" = 200 ] || die "scrim not ready"
sleep 1
UP_WORKERS=$(children "$UP_MASTER")
PROXY_WORKERS=$(children "$PROXY_MASTER")
[ -n "$UP_WORKERS" ] && [ -n "$PROXY_WORKERS" ] || die "nginx workers not found"
SCRIM_IDLE_RSS=$(awk '/^VmRSS/{print $2}' "/proc/$SCRIM_PID/status")
SCRIM_IDLE_HWM=$(awk '/^VmHWM/{print $2}' "/proc/$SCRIM_PID/status")
log "up: upstream :$UP_PORT, passthrough :$PASS_PORT, njs :$NJS_PORT, scrim :$SCRIM_PORT (admin :$ADMIN_PORT); scrim idle RSS ${SCRIM_IDLE_RSS} kB"

# ---------------------------------------------------------------- RSS
HWM_RESET=1
hwm_reset() { # pids...: restart the peak-RSS counter (VmHWM) of each
    local p
    for p in "$@"; do echo 5 2>/dev/null >"/proc/$p/clear_refs" || HWM_RESET=0; done
}
hwm_sum() { # pids...: summed VmHWM, kB
    local p s=0 v
    for p in "$@"; do
        v=$(awk '/^VmHWM/{print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        s=$((s + ${v:-0}))
    done
    echo $s
}
pids_for() {
    case "$1" in
        direct) echo "$UP_WORKERS" ;;
        nginx-*) echo "$PROXY_WORKERS" ;;
        scrim-*) echo "$SCRIM_PID" ;;
    esac
}
url_for() { # target size
    local path=/v1/track
    [ "$2" = 16k ] && path=/v1/batch
    case "$1" in
        direct) echo "http://127.0.0.1:$UP_PORT$path" ;;
        nginx-passthrough) echo "http://127.0.0.1:$PASS_PORT$path" ;;
        nginx-njs) echo "http://127.0.0.1:$NJS_PORT$path" ;;
        scrim-keepall) echo "http://127.0.0.1:$SCRIM_PORT/keepall$path" ;;
        scrim-realistic) echo "http://127.0.0.1:$SCRIM_PORT/realistic$path" ;;
        nginx-h2c) echo "http://127.0.0.1:$H2C_PORT$path" ;;
        scrim-h2c) echo "http://127.0.0.1:$SCRIM_PORT/realistic$path" ;;
        nginx-tls) echo "http://127.0.0.1:$TLS_PASS_PORT$path" ;;
        scrim-tls-h2) echo "http://127.0.0.1:$SCRIM_PORT/realistic_tls$path" ;;
        *) die "unknown target $1" ;;
    esac
}
payload_for() { if [ "$1" = 16k ]; then echo "$P16K"; else echo "$P1K"; fi; }

# ------------------------------------------------------------ 4. check run
CHECKS="$TMP/check/summary.txt"
: >"$CHECKS"
check_fail=0
post() { # url file -> status; body to $TMP/check/last.body
    curl -s -o "$TMP/check/last.body" -w '%{http_code}' --max-time 10 -X POST \
        -H 'Content-Type: application/json' --data-binary "@$2" "$1" || echo 000
}
captured_last() { # file: the body of the last line of the capture log
    sleep 0.3
    python3 -c 'import json,sys; l=open(sys.argv[1]).read().splitlines(); sys.stdout.write(json.loads(l[-1])["body"] if l else "")' \
        "$TMP/upstream/capture.log" >"$1"
}
check() { # label mode url payload
    local label=$1 mode=$2 url=$3 file=$4 st out
    st=$(post "$url" "$file")
    if [ "$mode" = none ]; then
        out="status $st"
        [[ "$st" == 2* ]] || check_fail=1
    else
        captured_last "$TMP/check/$label.out"
        out="status $st; $(python3 "$LOAD_DIR/check_capture.py" "$mode" "$file" "$TMP/check/$label.out" || echo FAIL)"
        [[ "$st" == 2* && "$out" != *FAIL* ]] || check_fail=1
    fi
    printf '| %s | %s |\n' "$label" "$out" >>"$CHECKS"
}
for s in 1k 16k; do
    f=$(payload_for "$s")
    p=/v1/track; [ $s = 16k ] && p=/v1/batch
    check "direct $s" none "$(url_for direct $s)" "$f"
    check "nginx-passthrough $s" none "$(url_for nginx-passthrough $s)" "$f"
    check "nginx-njs $s (captured)" rewrite "http://127.0.0.1:$NJS_CHECK_PORT$p" "$f"
    check "scrim-keepall $s (captured)" keepall "http://127.0.0.1:$SCRIM_PORT/keepall_check$p" "$f"
    check "scrim-realistic $s (captured)" rewrite "http://127.0.0.1:$SCRIM_PORT/realistic_check$p" "$f"
done
# HTTP/2 targets: h2c with prior knowledge answers 2xx; scrim reached the
# TLS partner over HTTP/2 (its log names the protocol of each request).
h2c_post() { # url file -> status
    curl -s -o "$TMP/check/last.body" -w '%{http_code}' --max-time 10 --http2-prior-knowledge -X POST \
        -H 'Content-Type: application/json' --data-binary "@$2" "$1" || echo 000
}
for s in 1k 16k; do
    f=$(payload_for "$s")
    for t in nginx-h2c scrim-h2c; do
        st=$(h2c_post "$(url_for $t $s)" "$f")
        printf '| %s %s (h2c) | status %s |\n' "$t" "$s" "$st" >>"$CHECKS"
        [[ "$st" == 2* ]] || check_fail=1
    done
    for t in nginx-tls scrim-tls-h2; do
        st=$(post "$(url_for $t $s)" "$f")
        printf '| %s %s | status %s |\n' "$t" "$s" "$st" >>"$CHECKS"
        [[ "$st" == 2* ]] || check_fail=1
    done
done
sleep 1.2 # the protocol log flushes every second
PROTOS=$(sort "$TMP/upstream/tls-proto.log" 2>/dev/null | uniq -c | awk '{printf "%s %s; ", $2, $1}')
printf '| TLS partner, protocols received (nginx-tls then scrim-tls-h2) | %s |\n' "${PROTOS:-none}" >>"$CHECKS"
[[ "$PROTOS" == *HTTP/2.0* ]] || { check_fail=1; log "scrim did not reach the TLS partner over HTTP/2"; }
printf '{"userId":"u-1","traits":{"email":"a@b.example"' >"$TMP/check/bad.json"
for t in nginx-njs scrim-realistic; do
    st=$(post "$(url_for $t 1k)" "$TMP/check/bad.json")
    printf '| %s, truncated JSON | status %s (want 400) |\n' "$t" "$st" >>"$CHECKS"
    [ "$st" = 400 ] || check_fail=1
done
cat "$CHECKS" >&2
[ $check_fail = 0 ] || log "WARNING: a check failed (see the report); measuring anyway"

# ------------------------------------------------------------ 5. load runs
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
# CPU accounting over the load rows, to show how much of the machine other
# processes took: /proc/stat (all CPUs) against this harness's own processes
# (this script and its reaped children, i.e. wrk; nginx; scrim).
cpu_total() { awk '/^cpu /{printf "%.0f %.0f %.0f\n", $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8+$9, $9}' /proc/stat; }
cpu_harness() {
    local p s=0 v
    for p in $$ $UP_MASTER $UP_WORKERS $PROXY_MASTER $PROXY_WORKERS $SCRIM_PID; do
        v=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$p/stat" 2>/dev/null || echo 0)
        s=$((s + ${v:-0}))
    done
    echo $s
}
read -r CPU_BUSY0 CPU_ALL0 CPU_STEAL0 < <(cpu_total)
CPU_H0=$(cpu_harness)
RESULTS="$TMP/results.tsv"
: >"$RESULTS"
run_wrk() { # out-file url body-file conns seconds [target]
    case "${6:-}" in
        *-h2c)
            # h2load has no percentiles: each request's time goes to a log,
            # and h2load_result.py prints the same RESULT line as post.lua.
            timeout -k 5 $(($5 + 30)) h2load -t"$THREADS" -c"$4" -m"$H2_STREAMS" -D"$5" \
                -d "$3" -H 'content-type: application/json' --log-file="$1.log" "$2" >"$1.h2load" 2>&1 || true
            python3 "$LOAD_DIR/h2load_result.py" "$1.h2load" "$1.log" "$5" >"$1" 2>&1 || true
            rm -f "$1.log"
            ;;
        *)
            timeout -k 5 $(($5 + 30)) env BODY_FILE="$3" wrk -t"$THREADS" -c"$4" -d"${5}s" --latency \
                --timeout 10s -s "$LOAD_DIR/post.lua" "$2" >"$1" 2>&1 || true
            ;;
    esac
}
# Interleaved (body size, connections, then target), so that drift on a
# shared machine spreads over all targets instead of hitting one block.
for size in 1k 16k; do
    for c in $CONNS; do
        for target in $TARGETS; do
            url=$(url_for "$target" "$size")
            body=$(payload_for "$size")
            pids=$(pids_for "$target")
            if [ "$WARMUP" -gt 0 ]; then
                run_wrk "$TMP/wrk/$target-$size-c$c-warmup.txt" "$url" "$body" "$c" "$WARMUP" "$target"
            fi
            # shellcheck disable=SC2086
            hwm_reset $pids
            out="$TMP/wrk/$target-$size-c$c.txt"
            run_wrk "$out" "$url" "$body" "$c" "$DURATION" "$target"
            # shellcheck disable=SC2086
            rss=$(hwm_sum $pids)
            line=$(grep '^RESULT ' "$out" || true)
            if [ -z "$line" ]; then
                log "$target $size c=$c: no result (wrk output: $(tr '\n' ' ' <"$out" | cut -c1-300))"
                line="RESULT requests=0 rps=0 p50_us=0 p99_us=0 non2xx=0 statuses=wrk-failed"
            fi
            printf '%s\t%s\t%s\t%s\trss_kb=%s\tsample=%s\n' "$target" "$size" "$c" "$line" "$rss" \
                "$(grep '^FIRST_NON2XX_BODY ' "$out" | cut -d' ' -f2- | tr '\t' ' ' || true)" >>"$RESULTS"
            log "$target $size c=$c: $(echo "$line" | grep -o 'rps=[^ ]*\|p99_us=[^ ]*\|non2xx=[^ ]*' | tr '\n' ' ')rss=${rss}kB"
        done
    done
done

read -r CPU_BUSY1 CPU_ALL1 CPU_STEAL1 < <(cpu_total)
CPU_H1=$(cpu_harness)
CPU_NOTE=$(awk -v b=$((CPU_BUSY1 - CPU_BUSY0)) -v a=$((CPU_ALL1 - CPU_ALL0)) -v st=$((CPU_STEAL1 - CPU_STEAL0)) \
    -v h=$((CPU_H1 - CPU_H0)) -v n="$(nproc)" 'BEGIN {
        if (a <= 0) { print "n/a"; exit }
        printf "all CPUs %.0f%% busy (of %d cores), this harness (wrk, nginx, scrim) %.0f%%, other processes %.0f%%, steal %.0f%%",
            100 * b / a, n, 100 * h / a, 100 * (b - h) / a, 100 * st / a }')
log "CPU during the load rows: $CPU_NOTE"

# ------------------------------------------------- 6. latency at a fixed rate
RATES="$TMP/rates.tsv"
: >"$RATES"
if [ -n "$RATE_BIN" ]; then
    if [ -z "$RATE" ]; then
        RATE=$(awk -F'\t' '$1 == "nginx-passthrough" && $2 == "1k" {
            for (i = 4; i <= NF; i++) if ($i ~ /rps=/) { split($i, a, "rps="); split(a[2], b, " "); if (b[1] > m) m = b[1] } }
            END { printf "%d", m / 2 }' "$RESULTS")
    fi
    if [ "${RATE:-0}" -gt 0 ]; then
        for target in nginx-passthrough scrim-keepall scrim-realistic; do
            case " $TARGETS " in *" $target "*) ;; *) continue ;; esac
            res=$(timeout -k 5 $((RATE_SECONDS + 60)) "$RATE_BIN" "$(url_for "$target" 1k)" "$(payload_for 1k)" \
                "$RATE" "$RATE_SECONDS" 64 2>&1 | tail -n 1 || true)
            printf '%s\t%s\n' "$target" "$res" >>"$RATES"
            log "$target 1k at $RATE req/s: $res"
        done
    else
        log "no nginx-passthrough 1k row to take the rate from; latency rows skipped"
    fi
fi

# ----------------------------------------------------------- 7. streaming
STREAM="skipped"
STREAM_HWM=0
if [ "$SIZE" -gt 0 ]; then
    line_file="$TMP/payloads/event.ndjson-line"
    line_bytes=$(($(wc -c <"$line_file") + 1))
    lines=$((SIZE / line_bytes))
    ev=$(cat "$line_file")
    metric() { # name: the realistic recipient's counter
        curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v n="$1" \
            '$1 ~ "^"n && $1 ~ /recipient="realistic"/ {s += $2} END {printf "%.0f", s}'
    }
    in0=$(metric scrim_request_bytes); out0=$(metric scrim_forwarded_bytes)
    hwm_reset "$SCRIM_PID"
    log "streaming $lines NDJSON lines ($((lines * line_bytes)) bytes) through scrim-realistic (timeout ${STREAM_TIMEOUT}s)"
    s0=$(date +%s.%N)
    res=$( (yes "$ev" | head -n "$lines" | curl -sS --max-time "$STREAM_TIMEOUT" -o "$TMP/stream.resp" \
        -w '%{http_code} %{size_upload}' -X POST -T - -H 'Content-Type: application/x-ndjson' \
        -H 'Expect:' "http://127.0.0.1:$SCRIM_PORT/realistic/v1/import") 2>"$TMP/stream.err" || true)
    s1=$(date +%s.%N)
    stream_hwm=$(hwm_sum "$SCRIM_PID")
    STREAM_HWM=$stream_hwm
    in1=$(metric scrim_request_bytes); out1=$(metric scrim_forwarded_bytes)
    code=${res%% *}; up=${res##* }
    secs=$(awk -v a="$s0" -v b="$s1" 'BEGIN{printf "%.1f", b - a}')
    STREAM="status ${code:-none}, ${up:-0} bytes uploaded ($((lines * line_bytes)) planned, $lines lines) in ${secs} s"
    STREAM+=" ($(awk -v u="${up:-0}" -v s="$secs" 'BEGIN{printf "%.0f", (s > 0 ? u / s / 1048576 : 0)}') MiB/s);"
    STREAM+=" scrim counted $((in1 - in0)) bytes in, $((out1 - out0)) forwarded;"
    STREAM+=" **peak RSS $((stream_hwm / 1024)) MiB** ($stream_hwm kB)"
    if [ -s "$TMP/stream.err" ]; then STREAM+="; curl: $(tr '\n' ' ' <"$TMP/stream.err" | cut -c1-200)"; fi
    if [[ "$code" != 2* ]]; then STREAM+="; response: $(head -c 300 "$TMP/stream.resp" 2>/dev/null | tr '\n' ' ')"; fi
    log "stream: $STREAM"
fi

# ------------------------------------------------------------------ report
T_END=$(date +%s)
SCRIM_WARN=$(grep -c -E ' (WARN|ERROR) ' "$TMP/scrim/scrim.log" || true)
SCRIM_WARN_SAMPLE=$(grep -E ' (WARN|ERROR) ' "$TMP/scrim/scrim.log" | grep -v 'ephemeral' | head -n 3 | cut -c1-300 || true)
NGINX_ERR=$(cat "$TMP/upstream/error.log" "$TMP/proxy/error.log" 2>/dev/null | grep -c -E '\[(error|crit|alert|emerg)\]' || true)
STATUS_METRICS=$(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | grep -E '^scrim_requests_total' | grep -v '_check"' || true)
mkdir -p "$RESULTS_DIR"
REPORT="$RESULTS_DIR/load-$(date +%Y-%m-%d-%H%M%S).md"
export T0 T_BUILT T_END DURATION WARMUP THREADS CONNS NGINX_WORKERS ACCESS_LOGS SIZE HWM_RESET \
    SCRIM_IDLE_RSS SCRIM_IDLE_HWM STREAM SCRIM_WARN SCRIM_WARN_SAMPLE NGINX_ERR STATUS_METRICS \
    RESULTS CHECKS TMP P1K P16K NJS_MODULE NGINX TARGETS LOAD_START CPU_NOTE RATES RATE RATE_SECONDS \
    STREAM_HWM H2_STREAMS
python3 - >"$REPORT" <<'PY'
import os, subprocess, time
E = os.environ
def sh(c):
    try:
        p = subprocess.run(c, shell=True, capture_output=True, text=True, timeout=10)
        return (p.stdout.strip() + " " + p.stderr.strip()).strip()
    except Exception:
        return "?"
rows = []
for line in open(E["RESULTS"]):
    f = line.rstrip("\n").split("\t")
    kv = dict(x.split("=", 1) for x in f[3].split()[1:] if "=" in x)
    rss = f[4].split("=", 1)[1]
    sample = f[5].split("=", 1)[1] if len(f) > 5 else ""
    rows.append(dict(target=f[0], size=f[1], conns=int(f[2]), rps=float(kv.get("rps", 0)),
                     p50=int(kv.get("p50_us", 0)), p99=int(kv.get("p99_us", 0)),
                     non2xx=int(kv.get("non2xx", 0)), statuses=kv.get("statuses", "-"),
                     errs=sum(int(kv.get(k, 0)) for k in ("err_connect", "err_read", "err_write", "err_timeout")),
                     requests=int(kv.get("requests", 0)), rss=int(rss), sample=sample))
order = {t: i for i, t in enumerate(E["TARGETS"].split())}
rows.sort(key=lambda r: (order.get(r["target"], 99), r["size"] != "1k", r["conns"]))
R = {(r["target"], r["size"], r["conns"]): r for r in rows}
ms = lambda us: "%.2f ms" % (us / 1000.0)
mib = lambda kb: "%.1f MiB" % (kb / 1024.0)
out = []
w = out.append
w("# scrim load test, %s" % time.strftime("%Y-%m-%d %H:%M:%S %Z"))
w("")
w("Command: `DURATION=%s SIZE=%s benches/load.sh` (%s s per row, each after a %s s warm-up, rows interleaved, "
  "wrk %s threads, connections %s, proxy nginx workers %s, scrim audit log and nginx access log %s)." % (
  E["DURATION"], E["SIZE"], E["DURATION"], E["WARMUP"], E["THREADS"], E["CONNS"], E["NGINX_WORKERS"],
  "on" if E["ACCESS_LOGS"] == "1" else "off"))
w("")
w("Machine: %s CPU(s) (%s), kernel %s; %s; njs %s; %s. Load average (1, 5, 15 min) at the start of the measuring: %s; at the end: %s." % (
  sh("nproc"), sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs"), sh("uname -r"),
  sh(E["NGINX"] + " -v"), sh("dpkg-query -W -f='${Version}' libnginx-mod-http-js"), sh("wrk -v | head -1"),
  E["LOAD_START"], sh("cut -d' ' -f1-3 /proc/loadavg")))
w("")
w("CPU time during the load rows (/proc/stat): %s. Other processes on a shared machine make the figures noisy; "
  "`direct` p99 above a proxy's p99 is that noise." % E["CPU_NOTE"])
w("")
w("**wrk, the proxies and the 204 upstream all share these %s cores**, so every req/s figure is "
  "the throughput of the whole loop on this box, not of the proxy alone; compare rows with each "
  "other, not with other machines. Payloads: 1k = %d B single event (POST /v1/track), 16k = %d B "
  "/v1/batch body; Content-Type application/json." % (sh("nproc"), os.path.getsize(E["P1K"]), os.path.getsize(E["P16K"])))
w("")
w("Peak RSS: VmHWM of the process(es) serving the target, reset (/proc/PID/clear_refs) before each row%s: "
  "nginx workers summed (master excluded; `direct` is the upstream nginx's worker), scrim's single process." %
  ("" if E["HWM_RESET"] == "1" else " -- RESET FAILED, figures are peaks since start"))
w("")
w("| target | body | conns | req/s | p50 | p99 | peak RSS | non-2xx | socket errors |")
w("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    w("| %s | %s | %d | %.0f | %s | %s | %s | %s | %d |" % (
        r["target"], r["size"], r["conns"], r["rps"], ms(r["p50"]), ms(r["p99"]), mib(r["rss"]),
        ("%d (%s)" % (r["non2xx"], r["statuses"])) if r["non2xx"] else "0", r["errs"]))
w("")
w("Ratios (scrim-realistic):")
w("")
w("| body | conns | req/s vs nginx-passthrough | req/s vs nginx-njs | p99 added over direct |")
w("|---|---:|---:|---:|---:|")
for (t, s, c), r in sorted(R.items(), key=lambda x: (x[0][1] != "1k", x[0][2])):
    if t != "scrim-realistic":
        continue
    def ratio(o):
        x = R.get((o, s, c))
        return "%.2f" % (r["rps"] / x["rps"]) if x and x["rps"] else "n/a"
    d = R.get(("direct", s, c))
    w("| %s | %d | %s | %s | %s |" % (s, c, ratio("nginx-passthrough"), ratio("nginx-njs"),
      ("%+.2f ms" % ((r["p99"] - d["p99"]) / 1000.0)) if d else "n/a"))
w("")
h2 = [(s, c) for s in ("1k", "16k") for c in sorted({r["conns"] for r in rows})
      if R.get(("scrim-h2c", s, c)) or R.get(("scrim-tls-h2", s, c))]
if h2:
    w("HTTP/2 (scrim with the realistic rules; each baseline is nginx doing the same hop):")
    w("")
    w("| body | conns | h2c from the service (h2load, %s stream(s) a connection): scrim vs nginx | "
      "TLS partner over ALPN h2 (wrk): scrim vs nginx proxy_pass https | scrim h2c p99 | scrim TLS h2 p99 |" % E["H2_STREAMS"])
    w("|---|---:|---:|---:|---:|---:|")
    for s, c in h2:
        def pair(a, b):
            x, y = R.get((a, s, c)), R.get((b, s, c))
            if not (x and y and y["rps"]):
                return "n/a"
            return "%.0f / %.0f = %.2fx" % (x["rps"], y["rps"], x["rps"] / y["rps"])
        p99 = lambda t: ms(R[(t, s, c)]["p99"]) if R.get((t, s, c)) else "n/a"
        w("| %s | %d | %s | %s | %s | %s |" % (s, c, pair("scrim-h2c", "nginx-h2c"),
          pair("scrim-tls-h2", "nginx-tls"), p99("scrim-h2c"), p99("scrim-tls-h2")))
    w("")
k = [(s, R.get(("scrim-keepall", s, 32)), R.get(("direct", s, 32))) for s in ("1k", "16k")]
w("p99 added over direct at 32 connections, scrim-keepall: " + ", ".join(
  "%s %+.2f ms" % (s, (a["p99"] - b["p99"]) / 1000.0) for s, a, b in k if a and b) + ".")
w("")
lat = {}
for line in open(E["RATES"]):
    t, res = line.rstrip("\n").split("\t", 1)
    kv = dict(x.split("=", 1) for x in res.split() if "=" in x)
    lat[t] = kv
if lat:
    w("Latency at a constant rate of %s req/s (half of nginx passthrough's best saturated 1k rate; "
      "`benches/rate.rs`, open-loop, 64 connections, %s s, latency counted from when each request was due):" % (
      E["RATE"], E["RATE_SECONDS"]))
    w("")
    w("| target | achieved req/s | ok | errors | p50 | p99 | p99.9 | max |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|")
    for t, kv in lat.items():
        g = lambda k: int(kv.get(k, 0) or 0)
        w("| %s | %s | %s | %s | %s | %s | %s | %s |" % (t, kv.get("rate", "?"), kv.get("ok", "?"), kv.get("errors", "?"),
          ms(g("p50_us")), ms(g("p99_us")), ms(g("p999_us")), ms(g("max_us"))))
    w("")
w("scrim idle RSS (after start, rules and key ring loaded, before any load): **%s** (VmRSS %s kB, VmHWM %s kB)." % (
  mib(int(E["SCRIM_IDLE_RSS"])), E["SCRIM_IDLE_RSS"], E["SCRIM_IDLE_HWM"]))
w("")
w("Streaming, one %s-byte NDJSON body (1 KB events, chunked) through scrim-realistic to the 204 upstream: %s." % (E["SIZE"], E["STREAM"]))
w("")
w("Targets of the gateway issue, from this run:")
w("")
w("| target | measured | status |")
w("|---|---|---|")
def rps_ratio(a, b, s, c):
    x, y = R.get((a, s, c)), R.get((b, s, c))
    return (x["rps"] / y["rps"]) if x and y and y["rps"] else None
def verdict(vals, want):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "not measured", "n/a"
    return ", ".join("%.2fx" % v for v in vals), ("met" if min(vals) >= want else "**missed**")
conns = sorted({r["conns"] for r in rows})
for label, a, b, s, want in [
        ("1 KB, keep-everything: at least nginx passthrough's req/s", "scrim-keepall", "nginx-passthrough", "1k", 1.0),
        ("1 KB, realistic: at least 0.9x nginx passthrough", "scrim-realistic", "nginx-passthrough", "1k", 0.9),
        ("16 KB, realistic: at least 0.6x nginx passthrough", "scrim-realistic", "nginx-passthrough", "16k", 0.6),
        ("16 KB, realistic: at least 10x nginx+njs", "scrim-realistic", "nginx-njs", "16k", 10.0)]:
    m, v = verdict([rps_ratio(a, b, s, c) for c in conns], want)
    w("| %s | %s (connections %s) | %s |" % (label, m, " / ".join(map(str, conns)), v))
if lat.get("nginx-passthrough"):
    base = int(lat["nginx-passthrough"].get("p99_us", 0) or 0)
    for t in ("scrim-keepall", "scrim-realistic"):
        if t in lat:
            d = int(lat[t].get("p99_us", 0) or 0) - base
            ok = d <= 1000 and int(lat[t].get("errors", 1) or 0) == 0
            w("| p99 at %s req/s, %s: at most 1 ms above nginx passthrough's | %+.2f ms | %s |" % (
              E["RATE"], t, d / 1000.0, "met" if ok else "**missed**"))
else:
    w("| p99 at half of nginx's rate: at most 1 ms above nginx passthrough's | not measured | n/a |")
idle = int(E["SCRIM_IDLE_RSS"])
w("| idle RSS under 20 MiB | %s | %s |" % (mib(idle), "met" if idle < 20 * 1024 else "**missed**"))
hwm = int(E.get("STREAM_HWM", "0") or 0)
if hwm:
    w("| 1 GiB stream under 64 MiB | %s | %s |" % (mib(hwm), "met" if hwm < 64 * 1024 else "**missed**"))
w("")
w("Check run (one request each before the load; `captured` = the body the upstream received, checked field by field):")
w("")
w("| check | result |")
w("|---|---|")
out.extend(open(E["CHECKS"]).read().splitlines())
w("")
bad = [r for r in rows if r["non2xx"] or r["errs"] or not r["requests"]]
if bad:
    w("**Non-2xx responses or socket errors during the load:**")
    w("")
    for r in bad:
        w("- %s %s c=%d: %d non-2xx (%s), %d socket errors, %d requests; first non-2xx body: `%s`" % (
          r["target"], r["size"], r["conns"], r["non2xx"], r["statuses"], r["errs"], r["requests"], r["sample"][:200]))
else:
    w("No non-2xx responses and no socket errors in any row.")
w("")
w("scrim log: %s WARN/ERROR lines%s. nginx error logs: %s error lines." % (
  E["SCRIM_WARN"], (": `" + E["SCRIM_WARN_SAMPLE"].replace("\n", "` `") + "`") if E["SCRIM_WARN_SAMPLE"] else "", E["NGINX_ERR"]))
if E.get("STATUS_METRICS"):
    w("")
    w("scrim `/metrics` request counters at the end (benchmark recipients):")
    w("")
    w("```")
    out.extend(E["STATUS_METRICS"].splitlines())
    w("```")
w("")
w("Notes: nginx-njs runs JSON.parse, three HMAC-SHA256 (crypto.createHmac), an IPv4 /24 or IPv6 /48 cut, three "
  "deletes and JSON.stringify per event, then an r.subrequest to a keepalive proxy_pass "
  "(benches/load/rewrite.js). It is a lower bound on the work: no default deny, no duplicate-key check, "
  "numbers and escapes re-serialised (see the check table). Timeline: build done at +%ss, measuring "
  "done at +%ss." % (int(E["T_BUILT"]) - int(E["T0"]), int(E["T_END"]) - int(E["T0"])))
print("\n".join(out))
PY
cat "$REPORT"
log "report written to $REPORT; total $(( $(date +%s) - T0 )) s"
