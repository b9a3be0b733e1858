#!/usr/bin/env bash
# A local 3-node pool for newcomers (make cluster): three hsmpoold processes on loopback, each with its own SoftHSM2
# token and data directory, one client.json that works against every node.
#
#   scripts/cluster.sh            start the pool, or resume it when $CLUSTER_DIR holds one; Ctrl-C stops every node
#
# What it does on first use, in $CLUSTER_DIR (default .cluster):
#   1. node1/: "hsmpoold dev --node-addr" makes a pool (SoftHSM2 token, CA, Raft over mutual TLS, an administrator in
#      node1/client.json) and serves; the script activates it as "make run" tells a newcomer to: three officers' key
#      pairs (officers/alice, bob, carol; no passphrase, as they only guard this throwaway pool) and
#      "hsmpool sd download --quorum 2" (the security domain goes to sd.json);
#   2. node2/, node3/: for each, a join token ("hsmpool cluster join-token", node 1's client file), then
#      "hsmpoold dev --join" with a SoftHSM2 token of its own; the security officer's step on node 1,
#      "hsmpoold trust-join-key" with node 1's SO PIN, takes the fingerprint the joining node prints; the new node then
#      receives the domain KEK HSM to HSM and serves;
#   3. it waits until all three serve and "hsmpool cluster status" shows them, then prints the URLs and commands.
# Run again with the data there, it starts the three nodes together and they resume (a node alone has no quorum).
#
# Node i (1, 2, 3) listens on 127.0.0.1:PORT with PORT = $CLUSTER_PORT + 10 * (i - 1) (default 8543, 8553, 8563),
# Raft on PORT+1, the node API on PORT+2. Each node's stdout and log are in $CLUSTER_DIR/logs/node<i>.{out,log}.
# Binaries come from $BIN (default bin; make cluster builds them).
#
# scripts/bench-cluster.sh sources this file for its functions; main runs only when it is executed.
set -euo pipefail

: "${BIN:=bin}"
: "${CLUSTER_DIR:=.cluster}"
: "${CLUSTER_PORT:=8543}"
: "${CLUSTER_NAME:=contoso}"
: "${CLUSTER_NODES:=3}"
# How long a node may take to serve: the first start makes a token, a CA and keys; a join waits for the KEK.
: "${CLUSTER_START_TIMEOUT:=180}"

declare -A node_pid=()

say() { echo "cluster: $*" >&2; }
die() {
	say "$*"
	exit 1
}

node_dir() { echo "$CLUSTER_DIR/node$1"; }
node_port() { echo $((CLUSTER_PORT + 10 * ($1 - 1))); }
node_listen() { echo "127.0.0.1:$(node_port "$1")"; }
node_raft() { echo "127.0.0.1:$(($(node_port "$1") + 1))"; }
node_api() { echo "127.0.0.1:$(($(node_port "$1") + 2))"; }
node_url() { echo "https://$CLUSTER_NAME.managedhsm.localhost:$(node_port "$1")"; }
node_out() { echo "$CLUSTER_DIR/logs/node$1.out"; }
node_log() { echo "$CLUSTER_DIR/logs/node$1.log"; }
client_file() { echo "$(node_dir 1)/client.json"; }
sd_file() { echo "$CLUSTER_DIR/sd.json"; }

# has_left I reports whether node I left the pool ("hsmpoold leave" wrote DIR/LEFT); it is not started again.
has_left() { [[ -e $(node_dir "$1")/LEFT ]]; }

# node_id I prints the Raft node ID in node I's configuration.
node_id() {
	sed -n 's/.*"node_id": *"\([^"]*\)".*/\1/p' "$(node_dir "$1")/hsmpoold.json" | head -n 1
}

# hsmpool ARGS... runs the CLI as node 1's administrator.
hsmpool() { HSMPOOL_CLIENT_FILE=$(client_file) "$BIN/hsmpool" "$@"; }

# start_node I ARGS... starts "hsmpoold ARGS..." for node I in the background; its stdout goes to node_out, its
# stderr (the log) to node_log, the previous log to node_log.prev.
start_node() {
	local i=$1
	shift
	mkdir -p "$CLUSTER_DIR/logs"
	[[ -e $(node_log "$i") ]] && mv -f "$(node_log "$i")" "$(node_log "$i").prev"
	"$BIN/hsmpoold" "$@" >"$(node_out "$i")" 2>"$(node_log "$i")" &
	node_pid[$i]=$!
}

# resume_node I starts node I on its data directory; the listeners come from its configuration.
resume_node() { start_node "$1" dev --data-dir "$(node_dir "$1")"; }

# wait_serving I [SOURCE] waits until node I prints its "serving on" line. With SOURCE, node I is joining through
# node SOURCE: when it prints the fingerprint of its join key, the security officer's step runs on SOURCE.
wait_serving() {
	local i=$1 src=${2:-} fp trusted="" n
	for ((n = 0; n < CLUSTER_START_TIMEOUT * 10; n++)); do
		if grep -q 'serving on' "$(node_out "$i")" 2>/dev/null; then
			return 0
		fi
		if ! kill -0 "${node_pid[$i]}" 2>/dev/null; then
			say "node $i stopped before it served; the end of its log, $(node_log "$i"):"
			tail -n 20 "$(node_log "$i")" >&2
			return 1
		fi
		if [[ -n $src && -z $trusted ]]; then
			fp=$(grep -o -- '--fingerprint [0-9A-Fa-f:]*' "$(node_log "$i")" 2>/dev/null | head -n 1 | cut -d' ' -f2 || true)
			if [[ -n $fp ]]; then
				say "node $i waits for the security officer of node $src: trusting its join key $fp"
				"$BIN/hsmpoold" trust-join-key --config "$(node_dir "$src")/hsmpoold.json" \
					--so-pin-file "$(node_dir "$src")/softhsm/so.pin" --fingerprint "$fp" >&2 ||
					die "trust-join-key on node $src failed"
				trusted=1
			fi
		fi
		sleep 0.1
	done
	say "node $i did not serve within ${CLUSTER_START_TIMEOUT}s; the end of its log, $(node_log "$i"):"
	tail -n 20 "$(node_log "$i")" >&2
	return 1
}

# create_first_node starts node 1 as a new cluster-capable dev pool and activates it.
create_first_node() {
	say "node 1: a new pool $CLUSTER_NAME in $(node_dir 1)"
	start_node 1 dev --data-dir "$(node_dir 1)" --name "$CLUSTER_NAME" --listen "$(node_listen 1)" --node-addr "$(node_api 1)"
	wait_serving 1
	activate
}

# activate downloads node 1's security domain to three officers' certificates, as make run's next steps say.
activate() {
	local off="$CLUSTER_DIR/officers" o
	mkdir -p "$off"
	chmod 700 "$off"
	for o in alice bob carol; do
		if [[ ! -e $off/$o.cer ]]; then
			# Its warning that the key has no passphrase is expected here.
			"$BIN/hsmpool" sd officer-keygen --out "$off/$o" --no-passphrase >/dev/null 2>"$off/$o.keygen.log" ||
				die "hsmpool sd officer-keygen failed: $(cat "$off/$o.keygen.log")"
			rm -f "$off/$o.keygen.log"
		fi
	done
	say "officers alice, bob and carol: key pairs without passphrase in $off"
	say "activating: hsmpool sd download --cert alice.cer --cert bob.cer --cert carol.cer --quorum 2 -o $(sd_file)"
	hsmpool sd download --cert "$off/alice.cer" --cert "$off/bob.cer" --cert "$off/carol.cer" --quorum 2 -o "$(sd_file)" >&2
}

# join_node I SOURCE makes node I join the pool through node SOURCE with a new join token.
join_node() {
	local i=$1 src=$2 d tok
	d=$(node_dir "$i")
	mkdir -p "$CLUSTER_DIR/tokens"
	chmod 700 "$CLUSTER_DIR/tokens"
	tok="$CLUSTER_DIR/tokens/node$i.token"
	(umask 077 && hsmpool cluster join-token >"$tok" 2>"$tok.log") || die "hsmpool cluster join-token failed: $(cat "$tok.log")"
	rm -f "$tok.log"
	say "node $i: joining through node $src ($(node_api "$src")) in $d"
	start_node "$i" dev --join "$(node_api "$src")" --join-token-file "$tok" --data-dir "$d" \
		--listen "$(node_listen "$i")" --raft-addr "$(node_raft "$i")" --node-addr "$(node_api "$i")"
	wait_serving "$i" "$src"
	rm -f "$tok"
}

# wait_members N waits until the cluster status through node 1 shows N reachable nodes; it only warns when that
# does not happen within a minute (the nodes serve; the status may be slow to settle).
wait_members() {
	local want=$1 n got=0 status
	for ((n = 0; n < 600; n++)); do
		status=$(hsmpool cluster status -o json 2>/dev/null || true)
		got=$(grep -o '"reachable": *true' <<<"$status" | wc -l || true)
		((got >= want)) && return 0
		sleep 0.1
	done
	say "warning: hsmpool cluster status shows $got of $want nodes reachable after a minute"
}

# stop_nodes stops every node this script started: SIGTERM (a graceful stop), then SIGKILL after 20 s.
stop_nodes() {
	local i n alive
	for i in "${!node_pid[@]}"; do
		kill -TERM "${node_pid[$i]}" 2>/dev/null || true
	done
	for ((n = 0; n < 200; n++)); do
		alive=0
		for i in "${!node_pid[@]}"; do
			kill -0 "${node_pid[$i]}" 2>/dev/null && alive=1
		done
		((alive)) || break
		sleep 0.1
	done
	for i in "${!node_pid[@]}"; do
		kill -KILL "${node_pid[$i]}" 2>/dev/null || true
		wait "${node_pid[$i]}" 2>/dev/null || true
	done
	node_pid=()
}

# start_cluster starts or resumes nodes 1..CLUSTER_NODES and returns when all serve.
start_cluster() {
	local i
	local -a have=()
	for ((i = 1; i <= CLUSTER_NODES; i++)); do
		if has_left "$i"; then
			say "node $i left the pool (hsmpoold leave): not started"
		elif [[ -e $(node_dir "$i")/hsmpoold.json ]]; then
			have+=("$i")
		fi
	done
	if [[ ! -e $(node_dir 1)/hsmpoold.json ]]; then
		((${#have[@]} == 0)) || die "$(node_dir 1) has no pool but other nodes exist: remove $CLUSTER_DIR to start afresh"
		create_first_node
	else
		say "resuming node(s) ${have[*]} from $CLUSTER_DIR"
		for i in "${have[@]}"; do
			resume_node "$i"
		done
		for i in "${have[@]}"; do
			wait_serving "$i"
		done
		[[ -e $(sd_file) ]] || say "warning: $(sd_file) is missing; if node 1 was never activated, remove $CLUSTER_DIR and start again"
	fi
	for ((i = 2; i <= CLUSTER_NODES; i++)); do
		[[ -e $(node_dir "$i")/hsmpoold.json ]] || join_node "$i" "${have[0]:-1}"
	done
	wait_members "${#node_pid[@]}"
}

print_info() {
	local i cf bin
	cf=$(cd "$(node_dir 1)" && pwd)/client.json
	bin=$(cd "$BIN" && pwd)
	echo
	echo "hsmpool: pool \"$CLUSTER_NAME\" is serving from $CLUSTER_DIR on ${#node_pid[@]} nodes:"
	for ((i = 1; i <= CLUSTER_NODES; i++)); do
		if has_left "$i"; then
			printf '  node %d  %-12s left the pool\n' "$i" "$(node_id "$i")"
			continue
		fi
		printf '  node %d  %-12s %s   Raft %s, node API %s, log %s\n' "$i" "$(node_id "$i")" "$(node_url "$i")" \
			"$(node_raft "$i")" "$(node_api "$i")" "$(node_log "$i")"
	done
	cat <<EOF
  client file:      $cf   (the administrator; it works against every node)
  security domain:  $(sd_file)   (officers' keys in $CLUSTER_DIR/officers)

Try, in another terminal:
  export HSMPOOL_CLIENT_FILE=$cf PATH=$bin:\$PATH
  hsmpool cluster status                                   # every node: role, term, applied index, lag, HSM
  hsmpool key create k1 --kty EC-HSM --curve P-256         # through node 1 (the client file's URL)
  hsmpool key get k1 --url $(node_url 2)        # the same key through node 2
  hsmpool key sign k1 --alg ES256 --data-file README.md --url $(node_url 3)

Stop with Ctrl-C; run make cluster again to resume the same pool. Remove $CLUSTER_DIR to start afresh.
EOF
}

main() {
	[[ -x $BIN/hsmpoold && -x $BIN/hsmpool ]] || die "no $BIN/hsmpoold and $BIN/hsmpool: run make build (make cluster does)"
	mkdir -p "$CLUSTER_DIR/logs"
	chmod 700 "$CLUSTER_DIR"
	trap stop_nodes EXIT
	trap 'say "stopping the nodes"; exit 130' INT TERM
	start_cluster
	print_info
	local i
	# Until Ctrl-C, or until a node stops by itself. A node that left the pool (hsmpoold leave) is let go.
	while ((${#node_pid[@]} > 0)); do
		wait -n "${node_pid[@]}" || true
		for i in "${!node_pid[@]}"; do
			kill -0 "${node_pid[$i]}" 2>/dev/null && continue
			wait "${node_pid[$i]}" 2>/dev/null || true
			unset "node_pid[$i]"
			if has_left "$i"; then
				say "node $i left the pool; the other nodes go on"
				continue
			fi
			say "node $i stopped; the end of its log, $(node_log "$i"):"
			tail -n 20 "$(node_log "$i")" >&2
			say "stopping the other nodes"
			exit 1
		done
	done
	say "no node runs any more"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	main "$@"
fi
