#!/usr/bin/env bash
# The browser tests drive Debian's chromium (never a browser downloaded by a test tool).
# Install it when it is missing and this machine can (root and apt-get); otherwise say so.
set -u
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the browser tests…"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q chromium >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; } \
    || echo "could not install chromium: the browser tests will fail (apt-get install chromium)"
else
  echo "chromium is missing and cannot be installed here: apt-get install chromium"
fi
exit 0
