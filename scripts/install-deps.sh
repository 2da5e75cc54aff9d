#!/usr/bin/env bash
# Installs every Debian package grpcwall's build, tests, packaging and demo need.
# Idempotent: does nothing when all are present. The package lists are
# refreshed (`apt-get update`) when they are missing or over a day old, and
# once more when an install fails (a mirror moved on since the last update).
# Where things come from: Debian packages from the machine's apt sources;
# @grpc/grpc-js and its dependencies (33 packages, for the grpc-js client
# and server tests only) from the npm registry, exactly the versions and
# hashes in tests/grpc/node/package-lock.json (`npm ci`). Nothing else.
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
  # packaging and system integration (make deb, make install, tests/e2e/system.bats)
  # (dpkg-buildpackage also requires build-essential; make deb exports HEAD with git)
  build-essential git debhelper dpkg-dev fakeroot lintian man-db groff-base systemd python3-prometheus-client
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
lists_fresh() {
  # any package index newer than a day
  [ -n "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 -print -quit 2>/dev/null)" ]
}
if ! lists_fresh; then
  apt-get update -q
fi
if ! apt-get install -y -q --no-install-recommends "${missing[@]}"; then
  echo "install-deps: install failed; refreshing the package lists and trying once more" >&2
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
node_deps
