#!/usr/bin/env bash
# Prints each node's endpoints and the root credentials of each region.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
for r in $regions; do
	echo "$r (CA: $out/$r-ca.crt, root credentials: $out/$r.credentials)"
	sed -n 's/^\(aws_[a-z_]*\) = \(.*\)/  \1=\2/p' "$out/$r.credentials"
	for n in 1 2 3; do
		echo "  node $n: gRPC 127.0.0.1:$(grpc_port "$r" "$n")  AWS https://127.0.0.1:$(aws_port "$r" "$n")"
	done
	echo "  aws:    AWS_SHARED_CREDENTIALS_FILE=$out/$r.credentials aws --region $r --ca-bundle $out/$r-ca.crt --endpoint-url https://127.0.0.1:$(aws_port "$r" 1) secretsmanager list-secrets"
	echo "  coffer: $out/coffer --endpoint 127.0.0.1:$(grpc_port "$r" 1) --tls --ca-file $out/$r-ca.crt --credentials-file $out/$r.credentials --region $r cluster status"
done
