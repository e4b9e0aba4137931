#!/usr/bin/env bash
# The browser tests (tests/browser/) drive Debian's Chromium through Playwright's Python
# package, which never downloads a browser of its own. Install Chromium when it is
# missing and this user may install packages; otherwise say how, and the browser tests
# skip (or fail on CI, where CHROMIUM_REQUIRED is implied by CI=true).
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || [ -n "${CHROMIUM_PATH:-}" ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO="sudo -n"
else
  echo "Chromium is not installed: run 'sudo apt-get install chromium' (or set CHROMIUM_PATH) for the browser tests." >&2
  exit 0
fi
echo "Installing Debian's chromium for the browser tests..."
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
