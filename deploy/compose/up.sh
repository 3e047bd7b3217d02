#!/usr/bin/env bash
# Brings up two Coffer regions of three nodes each and pairs them:
#  1. builds the static cofferd (and the coffer CLI, for this host) and the
#     FROM-scratch image;
#  2. on first use, makes the keys and certificates with the one-shot init
#     service (cofferd keygen, cofferd ca create, cofferd ca issue) into the
#     pki volume;
#  3. starts the six nodes, waits for both regions to serve, copies each
#     region's CA certificate and root credentials to $out;
#  4. pairs the regions (coffer region pair, pinned by the CA fingerprint).
# Then ./endpoints.sh prints how to reach them; ./down.sh removes it all.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
mkdir -p "$out"

echo "== building cofferd, coffer and $COFFER_IMAGE"
(cd "$root" && CGO_ENABLED=0 go build -trimpath -o deploy/cofferd ./cmd/cofferd && CGO_ENABLED=0 go build -trimpath -o "$out/coffer" ./cmd/coffer)
docker build -q -t "$COFFER_IMAGE" -f "$root/deploy/Dockerfile" "$root/deploy" >/dev/null

init() { compose --profile init run --rm init "$@" >/dev/null; }
if [ -z "$(docker volume ls -q -f "name=^${COMPOSE_PROJECT_NAME}_pki\$")" ]; then
	echo "== making keys and certificates (init service)"
	docker volume create "${COMPOSE_PROJECT_NAME}_pki" >/dev/null
	if ! {
		init keygen /pki/wan.key
		for r in $regions; do
			hosts=(--host localhost --host 127.0.0.1)
			for n in $(nodes_of "$r"); do hosts+=(--host "$n"); done
			init keygen "/pki/$r/root.key"
			init ca create "/pki/$r/region"
			init ca issue --ca-dir "/pki/$r/region" --node-id "$r-node" --out-dir "/pki/$r/tls"
			init ca issue --ca-dir "/pki/$r/region" --api "${hosts[@]}" --out-dir "/pki/$r/tls"
		done
	}; then
		docker volume rm "${COMPOSE_PROJECT_NAME}_pki" >/dev/null
		echo "init failed; nothing was started" >&2
		exit 1
	fi
fi

echo "== starting the nodes"
compose up -d us1 us2 us3 eu1 eu2 eu3

# The node that created a region's root principal wrote its key to its
# /data/root-credentials; wait for it and copy it out with the region's CA.
for r in $regions; do
	nodes=($(nodes_of "$r"))
	docker cp "$(compose ps -q "${nodes[0]}")":/pki/$r/tls/ca.crt "$out/$r-ca.crt"
	echo -n "== waiting for $r to form"
	for i in $(seq 1 180); do
		for n in "${nodes[@]}"; do
			if docker cp "$(compose ps -q "$n")":/data/root-credentials "$out/$r.credentials" 2>/dev/null; then
				break 2
			fi
		done
		echo -n .
		sleep 1
	done
	echo
	[ -s "$out/$r.credentials" ] || { echo "$r did not form in 180 s; see: docker-compose logs" >&2; exit 1; }
	chmod 600 "$out/$r.credentials"
	for i in $(seq 1 120); do
		if coffer_cli "$r" 1 cluster status >/dev/null 2>&1; then break; fi
		sleep 1
	done
	coffer_cli "$r" 1 cluster status
done

echo "== pairing us-east-1 with eu-west-1"
fp=$(coffer_cli eu-west-1 1 -o json region info | sed -n 's/.*"caSha256": *"\([0-9a-f]*\)".*/\1/p')
if coffer_cli us-east-1 1 -o json region list | tr -d ' \n' | grep -q '"region":"eu-west-1","paired":true'; then
	echo "already paired"
else
	coffer_cli us-east-1 1 region pair --peer-endpoint "127.0.0.1:$(grpc_port eu-west-1 1)" --peer-tls \
		--peer-ca-file "$out/eu-west-1-ca.crt" --peer-credentials-file "$out/eu-west-1.credentials" \
		--peer-region eu-west-1 --peer-ca-sha256 "$fp"
fi
"$here/endpoints.sh"
