"""What the Python scenario scripts share: their arguments, how a scenario's result or
unexpected error is recorded, and the one deterministic JSON document they print.

Every script is run as `python SCRIPT HOST PORT USER PASSWORD DBNAME`, once against
PostgreSQL directly and once through pgate per pool mode; the outputs must be equal, so
nothing printed may depend on timing, backend pids, ports or ordering the server does not
guarantee. Diagnostics go to stderr.
"""

import json
import os
import sys
import traceback

if len(sys.argv) != 6:
    sys.exit(f"usage: {sys.argv[0]} HOST PORT USER PASSWORD DBNAME")
HOST, PORT, USER, PASSWORD, DBNAME = sys.argv[1:6]
PORT = int(PORT)

RESULTS = {}
FAILED = []
# CLIENTS_ONLY=name,name runs only those scenarios (to reproduce one failure).
ONLY = [n for n in os.environ.get("CLIENTS_ONLY", "").split(",") if n]


def describe(e):
    """An error as `Class SQLSTATE: first line of the message`."""
    state = getattr(e, "sqlstate", None)
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__} {state}: {first}"


def summarize(problems, limit=40):
    """Problems found by a scenario's own checks, sorted, the first `limit` of them."""
    problems = sorted(set(problems))
    return {"count": len(problems), "first": problems[:limit]}


def record(name, fn):
    """Runs one scenario; an exception it did not expect is recorded and fails the run."""
    if ONLY and name not in ONLY:
        return
    print(f"scenario {name}", file=sys.stderr, flush=True)
    try:
        RESULTS[name] = fn()
    except BaseException as e:  # noqa: BLE001 - everything is reported
        FAILED.append(name)
        RESULTS[name] = {"unexpected error": describe(e)}
        traceback.print_exc()


def finish():
    """Prints the results; exits 1 if any scenario failed unexpectedly."""
    print(json.dumps(RESULTS, indent=1, sort_keys=True, default=str, ensure_ascii=False))
    sys.stdout.flush()
    if FAILED:
        print(f"failed scenarios: {', '.join(FAILED)}", file=sys.stderr)
        sys.exit(1)
