#!/usr/bin/env bash
# Installs everything a fresh machine of this kind lacks, and nothing twice:
# Debian's libraries for weasyprint, Debian's Chromium (tests/test_operator_ui.py drives it with
# Playwright; `playwright install` would download a browser this offline machine cannot fetch),
# a virtualenv in .venv, and the project with its dev tools.
# prefect 3.9 asks for a certifi newer than the package registry has, so the install goes
# through uv with constraints/overrides.txt (see README, "Installing").
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz0b libharfbuzz-subset0 fonts-dejavu-core chromium poppler-utils)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing Debian packages: ${missing[*]}" >&2
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
[ -x .venv/bin/uv ] || .venv/bin/python -m pip install -q --disable-pip-version-check 'uv>=0.5,<1'

stamp=.venv/.dsar-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints/overrides.txt -nt "$stamp" ]; then
  .venv/bin/uv pip install -q --python .venv/bin/python --override constraints/overrides.txt -e '.[dev]'
  touch "$stamp"
fi
