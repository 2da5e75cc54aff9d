#!/usr/bin/env bash
# The Cloud City walkthrough: a door-manager gRPC server, a public terminal
# and a door sensor as workloads in their own cgroups and network
# namespaces, and grpcwall deciding which of them may call which method.
# Everything it creates is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
exec scripts/cloudcity.sh demo "$@"
