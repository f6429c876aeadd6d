# shellcheck shell=bash
# lib_cluster.sh -- a real Redis Cluster for the integration tests (sourced
# after lib_it.sh / harness.sh; every process is registered for the
# harness's clean-up).
#   cluster_start [MASTERS]     MASTERS masters (default 3), one replica each,
#                               on free ports (client and bus port both
#                               chosen free: cluster-port), node timeout
#                               1000 ms; waits until every node says
#                               cluster_state:ok with all 16384 slots.
#                               Sets CLUSTER_PORTS (all nodes),
#                               CLUSTER_URL (redis://127.0.0.1:<node 0>),
#                               CLUSTER_SEEDS (redis:// URL of every node,
#                               comma-separated).
#   cluster_slot_of KEY         the hash slot of KEY (CLUSTER KEYSLOT)
#   cluster_master_of_slot SLOT the port of the master serving SLOT now
#   cluster_id_of PORT          that node's id
#   cluster_kill_master PORT    kill -9; waits (30 s) until a replica took
#                               over its slots and the survivors say ok;
#                               prints kill -> ok in ms
#   cluster_restart_node PORT   starts a killed node again (it rejoins,
#                               as a replica of its successor)
#   cluster_move_slot SLOT PORT moves SLOT with its keys to the master at
#                               PORT while clients write: IMPORTING /
#                               MIGRATING, MIGRATE in batches, SETSLOT NODE
#                               on every master; waits until all agree
#   cluster_info_ok             every live node says cluster_state:ok

_cl_cli() { redis-cli -h 127.0.0.1 -p "$@" </dev/null; }
_cl_dir() { printf '%s/cluster-%s\n' "$AQ_TMP" "$1"; }

_cl_launch() {
    local port=$1 dir pid
    dir=$(_cl_dir "$port")
    redis-server "$dir/redis.conf" </dev/null >>"$dir/stdout.log" 2>&1 &
    pid=$!
    printf '%s\n' "$pid" >"$dir/pid"
    _aq_register redis "$pid" "cluster-$port"
    wait_for 10 _aq_redis_ping "$port" || { _aq_log "cluster node $port did not start"; cat "$dir/redis.log" >&2; return 1; }
}

cluster_start() {
    local masters=${1:-3} n i port bus dir addrs=() out
    _aq_need_init || return 1
    n=$((masters * 2))
    CLUSTER_PORTS=()
    CLUSTER_SEEDS=""
    for ((i = 0; i < n; i++)); do
        port=$(free_port) || return 1
        bus=$(free_port) || return 1
        dir=$(_cl_dir "$port")
        mkdir -p "$dir"
        cat >"$dir/redis.conf" <<EOF
port $port
cluster-port $bus
bind 127.0.0.1
dir $dir
daemonize no
logfile $dir/redis.log
cluster-enabled yes
cluster-config-file nodes.conf
cluster-node-timeout 1000
appendonly no
save ""
EOF
        _cl_launch "$port" || return 1
        CLUSTER_PORTS+=("$port")
        addrs+=("127.0.0.1:$port")
        CLUSTER_SEEDS+="${CLUSTER_SEEDS:+,}redis://127.0.0.1:$port"
    done
    if ! out=$(redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes </dev/null 2>&1); then
        _aq_log "redis-cli --cluster create failed:"
        printf '%s\n' "$out" >&2
        return 1
    fi
    wait_for 30 cluster_info_ok || { _aq_log "the cluster did not reach cluster_state:ok"; return 1; }
    CLUSTER_URL="redis://127.0.0.1:${CLUSTER_PORTS[0]}"
    export CLUSTER_URL CLUSTER_SEEDS
}

_cl_alive() {
    local dir
    dir=$(_cl_dir "$1")
    [[ -f "$dir/pid" ]] && _aq_alive "$(cat "$dir/pid")"
}

cluster_info_ok() {
    local p info
    for p in "${CLUSTER_PORTS[@]}"; do
        _cl_alive "$p" || continue
        info=$(_cl_cli "$p" cluster info 2>/dev/null) || return 1
        [[ "$info" == *"cluster_state:ok"* && "$info" == *"cluster_slots_assigned:16384"* ]] || return 1
    done
}

cluster_slot_of() { _cl_cli "${CLUSTER_PORTS[0]}" cluster keyslot "$1"; }

cluster_id_of() { _cl_cli "$1" cluster myid; }

# The master serving SLOT, as a live node sees it (CLUSTER SHARDS would
# be nicer; CLUSTER SLOTS is there since 3.0).
cluster_master_of_slot() {
    local p
    for p in "${CLUSTER_PORTS[@]}"; do
        _cl_alive "$p" || continue
        _cl_cli "$p" --json cluster slots 2>/dev/null | python3 -c '
import json, sys
slot = int(sys.argv[1])
for r in json.load(sys.stdin):
    if r[0] <= slot <= r[1]:
        print(r[2][1]); sys.exit(0)
sys.exit(1)' "$1" && return 0
    done
    return 1
}

_cl_slots_of() { # PORT: how many slots that master serves (as a survivor sees it)
    local p=$1 q
    for q in "${CLUSTER_PORTS[@]}"; do
        [[ $q == "$p" ]] && continue
        _cl_alive "$q" || continue
        _cl_cli "$q" --json cluster slots 2>/dev/null | python3 -c '
import json, sys
port = int(sys.argv[1])
print(sum(r[1] - r[0] + 1 for r in json.load(sys.stdin) if r[2][1] == port))' "$p"
        return 0
    done
    echo 0
}

_cl_failed_over() { # PORT: nobody serves slots as PORT any more, and all ok
    [[ "$(_cl_slots_of "$1")" == 0 ]] && cluster_info_ok
}

cluster_kill_master() {
    local port=$1 dir pid t0 t1
    dir=$(_cl_dir "$port")
    pid=$(cat "$dir/pid")
    t0=$(date +%s%N)
    kill -KILL "$pid"
    _aq_wait_dead "$pid" 5 || true
    wait "$pid" 2>/dev/null || true
    if ! wait_for 30 _cl_failed_over "$port"; then
        _aq_log "no replica took over from master $port within 30 s"
        return 1
    fi
    t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000000))
}

cluster_restart_node() {
    _cl_launch "$1"
    wait_for 30 cluster_info_ok
}

_cl_owner_is() { # SLOT PORT: every live master agrees PORT serves SLOT
    local p owner
    for p in "${CLUSTER_PORTS[@]}"; do
        _cl_alive "$p" || continue
        owner=$(_cl_cli "$p" --json cluster slots 2>/dev/null | python3 -c '
import json, sys
slot = int(sys.argv[1])
for r in json.load(sys.stdin):
    if r[0] <= slot <= r[1]:
        print(r[2][1])' "$1")
        [[ "$owner" == "$2" ]] || return 1
    done
}

cluster_move_slot() {
    local slot=$1 to=$2 from from_id to_id keys p
    from=$(cluster_master_of_slot "$slot") || { _aq_log "slot $slot has no master"; return 1; }
    [[ "$from" != "$to" ]] || { _aq_log "slot $slot is already on $to"; return 1; }
    from_id=$(cluster_id_of "$from")
    to_id=$(cluster_id_of "$to")
    [[ "$(_cl_cli "$to" cluster setslot "$slot" importing "$from_id")" == OK ]] || return 1
    [[ "$(_cl_cli "$from" cluster setslot "$slot" migrating "$to_id")" == OK ]] || return 1
    while :; do
        mapfile -t keys < <(_cl_cli "$from" cluster getkeysinslot "$slot" 100)
        ((${#keys[@]} == 0)) || [[ -z "${keys[0]}" ]] && break
        out=$(_cl_cli "$from" migrate 127.0.0.1 "$to" "" 0 5000 keys "${keys[@]}")
        [[ "$out" == OK || "$out" == NOKEY ]] || { _aq_log "MIGRATE failed: $out"; return 1; }
    done
    # The new owner first, then the old one, then everyone else.
    _cl_cli "$to" cluster setslot "$slot" node "$to_id" >/dev/null
    _cl_cli "$from" cluster setslot "$slot" node "$to_id" >/dev/null
    for p in "${CLUSTER_PORTS[@]}"; do
        [[ $p == "$to" || $p == "$from" ]] && continue
        _cl_alive "$p" || continue
        [[ "$(_cl_cli "$p" role | head -n 1)" == master ]] || continue
        _cl_cli "$p" cluster setslot "$slot" node "$to_id" >/dev/null
    done
    wait_for 20 _cl_owner_is "$slot" "$to" || { _aq_log "nodes disagree on the owner of slot $slot"; return 1; }
}
