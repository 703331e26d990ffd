#!/usr/bin/env bash
# Cold runs of the cache on the S4 fixture of ../shared/bench (20,000 files, ~200 MB):
# how fast a first `preflight run` (empty cache) keys a step over every file.
#
#   bash ../shared/bench/scenarios/s4_cache_hit.sh      # builds the fixture (once)
#   PREFLIGHT=target/release/preflight bash benches/cache-cold.sh
#
# Two cases, each with an empty cache before every timed run:
#   index   the files are clean in git's index: digests come from the index
#   hashed  every file was touched after the index was written: all are read and hashed
# Throughput = input bytes / median wall time of the whole `preflight run`.
set -eu
PF=$(readlink -f "${PREFLIGHT:-target/release/preflight}")
BENCH_ROOT=${BENCH_ROOT:-${TMPDIR:-/tmp}/preflight-bench}
BASE=$BENCH_ROOT/work/s4/base
DIR=$BENCH_ROOT/work/s4-cold
RUNS=${RUNS:-10}
export PATH="$BENCH_ROOT/bin:$PATH" LC_ALL=C NO_COLOR=1
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
[ -d "$BASE" ] || { echo "no fixture at $BASE: run the S4 scenario first" >&2; exit 1; }

rm -rf "$DIR"
cp -a "$BASE" "$DIR"   # a real copy: touching files must not touch the fixture
sync                   # no writeback of the copy during the timed runs
cd "$DIR"
cat > preflight.toml <<'T'
[steps.cached]
run = "mkdir -p out; echo built > out/result.txt"
inputs = ["packages/data/**"]
outputs = ["out/result.txt"]
T
printf '.preflight-cache/\nout/\n' >> .gitignore
export PREFLIGHT_CACHE_DIR=.preflight-cache
BYTES=$(git ls-files -z packages/data | xargs -0 cat | wc -c)

time_it() { # NAME
  hyperfine -N --style none --runs "$RUNS" --warmup 1 --prepare "rm -rf .preflight-cache" \
    --export-json "/tmp/cache-cold-$1.json" "$PF run" >/dev/null
  python3 - "$1" "$BYTES" "/tmp/cache-cold-$1.json" <<'PY'
import json, statistics, sys
name, size, f = sys.argv[1], int(sys.argv[2]), sys.argv[3]
t = json.load(open(f))["results"][0]["times"]
m = statistics.median(t)
print("%-7s median %6.1f ms  (min %6.1f, max %6.1f, n=%d)  %.2f GB/s over %.1f MB"
      % (name, m * 1e3, min(t) * 1e3, max(t) * 1e3, len(t), size / m / 1e9, size / 1e6))
PY
}

git update-index -q --refresh
time_it index
find packages/data -type f -exec touch {} +
# Every input now needs reading: check that preflight really hashes them all.
"$PF" run --dry-run --format json | python3 -c "
import json, sys
d = json.loads(sys.stdin.readline())['digests']
assert d['hashed'] == 20000 and d['from_index'] == 0, d
print('dry run: %d files hashed (%d bytes), %d from the index' % (d['hashed'], d['hashed_bytes'], d['from_index']))"
time_it hashed
git update-index -q --refresh
hyperfine -N --style none --runs "$RUNS" --warmup 1 --export-json /tmp/cache-cold-git.json \
  "git status --porcelain" >/dev/null
python3 -c "
import json, statistics
t = json.load(open('/tmp/cache-cold-git.json'))['results'][0]['times']
print('git status median %.1f ms' % (statistics.median(t) * 1e3))"
