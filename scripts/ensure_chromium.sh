#!/usr/bin/env bash
# Install Debian's chromium for the web-demo browser tests when possible (root + apt); otherwise say why
# those tests will skip. Playwright cannot download its own browsers here.
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
    || echo "note: could not install chromium; the browser tests will skip"
else
  echo "note: chromium not found (install Debian's chromium as root); the browser tests will skip"
fi
exit 0
