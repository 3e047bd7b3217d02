# Sourced by up.sh, endpoints.sh and down.sh: the project's names and paths.
# Override any of these in the environment (the fault suite does, to run
# beside an operator's deployment).
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-coffer}
export COFFER_IMAGE=${COFFER_IMAGE:-coffer/cofferd:dev}
export COFFER_NET=${COFFER_NET:-10.231}
export COFFER_PORT_PREFIX=${COFFER_PORT_PREFIX:-174}
out=${COFFER_COMPOSE_OUT:-$here/out/$COMPOSE_PROJECT_NAME}
compose() { docker-compose -f "$here/docker-compose.yml" --project-directory "$here" "$@"; }
regions="us-east-1 eu-west-1"
nodes_of() { case $1 in us-east-1) echo us1 us2 us3 ;; eu-west-1) echo eu1 eu2 eu3 ;; esac; }
# grpc_port REGION N / aws_port REGION N: the host ports of node N (1-3).
grpc_port() { case $1 in us-east-1) echo "${COFFER_PORT_PREFIX}1$2" ;; eu-west-1) echo "${COFFER_PORT_PREFIX}2$2" ;; esac; }
aws_port() { case $1 in us-east-1) echo "${COFFER_PORT_PREFIX}8$2" ;; eu-west-1) echo "${COFFER_PORT_PREFIX}9$2" ;; esac; }
# coffer_cli REGION N ARGS...: the coffer CLI against node N of REGION as its root.
coffer_cli() {
	local r=$1 n=$2
	shift 2
	"$out/coffer" --endpoint "127.0.0.1:$(grpc_port "$r" "$n")" --tls --ca-file "$out/$r-ca.crt" \
		--credentials-file "$out/$r.credentials" --region "$r" "$@"
}
