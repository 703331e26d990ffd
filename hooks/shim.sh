#!/bin/sh
# preflight-hook v@VERSION@: written by `preflight install`; `preflight uninstall` removes it
# and puts back the hook it replaced. Skip once: PREFLIGHT=0 git ...; skip steps:
# PREFLIGHT_SKIP=step1,step2 git ...
hook='@HOOK@'
bin=@BIN@

# A hook that was here before preflight runs first, with the same arguments and input.
previous="${0%/*}/$hook.pre-preflight"
if [ -x "$previous" ]; then
    case "$hook" in
    pre-push | pre-receive | post-receive | post-rewrite | reference-transaction)
        input=$(mktemp) || exit 1
        cat >"$input"
        "$previous" "$@" <"$input" || { status=$?; rm -f "$input"; exit "$status"; }
        exec <"$input"
        rm -f "$input"
        ;;
    *)
        "$previous" "$@" || exit $?
        ;;
    esac
fi

if [ "${PREFLIGHT-}" = 0 ]; then
    echo "preflight: PREFLIGHT=0 is set, skipping the $hook hook" >&2
    exit 0
fi
# The absolute path first, so GUI git clients with a thin PATH work; then PATH.
if [ ! -x "$bin" ]; then
    if command -v preflight >/dev/null 2>&1; then
        bin=preflight
    else
        echo "preflight: the $hook hook cannot find preflight (not at $bin, not on PATH)." >&2
        echo "preflight: install it and run 'preflight install' again, or skip once with PREFLIGHT=0." >&2
        exit 1
    fi
fi
# Not exec: if preflight dies from a signal (kill -9, out of memory) while it has unstaged
# work set aside, the shim puts the work back at once. Trapped signals still reach preflight.
trap : INT TERM HUP
"$bin" hook "$hook" "$@"
status=$?
if [ "$status" -gt 128 ]; then
    "$bin" recover >/dev/null
fi
exit "$status"
