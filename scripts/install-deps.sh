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
  libgtest-dev libnghttp2-dev
  # end-to-end tests and demo
  bats iproute2 procps python3 python3-grpcio python3-grpc-tools python3-h2
  nghttp2-client
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
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
