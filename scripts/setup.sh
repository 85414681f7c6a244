#!/usr/bin/env bash
# Installs what kspan needs on a new Debian machine and builds it. Idempotent
# and quick when everything is already there; README's two commands call it.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'kspan setup: %s\n' "$*" >&2; }

# --- Debian packages (build toolchain for bpf/ and native/, tools used by tests)
APT_PKGS=(clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev make pkg-config gcc nftables iproute2 util-linux)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    log "missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})"
    exit 1
  fi
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- npm packages (exact versions from package-lock.json). `npm install`, not
# `npm ci`: the registry we get packages from lacks some other platforms'
# optional prebuilds (msgpackr-extract for darwin/win32), which leaves them
# out of the lock file, and `npm ci` refuses such a lock as "out of sync".
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  log "installing npm packages"
  npm install --no-audit --no-fund --loglevel=error
fi

# --- Python packages (example apps, the Python OTel/MCP clients in tests) in a
# project venv, so the system Python is left alone. Re-run when requirements change.
if [[ ! -x .venv/bin/python || requirements.txt -nt .venv/.kspan-installed ]]; then
  log "installing Python packages into .venv"
  [[ -x .venv/bin/python ]] || python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
  touch .venv/.kspan-installed
fi

# --- build: vmlinux.h, BPF object, skeleton, probe, fixtures, TypeScript
log "building"
make -s all
npx tsc -p tsconfig.build.json
