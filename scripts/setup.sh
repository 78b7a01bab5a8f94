#!/usr/bin/env bash
# Create the development environment: a virtualenv with rewardops and its dev tools, plus the
# system packages the tests use. Safe to re-run; it does nothing when up to date.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv}"
stamp="$venv/.rewardops-installed"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

# Debian packages the tests run for real: lua5.4 (the Argo CD health check) and prometheus
# (post-promotion analysis against a real Prometheus server).
missing=""
command -v lua5.4 >/dev/null 2>&1 || missing="$missing lua5.4"
command -v prometheus >/dev/null 2>&1 || missing="$missing prometheus"
if [ -n "$missing" ]; then
  echo "setup: installing$missing" >&2
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq >/dev/null
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

echo "setup: creating $venv (first run takes a few minutes)" >&2
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
# The CPU wheel first and exactly: a looser requirement could pull a multi-GB CUDA build.
"$venv/bin/python" -m pip install -q "torch==2.13.0"
"$venv/bin/python" -m pip install -q -e ".[dev,bench]"
echo "$want" > "$stamp"
echo "setup: done" >&2
