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

# --- Jaeger v2 and an OTel Collector distribution, built from Go modules with
# the machine's Go (GOTOOLCHAIN=local: never download a toolchain) and cached
# under build/; the end-to-end tests run them (test/helpers/jaeger.ts). Go keeps
# its default module and build caches (`go env GOMODCACHE GOCACHE`, ~/go/pkg/mod
# and ~/.cache/go-build), so a rebuild after `make clean` downloads nothing.
# Each binary has a stamp file naming what it was built from; a binary whose
# stamp matches is kept. KSPAN_SKIP_GO_BUILDS=1 skips both (then the tests that
# need them fail and say so).
JAEGER_MODULE=github.com/jaegertracing/jaeger/cmd/jaeger
JAEGER_VERSION=v1.76.0                      # Jaeger v2 (the v1.x tag of the same release)
OTELCOL_BUILDER_VERSION=v0.165.0            # go.opentelemetry.io/collector/cmd/builder, = the components' release
OTELCOL_MANIFEST=test/collector/builder-config.yaml
GO_MIN=1.26                                 # what the builder and the collector v0.165.0 modules require

go_setup() {
  export GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:-} -buildvcs=false"
  if ! command -v go >/dev/null; then export PATH="$PATH:/usr/local/go/bin"; fi
  if ! command -v go >/dev/null; then
    log "Go $GO_MIN or later is needed to build Jaeger and the test collector, and none was found (looked in PATH and /usr/local/go/bin); install it (https://go.dev/dl) or set KSPAN_SKIP_GO_BUILDS=1"
    exit 1
  fi
  local v; v=$(go env GOVERSION); v=${v#go}
  if [[ $(printf '%s\n%s\n' "$GO_MIN" "$v" | sort -V | head -1) != "$GO_MIN" ]]; then
    log "Go $v is too old to build Jaeger and the test collector (need $GO_MIN or later; $(command -v go)); GOTOOLCHAIN=local: no toolchain is downloaded"
    exit 1
  fi
  [[ -n ${HOME:-} ]] || export GOPATH="$PWD/build/go" GOCACHE="$PWD/build/go-cache"
}

build_jaeger() {
  local stamp="jaeger $JAEGER_MODULE@$JAEGER_VERSION"
  [[ -x build/jaeger/jaeger && "$(cat build/jaeger/.stamp 2>/dev/null)" == "$stamp" ]] && return 0
  go_setup
  log "building Jaeger v2 ($JAEGER_MODULE@$JAEGER_VERSION, first time: several minutes)"
  local t0=$SECONDS src=build/jaeger/src
  rm -rf build/jaeger && mkdir -p "$src"
  # `go install …@v` refuses a module whose go.mod has replace directives:
  # require it as a tool of a small module of our own, then build it.
  if ! ( cd "$src" && go mod init kspan.local/jaeger-build \
        && go get -tool "$JAEGER_MODULE@$JAEGER_VERSION" \
        && go build -trimpath -ldflags='-s -w' -o ../jaeger "$JAEGER_MODULE" ) >build/jaeger/build.log 2>&1; then
    tail -n 40 build/jaeger/build.log >&2
    log "building Jaeger failed (full log: build/jaeger/build.log); the end-to-end tests need build/jaeger/jaeger"
    exit 1
  fi
  printf '%s\n' "$stamp" > build/jaeger/.stamp
  log "built build/jaeger/jaeger in $((SECONDS - t0)) s"
}

build_otelcol() {
  local stamp; stamp="builder $OTELCOL_BUILDER_VERSION manifest $(sha256sum "$OTELCOL_MANIFEST" | cut -d' ' -f1)"
  [[ -x build/otelcol/otelcol-kspan && "$(cat build/otelcol/.stamp 2>/dev/null)" == "$stamp" ]] && return 0
  go_setup
  log "building the OTel Collector (builder $OTELCOL_BUILDER_VERSION, $OTELCOL_MANIFEST; first time: a few minutes)"
  local t0=$SECONDS
  rm -rf build/otelcol build/otelcol-builder && mkdir -p build/otelcol-builder
  if ! GOBIN="$PWD/build/otelcol-builder" go install "go.opentelemetry.io/collector/cmd/builder@$OTELCOL_BUILDER_VERSION" >build/otelcol-builder/build.log 2>&1 \
    || ! build/otelcol-builder/builder --config "$OTELCOL_MANIFEST" >>build/otelcol-builder/build.log 2>&1; then
    tail -n 40 build/otelcol-builder/build.log >&2
    log "building the collector failed (full log: build/otelcol-builder/build.log); the end-to-end tests need build/otelcol/otelcol-kspan"
    exit 1
  fi
  printf '%s\n' "$stamp" > build/otelcol/.stamp
  log "built build/otelcol/otelcol-kspan in $((SECONDS - t0)) s"
}

if [[ -z ${KSPAN_SKIP_GO_BUILDS:-} ]]; then
  build_jaeger
  build_otelcol
fi
