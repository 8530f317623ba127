#!/usr/bin/env python3
"""asyncpg scenarios: a pool of 50 connections running 1000 transactions that reuse the
same prepared statements (statement cache on), executemany, COPY (records, query, table),
type codecs (numeric, timestamptz, jsonb, arrays, uuid, a 1 MB bytea), transactions and
savepoints with failures, a cached statement invalidated by a schema change, and session
settings that stay with their connection while many connections share few servers.

Usage: asyncpg_suite.py HOST PORT USER PASSWORD DBNAME (a fresh, empty database).
Prints one deterministic JSON document; see suite_common.py.
"""

import asyncio
import datetime as dt
import hashlib
import io
import json
import uuid
from decimal import Decimal

import asyncpg

from suite_common import DBNAME, FAILED, HOST, PASSWORD, PORT, USER, describe, finish, record, summarize

CONNECT = dict(host=HOST, port=PORT, user=USER, password=PASSWORD, database=DBNAME, ssl=False)


async def connect(**kwargs):
    return await asyncpg.connect(**CONNECT, **kwargs)


def run(coro_fn):
    return lambda: asyncio.run(asyncio.wait_for(coro_fn(), timeout=240))


# --- 50 connections, 1000 transactions, the same prepared statements ---------------------


async def pool_transactions():
    conn = await connect()
    await conn.execute("CREATE TABLE ap_counters (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0)")
    await conn.execute("INSERT INTO ap_counters (id) SELECT g FROM generate_series(1, 50) g")
    await conn.execute("CREATE TABLE ap_events (tx int PRIMARY KEY, counter int, doubled bigint, label text)")
    await conn.close()

    # statement_cache_size: asyncpg's default, written out: the cache is what is tested
    pool = await asyncpg.create_pool(min_size=50, max_size=50, statement_cache_size=100, **CONNECT)
    try:
        async def transaction(k):
            async with pool.acquire() as c:
                async with c.transaction():
                    row = await c.fetchrow("SELECT $1::int * 2 AS doubled, $2::text AS label", k, f"tx {k}")
                    update = await c.prepare("UPDATE ap_counters SET n = n + $1 WHERE id = $2 RETURNING n")
                    n = await update.fetchval(k, k % 50 + 1)
                    await c.execute(
                        "INSERT INTO ap_events VALUES ($1, $2, $3, $4)", k, k % 50 + 1, row["doubled"], row["label"]
                    )
                    positive = await c.fetchval("SELECT count(*) FROM ap_counters WHERE id = $1 AND n >= $2", k % 50 + 1, k)
                    return row["doubled"], n >= k, positive

        results = await asyncio.gather(*(transaction(k) for k in range(1000)))
        async with pool.acquire() as c:
            counters = await c.fetch("SELECT id, n FROM ap_counters ORDER BY id")
            events = await c.fetchrow("SELECT count(*), sum(doubled), count(DISTINCT label) FROM ap_events")
            ids = await c.fetchval("SELECT count(*) FROM ap_events e JOIN ap_counters c ON c.id = e.counter")
    finally:
        await pool.close()
    return {
        "transactions": len(results),
        "sum doubled": sum(r[0] for r in results),
        "counter never went back": all(r[1] for r in results),
        "saw own row": sum(r[2] for r in results),
        "counters": [[r["id"], r["n"]] for r in counters],
        "events": list(events),
        "joined": ids,
    }


# --- COPY ------------------------------------------------------------------------------------


def copy_record(i):
    return (
        i,
        f"name {i}",
        Decimal(i) / Decimal(8),
        dt.datetime(2021, 6, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=i * 37),
        [i, i + 1, None] if i % 13 == 0 else [i, i + 1],
        json.dumps({"i": i, "even": i % 2 == 0}),
        uuid.UUID(int=i),
        bytes([i % 256]) * (i % 17),
    )


async def copy_scenarios():
    out = {}
    conn = await connect()
    try:
        await conn.execute(
            "CREATE TABLE ap_copy (id int PRIMARY KEY, name text, amount numeric(18,4), at timestamptz, "
            "nums int[], doc jsonb, u uuid, data bytea)"
        )
        records = [copy_record(i) for i in range(1, 5001)]
        status = await conn.copy_records_to_table(
            "ap_copy", records=records, columns=["id", "name", "amount", "at", "nums", "doc", "u", "data"]
        )
        out["copy_records_to_table"] = status
        out["check"] = list(
            await conn.fetchrow(
                "SELECT count(*), sum(amount)::text, sum(array_length(nums, 1)), count(*) FILTER (WHERE (doc->>'even')::bool), "
                "md5(string_agg(u::text || encode(data, 'hex'), ',' ORDER BY id)) FROM ap_copy"
            )
        )

        buf = io.BytesIO()
        status = await conn.copy_from_query(
            "SELECT id, name, amount, nums, u FROM ap_copy WHERE id % $1 = 0 ORDER BY id", 7, output=buf, format="csv"
        )
        out["copy_from_query"] = [status, hashlib.sha256(buf.getvalue()).hexdigest(), buf.getvalue().count(b"\n")]

        buf = io.BytesIO()
        status = await conn.copy_from_table("ap_copy", columns=["id", "name"], output=buf, format="text")
        lines = sorted(buf.getvalue().decode().splitlines(), key=lambda line: int(line.split("\t")[0]))
        out["copy_from_table"] = [status, hashlib.sha256("\n".join(lines).encode()).hexdigest()]

        await conn.execute("CREATE TABLE ap_copy_in (id int, name text, amount numeric)")
        source = "".join(f"{i},\"name, {i}\",{i}.5\n" for i in range(3000)).encode()
        status = await conn.copy_to_table("ap_copy_in", source=io.BytesIO(source), format="csv")
        out["copy_to_table"] = [status, list(await conn.fetchrow("SELECT count(*), sum(amount)::text, max(name) FROM ap_copy_in"))]

        # inside a transaction that then fails: the copied rows go too
        try:
            async with conn.transaction():
                await conn.copy_records_to_table("ap_copy_in", records=[(9001, "in tx", Decimal(1))])
                await conn.execute("SELECT 1 / 0")
        except asyncpg.PostgresError as e:
            out["copy then failure"] = describe(e)
        out["rows after failure"] = await conn.fetchval("SELECT count(*) FROM ap_copy_in WHERE id = 9001")

        try:
            await conn.copy_records_to_table("ap_copy", records=[(1, "duplicate", None, None, None, None, None, None)])
        except asyncpg.PostgresError as e:
            out["duplicate key"] = describe(e)
        out["after duplicate"] = await conn.fetchval("SELECT count(*) FROM ap_copy")
    finally:
        await conn.close()
    return out


# --- types ---------------------------------------------------------------------------------


async def type_codecs():
    out = {}
    conn = await connect()
    try:
        await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
        await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
        numeric = Decimal("-98765432109876543210.0123456789012345678901234567890123")
        ts = dt.datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=dt.timezone(dt.timedelta(hours=-3, minutes=-30)))
        doc = {"a": [1, 2, {"b": None}], "snow": "\u2603", "nested": {"x": 1.25, "y": [True, False]}}
        ints = [[1, 2, 3], [4, None, 6]]
        texts = ["plain", None, "comma,inside", 'quote"inside', "", "NULL", "back\\slash"]
        u = uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
        blob = bytes(range(256)) * 4096  # 1 MiB

        row = await conn.fetchrow(
            "SELECT $1::numeric AS n, $2::timestamptz AS ts, $3::jsonb AS doc, $4::int[] AS ints, "
            "$5::text[] AS texts, $6::uuid AS u, $7::bytea AS blob, $8::json AS j",
            numeric, ts, doc, ints, texts, u, blob, doc,
        )
        out["round trip equal"] = {
            "numeric": row["n"] == numeric,
            "timestamptz": row["ts"] == ts,
            "jsonb": row["doc"] == doc,
            "json": row["j"] == doc,
            "int[]": row["ints"] == ints,
            "text[]": row["texts"] == texts,
            "uuid": row["u"] == u,
            "bytea": row["blob"] == blob,
        }
        out["timestamptz utc"] = row["ts"].astimezone(dt.timezone.utc).isoformat()
        out["server side"] = list(
            await conn.fetchrow(
                "SELECT ($1::numeric * 2)::text, $2::timestamptz AT TIME ZONE 'UTC', $3::jsonb -> 'nested' ->> 'x', "
                "array_dims($4::int[]), array_length($5::text[], 1), $6::uuid::text, length($7::bytea), md5($7::bytea)",
                numeric, ts, doc, ints, texts, u, blob,
            )
        )
        # the same statement again, from the statement cache, with other values
        row = await conn.fetchrow(
            "SELECT $1::numeric AS n, $2::timestamptz AS ts, $3::jsonb AS doc, $4::int[] AS ints, "
            "$5::text[] AS texts, $6::uuid AS u, $7::bytea AS blob, $8::json AS j",
            Decimal("0.1"), None, [], [], [], None, b"", None,
        )
        out["second use"] = [str(row["n"]), row["ts"], row["doc"], row["ints"], row["texts"], row["u"], row["blob"], row["j"]]
        await conn.execute("CREATE TABLE ap_types (id int PRIMARY KEY, n numeric, ts timestamptz, doc jsonb, ints int[], u uuid, b bytea)")
        await conn.executemany(
            "INSERT INTO ap_types VALUES ($1, $2, $3, $4, $5, $6, $7)",
            [(i, Decimal(i) / 3, ts + dt.timedelta(days=i), {"i": i}, [i] * (i % 4), uuid.UUID(int=i * 7), bytes([i]) * i) for i in range(200)],
        )
        out["stored"] = list(
            await conn.fetchrow(
                "SELECT count(*), sum(n)::text, max(ts) AT TIME ZONE 'UTC', sum((doc->>'i')::int), "
                "sum(coalesce(array_length(ints, 1), 0)), md5(string_agg(u::text, ',' ORDER BY id)), sum(length(b)) FROM ap_types"
            )
        )
    finally:
        await conn.close()
    return out


# --- executemany, transactions, savepoints, failures ------------------------------------------


async def transactions_and_failures():
    out = {}
    conn = await connect()
    try:
        await conn.execute("CREATE TABLE ap_many (id int PRIMARY KEY, v text NOT NULL)")
        await conn.executemany("INSERT INTO ap_many VALUES ($1, $2)", [(i, f"v{i}") for i in range(2000)])
        out["executemany"] = await conn.fetchval("SELECT count(*) FROM ap_many")

        try:
            await conn.executemany("INSERT INTO ap_many VALUES ($1, $2)", [(5000, "new"), (5001, "new"), (10, "duplicate")])
        except asyncpg.PostgresError as e:
            out["executemany with a duplicate"] = describe(e)
        out["after failed executemany"] = await conn.fetchval("SELECT count(*) FROM ap_many WHERE id >= 5000")

        try:
            async with conn.transaction():
                await conn.execute("INSERT INTO ap_many VALUES (6000, 'x')")
                await conn.execute("INSERT INTO ap_many VALUES (1, 'duplicate')")
        except asyncpg.UniqueViolationError as e:
            out["transaction"] = describe(e)
        out["rolled back"] = await conn.fetchval("SELECT count(*) FROM ap_many WHERE id = 6000")

        async with conn.transaction():
            await conn.execute("INSERT INTO ap_many VALUES (7000, 'kept')")
            try:
                async with conn.transaction():
                    await conn.execute("INSERT INTO ap_many VALUES (7001, 'lost')")
                    await conn.execute("SELECT 1 / 0")
            except asyncpg.DivisionByZeroError as e:
                out["savepoint"] = describe(e)
            await conn.execute("INSERT INTO ap_many VALUES (7002, 'kept too')")
        out["after savepoint"] = [r["id"] for r in await conn.fetch("SELECT id FROM ap_many WHERE id >= 7000 ORDER BY id")]

        tx = conn.transaction(isolation="repeatable_read", readonly=True)
        await tx.start()
        first = await conn.fetchval("SELECT count(*) FROM ap_many")
        other = await connect()
        await other.execute("INSERT INTO ap_many VALUES (8000, 'from another connection')")
        await other.close()
        second = await conn.fetchval("SELECT count(*) FROM ap_many")
        try:
            await conn.execute("INSERT INTO ap_many VALUES (8001, 'read only')")
        except asyncpg.PostgresError as e:
            out["read only"] = describe(e)
        await tx.rollback()
        out["repeatable read"] = [first == second, await conn.fetchval("SELECT count(*) FROM ap_many") - first]

        # a schema change invalidates cached statements; asyncpg re-prepares outside a transaction
        await conn.execute("CREATE TABLE ap_shape (a int)")
        await conn.execute("INSERT INTO ap_shape VALUES (1)")
        before = [await conn.fetch("SELECT * FROM ap_shape") for _ in range(3)]
        await conn.execute("ALTER TABLE ap_shape ADD COLUMN b text DEFAULT 'new'")
        after = await conn.fetch("SELECT * FROM ap_shape")
        out["schema change"] = [[dict(r) for r in before[-1]], [dict(r) for r in after]]
        try:
            async with conn.transaction():
                await conn.fetch("SELECT * FROM ap_shape")
                await conn.execute("ALTER TABLE ap_shape ALTER COLUMN a TYPE bigint")
                await conn.fetch("SELECT * FROM ap_shape")
            out["schema change in a transaction"] = "no error"
        except asyncpg.PostgresError as e:
            out["schema change in a transaction"] = type(e).__name__
        out["after"] = [dict(r) for r in await conn.fetch("SELECT * FROM ap_shape")]

        stmt = await conn.prepare("SELECT $1::int + $2::int")
        out["prepared reuse"] = sum([await stmt.fetchval(i, i) for i in range(100)])
        out["prepared attributes"] = [[a.name, a.type.name] for a in stmt.get_attributes()] + [
            t.name for t in stmt.get_parameters()
        ]
        cursor_rows = []
        async with conn.transaction():
            async for r in conn.cursor("SELECT g FROM generate_series(1, 1000) g", prefetch=100):
                cursor_rows.append(r["g"])
            cur = await conn.cursor("SELECT g FROM generate_series(1, 100) g")
            await cur.forward(10)
            part = await cur.fetch(5)
        out["cursors"] = [len(cursor_rows), sum(cursor_rows), [r["g"] for r in part]]
    finally:
        await conn.close()
    return out


# --- session settings stay with their connection -------------------------------------------

CONNS = 8
ZONES = ["UTC", "Asia/Kolkata", "America/New_York", "Europe/Berlin",
         "Australia/Adelaide", "Pacific/Chatham", "America/Sao_Paulo", "Asia/Tokyo"]
CHECK = (
    "SELECT current_setting('application_name') AS app, current_setting('search_path') AS path, "
    "current_setting('TimeZone') AS tz, current_setting('work_mem') AS work_mem, "
    "current_setting('myapp.tenant', true) AS tenant, (SELECT v FROM whoami) AS whoami, "
    "'2024-03-04 05:06:07+00'::timestamptz::text AS ts"
)


async def isolation_client(i, mismatches, observed):
    conn = await connect(
        server_settings={"application_name": f"ap_{i}", "search_path": f"apiso_{i}, public", "TimeZone": ZONES[i]}
    )
    try:
        for k in range(i + 1):  # statement names differ in meaning between connections
            await conn.fetchval(f"SELECT $1::int AS only_{i}_{k}", k)
        await conn.execute(f"SET work_mem TO '{3000 + i}kB'")
        await conn.execute(f"SET myapp.tenant TO 'tenant_{i}'")
        want = {"app": f"ap_{i}", "path": f"apiso_{i}, public", "tz": ZONES[i], "work_mem": f"{3000 + i}kB",
                "tenant": f"tenant_{i}", "whoami": i}

        async def check(where):
            row = dict(await conn.fetchrow(CHECK))
            for name, value in want.items():
                if row[name] != value:
                    mismatches.append(f"client {i} {where}: {name} is {row[name]!r}, not {value!r}")
            reported = conn.get_settings()
            for name, key in (("application_name", "app"), ("TimeZone", "tz")):
                if getattr(reported, name) != row[key]:
                    mismatches.append(f"client {i} {where}: ParameterStatus {name} is {getattr(reported, name)!r}, "
                                      f"the server says {row[key]!r}")
            observed[i].add(tuple(str(v) for v in row.values()))

        for r in range(15):
            await check(f"round {r}")
            async with conn.transaction():
                await conn.execute("SET LOCAL work_mem TO '77MB'")
                row = await conn.fetchrow(CHECK)
                if row["work_mem"] != "77MB":
                    mismatches.append(f"client {i} round {r}: SET LOCAL work_mem gave {row['work_mem']!r}")
            await asyncio.sleep(0)
            if r == 7:
                await conn.execute(f"SET TimeZone TO '{ZONES[(i + 3) % CONNS]}'")
                await conn.execute(f"SET search_path TO apiso_{(i + 1) % CONNS}, public")
                want.update({"tz": ZONES[(i + 3) % CONNS], "path": f"apiso_{(i + 1) % CONNS}, public",
                             "whoami": (i + 1) % CONNS})
            await check(f"round {r} after")
    finally:
        await conn.close()


async def create_whoami():
    """Tables `whoami` that tell which search_path a connection has (once per database)."""
    conn = await connect()
    try:
        if await conn.fetchval("SELECT to_regclass('public.whoami')") is None:
            await conn.execute("CREATE TABLE public.whoami (v int)")
            await conn.execute("INSERT INTO public.whoami VALUES (-1)")
            for i in range(CONNS):
                await conn.execute(f"CREATE SCHEMA apiso_{i}; CREATE TABLE apiso_{i}.whoami (v int); "
                                   f"INSERT INTO apiso_{i}.whoami VALUES ({i})")
    finally:
        await conn.close()


async def session_isolation():
    await create_whoami()
    mismatches = []
    observed = [set() for _ in range(CONNS)]
    results = await asyncio.gather(*(isolation_client(i, mismatches, observed) for i in range(CONNS)), return_exceptions=True)
    errors = [f"client {i}: {describe(r)}" for i, r in enumerate(results) if isinstance(r, BaseException)]
    if errors or mismatches:
        FAILED.append("session_isolation")
    return {
        "errors": errors,
        "mismatches": summarize(mismatches),
        "observed": [sorted(o) for o in observed],
    }


async def pool_reset_keeps_startup_settings():
    """asyncpg's pool runs RESET ALL when a connection is released; a connection's
    startup settings (server_settings) are its defaults and survive that."""
    await create_whoami()
    mismatches = []
    seen = await pooled_startup_settings(mismatches)
    if mismatches:
        FAILED.append("pool_reset_keeps_startup_settings")
    return {"mismatches": summarize(mismatches), "seen": seen}


async def pooled_startup_settings(mismatches):
    pools = [
        await asyncpg.create_pool(
            min_size=2, max_size=2, **CONNECT,
            server_settings={"application_name": f"pool_{p}", "search_path": f"apiso_{p}, public",
                             "TimeZone": ZONES[p + 4]},
        )
        for p in range(2)
    ]
    seen = set()
    try:
        async def use(p, k):
            async with pools[p].acquire() as c:
                if k % 3 == 0:
                    await c.execute("SET TimeZone TO 'Asia/Tokyo'")  # undone by the pool's reset
                row = await c.fetchrow("SELECT current_setting('application_name'), current_setting('search_path'), "
                                       "current_setting('TimeZone'), (SELECT v FROM whoami)")
                if k % 3 == 0:
                    return
                want = (f"pool_{p}", f"apiso_{p}, public", ZONES[p + 4], p)
                if tuple(row) != want:
                    mismatches.append(f"pool {p} use {k}: {tuple(row)} is not {want}")
                seen.add(tuple(str(v) for v in row))

        await asyncio.gather(*(use(k % 2, k) for k in range(60)))
    finally:
        for pool in pools:
            await pool.close()
    return sorted(seen)


record("pool_transactions", run(pool_transactions))
record("copy_scenarios", run(copy_scenarios))
record("type_codecs", run(type_codecs))
record("transactions_and_failures", run(transactions_and_failures))
record("session_isolation", run(session_isolation))
record("pool_reset_keeps_startup_settings", run(pool_reset_keeps_startup_settings))
finish()
