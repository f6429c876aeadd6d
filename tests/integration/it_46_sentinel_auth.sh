#!/usr/bin/env bash
# Sentinels that want a login (issue 16: Sentinel AUTH). A master and two
# sentinels with `requirepass` (and, on the second, an ACL user): producer,
# worker and auditqctl log in with redis_sentinel_password /
# redis_sentinel_user and find the master through them; 200 events are
# stored exactly once. Without the password every component names the
# setting to set (NOAUTH); with a wrong one it names the refusal; neither
# is retried as if the sentinels were down: the worker exits 1 at start.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"

it_setup
M_PORT=$REDIS_PORT
NAME=aqm
SENT_PORTS=()
sentinel_start 1 "$NAME" "$M_PORT" 1 "requirepass s3cret-sentinel"
# An ACL user as well (the default user keeps requirepass).
sentinel_start 2 "$NAME" "$M_PORT" 1 "requirepass s3cret-sentinel" "user aqsent on >aq-pass ~* &* +@all"
sent_up() { [[ "$(redis-cli -p "$1" --no-auth-warning -a s3cret-sentinel SENTINEL get-master-addr-by-name "$NAME" 2>/dev/null | sed -n 2p)" == "$M_PORT" ]]; }
for p in "${SENT_PORTS[@]}"; do wait_for 20 sent_up "$p" || { echo "FAIL: sentinel $p not ready"; exit 1; }; done

dead_port=$(free_port)
export AUDITQ_REDIS_URL="redis://127.0.0.1:$dead_port"   # credentials only: the sentinels decide
export AUDITQ_REDIS_MASTER_NAME=$NAME
export AUDITQ_REDIS_SENTINELS="127.0.0.1:${SENT_PORTS[0]}"

# ---- no password: NOAUTH, named ------------------------------------------
rc=0
out=$("$BIN/auditqctl" stats 2>&1) || rc=$?
assert_eq 1 "$rc" "auditqctl stats without the sentinel password: exit status"
[[ "$out" == *"sentinel 127.0.0.1:${SENT_PORTS[0]} wants a login"*"set redis_sentinel_password"* ]] ||
    { echo "FAIL: no password: $out"; exit 1; }
out=$("$TBIN/it_client" produce --sync 1 --async 0 --tag nop 2>&1 || true)
[[ "$out" == *"wants a login"* ]] || { echo "FAIL: producer without the password: $out"; exit 1; }
rc=0
timeout 20 "$BIN/auditq-worker" --set http_listen= >"$AQ_TMP/nopw.log" 2>&1 || rc=$?
assert_eq 1 "$rc" "worker without the sentinel password: exit status (no retry loop)"
grep -q "wants a login" "$AQ_TMP/nopw.log" || { echo "FAIL: worker log"; cat "$AQ_TMP/nopw.log"; exit 1; }

# ---- wrong password: refused, named --------------------------------------
rc=0
out=$(AUDITQ_REDIS_SENTINEL_PASSWORD=wrong "$BIN/auditqctl" stats 2>&1) || rc=$?
assert_eq 1 "$rc" "auditqctl stats with a wrong sentinel password: exit status"
[[ "$out" == *"refused the login"*"check redis_sentinel_user and redis_sentinel_password"* ]] ||
    { echo "FAIL: wrong password: $out"; exit 1; }
out=$(AUDITQ_REDIS_SENTINEL_USER=aqsent "$BIN/auditqctl" stats 2>&1 || true)
[[ "$out" == *"redis_sentinel_user is set but redis_sentinel_password is empty"* ]] ||
    { echo "FAIL: user without password: $out"; exit 1; }

# ---- the right login: events flow ----------------------------------------
export AUDITQ_REDIS_SENTINEL_PASSWORD=s3cret-sentinel
worker_start w1 --set threads=2
out=$("$TBIN/it_client" produce --sync 100 --async 100 --tag sau)
[[ "$out" == *"ok=200 "* ]] || { echo "FAIL: producer with the password: $out"; exit 1; }
wait_for 30 drained || { echo "FAIL: not drained"; exit 1; }
assert_eq 200 "$(rows)" "rows through password-protected sentinels"
assert_eq 200 "$(stat processed)" "auditqctl stats through the sentinels"
worker_stop w1
# An ACL user on the second sentinel.
out=$(AUDITQ_REDIS_SENTINELS="127.0.0.1:${SENT_PORTS[1]}" AUDITQ_REDIS_SENTINEL_USER=aqsent \
    AUDITQ_REDIS_SENTINEL_PASSWORD=aq-pass "$BIN/auditqctl" stats --json)
assert_eq 200 "$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["processed"])' "$out")" \
    "auditqctl stats through a sentinel ACL user"
it_pass "sentinel AUTH: requirepass and ACL user logins; no password and a wrong one named with the fix (worker exits 1); 200 events stored through the sentinels"
