#!/usr/bin/env bash
# Stops and removes the nodes, networks and volumes (keys, certificates and
# data: everything), and the copied credentials.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
compose --profile init down -v --remove-orphans
rm -rf "$out"
