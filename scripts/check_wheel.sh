#!/usr/bin/env bash
# Build prefaudit's wheel, install it into a fresh virtual environment and audit a sample with the
# installed copy, away from the checkout: proves the wheel carries the package data (report
# templates, policies, py.typed) and the `prefaudit` command works from it.
#
# The fresh venv borrows the dependencies of an existing environment ($PYTHON, default .venv)
# through a .pth file instead of installing them again, which keeps this check to seconds;
# only prefaudit itself comes from the wheel (pip install --no-deps).
#   bash scripts/check_wheel.sh            # PYTHON=/path/to/python to use another environment
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
py="${PYTHON:-$repo/.venv/bin/python}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Build from a copy of the files git knows (tracked or not ignored), so the checkout gains no build/.
mkdir "$work/src"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard | xargs -0 tar -cf -) | tar -xf - -C "$work/src"
"$py" -m build --wheel --no-isolation --outdir "$work/dist" "$work/src" >"$work/build.log" 2>&1 \
  || { tail -20 "$work/build.log"; echo "check_wheel: building the wheel failed"; exit 1; }
wheel="$(ls "$work"/dist/prefaudit-*.whl)"
"$py" - "$wheel" <<'PY'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
need = {"prefaudit/py.typed", "prefaudit/policies/default.toml", "prefaudit/report/templates/report.html.j2"}
missing = sorted(need - names)
sys.exit(f"check_wheel: the wheel lacks {missing}" if missing else 0)
PY

"$py" -m venv --without-pip "$work/venv"
site="$("$work/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
"$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' >"$site/_prefaudit_deps.pth"
"$py" -m pip --python "$work/venv/bin/python" install -q --no-deps --no-index "$wheel"

cd "$work"  # away from the checkout: only the installed copy can be imported
where="$(env -u PYTHONPATH venv/bin/python -c 'import prefaudit; print(prefaudit.__file__)')"
case "$where" in "$work"/venv/*) ;; *) echo "check_wheel: imported prefaudit from $where, not the wheel"; exit 1;; esac
set +e
env -u PYTHONPATH venv/bin/prefaudit audit "$repo/sample_data/pandalm_testset_v1.json" --analyzers hygiene,agreement,length \
  --out out --no-pdf >audit.log 2>&1
status=$?
set -e
[ "$status" -le 1 ] || { tail -20 audit.log; echo "check_wheel: prefaudit audit exited $status"; exit 1; }
for f in audit.json pair_flags.csv verdict.json report.html; do
  [ -s "out/$f" ] || { echo "check_wheel: the installed prefaudit wrote no out/$f"; exit 1; }
done
echo "check_wheel: $(basename "$wheel") installs into a fresh venv and audits the sample (exit $status)"
