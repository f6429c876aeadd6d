#!/usr/bin/env bash
# config/auditq-worker.service is a valid unit (systemd-analyze verify, no
# findings) and agrees with the worker it starts: its ExecStart line runs
# (--check on the shipped config), TimeoutStopSec outlasts the worker's
# default drain time, a configuration error exits 2 (the status the unit
# does not restart on), and reload/stop send the signals the worker handles.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
command -v systemd-analyze >/dev/null ||
    { echo "FAIL: systemd-analyze not found (Debian package systemd); it verifies the unit file"; exit 1; }
harness_init
UNIT=$AQ_ROOT/config/auditq-worker.service

key() { sed -n "s/^$1=//p" "$UNIT"; }

# 1. systemd's own check, with ExecStart pointing at the worker we built
#    (verify also checks that the binary exists and is executable).
mkdir -p "$AQ_TMP/unit"
sed "s|^ExecStart=/usr/local/bin/auditq-worker |ExecStart=$BIN/auditq-worker |" "$UNIT" \
    >"$AQ_TMP/unit/auditq-worker.service"
out=$(systemd-analyze verify "$AQ_TMP/unit/auditq-worker.service" 2>&1) ||
    { echo "FAIL: systemd-analyze verify: $out"; exit 1; }
assert_eq "" "$out" "systemd-analyze verify findings"

# 2. The unit's command line, with the shipped config in place of /etc's.
exec_start=$(key ExecStart)
assert_eq "/usr/local/bin/auditq-worker -c /etc/auditq/auditq.conf" "$exec_start" "ExecStart"
cmd=${exec_start/\/usr\/local\/bin\/auditq-worker/$BIN/auditq-worker}
cmd=${cmd/\/etc\/auditq\/auditq.conf/$AQ_ROOT/config/auditq.conf}
assert_eq "configuration OK" "$($cmd --check)" "ExecStart with the shipped config"

# 3. Stop and reload semantics match the worker.
assert_eq SIGTERM "$(key KillSignal)" "KillSignal"
assert_eq '/bin/kill -HUP $MAINPID' "$(key ExecReload)" "ExecReload"
assert_eq on-failure "$(key Restart)" "Restart"
drain_ms=$("$BIN/auditq-worker" --print-config | sed -n 's/^shutdown_timeout_ms = //p')
assert_eq 30000 "$drain_ms" "default shutdown_timeout_ms"
stop_s=$(key TimeoutStopSec)
((stop_s * 1000 >= drain_ms + 10000)) ||
    { echo "FAIL: TimeoutStopSec=$stop_s does not leave 10 s beyond shutdown_timeout_ms=$drain_ms"; exit 1; }
assert_eq 2 "$(key RestartPreventExitStatus)" "RestartPreventExitStatus"
rc=0
"$BIN/auditq-worker" -c "$AQ_ROOT/config/auditq.conf" --set batch_size=0 --check 2>/dev/null || rc=$?
assert_eq 2 "$rc" "exit status of a configuration error"
for opt in NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes DynamicUser=yes; do
    grep -qx "$opt" "$UNIT" || { echo "FAIL: unit lacks $opt"; exit 1; }
done
it_pass "systemd unit: verify clean, ExecStart runs, TimeoutStopSec=${stop_s}s > drain ${drain_ms} ms, exit 2 not restarted"
