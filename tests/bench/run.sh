#!/usr/bin/env bash
# preflight's own benchmark: what preflight adds on top of the commands it runs.
#
#   bash tests/bench/run.sh                      # all scenarios
#   bash tests/bench/run.sh overhead memory      # a subset
#   PREFLIGHT=/path/to/preflight RUNS=50 bash tests/bench/run.sh scheduler
#
# Scenarios (see tests/bench/README.md):
#   overhead   5,000 tracked files, one step `true`: `preflight run` vs `sh -c true`
#              and `true` run directly; figure = median difference (target < 10 ms)
#   scheduler  100 independent steps `true`: `preflight run -j 2` / `-j 8` vs a shell
#              loop running `sh -c true` 100 times; figure = difference / 100
#              (target < 1 ms per step)
#   memory     20,000 tracked files, one step `true` with files = ["*.txt"]: peak RSS
#              of `preflight run` (GNU time -v) with the cache empty, and on a
#              cache hit once the step is cached (target < 30 MB); also timed
#
# Every scenario rebuilds its fixture under $BENCH_WORK/work, checks that preflight
# really ran the steps (a twin fixture whose steps log their runs), then times with
# hyperfine. Results: $BENCH_WORK/results/{measurements,summary,verify}.tsv and
# json/ (raw samples); every command's output is in $BENCH_WORK/logs/.
# Exit status: 0 when everything ran and verified, 1 otherwise; with STRICT=1 a
# missed target also exits 1.
set -euo pipefail

. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

ALL="overhead scheduler memory"
want=${*:-$ALL}
for s in $want; do
  case " $ALL " in *" $s "*) ;; *) die "unknown scenario '$s' (known: $ALL)" ;; esac
done

[ -x "$PF" ] || die "preflight binary not found at $PF (build it with: cargo build --release, or set PREFLIGHT=)"
have python3 || die "python3 is needed (fixtures, result parsing)"
have git || die "git is needed"
need_hyperfine
case " $want " in *" memory "*) need_gnu_time ;; esac
setup_env
results_reset
FAILED=0 MISSED=0
PFQ=$(printf %q "$PF")
CORES=$(nproc)

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ //'), $CORES cores online"
  echo "preflight: $PF ($("$PF" --version 2>/dev/null || echo 'no --version'))"
  echo "hyperfine: $(hyperfine --version | awk '{print $2}'), git: $(git --version | awk '{print $3}'), sh: $(readlink -f "$(command -v sh)")"
  echo "runs: $RUNS (memory: $RUNS_SLOW, RSS samples: $MEMORY_RUNS), warmup: $WARMUP, work dir: $BENCH_WORK"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"
} | tee "$RESULTS/env.txt" >&2
if awk -v c="$CORES" '{ exit !($1 > c / 2) }' /proc/loadavg 2>/dev/null; then
  echo "bench: warning: the machine is busy (load average $(cut -d' ' -f1 /proc/loadavg) on $CORES cores); figures will be noisy" >&2
fi

# ---- 1. overhead ---------------------------------------------------------------------------
scenario_overhead() {
  local S=overhead D=$WORK/overhead
  echo "== overhead: building fixture ($OVERHEAD_FILES tracked files)" >&2
  rm -rf "$D"; mkdir -p "$D"
  make_repo "$D/repo" "$OVERHEAD_FILES"
  verify $S "tracked files" "$OVERHEAD_FILES" "$(git -C "$D/repo" ls-files | wc -l)" || true

  # verification twin: the step appends to a log; two runs must run it twice
  cp -a "$D/repo" "$D/verify"
  commit_config "$D/verify" <<EOF
[steps.t]
run = $(toml_str "echo ran >> '$D/verify.log'")
EOF
  : >"$D/verify.log"
  ( cd "$D/verify" && "$PF" run && "$PF" run ) >"$LOGS/overhead_verify.log" 2>&1 || true
  verify $S "step runs in 2 \`preflight run\`" 2 "$(wc -l <"$D/verify.log")" || true

  commit_config "$D/repo" <<'EOF'
[steps.t]
run = "true"
EOF
  verify $S "timed config: steps passed (--format json)" 1 "$(passed_steps "$D/repo")" || true
  local pf sh tr
  measure $S "preflight run" "$D/repo" argv "$RUNS" "$PFQ run" || true; pf=$MEDIAN_MS
  measure $S "sh -c true" "$D/repo" argv "$RUNS" "sh -c true" || true; sh=$MEDIAN_MS
  measure $S "true" "$D/repo" argv "$RUNS" "true" || true; tr=$MEDIAN_MS
  if [ "$pf" != - ] && [ "$sh" != - ]; then
    figure $S "preflight run - sh -c true" "$(calc "$pf - $sh" 2)" ms "$TARGET_OVERHEAD_MS" \
      "medians $pf - $sh ms; vs bare true: $( [ "$tr" = - ] && echo - || calc "$pf - $tr" 2) ms"
  else
    figure $S "preflight run - sh -c true" - ms "$TARGET_OVERHEAD_MS" "a measurement failed"
  fi
}

# ---- 2. scheduler --------------------------------------------------------------------------
scenario_scheduler() {
  local S=scheduler D=$WORK/scheduler N=$SCHED_STEPS i j
  echo "== scheduler: $N independent steps" >&2
  rm -rf "$D"; mkdir -p "$D/repo" "$D/verify"
  ( cd "$D/repo" && git init -q . )
  ( cd "$D/verify" && git init -q . )
  for i in $(seq -f '%03g' 1 "$N"); do printf '[steps.s%s]\nrun = "true"\n\n' "$i"; done | commit_config "$D/repo"
  for i in $(seq -f '%03g' 1 "$N"); do
    printf '[steps.s%s]\nrun = %s\n\n' "$i" "$(toml_str "echo s$i >> '$D/verify.log'")"
  done | commit_config "$D/verify"

  # verification: every step runs exactly once per run, at each -j
  for j in $SCHED_JOBS; do
    : >"$D/verify.log"
    ( cd "$D/verify" && "$PF" run -j "$j" ) >"$LOGS/scheduler_verify_j$j.log" 2>&1 || true
    verify $S "-j $j: distinct steps run / lines logged" "$N/$N" \
      "$(sort -u "$D/verify.log" | wc -l)/$(wc -l <"$D/verify.log")" || true
  done

  for j in $SCHED_JOBS; do
    verify $S "-j $j, timed config: steps passed (--format json)" "$N" "$(passed_steps "$D/repo" -j "$j")" || true
  done

  local loop
  measure $S "shell loop: $N x sh -c true" "$D/repo" shell "$RUNS" \
    "i=0; while [ \$i -lt $N ]; do sh -c true; i=\$((i+1)); done" || true; loop=$MEDIAN_MS
  for j in $SCHED_JOBS; do
    measure $S "preflight run -j $j" "$D/repo" argv "$RUNS" "$PFQ run -j $j" || true
    if [ "$MEDIAN_MS" != - ] && [ "$loop" != - ]; then
      figure $S "per-step overhead, -j $j" "$(calc "($MEDIAN_MS - $loop) / $N")" ms/step "$TARGET_STEP_MS" \
        "(median $MEDIAN_MS - loop $loop ms) / $N"
    else
      figure $S "per-step overhead, -j $j" - ms/step "$TARGET_STEP_MS" "a measurement failed"
    fi
  done
}

# ---- 3. memory -----------------------------------------------------------------------------
# peak_rss_mb DIR PREPARE: largest "Maximum resident set size" of MEMORY_RUNS runs, in MB
# (MiB: kbytes / 1024); PREPARE (shell) runs before each. Sets RSS_MB, RSS_ALL.
peak_rss_mb() {
  local dir=$1 prep=$2 k kb out=$WORK/memory/time.txt
  RSS_MB=- RSS_ALL=
  for k in $(seq 1 "$MEMORY_RUNS"); do
    ( cd "$dir" && bash -c "$prep" ) >/dev/null 2>&1 || true
    if ! ( cd "$dir" && /usr/bin/time -v -o "$out" "$PF" run ) >>"$LOGS/memory_rss.log" 2>&1; then
      echo "   FAILED: $PF run under /usr/bin/time (see $LOGS/memory_rss.log)" >&2
      RSS_MB=-; FAILED=1; return 1
    fi
    kb=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$out")
    RSS_ALL="$RSS_ALL${RSS_ALL:+ }$(calc "$kb / 1024" 1)"
  done
  RSS_MB=$(tr ' ' '\n' <<<"$RSS_ALL" | sort -g | tail -1)
  echo "   peak RSS (MB) per run: $RSS_ALL" >&2
}

scenario_memory() {
  local S=memory D=$WORK/memory
  echo "== memory: building fixture ($MEMORY_FILES tracked files)" >&2
  rm -rf "$D"; mkdir -p "$D"; : >"$LOGS/memory_rss.log"
  make_repo "$D/repo" "$MEMORY_FILES"
  local ntxt; ntxt=$(git -C "$D/repo" ls-files | grep -c '\.txt$' || true)
  verify $S "tracked files" "$MEMORY_FILES" "$(git -C "$D/repo" ls-files | wc -l)" || true
  # a step with `files` may be cached: any cache goes to the work dir and is
  # emptied before each "cache empty" run
  export PREFLIGHT_CACHE_DIR=$D/cache
  local reset="rm -rf $(printf %q "$D/cache") $(printf %q "$XDG_CACHE_HOME") .git/preflight .preflight-cache"

  # verification twin: the step records how many file arguments it got. With an
  # empty cache it must run on every matched file; a second run may be a cache hit;
  # after the reset it must run again (so the "cache empty" timings really are).
  cp -a "$D/repo" "$D/verify"
  printf '#!/bin/sh\necho "$#" >> %s\n' "$(printf %q "$D/argcount.log")" >"$D/argcount.sh"
  chmod +x "$D/argcount.sh"
  commit_config "$D/verify" <<EOF
[steps.m]
run = $(toml_str "'$D/argcount.sh' {files}")
files = [$(toml_str "$MEMORY_GLOB")]
EOF
  nfiles() { awk '{ s += $1 } END { print s + 0 }' "$D/argcount.log"; }
  : >"$D/argcount.log"
  ( cd "$D/verify" && bash -c "$reset" && "$PF" run ) >"$LOGS/memory_verify.log" 2>&1 || true
  local first; first=$(nfiles)
  verify $S "cache empty: files passed to the step ($MEMORY_GLOB)" "$ntxt" "$first" || true
  : >"$D/argcount.log"
  ( cd "$D/verify" && "$PF" run ) >>"$LOGS/memory_verify.log" 2>&1 || true
  local warm_label="cache hit"
  [ "$first" != 0 ] && [ ! -s "$D/argcount.log" ] || warm_label="not cached"
  note $S "second run: step invocations (0 = cache hit)" "$(wc -l <"$D/argcount.log")"
  : >"$D/argcount.log"
  ( cd "$D/verify" && bash -c "$reset" && "$PF" run ) >>"$LOGS/memory_verify.log" 2>&1 || true
  verify $S "after the cache reset: files passed again" "$ntxt" "$(nfiles)" || true

  commit_config "$D/repo" <<EOF
[steps.m]
run = "true"
files = [$(toml_str "$MEMORY_GLOB")]
EOF
  ( cd "$D/repo" && bash -c "$reset" )
  verify $S "timed config: steps passed (--format json)" 1 "$(passed_steps "$D/repo")" || true
  peak_rss_mb "$D/repo" "$reset" || true
  figure $S "peak RSS, cache empty (step runs)" "$RSS_MB" MB "$TARGET_RSS_MB" "max of $MEMORY_RUNS: $RSS_ALL"
  measure $S "preflight run (cache empty)" "$D/repo" argv "$RUNS_SLOW" "$PFQ run" "$reset" || true
  # with a cache, the run that finds its entry is measured too
  if [ "$warm_label" = "cache hit" ]; then
    ( cd "$D/repo" && bash -c "$reset" && "$PF" run ) >"$LOGS/memory_prime.log" 2>&1 || true
    peak_rss_mb "$D/repo" true || true
    figure $S "peak RSS, cache hit" "$RSS_MB" MB "$TARGET_RSS_MB" "max of $MEMORY_RUNS: $RSS_ALL"
    measure $S "preflight run (cache hit)" "$D/repo" argv "$RUNS_SLOW" "$PFQ run" || true
  fi
  unset PREFLIGHT_CACHE_DIR
}

start=$(date +%s)
for s in $want; do
  t0=$(date +%s)
  "scenario_$s"
  echo "== $s done in $(($(date +%s) - t0)) s" >&2
done
echo "== all done in $(($(date +%s) - start)) s ($CORES cores)" >&2

echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)" | tee -a "$RESULTS/env.txt" >&2
print_tables
echo
echo "results: $RESULTS/summary.tsv, measurements.tsv, verify.tsv (logs: $LOGS)"
[ "$FAILED" = 0 ] || { echo "bench: some runs or verifications FAILED (see above and $LOGS)" >&2; exit 1; }
if [ "$MISSED" = 1 ]; then
  echo "bench: some targets were missed" >&2
  [ "${STRICT:-0}" = 1 ] && exit 1
fi
exit 0
