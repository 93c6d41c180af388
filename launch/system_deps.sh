#!/usr/bin/env bash
# System packages: EGL for headless MuJoCo rendering, shellcheck for the launcher tests.
# Best effort: training and tests that do not render work without them; rendering tests skip with a reason when they are missing.
set -u
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  missing=()
  # headless MuJoCo rendering through EGL (envs/assets/SYSTEM_DEPS.txt)
  ldconfig -p 2>/dev/null | grep -q 'libEGL.so.1' || missing+=(libegl1 libegl-mesa0 libgl1-mesa-dri)
  command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
  if [ ${#missing[@]} -gt 0 ]; then
    (apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null) \
      || echo "note: could not install ${missing[*]}; rendering/shellcheck tests will skip" >&2
  fi
fi
exit 0
