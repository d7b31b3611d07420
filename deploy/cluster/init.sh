#!/bin/sh
# deploy/cluster/init.sh: form the Redis Cluster of docker-compose.cluster.yml,
# once. Run by its one-shot redis-init service (image redis:7, for redis-cli);
# POSIX sh, so it runs on the official image (dash) and on the stand-in
# (busybox).
#
#   REDIS_NODES     the nodes, host:port separated by spaces or commas
#   REDIS_REPLICAS  replicas per master (default 1: 6 nodes = 3 + 3)
#
# 1. Waits until every node answers PING (60 s at most).
# 2. If the cluster already exists (a node's CLUSTER INFO knows more than
#    itself or has slots assigned: the volumes outlived a `down`), it does
#    not create it again. It only re-introduces the nodes to each other at
#    their current addresses (CLUSTER MEET of a known node just updates its
#    address), because a new `up` may give the containers new addresses and
#    the nodes keep the old ones in /data/nodes.conf.
# 3. Otherwise runs redis-cli --cluster create ... --cluster-replicas N
#    --cluster-yes.
# 4. Waits until every node says cluster_state:ok with all 16384 slots
#    (60 s at most) and exits 0; the gateways start only then.
#
# Exits non-zero, saying why, if a node never answers or the cluster never
# gets to ok (then `docker compose logs redis-init`; to start over from
# empty nodes, `down -v`).
set -eu

nodes=$(echo "${REDIS_NODES:?REDIS_NODES: the nodes, host:port ...}" | tr ',' ' ')
replicas=${REDIS_REPLICAS:-1}

say() { echo "redis-init: $*"; }
die() { say "$*" >&2; exit 1; }

# cli host:port args...: redis-cli against one node.
cli() {
	addr=$1
	shift
	redis-cli -h "${addr%:*}" -p "${addr##*:}" "$@"
}

# info host:port field: one field of CLUSTER INFO.
info() { cli "$1" cluster info 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p"; }

for n in $nodes; do
	i=0
	until [ "$(cli "$n" ping 2>/dev/null)" = PONG ]; do
		i=$((i + 1))
		[ $i -lt 60 ] || die "$n does not answer PING after 60 s"
		sleep 1
	done
	cli "$n" info cluster | grep -q '^cluster_enabled:1' || die "$n is not started with --cluster-enabled yes"
done
say "every node answers PING"

# CLUSTER MEET and redis-cli --cluster take IP addresses, not names. Each
# node says its own: the local address of our connection to it (CLIENT INFO
# laddr, Redis 6.2+), which needs no resolver tools in the image.
addrs=
for n in $nodes; do
	laddr=$(cli "$n" client info | tr ' ' '\n' | sed -n 's/^laddr=//p')
	[ -n "$laddr" ] || die "$n: no laddr in CLIENT INFO"
	addrs="$addrs ${laddr%:*}:${n##*:}"
done
addrs=${addrs# }

exists=
for n in $nodes; do
	if [ "$(info "$n" cluster_known_nodes)" != 1 ] || [ "$(info "$n" cluster_slots_assigned)" != 0 ]; then
		exists=$n
		break
	fi
done

if [ -n "$exists" ]; then
	say "the cluster exists ($exists knows $(info "$exists" cluster_known_nodes) nodes): not creating it; refreshing addresses ($addrs)"
	for n in $nodes; do
		for a in $addrs; do
			cli "$n" cluster meet "${a%:*}" "${a##*:}" >/dev/null
		done
	done
else
	say "creating the cluster: $addrs, $replicas replica(s) per master"
	# shellcheck disable=SC2086 # one argument per address
	redis-cli --cluster create $addrs --cluster-replicas "$replicas" --cluster-yes
fi

i=0
first=
for n in $nodes; do
	first=${first:-$n}
	until [ "$(info "$n" cluster_state)" = ok ] && [ "$(info "$n" cluster_slots_ok)" = 16384 ]; do
		i=$((i + 1))
		[ $i -lt 120 ] || die "$n: cluster_state $(info "$n" cluster_state), slots ok $(info "$n" cluster_slots_ok) after 60 s (to start over from empty nodes: down -v)"
		sleep 0.5
	done
done
say "cluster_state:ok on every node, $(info "$first" cluster_size) masters"
