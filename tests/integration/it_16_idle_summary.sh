#!/usr/bin/env bash
# The worker logs its "summary" line at every summary_interval_ms, idle or
# not (README, auditq-worker(8)): an operator tailing the log reads zeros and
# the queue lag as "idle and caught up"; a missing line means a stuck worker.
#   1. idle from the start: one line per interval, every one with zeros;
#   2. after 250 events: a line with processed=250 and the nonzero rate;
#   3. idle again: the lines go on, with processed=250 and written_per_s=0.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
it_setup
LOG=$AQ_TMP/w1.log
IDLE='^ts=\S+ level=info msg="summary" written_per_s=0 processed=%s failed=0 dead_lettered=0 inflight=0 queued=0 oldest_age_s=0\.000 inflight_all=0 retry=0 dead=0$'
# summaries PATTERN: how many summary lines match (grep -E)
summaries() { grep -cE -- "$1" "$LOG" || true; }
# at_least N PATTERN: true once N summary lines match
at_least() { (($(summaries "$2") >= $1)); }

worker_start w1 --set threads=1 --set summary_interval_ms=200

# 1. Idle from the start: after the first Redis sample, every line reads
#    zeros. Before the fix the worker logged one idle line, then nothing.
# shellcheck disable=SC2059  # IDLE is the format
idle0=$(printf "$IDLE" 0)
wait_for 15 at_least 8 "$idle0" ||
    { echo "FAIL: idle worker: $(summaries "$idle0") idle summary lines, expected 8 in 15 s"; cat "$LOG"; exit 1; }

# 2. Work: the line after the batch says so.
"$TBIN/it_client" send --events 250 --priority normal --tag it16 >/dev/null
wait_for 30 drained
assert_eq 250 "$(rows)" "rows stored"
busy='^ts=\S+ level=info msg="summary" written_per_s=[1-9][0-9]* processed=250 failed=0 dead_lettered=0 inflight=0 '
wait_for 10 at_least 1 "$busy" ||
    { echo "FAIL: no summary line with processed=250 and a nonzero rate"; grep summary "$LOG" | tail -n 5; exit 1; }

# 3. Idle again: the lines keep coming, with the totals and zero throughput.
# shellcheck disable=SC2059
idle250=$(printf "$IDLE" 250)
wait_for 15 at_least 8 "$idle250" ||
    { echo "FAIL: idle after work: $(summaries "$idle250") idle summary lines, expected 8 in 15 s"; grep summary "$LOG" | tail -n 5; exit 1; }
worker_stop w1
it_pass "idle summary: a line every summary_interval_ms, idle (zeros) and after 250 events (processed=250)"
