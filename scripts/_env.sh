# Sourced by scripts/*: one virtual environment in .venv with hwfleet and its test tools.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
VENV="$ROOT/.venv"
STAMP="$VENV/.hwfleet-installed"

ensure_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    echo "scripts: creating $VENV" >&2
    "$PY" -m venv "$VENV"
  fi
  # Reinstall only when the project's dependencies changed.
  if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
    echo "scripts: installing hwfleet and its dependencies" >&2
    "$VENV/bin/python" -m pip install -q --upgrade pip >&2
    "$VENV/bin/python" -m pip install -q -e ".[all]" --group dev >&2
    touch "$STAMP"
  fi
  export PATH="$VENV/bin:$PATH"
}
