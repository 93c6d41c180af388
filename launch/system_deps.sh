#!/usr/bin/env bash
# System libraries for headless MuJoCo rendering (OSMesa). Best effort: training and tests that
# do not render work without them; rendering tests skip with a reason when they are missing.
set -u
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  if ! ldconfig -p 2>/dev/null | grep -q libOSMesa; then
    (apt-get update -qq && apt-get install -y -qq libosmesa6 >/dev/null) \
      || echo "note: could not install libosmesa6; MuJoCo rendering will be skipped" >&2
  fi
fi
exit 0
