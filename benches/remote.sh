#!/usr/bin/env bash
# The remote cache and remote execution against a real BuildGrid 0.4.4 on loopback.
#
#   cargo build --release
#   PREFLIGHT=target/release/preflight bash benches/remote.sh [hit|upload]
#
#   hit     a step with 100 output files: a fresh clone with an empty local cache gets it
#           from the remote cache (timed: the whole `preflight run`), beside a local hit
#           and beside running the step
#   upload  a step whose input root is 200 MB (200 files of 1 MB) run remotely twice with
#           different commands: the first run uploads everything, the second only what the
#           server lacks (timed: the upload stage preflight reports, and the whole run)
#
# BuildGrid comes from PyPI into target/tools/buildgrid-venv (as the tests install it);
# `upload` also needs PostgreSQL (Debian's postgresql) for BuildGrid's scheduler.
set -eu
PF=$(readlink -f "${PREFLIGHT:-target/release/preflight}")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=$ROOT/target/tools/buildgrid-venv
WORK=${TMPDIR:-/tmp}/preflight-remote-bench
RUNS=${RUNS:-20}
export NO_COLOR=1 GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null LC_ALL=C
command -v hyperfine >/dev/null || { echo "hyperfine is needed (apt-get install hyperfine)" >&2; exit 1; }
[ -x "$VENV/bin/bgd" ] || {
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet buildgrid==0.4.4 psycopg2-binary
}

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "${PGDATA:-}" ]; then runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA" -m immediate stop >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
rm -rf "$WORK" && mkdir -p "$WORK"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

start_buildgrid() { # EXTRA_CONFIG_FILE (may be empty)
  PORT=$(free_port)
  cat > "$WORK/bgd.yml" <<Y
server:
  - !channel
    address: "127.0.0.1:$PORT"
    insecure-mode: true
authorization:
  method: none
${CONNECTIONS:-}
storages:
  - !disk-storage &cas
    path: $WORK/cas
caches:
  - !lru-action-cache &ac
    storage: *cas
    max-cached-refs: 100000
    allow-updates: true
${SCHEDULERS:-}
instances:
  - name: ""
    services:
      - !cas
        storage: *cas
      - !bytestream
        storage: *cas
      - !action-cache
        cache: *ac
${EXECUTION:-}
Y
  "$VENV/bin/bgd" server start "$WORK/bgd.yml" > "$WORK/bgd.log" 2>&1 &
  PIDS+=($!)
  wait_port "$PORT"
  ENDPOINT=grpc://127.0.0.1:$PORT
}

median() { python3 -c 'import json,sys,statistics; r=json.load(open(sys.argv[1]))["results"][0]["times"]; print("%.1f ms (median of %d; min %.1f)" % (statistics.median(r)*1e3, len(r), min(r)*1e3))' "$1"; }

bench_hit() {
  start_buildgrid
  mkdir -p "$WORK/hit" && cd "$WORK/hit" && git init -q
  cat > preflight.toml <<T
[remote]
endpoint = "$ENDPOINT"

[steps.gen]
run = "mkdir -p out && for i in \$(seq 100); do head -c 4096 /dev/urandom > out/f\$i.bin; done"
inputs = ["src/**"]
outputs = ["out"]
T
  mkdir src && echo x > src/a && printf 'out/\n.cache*/\n' > .gitignore
  git add -A && git -c user.name=b -c user.email=b@b commit -qm init
  PREFLIGHT_CACHE_DIR=.cache-fill "$PF" run >/dev/null   # fills the remote cache
  echo "remote-cache hit, 100 output files of 4 KiB (empty local cache each run):"
  hyperfine -N --style none --runs "$RUNS" --warmup 2 --prepare "rm -rf .cache-remote out" \
    --export-json "$WORK/hit-remote.json" "env PREFLIGHT_CACHE_DIR=.cache-remote $PF run" >/dev/null
  echo "  $(median "$WORK/hit-remote.json")"
  echo "local-cache hit of the same step (outputs deleted each run):"
  hyperfine -N --style none --runs "$RUNS" --warmup 2 --prepare "rm -rf out" \
    --export-json "$WORK/hit-local.json" "env PREFLIGHT_CACHE_DIR=.cache-fill $PF run" >/dev/null
  echo "  $(median "$WORK/hit-local.json")"
  echo "running the step (no cache):"
  hyperfine -N --style none --runs "$RUNS" --warmup 2 \
    --export-json "$WORK/hit-none.json" "$PF run --no-cache" >/dev/null
  echo "  $(median "$WORK/hit-none.json")"
}

bench_upload() {
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin | tail -1)
  PGDATA=$WORK/pg/data
  mkdir -p "$WORK/pg" && chown postgres "$WORK/pg"
  runuser -u postgres -- "$PGBIN/initdb" -D "$PGDATA" -U bgd --auth=trust -E UTF8 >/dev/null
  PGPORT=$(free_port)
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA" -l "$WORK/pg/log" \
    -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $WORK/pg" start >/dev/null
  runuser -u postgres -- "$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U bgd bgd
  URL=postgresql+psycopg2://bgd@127.0.0.1:$PGPORT/bgd
  "$VENV/bin/bgd" migrate apply "$URL" >/dev/null 2>&1
  CONNECTIONS="connections:
  - !sql-connection &sql
    connection-string: $URL"
  SCHEDULERS="schedulers:
  - !sql-scheduler &sched
    sql: *sql
    storage: *cas
    action-cache: *ac
    bot-session-keepalive-timeout: 30"
  EXECUTION="      - !execution
        scheduler: *sched"
  start_buildgrid
  "$PF" worker --endpoint "$ENDPOINT" --jobs 2 --work-dir "$WORK/worker" > "$WORK/worker.log" 2>&1 &
  PIDS+=($!)
  mkdir -p "$WORK/up" && cd "$WORK/up" && git init -q
  mkdir data && for i in $(seq 200); do head -c 1048576 /dev/urandom > "data/f$i.bin"; done
  printf '.cache/\n' > .gitignore
  for n in 1 2 3; do
    cat > preflight.toml <<T
[remote]
endpoint = "$ENDPOINT"
execute = true

[steps.sum]
run = "cat data/* | wc -c > total.txt && echo run $n"
inputs = ["data/**"]
outputs = ["total.txt"]
T
    git add -A && git -c user.name=b -c user.email=b@b commit -qm "run $n"
    start=$(date +%s.%N)
    PREFLIGHT_CACHE_DIR=.cache "$PF" run --format json > "$WORK/up-$n.json"
    end=$(date +%s.%N)
    stage=$(grep -o '"stage":"uploaded[^"]*"' "$WORK/up-$n.json" | sed 's/"stage":"//; s/"$//')
    printf 'run %d: whole run %.2f s; %s\n' "$n" "$(python3 -c "print($end - $start)")" "$stage"
  done
}

case "${1:-all}" in
  hit) bench_hit ;;
  upload) bench_upload ;;
  all) bench_hit; bench_upload ;;
  *) echo "usage: $0 [hit|upload]" >&2; exit 2 ;;
esac
