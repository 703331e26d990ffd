# Helpers for tests/bench/run.sh (sourced, not executed).

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(git -C "$BENCH_DIR" rev-parse --show-toplevel 2>/dev/null || (cd "$BENCH_DIR/../.." && pwd))

# ---- knobs -------------------------------------------------------------------------
BENCH_WORK=${BENCH_WORK:-${TMPDIR:-/tmp}/preflight-selfbench}
RUNS=${RUNS:-30}                  # hyperfine runs for the fast cases
RUNS_SLOW=${RUNS_SLOW:-10}        # hyperfine runs for the memory scenario (20k files)
WARMUP=${WARMUP:-3}
OVERHEAD_FILES=${OVERHEAD_FILES:-5000}
SCHED_STEPS=${SCHED_STEPS:-100}
SCHED_JOBS=${SCHED_JOBS:-"2 8"}
MEMORY_FILES=${MEMORY_FILES:-20000}
MEMORY_GLOB=${MEMORY_GLOB:-*.txt}
MEMORY_RUNS=${MEMORY_RUNS:-5}     # /usr/bin/time -v runs per case; the largest peak is reported
TARGET_OVERHEAD_MS=${TARGET_OVERHEAD_MS:-10}
TARGET_STEP_MS=${TARGET_STEP_MS:-1}
TARGET_RSS_MB=${TARGET_RSS_MB:-30}

WORK=$BENCH_WORK/work
RESULTS=$BENCH_WORK/results
LOGS=$BENCH_WORK/logs
MEASURE_TSV=$RESULTS/measurements.tsv   # one row per timed command
SUMMARY_TSV=$RESULTS/summary.tsv        # one row per figure, with its target
VERIFY_TSV=$RESULTS/verify.tsv          # what the verification runs saw

# ---- the binary ----------------------------------------------------------------------
PREFLIGHT=${PREFLIGHT:-target/release/preflight}
case $PREFLIGHT in
  /*) PF=$PREFLIGHT ;;
  */*) if [ -e "$PWD/$PREFLIGHT" ]; then PF=$PWD/$PREFLIGHT; else PF=$ROOT/$PREFLIGHT; fi ;;
  *) PF=$(command -v "$PREFLIGHT" 2>/dev/null || echo "$ROOT/$PREFLIGHT") ;;
esac

die() { echo "bench: $*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

# apt_install PKG: the kit's tools come from Debian packages when missing
apt_install() {
  local sudo=
  [ "$(id -u)" = 0 ] || { have sudo && sudo=sudo; } || return 1
  have apt-get || return 1
  echo "bench: installing $1 (apt-get)" >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$1" >/dev/null 2>&1 \
    || { $sudo apt-get update -q >/dev/null 2>&1 \
         && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$1" >/dev/null 2>&1; }
}
need_hyperfine() {
  have hyperfine || apt_install hyperfine || true
  have hyperfine || die "hyperfine not found and could not be installed (apt-get install hyperfine, or cargo install hyperfine)"
}
need_gnu_time() {
  [ -x /usr/bin/time ] || apt_install time || true
  [ -x /usr/bin/time ] || die "/usr/bin/time (GNU time) not found and could not be installed (apt-get install time)"
  local out; out=$(/usr/bin/time -v true 2>&1 || true)
  grep -q 'Maximum resident set size' <<<"$out" \
    || die "/usr/bin/time is not GNU time (no -v 'Maximum resident set size')"
}

# ---- a reproducible environment ------------------------------------------------------
setup_env() {
  mkdir -p "$WORK" "$RESULTS/json" "$LOGS" "$BENCH_WORK/home"
  export LC_ALL=C TZ=UTC NO_COLOR=1 TERM=dumb
  unset CI GITHUB_ACTIONS
  # settings of the user's own shell must not change what is measured
  local v
  for v in $(compgen -e | grep '^PREFLIGHT_' || true); do unset "$v"; done
  # nothing the runs write (a user-level cache, say) lands outside the work dir
  export HOME=$BENCH_WORK/home XDG_CACHE_HOME=$BENCH_WORK/home/.cache \
    XDG_CONFIG_HOME=$BENCH_WORK/home/.config XDG_DATA_HOME=$BENCH_WORK/home/.local/share
  export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=$BENCH_WORK/gitconfig
  export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.invalid
  export GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.invalid
  export GIT_AUTHOR_DATE="2024-01-01T00:00:00Z" GIT_COMMITTER_DATE="2024-01-01T00:00:00Z"
  cat >"$GIT_CONFIG_GLOBAL" <<'EOF'
[init]
	defaultBranch = main
[advice]
	detachedHead = false
[gc]
	auto = 0
[maintenance]
	auto = false
EOF
}

# ---- fixtures ---------------------------------------------------------------------------
# make_repo DIR NFILES: a git repo with NFILES small tracked files in nested folders
# (4 in 5 are *.txt, the rest *.md), every file dated 2024-01-01 so that no index
# entry is "racily clean", one commit with a fixed identity and date.
make_repo() {
  local dir=$1 n=$2
  rm -rf "$dir"; mkdir -p "$dir"
  python3 - "$dir" "$n" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
t = 1704067200  # 2024-01-01T00:00:00Z
dirs = set()
for i in range(n):
    d = os.path.join(root, "src", "m%02d" % (i // 1000), "d%02d" % ((i // 50) % 20))
    if d not in dirs:
        os.makedirs(d, exist_ok=True)
        dirs.add(d)
    ext = "md" if i % 5 == 4 else "txt"
    p = os.path.join(d, "f%05d.%s" % (i, ext))
    with open(p, "w") as f:
        f.write("file %d\n" % i + "lorem ipsum dolor sit amet\n" * (i % 7 + 1))
    os.utime(p, (t, t))
PY
  ( cd "$dir" && git init -q . && git add -A && git commit -q -m fixture --no-verify )
}

# commit_config DIR: write stdin to DIR/preflight.toml and commit it (the tree stays clean)
commit_config() {
  cat >"$1/preflight.toml"
  touch -d 2024-01-01T00:00:00Z "$1/preflight.toml"
  ( cd "$1" && git add preflight.toml && git commit -q -m config --no-verify )
}

# toml_str S: S as a TOML basic string
toml_str() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }

# ---- results ----------------------------------------------------------------------------
results_reset() {
  printf 'scenario\tcase\tcommand\tmedian_ms\tmin_ms\tmax_ms\tmean_ms\tstddev_ms\truns\tstatus\n' >"$MEASURE_TSV"
  printf 'scenario\tfigure\tvalue\tunit\ttarget\tok\tnote\n' >"$SUMMARY_TSV"
  printf 'scenario\tcheck\texpected\tseen\tok\n' >"$VERIFY_TSV"
}
# figure SCEN NAME VALUE UNIT TARGET NOTE: VALUE < TARGET is ok ("-" = not measured)
figure() {
  local ok=no
  if [ "$3" = - ]; then ok=FAIL
  elif awk -v v="$3" -v t="$5" 'BEGIN { exit !(v < t) }'; then ok=yes; fi
  printf '%s\t%s\t%s\t%s\t< %s %s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$4" "$ok" "${6:-}" >>"$SUMMARY_TSV"
  case $ok in FAIL) FAILED=1 ;; no) MISSED=1 ;; esac
  return 0
}
# verify SCEN CHECK EXPECTED SEEN: records the check; returns 1 when SEEN != EXPECTED
verify() {
  local ok=yes
  [ "$3" = "$4" ] || { ok=NO; FAILED=1; }
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$ok" >>"$VERIFY_TSV"
  echo "   verify [$1] $2: expected $3, seen $4 -> $ok" >&2
  [ "$ok" = yes ]
}

# passed_steps DIR ARGS...: how many steps `preflight run ARGS --format json`,
# run in DIR, reports as passed (checks the timed configuration itself)
passed_steps() {
  local dir=$1; shift
  { ( cd "$dir" && "$PF" run "$@" --format json 2>/dev/null ) || true; } | python3 -c '
import json, sys
n = 0
for line in sys.stdin:
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if isinstance(e, dict) and e.get("event") == "step_finished" and e.get("status") == "passed":
        n += 1
print(n)'
}

# note SCEN CHECK SEEN: an observation recorded beside the checks, never a failure
note() {
  printf '%s\t%s\t-\t%s\tinfo\n' "$1" "$2" "$3" >>"$VERIFY_TSV"
  echo "   note [$1] $2: $3" >&2
}

# measure SCEN CASE DIR MODE RUNS CMD [PREPARE]
#   MODE argv: CMD is run without a shell (hyperfine -N); MODE shell: under bash,
#   whose start-up hyperfine measures and subtracts. CMD is first run once
#   (after PREPARE) and must exit 0; its output is kept in $LOGS. Then hyperfine
#   times it RUNS times after WARMUP runs (PREPARE, untimed, before each).
#   Sets MEDIAN_MS (or "-" on failure) and appends a row to $MEASURE_TSV.
measure() {
  local scen=$1 case=$2 dir=$3 mode=$4 runs=$5 cmd=$6 prep=${7:-}
  local slug; slug=$(printf '%s_%s' "$scen" "$case" | tr -c 'A-Za-z0-9_.-' '_')
  local json=$RESULTS/json/$slug.json log=$LOGS/$slug.log rc=0
  MEDIAN_MS=-
  echo ">> [$scen] $case: $cmd" >&2
  ( cd "$dir" && { [ -z "$prep" ] || bash -c "$prep"; } && bash -c "$cmd" ) >"$log" 2>&1 || rc=$?
  if [ $rc -ne 0 ]; then
    echo "   FAILED (exit $rc): $(grep -v '^[[:space:]]*$' "$log" | tail -3 | tr '\t\n' '  ' | cut -c1-240)" >&2
    printf '%s\t%s\t%s\t-\t-\t-\t-\t-\t0\tFAIL(exit %s)\n' "$scen" "$case" "$cmd" "$rc" >>"$MEASURE_TSV"
    FAILED=1; return 1
  fi
  local hf=(hyperfine --style basic --runs "$runs" --warmup "$WARMUP" --export-json "$json")
  if [ "$mode" = shell ]; then
    hf+=(--shell=bash); [ -z "$prep" ] || hf+=(--prepare "$prep")
  else
    hf+=(-N); [ -z "$prep" ] || hf+=(--prepare "bash -c $(printf %q "$prep")")
  fi
  rm -f "$json"
  ( cd "$dir" && "${hf[@]}" "$cmd" ) >"$LOGS/$slug.hyperfine.log" 2>&1 || rc=$?
  if [ $rc -ne 0 ] || [ ! -s "$json" ]; then
    echo "   hyperfine FAILED: $(tail -3 "$LOGS/$slug.hyperfine.log" | tr '\t\n' '  ' | cut -c1-240)" >&2
    printf '%s\t%s\t%s\t-\t-\t-\t-\t-\t0\tFAIL(hyperfine)\n' "$scen" "$case" "$cmd" >>"$MEASURE_TSV"
    FAILED=1; return 1
  fi
  local row
  row=$(python3 - "$json" <<'PY'
import json, statistics, sys
t = [x * 1000 for x in json.load(open(sys.argv[1]))["results"][0]["times"]]
sd = statistics.stdev(t) if len(t) > 1 else 0.0
print("\t".join("%.3f" % v for v in (statistics.median(t), min(t), max(t), statistics.mean(t), sd)) + "\t%d" % len(t))
PY
  )
  printf '%s\t%s\t%s\t%s\tok\n' "$scen" "$case" "$cmd" "$row" >>"$MEASURE_TSV"
  MEDIAN_MS=$(cut -f1 <<<"$row")
  awk -F'\t' '{ printf "   median %.2f ms  (min %.2f, max %.2f, sd %.2f, n=%s)\n", $1, $2, $3, $5, $6 }' <<<"$row" >&2
}

# calc EXPR [DECIMALS]: floating-point arithmetic (3 decimals unless told)
calc() { awk "BEGIN { printf \"%.${2:-3}f\", $1 }"; }

# ---- report -----------------------------------------------------------------------------
print_tables() {
  python3 - "$MEASURE_TSV" "$SUMMARY_TSV" "$VERIFY_TSV" <<'PY'
import csv, sys
def table(rows, title):
    if len(rows) < 2:
        return
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print("\n" + title)
    for k, r in enumerate(rows):
        print(" | ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip())
        if k == 0:
            print("-+-".join("-" * x for x in w))
m, s, v = (list(csv.reader(open(p), delimiter="\t")) for p in sys.argv[1:4])
table([["scenario", "case", "median ms", "min-max ms", "n", "status", "command"]]
      + [[r[0], r[1], r[3], (r[4] + "-" + r[5]) if r[4] != "-" else "-", r[8], r[9], r[2][:70]] for r in m[1:]],
      "Timings (hyperfine, wall clock)")
table(v, "Verification")
table([["scenario", "figure", "target", "ok?"]]
      + [[r[0], "%s: %s %s" % (r[1], r[2], r[3]) + ("  (%s)" % r[6] if r[6] else ""), r[4], r[5]] for r in s[1:]],
      "Figures")
PY
}
