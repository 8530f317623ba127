#!/usr/bin/env bash
# Installs what the real-driver compatibility suite (tests/clients.rs) runs:
#   <target>/clients-venv   a Python venv with tests/clients/requirements.txt (from PyPI)
#   <target>/clients-java   JdbcSuite.class, compiled against Debian's pgjdbc
# Usage: tests/clients/setup.sh [TARGET_DIR]   (default: the crate's target/)
# Idempotent: a stamp of the inputs makes a re-run with nothing changed a no-op.
#
# System packages are not installed here (.ci/run does that on CI); when one is missing
# this says which, and how to install it.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${1:-${CARGO_TARGET_DIR:-$root/target}}"
venv="$target/clients-venv"
classes="$target/clients-java"
jar=/usr/share/java/postgresql.jar
stamp="$target/clients-setup.stamp"

mkdir -p "$target"
# One setup at a time (two test runs may start together).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$target/clients-setup.lock"
    flock 9
fi

inputs="$(cat "$here/requirements.txt" "$here/JdbcSuite.java" "$here/setup.sh" | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$inputs" ] \
    && [ -x "$venv/bin/python" ] && [ -f "$classes/JdbcSuite.class" ] && [ -f "$jar" ]; then
    exit 0
fi

# A Python that can make a venv with pip: $PYTHON, python3 on PATH, then Debian's.
can_venv() { command -v "$1" >/dev/null 2>&1 && "$1" -c 'import venv, ensurepip' >/dev/null 2>&1; }
python=""
for candidate in ${PYTHON:-} python3 /usr/bin/python3; do
    if can_venv "$candidate"; then
        python="$candidate"
        break
    fi
done

missing=()
[ -n "$python" ] || missing+=(python3-venv)
[ -f "$jar" ] || missing+=(libpostgresql-jdbc-java)
command -v javac >/dev/null 2>&1 && command -v java >/dev/null 2>&1 || missing+=(default-jdk-headless)
if ((${#missing[@]})); then
    echo "setup.sh: the driver suite needs: ${missing[*]}" >&2
    echo "  install with: apt-get install --no-install-recommends ${missing[*]}   (.ci/run does this)" >&2
    exit 1
fi

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    rm -rf "$venv"
    "$python" -m venv "$venv"
fi
echo "setup.sh: installing the Python drivers into $venv" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2

rm -rf "$classes"
mkdir -p "$classes"
javac -nowarn -encoding UTF-8 -d "$classes" -cp "$jar" "$here/JdbcSuite.java" >&2

echo "$inputs" >"$stamp"
