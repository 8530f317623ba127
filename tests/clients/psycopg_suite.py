#!/usr/bin/env python3
"""psycopg 3 scenarios: every query prepared (prepare_threshold=0) over many
transactions, type round trips, pipeline mode with an error in the middle of a segment,
COPY in and out (text and binary, failures), server-side cursors (plain, scrollable,
WITH HOLD), and session settings that must stay with their connection while several
connections share few servers (plus its two smallest cases: a SET that psycopg prepares,
and RESET / RESET ALL going back to the settings given at startup).

Usage: psycopg_suite.py HOST PORT USER PASSWORD DBNAME (a fresh, empty database).
Prints one deterministic JSON document; see suite_common.py.
"""

import datetime as dt
import hashlib
import threading
import uuid
from decimal import Decimal

import psycopg
from psycopg import pq
from psycopg.types.json import Jsonb

from suite_common import DBNAME, FAILED, HOST, PASSWORD, PORT, USER, describe, finish, record, summarize


def connect(**kwargs):
    return psycopg.connect(
        host=HOST,
        port=PORT,
        user=USER,
        password=PASSWORD,
        dbname=DBNAME,
        sslmode="disable",
        **kwargs,
    )


def tx_status(conn):
    return pq.TransactionStatus(conn.info.transaction_status).name


# --- every statement prepared, over many transactions ----------------------------------


def prepared_every_query():
    out = {}
    with connect(prepare_threshold=0) as conn:
        conn.execute(
            "CREATE TABLE pq_accounts (id int PRIMARY KEY, owner text NOT NULL, "
            "balance numeric(14,2) NOT NULL)"
        )
        conn.commit()
        for i in range(1, 101):
            conn.execute(
                "INSERT INTO pq_accounts VALUES (%s, %s, %s)",
                (i, f"owner {i % 7}", Decimal(i * 10)),
            )
            conn.commit()
        failures = []
        seen = Decimal(0)
        for t in range(300):
            a, b = t % 100 + 1, (t * 37) % 100 + 1
            amount = Decimal(t % 13) + Decimal("0.25")
            try:
                with conn.transaction():
                    conn.execute(
                        "UPDATE pq_accounts SET balance = balance - %s WHERE id = %s",
                        (amount, a),
                    )
                    conn.execute(
                        "UPDATE pq_accounts SET balance = balance + %s WHERE id = %s",
                        (amount, b),
                    )
                    row = conn.execute(
                        "SELECT balance, owner FROM pq_accounts WHERE id = %s", (a,)
                    ).fetchone()
                    seen += row[0]
                    if t % 50 == 49:
                        # fails: the whole transfer is rolled back
                        conn.execute("SELECT 1 / %s", (0,))
            except psycopg.Error as e:
                failures.append(f"t={t}: {describe(e)}")
            assert tx_status(conn) == "IDLE", tx_status(conn)
        out["failed transfers"] = failures
        out["sum of balances seen"] = str(seen)
        out["total"] = str(conn.execute("SELECT sum(balance) FROM pq_accounts").fetchone()[0])
        out["by owner"] = [
            [owner, n, str(total)]
            for owner, n, total in conn.execute(
                "SELECT owner, count(*), sum(balance) FROM pq_accounts GROUP BY owner ORDER BY owner"
            )
        ]
        # the same statements once more, after all those transactions, with new values
        out["reused"] = [
            conn.execute("SELECT balance FROM pq_accounts WHERE id = %s", (k,)).fetchone()[0]
            for k in (1, 50, 100)
        ]
        conn.commit()
    return out


# --- type round trips, text and binary ---------------------------------------------------


def type_round_trips():
    big = bytes(range(256)) * 1024  # 256 KiB
    values = [
        Decimal("123456789012345678901234567890.123456789012345678901234567890"),
        Decimal("-0.000000000000000000000000000001"),
        dt.datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
        Jsonb({"a": [1, 2, {"b": None}], "snow": "\u2603", "n": 1.5}),
        [[1, 2, 3], [4, 5, 6]],
        ["plain", None, "comma,inside", 'quote"inside', "", "NULL"],
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
        big,
        dt.date(1999, 12, 31),
        dt.timedelta(days=3, hours=4, microseconds=5),
    ]
    casts = ["numeric", "numeric", "timestamptz", "jsonb", "int[]", "text[]", "uuid", "bytea", "date", "interval"]
    sql = "SELECT " + ", ".join(f"%s::{c}" for c in casts)
    out = {}
    with connect(prepare_threshold=0, autocommit=True) as conn:
        for binary in (False, True):
            cur = conn.cursor(binary=binary)
            row = cur.execute(sql, values).fetchone()
            got = []
            for want, have in zip(values, row):
                want_v = want.obj if isinstance(want, Jsonb) else want
                got.append(want_v == have)
            out["binary" if binary else "text"] = {
                "equal": got,
                "timestamptz utc": row[2].astimezone(dt.timezone.utc).isoformat(),
                "bytea sha256": hashlib.sha256(row[7]).hexdigest(),
            }
        out["server text"] = list(
            conn.execute(
                "SELECT (%s::numeric * 3)::text, %s::jsonb::text, %s::text[]::text, "
                "%s::uuid::text, length(%s::bytea), md5(%s::bytea)",
                (values[0], values[3], values[5], values[6], big, big),
            ).fetchone()
        )
    return out


# --- pipeline mode ------------------------------------------------------------------------

# The failing statement sleeps first, so that every later statement of its segment has
# been sent before its error can come back: what the client sends does not depend on
# timing, and the server aborts the rest of the segment.
SLOW_FAILURE = "SELECT 1 / (SELECT count(*)::int - 1 FROM pg_sleep(0.3))"


def pipeline_mode():
    out = {}
    with connect(autocommit=True) as conn:
        conn.execute("CREATE TABLE pl_log (id int PRIMARY KEY, note text)")
        with conn.pipeline() as p:
            c1 = conn.execute("INSERT INTO pl_log VALUES (%s, %s) RETURNING id", (1, "one"))
            c2 = conn.execute("INSERT INTO pl_log VALUES (%s, %s) RETURNING id", (2, "two"))
            c3 = conn.execute("SELECT count(*) FROM pl_log")
            p.sync()
            out["segment 1"] = [c1.fetchone()[0], c2.fetchone()[0], c3.fetchone()[0]]
            try:
                conn.execute("INSERT INTO pl_log VALUES (%s, %s)", (3, "before the error"))
                conn.execute(SLOW_FAILURE)
                conn.execute("INSERT INTO pl_log VALUES (%s, %s)", (4, "after the error"))
                conn.execute("SELECT 42")
                p.sync()
                out["segment 2"] = "no error"
            except psycopg.Error as e:
                out["segment 2"] = describe(e)
            out["status after segment 2"] = tx_status(conn)
            c5 = conn.execute("INSERT INTO pl_log VALUES (%s, %s) RETURNING id", (5, "next segment"))
            c6 = conn.execute("SELECT array_agg(id ORDER BY id) FROM pl_log")
        out["segment 3"] = [c5.fetchone()[0], c6.fetchone()[0]]
        # a second pipeline on the same connection, with prepared statements
        with conn.pipeline():
            curs = [conn.execute("SELECT %s::int * 2", (k,), prepare=True) for k in range(20)]
        out["second pipeline"] = sum(c.fetchone()[0] for c in curs)

    # inside an explicit transaction: the error aborts it until rollback
    with connect() as conn:
        with conn.pipeline() as p:
            conn.execute("INSERT INTO pl_log VALUES (%s, %s)", (10, "in a transaction"))
            try:
                conn.execute(SLOW_FAILURE)
                conn.execute("INSERT INTO pl_log VALUES (%s, %s)", (11, "aborted"))
                p.sync()
                out["transaction"] = "no error"
            except psycopg.Error as e:
                out["transaction"] = describe(e)
            out["status after error"] = tx_status(conn)
            conn.rollback()
            conn.execute("INSERT INTO pl_log VALUES (%s, %s)", (12, "after rollback"))
            conn.commit()
        out["final ids"] = conn.execute("SELECT array_agg(id ORDER BY id) FROM pl_log").fetchone()[0]
        conn.commit()
    return out


# --- COPY -------------------------------------------------------------------------------


def copy_row(i):
    return (
        i,
        f"name {i}\twith tab" if i % 97 == 0 else f"name {i}",
        Decimal(i) / Decimal(7),
        dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=i),
        [f"t{i % 5}", None if i % 11 == 0 else f"u{i}"],
        bytes([i % 256]) * (i % 40),
    )


def copy_in_out():
    out = {}
    rows = [copy_row(i) for i in range(1, 5001)]
    rows = [(r[0], r[1], r[2].quantize(Decimal("0.000001")), *r[3:]) for r in rows]
    cols = "id, name, amount, at, tags, data"
    with connect() as conn:
        cur = conn.cursor()
        cur.execute(
            "CREATE TABLE cp_text (id int PRIMARY KEY, name text, amount numeric(20,6), "
            "at timestamptz, tags text[], data bytea)"
        )
        cur.execute("CREATE TABLE cp_bin (LIKE cp_text INCLUDING ALL)")
        conn.commit()
        with cur.copy(f"COPY cp_text ({cols}) FROM STDIN") as copy:
            for r in rows:
                copy.write_row(r)
        out["text in"] = cur.rowcount
        conn.commit()
        with cur.copy(f"COPY cp_bin ({cols}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "text", "numeric", "timestamptz", "text[]", "bytea"])
            for r in rows:
                copy.write_row(r)
        out["binary in"] = cur.rowcount
        conn.commit()
        out["tables differ by"] = cur.execute(
            "SELECT count(*) FROM ((SELECT * FROM cp_text EXCEPT SELECT * FROM cp_bin) "
            "UNION ALL (SELECT * FROM cp_bin EXCEPT SELECT * FROM cp_text)) d"
        ).fetchone()[0]

        digest = hashlib.sha256()
        with cur.copy("COPY (SELECT id, name, amount, tags, data FROM cp_text ORDER BY id) TO STDOUT") as copy:
            for block in copy:
                digest.update(block)
        out["text out sha256"] = digest.hexdigest()

        with cur.copy(
            "COPY (SELECT id, amount, at, tags, data FROM cp_bin ORDER BY id) TO STDOUT (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int4", "numeric", "timestamptz", "text[]", "bytea"])
            got = list(copy.rows())
        out["binary out matches"] = got == [(r[0], r[2], r[3], r[4], r[5]) for r in rows]

        with cur.copy("COPY (SELECT id, name FROM cp_text WHERE id % 1000 = 0 ORDER BY id) TO STDOUT") as copy:
            out["text rows"] = [list(r) for r in copy.rows()]
        conn.commit()

        try:
            with cur.copy("COPY cp_text (id, name) FROM STDIN") as copy:
                copy.write(b"9001\tok\nnot-a-number\tbad\n")
            out["bad data"] = "accepted"
        except psycopg.Error as e:
            out["bad data"] = describe(e)
        out["status after bad data"] = tx_status(conn)
        conn.rollback()

        try:
            with cur.copy("COPY cp_text (id, name) FROM STDIN") as copy:
                copy.write_row((9002, "sent before the client gives up"))
                raise RuntimeError("client gives up")
        except Exception as e:  # noqa: BLE001 - which error psycopg raises is recorded
            out["client abort"] = type(e).__name__
        out["status after client abort"] = tx_status(conn)
        conn.rollback()
        out["rows after failures"] = cur.execute("SELECT count(*) FROM cp_text WHERE id > 9000").fetchone()[0]
        conn.commit()

    # COPY in autocommit: each COPY is its own transaction
    with connect(autocommit=True) as conn:
        cur = conn.cursor()
        cur.execute("CREATE TABLE cp_auto (k int, v text)")
        for chunk in range(5):
            with cur.copy("COPY cp_auto FROM STDIN") as copy:
                copy.write("".join(f"{chunk * 1000 + j}\tv{j}\n" for j in range(1000)))
        out["autocommit copies"] = list(cur.execute("SELECT count(*), sum(k) FROM cp_auto").fetchone())
    return out


# --- server-side cursors ------------------------------------------------------------------


def server_side_cursors():
    out = {}
    with connect() as conn:
        with conn.cursor(name="ssc_big") as cur:
            cur.itersize = 500
            cur.execute("SELECT g, md5(g::text) FROM generate_series(1, %s) g ORDER BY g", (20000,))
            n, total, digest = 0, 0, hashlib.sha256()
            for g, m in cur:
                n += 1
                total += g
                digest.update(m.encode())
        out["big"] = [n, total, digest.hexdigest()]
        conn.commit()

        with conn.cursor(name="ssc_scroll", scrollable=True) as cur:
            cur.execute("SELECT g FROM generate_series(1, 100) g ORDER BY g")
            first = [r[0] for r in cur.fetchmany(10)]
            cur.scroll(50, mode="absolute")
            at_50 = cur.fetchone()[0]
            cur.scroll(-5)
            back = cur.fetchone()[0]
        out["scroll"] = [first, at_50, back]
        conn.commit()

        # two cursors open at once in one transaction
        a = conn.cursor(name="ssc_a")
        b = conn.cursor(name="ssc_b")
        a.execute("SELECT g FROM generate_series(1, 10) g ORDER BY g")
        b.execute("SELECT g * 100 FROM generate_series(1, 10) g ORDER BY g")
        interleaved = []
        for _ in range(5):
            interleaved.append(a.fetchone()[0])
            interleaved.append(b.fetchone()[0])
        a.close()
        b.close()
        out["interleaved"] = interleaved
        conn.commit()

        held = conn.cursor(name="ssc_hold", withhold=True)
        held.execute("SELECT g FROM generate_series(1, 1000) g ORDER BY g")
        conn.commit()
        part1 = [r[0] for r in held.fetchmany(100)]
        conn.commit()
        part2 = [r[0] for r in held.fetchall()]
        held.close()
        conn.commit()
        out["with hold"] = [len(part1), sum(part1), len(part2), sum(part2)]
        out["cursors left"] = conn.execute("SELECT count(*) FROM pg_cursors").fetchone()[0]
        conn.commit()
    return out


# --- session settings stay with their connection -----------------------------------------

THREADS = 6
ROUNDS = 12
ZONES = ["UTC", "Asia/Kolkata", "America/New_York", "Europe/Berlin", "Australia/Adelaide", "Pacific/Chatham"]
STYLES = ["ISO, MDY", "ISO, DMY", "SQL, DMY", "Postgres, MDY", "German, DMY", "ISO, YMD"]

CHECK = (
    "SELECT current_setting('search_path'), current_setting('TimeZone'), "
    "current_setting('DateStyle'), current_setting('application_name'), "
    "current_setting('work_mem'), current_setting('statement_timeout'), "
    "current_setting('myapp.tenant', true), (SELECT v FROM whoami), "
    "'2024-03-04 05:06:07+00'::timestamptz::text"
)
CHECK_NAMES = ["search_path", "TimeZone", "DateStyle", "application_name", "work_mem",
               "statement_timeout", "myapp.tenant", "whoami", "timestamptz"]
REPORTED = {"TimeZone": 1, "DateStyle": 2, "application_name": 3}


def isolation_worker(i, barrier, mismatches, observed, counts):
    conn = connect(autocommit=True, prepare_threshold=0, application_name=f"startup_{i}")
    try:
        # statements only this connection prepares, so that its statement names map to
        # other texts than the other connections' same names
        for k in range(i + 1):
            conn.execute(f"SELECT %s::int AS only_thread_{i}_{k}", (k,)).fetchone()
        conn.execute(f"SET search_path TO iso_{i}, public")
        conn.execute(f"SET TimeZone TO '{ZONES[i]}'")
        conn.execute(f"SET DateStyle TO '{STYLES[i]}'")
        conn.execute(f"SET application_name TO 'client_{i}'")
        conn.execute(f"SET work_mem TO '{3000 + i}kB'")
        conn.execute(f"SET statement_timeout TO '{i + 1}min'")
        conn.execute("SELECT set_config('myapp.tenant', %s, false)", (f"tenant_{i}",))
        want = {
            "search_path": f"iso_{i}, public", "TimeZone": ZONES[i], "DateStyle": STYLES[i],
            "application_name": f"client_{i}", "work_mem": f"{3000 + i}kB",
            "statement_timeout": f"{i + 1}min", "myapp.tenant": f"tenant_{i}", "whoami": i,
        }

        def check(phase, where, expect):
            row = conn.execute(CHECK).fetchone()
            counts[i] += 1
            got = dict(zip(CHECK_NAMES, row))
            for name, value in expect.items():
                if got[name] != value:
                    mismatches.append(f"client {i} {phase} {where}: {name} is {got[name]!r}, not {value!r}")
            for name in REPORTED:
                reported = conn.info.parameter_status(name)
                if isinstance(reported, bytes):
                    reported = reported.decode()
                if reported != got[name]:
                    mismatches.append(
                        f"client {i} {phase} {where}: ParameterStatus {name} is {reported!r}, "
                        f"the server says {got[name]!r}"
                    )
            observed[i].setdefault(phase, set()).add(tuple(str(v) for v in row))

        barrier.wait()
        for phase in ("first", "second"):
            for r in range(ROUNDS):
                check(phase, f"round {r}", want)
                with conn.transaction():
                    conn.execute("SET LOCAL work_mem TO '77MB'")
                    check(phase, f"round {r} in a transaction", {**want, "work_mem": "77MB"})
                if r == 3:
                    # a session SET inside a rolled back transaction is undone
                    conn.execute("BEGIN")
                    conn.execute("SET TimeZone TO 'Asia/Tokyo'")
                    conn.execute("SET application_name TO 'rolled back'")
                    conn.execute("ROLLBACK")
                if r == 6:
                    # a session SET inside a committed transaction stays
                    with conn.transaction():
                        conn.execute(f"SET work_mem TO '{5000 + i}kB'")
                    want["work_mem"] = f"{5000 + i}kB"
                check(phase, f"round {r} after", want)
            barrier.wait()
            if phase == "first":
                conn.execute(f"SET TimeZone TO '{ZONES[(i + 1) % THREADS]}'")
                conn.execute("RESET application_name")
                conn.execute("RESET search_path")
                conn.execute("RESET statement_timeout")
                conn.execute("SELECT set_config('myapp.tenant', %s, false)", (f"renamed_{i}",))
                want.update({
                    "TimeZone": ZONES[(i + 1) % THREADS], "application_name": f"startup_{i}",
                    "search_path": '"$user", public', "statement_timeout": "0", "whoami": -1,
                    "myapp.tenant": f"renamed_{i}",
                })
                barrier.wait()
    finally:
        conn.close()


def session_isolation():
    with connect(autocommit=True) as conn:
        conn.execute("CREATE TABLE public.whoami (v int)")
        conn.execute("INSERT INTO public.whoami VALUES (-1)")
        for i in range(THREADS):
            conn.execute(f"CREATE SCHEMA iso_{i}")
            conn.execute(f"CREATE TABLE iso_{i}.whoami (v int)")
            conn.execute(f"INSERT INTO iso_{i}.whoami VALUES ({i})")
    barrier = threading.Barrier(THREADS, timeout=120)
    mismatches, errors = [], []
    observed = [dict() for _ in range(THREADS)]
    counts = [0] * THREADS

    def run(i):
        try:
            isolation_worker(i, barrier, mismatches, observed, counts)
        except BaseException as e:  # noqa: BLE001
            errors.append(f"client {i}: {describe(e)}")
            barrier.abort()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors or mismatches:
        FAILED.append("session_isolation")
    return {
        "errors": sorted(errors),
        "mismatches": summarize(mismatches),
        "checks": sum(counts),
        "observed": [
            {phase: sorted(rows) for phase, rows in sorted(obs.items())} for obs in observed
        ],
    }


# --- the smallest cases of what session_isolation checks ------------------------------------


def prepared_set():
    """A SET that psycopg prepares (prepare_threshold=0: Parse + Sync, then Bind + Execute
    + Sync) changes only its own connection's session, like any other SET."""
    rounds = []
    with connect(autocommit=True, prepare_threshold=0) as a, connect(autocommit=True, prepare_threshold=0) as b:
        a.execute("SET work_mem TO '3000kB'")
        a.execute("SET search_path TO pq_nowhere, public")
        for r in range(4):
            row = []
            for conn in (b, a, b, a):
                row.append(list(conn.execute(
                    "SELECT current_setting('work_mem'), current_setting('search_path')").fetchone()))
            rounds.append(row)
    return rounds


def reset_to_startup_settings():
    """RESET and RESET ALL go back to what the connection asked for at startup
    (application_name, options=-c ...), not to the server's defaults."""
    out = {}
    with connect(autocommit=True, application_name="pq_startup",
                 options="-c work_mem=3000kB -c search_path=pq_startup,public") as conn:
        def now():
            row = conn.execute("SELECT current_setting('application_name'), current_setting('work_mem'), "
                               "current_setting('search_path')").fetchone()
            reported = conn.info.parameter_status("application_name")
            return list(row) + [reported.decode() if isinstance(reported, bytes) else reported]

        out["at startup"] = now()
        conn.execute("SET application_name TO 'changed'")
        conn.execute("SET work_mem TO '5MB'")
        conn.execute("SET search_path TO public")
        out["after SET"] = now()
        conn.execute("RESET application_name")
        conn.execute("RESET work_mem")
        out["after RESET"] = now()
        conn.execute("SET application_name TO 'changed again'")
        conn.execute("SET work_mem TO '6MB'")
        conn.execute("RESET ALL")
        out["after RESET ALL"] = now()
    return out


record("prepared_every_query", prepared_every_query)
record("type_round_trips", type_round_trips)
record("pipeline_mode", pipeline_mode)
record("copy_in_out", copy_in_out)
record("server_side_cursors", server_side_cursors)
record("session_isolation", session_isolation)
record("prepared_set", prepared_set)
record("reset_to_startup_settings", reset_to_startup_settings)
finish()
