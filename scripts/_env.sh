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

# ensure_apt PACKAGE... — install the Debian packages that are missing (the tests that need
# kea, qemu, ipxe, openipmi, chromium … call this through scripts/system-packages). Waits
# for another apt run's lock rather than failing; without root it says what to run.
ensure_apt() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "scripts: missing Debian packages: ${missing[*]} (sudo apt-get install ${missing[*]})" >&2
    return 1
  fi
  echo "scripts: installing Debian packages: ${missing[*]}" >&2
  apt-get -o DPkg::Lock::Timeout=900 update -qq >&2 || true
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq \
    --no-install-recommends "${missing[@]}" >&2
}
