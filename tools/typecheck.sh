#!/usr/bin/env bash
# mypy over the installed package layout: henvis (henvis/), henvis.services (services/),
# henvis.schemas (schemas/) and henvis_dev (devtools/) are separate folders in the
# repository (pyproject.toml's package-dir), which mypy cannot map itself.  A tree of
# symlinks under .mypy_tree/ gives it the import names; its messages are mapped back to the
# repository's paths.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tree=.mypy_tree
rm -rf "${tree}"
mkdir -p "${tree}/henvis"
for entry in henvis/*; do
    ln -s "../../${entry}" "${tree}/henvis/$(basename "${entry}")"
done
ln -s ../../services "${tree}/henvis/services"
ln -s ../../schemas "${tree}/henvis/schemas"
ln -s ../devtools "${tree}/henvis_dev"
status=0
MYPYPATH="${tree}" "${MYPY:-.venv/bin/mypy}" -p henvis -p henvis_dev "$@" 2>&1 \
    | sed -e "s#^${tree}/henvis/services/#services/#" -e "s#^${tree}/henvis/schemas/#schemas/#" \
          -e "s#^${tree}/henvis_dev/#devtools/#" -e "s#^${tree}/henvis/#henvis/#" || status=$?
exit "${status}"
