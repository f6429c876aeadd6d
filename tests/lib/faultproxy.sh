# shellcheck shell=bash
# faultproxy.sh -- bash side of tests/lib/faultproxy.py (SOURCE it after
# harness.sh and harness_init). A proxy sits between a client (the worker)
# and a server (Redis, PostgreSQL) and can delay, stall or reset the
# connections on command; see the top of faultproxy.py for every command.
#
#   proxy_start NAME TARGET_PORT   start proxy NAME in front of 127.0.0.1:TARGET_PORT;
#                                  sets PROXY_PORT (clients connect there); stopped at cleanup
#   proxy_port NAME                print NAME's listening port
#   proxy_mode NAME MODE [ARG]     pass | delay MS | stall | reset   (in force when it returns)
#   proxy_cmd NAME COMMAND...      any control command; prints the reply, fails on "error ..."
#   proxy_get NAME KEY             one counter: conns_total conns_open c2s_bytes s2c_bytes
#                                  resets pattern_hits armed mode delay_ms
#   proxy_stop NAME                stop it (open connections are closed)
#
# Example: reset the worker's PostgreSQL connection when its COMMIT's answer
# comes back (committed, but the worker cannot know):
#   proxy_start pg "$PG_PORT"
#   worker_start w --set database_url="postgresql://postgres@127.0.0.1:$PROXY_PORT/auditq"
#   proxy_cmd pg 'reset-on s2c COMMIT\x00 3'
source "$(dirname "${BASH_SOURCE[0]}")/harness.sh"

_aq_proxy_dir() { printf '%s/proxy-%s\n' "$AQ_TMP" "$1"; }

proxy_start() {
    local name=${1:?proxy_start NAME TARGET_PORT} target=${2:?proxy_start NAME TARGET_PORT}
    local dir lport cport
    _aq_need_init || return 1
    dir=$(_aq_proxy_dir "$name")
    mkdir -p "$dir" || return 1
    rm -f "$dir/ready"
    lport=$(free_port) || return 1
    cport=$(free_port) || return 1
    harness_spawn "proxy-$name" /usr/bin/python3 "$AQ_HARNESS_DIR/faultproxy.py" \
        --target "127.0.0.1:$target" --listen "$lport" --control "$cport" --ready-file "$dir/ready" ||
        return 1
    printf '%s\n' "$HARNESS_LAST_PID" >"$dir/pid"
    if ! wait_for 10 test -s "$dir/ready"; then
        _aq_log "proxy '$name' did not start; log:"
        cat "$AQ_TMP/proxy-$name.log" >&2 2>/dev/null || true
        return 1
    fi
    printf '%s\n' "$lport" >"$dir/port"
    printf '%s\n' "$cport" >"$dir/control"
    PROXY_PORT=$lport
    export PROXY_PORT
}

proxy_port() { cat "$(_aq_proxy_dir "$1")/port"; }

# One command over the control port (bash's /dev/tcp: no extra process).
proxy_cmd() {
    local name=$1 cport fd reply
    shift
    cport=$(cat "$(_aq_proxy_dir "$name")/control" 2>/dev/null) ||
        { _aq_log "proxy '$name' was never started"; return 1; }
    exec {fd}<>"/dev/tcp/127.0.0.1/$cport" || { _aq_log "proxy '$name': control port $cport refused"; return 1; }
    printf '%s\n' "$*" >&"$fd"
    if ! IFS= read -r -t 10 reply <&"$fd"; then
        exec {fd}>&-
        _aq_log "proxy '$name': no answer to '$*'"
        return 1
    fi
    exec {fd}>&-
    printf '%s\n' "$reply"
    [[ "$reply" != error* ]]
}

proxy_mode() {
    local name=$1
    shift
    proxy_cmd "$name" mode "$@" >/dev/null
}

proxy_get() { proxy_cmd "$1" get "$2"; }

proxy_stop() {
    local name=$1 dir pid
    dir=$(_aq_proxy_dir "$name")
    [[ -f "$dir/pid" ]] || return 0
    pid=$(cat "$dir/pid")
    proxy_cmd "$name" quit >/dev/null 2>&1 || true
    _aq_stop_pid "$pid" 5
    rm -f "$dir/pid"
}
