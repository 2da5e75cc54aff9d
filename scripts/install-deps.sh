#!/usr/bin/env bash
# Installs every Debian package grpcwall's build, tests and demo need.
# Idempotent: does nothing when all are present; runs `apt-get update` at most once.
# Nothing is downloaded from anywhere but the Debian archive.
set -euo pipefail

PKGS=(
  # build
  make g++ clang llvm pkg-config libbpf-dev bpftool libelf-dev zlib1g-dev
  libcli11-dev libyaml-cpp-dev nlohmann-json3-dev
  # unit tests
  libgtest-dev libnghttp2-dev libclang-rt-14-dev
  # end-to-end tests and demo
  bats iproute2 procps util-linux python3 python3-grpcio python3-grpc-tools python3-h2
  python3-hpack nghttp2-client
  # benchmarks
  libgrpc++-dev protobuf-compiler-grpc protobuf-compiler libprotobuf-dev haproxy gnuplot-nox
  nghttp2-server
)

# Node.js for the @grpc/grpc-js client: the machine's own if it has one
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || PKGS+=(nodejs npm)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

node_deps() {
  # @grpc/grpc-js from the npm registry, pinned by package-lock.json
  local dir
  dir="$(cd "$(dirname "$0")/.." && pwd)/tests/grpc/node"
  if [ ! -d "$dir/node_modules/@grpc/grpc-js" ]; then
    echo "install-deps: npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

if [ ${#missing[@]} -eq 0 ]; then
  node_deps
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}" >&2
  echo "install-deps: run as root (sudo make ...) to install them" >&2
  exit 2
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
stamp=/var/lib/apt/periodic/grpcwall-update-stamp
if [ ! -e "$stamp" ]; then
  apt-get update -q
  mkdir -p "$(dirname "$stamp")" && touch "$stamp"
fi
apt-get install -y -q --no-install-recommends "${missing[@]}"
node_deps
