# Sourced by scripts/*: one virtual environment in .venv with hwfleet and its test tools,
# installed from the lock (constraints.txt) so every clone gets the set the suite passed on.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
VENV="$ROOT/.venv"
STAMP="$VENV/.hwfleet-installed"
LOCK="$ROOT/constraints.txt"

ensure_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    echo "scripts: creating $VENV" >&2
    "$PY" -m venv "$VENV"
  fi
  # Reinstall only when the project's dependencies or their pins changed.
  if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ] || [ "$LOCK" -nt "$STAMP" ]; then
    echo "scripts: installing hwfleet and its dependencies from constraints.txt" >&2
    # pip first: dependency groups (--group) need pip >= 25.1.
    "$VENV/bin/python" -m pip install -q -c "$LOCK" pip >&2
    "$VENV/bin/python" -m pip install -q -c "$LOCK" -e ".[all]" --group dev >&2
    touch "$STAMP"
  fi
  export PATH="$VENV/bin:$PATH"
}
