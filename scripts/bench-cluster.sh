#!/usr/bin/env bash
# Measures a throwaway 3-node pool on this machine (make bench-cluster); docs/benchmarks.md, "The cluster", has the
# figures and how to read them.
#
#   scripts/bench-cluster.sh [--only create,sign,failover,catchup] [--duration 10s] [--warmup 2s]
#                            [--clients 16,64] [--sign-clients 16] [--failovers 5] [--catchup-keys 10000] [--keep]
#
# In a temporary directory (removed at the end unless --keep; whatever happened), with the layout of make cluster
# from $CLUSTER_PORT (default 9743: nodes on 9743, 9753, 9763, each port and the next two):
#   1. node 1 alone ("hsmpoold dev --node-addr", activated): ES256 signing (sign) and AES-256 key creation (create,
#      oct-HSM, comparable to OpenBao transit's default aes256-gcm96) with hsmpool-load, the node's CPU time read;
#   2. nodes 2 and 3 join; the same two through all three nodes (the clients round-robin over them), and the creates
#      once more through the leader alone;
#   3. failover: writers create keys through every node while the script kills the leader with SIGKILL --failovers
#      times (restarting it and waiting for three members in between); hsmpool-load failover reports, per kill, the
#      time to the acknowledgement of the first write sent after it;
#   4. catchup: a follower is stopped (SIGTERM), --catchup-keys keys are created through the leader, the follower is
#      started again, and hsmpool-load catchup reports when its applied index, as it reports it itself, reaches the
#      leader's commit index at its start; then a fourth node joins (its own token, the SO step by the script) and
#      is measured the same way from its start.
# Each section prints the machine's load average first: the load generator and all three nodes share this machine.
# The binaries come from $BIN (default bin; make bench-cluster builds them).
set -euo pipefail

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
}

only=create,sign,failover,catchup
duration=10s
warmup=2s
clients=16,64
sign_clients=16
failovers=5
catchup_keys=10000
keep=0
while (($# > 0)); do
	case $1 in
	--only) only=$2 && shift ;;
	--duration) duration=$2 && shift ;;
	--warmup) warmup=$2 && shift ;;
	--clients) clients=$2 && shift ;;
	--sign-clients) sign_clients=$2 && shift ;;
	--failovers) failovers=$2 && shift ;;
	--catchup-keys) catchup_keys=$2 && shift ;;
	--keep) keep=1 ;;
	-h | --help) usage ;;
	*)
		echo "bench-cluster: unknown option $1" >&2
		usage
		;;
	esac
	shift
done

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CLUSTER_DIR=$(mktemp -d "${TMPDIR:-/tmp}/hsmpool-bench-cluster.XXXXXX")
: "${CLUSTER_PORT:=9743}"
CLUSTER_NODES=3
# shellcheck source=scripts/cluster.sh
source "$here/cluster.sh"

load_pid=""
cleanup() {
	if [[ -n $load_pid ]]; then
		kill -TERM "$load_pid" 2>/dev/null || true
		wait "$load_pid" 2>/dev/null || true
	fi
	stop_nodes
	if ((keep)); then
		say "kept $CLUSTER_DIR"
	else
		rm -rf "$CLUSTER_DIR"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

want() { [[ ",$only," == *",$1,"* ]]; }

now_ns() { echo "${EPOCHREALTIME/[.,]/}000"; }

section() {
	echo
	echo "== $*"
	echo "   $(date -u +%FT%TZ), $(nproc) CPUs ($(grep -m 1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ *//')), load average $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"
}

# leader_index prints the index of the node that leads, as a running node reports it; it waits up to 60 s. Tokens
# come from node 1 (the pool's authority host), so node 1 must be up.
leader_index() {
	local n i j id
	for ((n = 0; n < 600; n++)); do
		for i in "${!node_pid[@]}"; do
			kill -0 "${node_pid[$i]}" 2>/dev/null || continue
			id=$(hsmpool cluster status -o json --url "$(node_url "$i")" 2>/dev/null |
				sed -n 's/.*"leaderId": *"\([^"]*\)".*/\1/p' | head -n 1 || true)
			[[ -n $id ]] || continue
			for j in "${!node_pid[@]}"; do
				if [[ $(node_id "$j") == "$id" ]] && kill -0 "${node_pid[$j]}" 2>/dev/null; then
					echo "$j"
					return 0
				fi
			done
		done
		sleep 0.1
	done
	say "no node reports a running leader"
	return 1
}

# load ARGS... runs hsmpool-load as node 1's administrator.
load() { "$BIN/hsmpool-load" --client-file "$(client_file)" "$@"; }

# urls I... and pids I... print hsmpool-load's --url and --server-pid arguments for nodes I...
urls() {
	local i
	for i in "$@"; do
		printf -- '--url\n%s\n' "$(node_url "$i")"
	done
}
pids() {
	local i
	for i in "$@"; do
		printf -- '--server-pid\n%s\n' "${node_pid[$i]}"
	done
}

# measure NODES... runs what --only asks of sign and create through nodes NODES...
measure() {
	local -a u p running
	local li=1 note
	mapfile -t running < <(printf '%s\n' "${!node_pid[@]}" | sort -n)
	mapfile -t u < <(urls "$@")
	mapfile -t p < <(pids "${running[@]}")
	if ((${#running[@]} > 1)); then
		li=$(leader_index)
	fi
	note="${#running[@]} node(s) running, node $li leads"
	if ((${#running[@]} > 1)); then
		note+="; PER-PROCESS is nodes $(
			IFS=/
			echo "${running[*]}"
		)"
	fi
	if want sign; then
		section "ES256 sign (P-256), through node(s) $*; $note"
		load --op sign-p256 --clients "$sign_clients" --duration "$duration" --warmup "$warmup" "${u[@]}" "${p[@]}"
	fi
	if want create; then
		section "AES-256 key creation (oct-HSM, replicated), through node(s) $*; $note"
		load --op create-aes256 --clients "$clients" --duration "$duration" --warmup "$warmup" "${u[@]}" "${p[@]}"
		if (($# > 1)); then
			section "AES-256 key creation (oct-HSM, replicated), through the leader alone; $note"
			load --op create-aes256 --clients "$clients" --duration "$duration" --warmup "$warmup" --url "$(node_url "$li")" "${p[@]}"
		fi
	fi
}

failover() {
	local marks="$CLUSTER_DIR/marks" r li t
	local -a u
	mapfile -t u < <(urls 1 2 3)
	section "Failover: SIGKILL of the leader, $failovers times; 2 writers through each node"
	: >"$marks"
	"$BIN/hsmpool-load" failover --client-file "$(client_file)" "${u[@]}" --writers 2 --duration 50m --marks-file "$marks" >"$CLUSTER_DIR/failover.out" 2>"$CLUSTER_DIR/failover.err" &
	load_pid=$!
	for ((r = 1; r <= failovers; r++)); do
		sleep 5
		kill -0 "$load_pid" 2>/dev/null || die "hsmpool-load failover stopped: $(cat "$CLUSTER_DIR/failover.err")"
		li=$(leader_index)
		t=$(now_ns)
		kill -KILL "${node_pid[$li]}"
		echo "$t node$li" >>"$marks"
		wait "${node_pid[$li]}" 2>/dev/null || true
		say "killed the leader, node $li ($(node_id "$li")); restarting it in 5 s"
		sleep 5
		resume_node "$li"
		wait_serving "$li"
		wait_members 3
	done
	sleep 3
	kill -TERM "$load_pid"
	wait "$load_pid" || say "hsmpool-load failover failed; its stderr: $(cat "$CLUSTER_DIR/failover.err")"
	load_pid=""
	cat "$CLUSTER_DIR/failover.out"
}

catchup() {
	local li f since
	li=$(leader_index)
	f=3
	[[ $li == 3 ]] && f=2
	section "Catch-up: node $f ($(node_id "$f")) stopped while $catchup_keys keys are created through the leader (node $li)"
	kill -TERM "${node_pid[$f]}"
	wait "${node_pid[$f]}" 2>/dev/null || true
	unset "node_pid[$f]"
	load --op create-aes256 --url "$(node_url "$li")" --clients 16 --warmup 0s --duration 30m --requests "$catchup_keys"
	since=$(now_ns)
	resume_node "$f"
	load catchup --url "$(node_url "$li")" --node "$(node_id "$f")" --node-url "$(node_url "$f")" --since "$since" --interval 20ms
	wait_serving "$f"

	section "Catch-up: a new node 4 joins through node 1 (the SO step by this script) and catches up"
	since=$(now_ns)
	load catchup --url "$(node_url "$li")" --node "node-$(node_port 4)" --node-url "$(node_url 4)" --since "$since" --interval 20ms \
		>"$CLUSTER_DIR/catchup4.out" 2>"$CLUSTER_DIR/catchup4.err" &
	load_pid=$!
	join_node 4 1
	wait "$load_pid" || say "hsmpool-load catchup failed: $(cat "$CLUSTER_DIR/catchup4.err")"
	load_pid=""
	cat "$CLUSTER_DIR/catchup4.out"
}

main() {
	[[ -x $BIN/hsmpoold && -x $BIN/hsmpool && -x $BIN/hsmpool-load ]] ||
		die "no $BIN/hsmpoold, $BIN/hsmpool and $BIN/hsmpool-load: run make build (make bench-cluster does)"
	mkdir -p "$CLUSTER_DIR/logs"
	say "a throwaway pool in $CLUSTER_DIR, nodes on ports $(node_port 1), $(node_port 2), $(node_port 3)"
	create_first_node
	measure 1
	join_node 2 1
	join_node 3 1
	wait_members 3
	measure 1 2 3
	if want failover; then
		failover
	fi
	if want catchup; then
		catchup
	fi
}

main
