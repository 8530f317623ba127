//! The statement table: what each statement must classify as, by theme.

use super::{check, st};
use crate::sql::statement::AuditClass::{Ddl, Function, Misc, MiscSet, Read, Role, Write};
use crate::sql::statement::{Kind, Outside, SettingChange};

#[test]
fn queries_and_subqueries_in_every_clause() {
    check(&[
        ("SELECT * FROM alpha.orders WHERE id = $1", vec![st(Read, "SELECT").r(&["alpha.orders"])]),
        (
            r#"SELECT "Alpha"."Orders".id FROM "Alpha"."Orders" JOIN Alpha.Orders o ON true"#,
            vec![st(Read, "SELECT").r(&["Alpha.Orders", "alpha.orders"])],
        ),
        (
            "SELECT (SELECT 1 FROM a), b.x FROM b JOIN c ON c.id IN (SELECT id FROM d) \
             WHERE b.y > ALL (SELECT y FROM e) GROUP BY 1 HAVING count(*) > (SELECT 1 FROM f) \
             ORDER BY (SELECT 1 FROM g) LIMIT (SELECT 1 FROM h)",
            vec![st(Read, "SELECT").r(&["a", "b", "c", "d", "e", "f", "g", "h"]).f(&["count"])],
        ),
        ("SELECT * FROM a, LATERAL (SELECT * FROM b WHERE b.id = a.id) l", vec![st(Read, "SELECT").r(&["a", "b"])]),
        (
            "SELECT 1 FROM a WHERE EXISTS (SELECT 1 FROM b) AND id NOT IN (SELECT id FROM s.c)",
            vec![st(Read, "SELECT").r(&["a", "b", "s.c"])],
        ),
        ("SELECT lower((SELECT max(v) FROM t))", vec![st(Read, "SELECT").r(&["t"]).f(&["lower", "max"])]),
        ("VALUES (1, 'a'), (2, 'b')", vec![st(Read, "SELECT")]),
        ("TABLE alpha.orders", vec![st(Read, "SELECT").r(&["alpha.orders"])]),
        (r#"(TABLE a) UNION (TABLE "B")"#, vec![st(Read, "SELECT").r(&["a", "B"])]),
        ("SELECT * FROM t FOR UPDATE", vec![st(Read, "SELECT").r(&["t"])]),
        // sqlparser would read ONLY as a table name, and a keyword as a relation is not trusted.
        ("SELECT * FROM ONLY s.t JOIN u ON true", vec![st(Read, "SELECT").r(&["s.t", "u"])]),
        ("SELECT * FROM t ORDER BY a FETCH FIRST 5 ROWS ONLY", vec![st(Read, "SELECT").r(&["t"])]),
        ("SELECT * FROM current_date", vec![st(Read, "SELECT").r(&["current_date"]).unparsed()]),
        (
            "SELECT count(*) OVER (PARTITION BY a ORDER BY b), lower(x), sum(y) FILTER (WHERE y > 0) FROM t GROUP BY a",
            vec![st(Read, "SELECT").r(&["t"]).f(&["count", "lower", "sum"])],
        ),
        // Casts, operators and SQL keywords are not function calls.
        (
            "SELECT x::text, CAST(y AS int), CURRENT_TIMESTAMP, a || b, ARRAY(SELECT 1 FROM u), ROW(1, 2) FROM t",
            vec![st(Read, "SELECT").r(&["u", "t"])],
        ),
        (
            "SELECT * FROM generate_series(1, 10) g, unnest($1::int[]) u, json_to_recordset($2) AS j(a int, b text)",
            vec![st(Read, "SELECT").f(&["generate_series", "unnest", "json_to_recordset"])],
        ),
        (
            "SELECT lo_import('/etc/passwd'), pg_read_file('/etc/hosts'), dblink_exec('dbname=x', 'DROP TABLE t')",
            vec![st(Read, "SELECT").f(&["lo_import", "pg_read_file", "dblink_exec"])],
        ),
        (
            "SELECT * FROM dblink('dbname=x', 'SELECT secret FROM s') AS t(a text)",
            vec![st(Read, "SELECT").f(&["dblink"])],
        ),
    ]);
}

#[test]
fn common_table_expressions() {
    check(&[
        (
            "WITH recent AS (SELECT * FROM orders WHERE ts > now() - interval '1 day') SELECT * FROM recent",
            vec![st(Read, "SELECT").r(&["orders"]).f(&["now"])],
        ),
        // The CTE shadows the table inside its query; its own body still reads the table.
        (
            "WITH orders AS (SELECT * FROM archive.orders) SELECT * FROM orders",
            vec![st(Read, "SELECT").r(&["archive.orders"])],
        ),
        ("WITH t AS (SELECT * FROM t) SELECT * FROM t", vec![st(Read, "SELECT").r(&["t"])]),
        (
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT * FROM r",
            vec![st(Read, "SELECT")],
        ),
        // Without RECURSIVE a CTE sees only the earlier ones: `b` inside `a` is the table.
        ("WITH a AS (SELECT * FROM b), b AS (SELECT * FROM a) SELECT * FROM b", vec![st(Read, "SELECT").r(&["b"])]),
        (
            "WITH x AS (SELECT 1) SELECT * FROM (WITH y AS (SELECT * FROM x) SELECT * FROM y, z) q",
            vec![st(Read, "SELECT").r(&["z"])],
        ),
        // A CTE name means nothing outside its query.
        ("SELECT * FROM (WITH t AS (SELECT 1) SELECT * FROM t) a, t", vec![st(Read, "SELECT").r(&["t"])]),
        (
            "WITH d AS (DELETE FROM queue WHERE id = 1 RETURNING *) SELECT * FROM d",
            vec![st(Write, "SELECT").w("queue")],
        ),
        (
            "WITH moved AS (DELETE FROM a RETURNING *) INSERT INTO b SELECT * FROM moved",
            vec![st(Write, "INSERT").w("a").w("b")],
        ),
        // DML targets are tables even where a CTE has the name.
        ("WITH x AS (SELECT 1) INSERT INTO x SELECT * FROM x", vec![st(Write, "INSERT").w("x")]),
        ("WITH x AS (SELECT 1) TABLE x", vec![st(Read, "SELECT")]),
    ]);
}

#[test]
fn data_modification() {
    check(&[
        ("INSERT INTO t SELECT * FROM s", vec![st(Write, "INSERT").w("t").r(&["s"])]),
        (
            "INSERT INTO t (a) VALUES ((SELECT x FROM s)) ON CONFLICT (a) DO UPDATE SET a = (SELECT y FROM u)",
            vec![st(Write, "INSERT").w("t").r(&["s", "u"])],
        ),
        (
            "UPDATE t SET a = (SELECT max(b) FROM s) FROM u WHERE t.id = u.id AND EXISTS (SELECT 1 FROM v) \
             RETURNING (SELECT 1 FROM w)",
            vec![st(Write, "UPDATE").w("t").r(&["s", "u", "v", "w"]).f(&["max"])],
        ),
        ("DELETE FROM t USING s WHERE t.id = s.id", vec![st(Write, "DELETE").w("t").r(&["s"])]),
        (
            "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = s.v \
             WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.v)",
            vec![st(Write, "MERGE").w("t").r(&["s"])],
        ),
        ("TRUNCATE a, b.c", vec![st(Write, "TRUNCATE TABLE").w("a").w("b.c")]),
        ("UPDATE ONLY t SET a = 1; DELETE FROM ONLY u", vec![st(Write, "UPDATE").w("t"), st(Write, "DELETE").w("u")]),
        ("SELECT * INTO TEMP newt FROM t", vec![st(Ddl, "SELECT INTO").d("newt").r(&["t"])]),
    ]);
}

#[test]
fn definitions() {
    check(&[
        ("CREATE TABLE x AS SELECT * FROM t", vec![st(Ddl, "CREATE TABLE AS").d("x").r(&["t"])]),
        (
            "CREATE TABLE t (id int DEFAULT nextval('s'), r int REFERENCES other(id), CHECK (id > abs(r)))",
            vec![st(Ddl, "CREATE TABLE").d("t").r(&["other"]).f(&["nextval", "abs"])],
        ),
        ("CREATE VIEW v AS SELECT a FROM t", vec![st(Ddl, "CREATE VIEW").d("v").r(&["t"])]),
        ("CREATE TABLE c (LIKE s.p INCLUDING DEFAULTS)", vec![st(Ddl, "CREATE TABLE").d("c").r(&["s.p"])]),
        ("CREATE TABLE c (a int) INHERITS (q)", vec![st(Ddl, "CREATE TABLE").d("c").r(&["q"])]),
        ("CREATE VIEW v AS TABLE t", vec![st(Ddl, "CREATE VIEW").d("v").r(&["t"])]),
        ("CREATE MATERIALIZED VIEW mv AS SELECT 1", vec![st(Ddl, "CREATE MATERIALIZED VIEW").d("mv")]),
        ("CREATE UNIQUE INDEX i ON s.t (lower(a))", vec![st(Ddl, "CREATE INDEX").d("s.t").f(&["lower"])]),
        ("DROP TABLE IF EXISTS a, b CASCADE", vec![st(Ddl, "DROP TABLE").d("a").d("b")]),
        ("ALTER TABLE t ADD COLUMN IF NOT EXISTS x int", vec![st(Ddl, "ALTER TABLE").d("t")]),
        ("ALTER TABLE g.\"DIRECTED\" CLUSTER ON directed_sid_idx", vec![st(Ddl, "ALTER TABLE").d("g.DIRECTED")]),
        ("CREATE EXTENSION IF NOT EXISTS vector", vec![st(Ddl, "CREATE EXTENSION")]),
        ("CREATE SCHEMA alpha", vec![st(Ddl, "CREATE SCHEMA")]),
        ("COMMENT ON COLUMN alpha.t.c IS 'x'", vec![st(Ddl, "COMMENT").d("alpha.t")]),
        ("ALTER SYSTEM SET work_mem = '1GB'", vec![st(Ddl, "ALTER SYSTEM").unparsed()]),
        ("CLUSTER t USING i", vec![st(Ddl, "CLUSTER").unparsed()]),
        ("REFRESH MATERIALIZED VIEW CONCURRENTLY mv", vec![st(Ddl, "REFRESH MATERIALIZED VIEW").unparsed()]),
    ]);
}

#[test]
fn copy() {
    check(&[
        ("COPY t TO STDOUT", vec![st(Read, "COPY").r(&["t"])]),
        ("COPY s.t (a, b) FROM STDIN", vec![st(Write, "COPY").w("s.t")]),
        ("COPY (SELECT * FROM t JOIN u USING (id)) TO STDOUT WITH (FORMAT csv)", vec![st(Read, "COPY").r(&["t", "u"])]),
        ("COPY t TO PROGRAM 'gzip > /tmp/t.gz'", vec![st(Read, "COPY").r(&["t"]).out(Outside::CopyProgram)]),
        ("COPY t FROM PROGRAM 'curl http://x'", vec![st(Write, "COPY").w("t").out(Outside::CopyProgram)]),
        ("COPY t FROM '/etc/passwd'", vec![st(Write, "COPY").w("t").out(Outside::CopyFile)]),
        ("COPY (SELECT 1) TO '/tmp/x.csv'", vec![st(Read, "COPY").out(Outside::CopyFile)]),
        ("COPY (DELETE FROM t RETURNING *) TO STDOUT", vec![st(Write, "COPY").w("t")]),
    ]);
}

#[test]
fn explain_prepare_execute_call_do() {
    check(&[
        ("EXPLAIN ANALYZE DELETE FROM t WHERE id = 1", vec![st(Write, "EXPLAIN").w("t")]),
        ("EXPLAIN SELECT * FROM t", vec![st(Read, "EXPLAIN").r(&["t"])]),
        ("EXPLAIN (ANALYZE, BUFFERS) UPDATE t SET a = 1", vec![st(Write, "EXPLAIN").w("t")]),
        (
            "PREPARE p (int) AS SELECT * FROM t WHERE id = $1",
            vec![st(Read, "PREPARE").kind(Kind::Prepare { name: "p".into() }).r(&["t"])],
        ),
        (
            "PREPARE Ins AS INSERT INTO t VALUES ($1)",
            vec![st(Write, "PREPARE").kind(Kind::Prepare { name: "ins".into() }).w("t")],
        ),
        ("EXECUTE p(1)", vec![st(Misc, "EXECUTE").kind(Kind::Execute { name: "p".into() })]),
        ("DEALLOCATE p", vec![st(Misc, "DEALLOCATE").kind(Kind::Harmless)]),
        ("DEALLOCATE ALL", vec![st(Misc, "DEALLOCATE ALL").kind(Kind::Harmless)]),
        ("CALL app.refresh((SELECT max(id) FROM t))", vec![st(Function, "CALL").f(&["app.refresh", "max"]).r(&["t"])]),
        ("DO $$ BEGIN DELETE FROM t; END $$", vec![st(Function, "DO")]),
        ("DO LANGUAGE plpgsql $body$ BEGIN PERFORM 1; END $body$", vec![st(Function, "DO")]),
    ]);
}

#[test]
fn transactions_and_harmless_commands() {
    let tx = |command| st(Misc, command).kind(Kind::Transaction);
    let harmless = |command| st(Misc, command).kind(Kind::Harmless);
    check(&[
        (
            "BEGIN; SET LOCAL search_path = alpha, public; SELECT * FROM orders; COMMIT",
            vec![
                tx("BEGIN"),
                st(MiscSet, "SET").set("search_path", Some("alpha, public"), true),
                st(Read, "SELECT").r(&["orders"]),
                tx("COMMIT"),
            ],
        ),
        ("BEGIN READ WRITE", vec![tx("BEGIN").change(SettingChange::ReadWrite)]),
        (
            "START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE",
            vec![tx("START TRANSACTION").change(SettingChange::ReadWrite)],
        ),
        // psycopg separates the modes with spaces, which sqlparser does not take.
        ("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY DEFERRABLE", vec![tx("BEGIN")]),
        (
            "START TRANSACTION READ WRITE, ISOLATION LEVEL SERIALIZABLE",
            vec![tx("START TRANSACTION").change(SettingChange::ReadWrite)],
        ),
        (
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE READ WRITE",
            vec![st(MiscSet, "SET").change(SettingChange::ReadWrite)],
        ),
        ("SAVEPOINT a; ROLLBACK TO SAVEPOINT a; RELEASE a", vec![tx("SAVEPOINT"), tx("ROLLBACK"), tx("RELEASE")]),
        ("ABORT; END", vec![tx("ROLLBACK"), tx("COMMIT")]),
        ("PREPARE TRANSACTION 'tx1'; COMMIT PREPARED 'tx1'", vec![tx("PREPARE TRANSACTION"), tx("COMMIT PREPARED")]),
        ("SHOW search_path", vec![harmless("SHOW")]),
        ("DISCARD ALL", vec![harmless("DISCARD ALL").change(SettingChange::ResetAll)]),
        ("DISCARD PLANS", vec![harmless("DISCARD PLANS")]),
        ("CLOSE c; CLOSE ALL", vec![harmless("CLOSE CURSOR"), harmless("CLOSE CURSOR ALL")]),
        ("FETCH 10 FROM c", vec![st(Misc, "FETCH")]),
        ("DECLARE c CURSOR WITH HOLD FOR SELECT * FROM t", vec![st(Read, "DECLARE CURSOR").r(&["t"])]),
    ]);
}

#[test]
fn settings() {
    let set = || st(MiscSet, "SET");
    check(&[
        ("SET search_path = alpha, public", vec![set().set("search_path", Some("alpha, public"), false)]),
        (
            r#"SET SESSION search_path = ag_catalog, "$user", "Beta", public"#,
            vec![set().set("search_path", Some(r#"ag_catalog, "$user", "Beta", public"#), false)],
        ),
        ("SET LOCAL statement_timeout = '5s'", vec![set().set("statement_timeout", Some("5s"), true)]),
        ("SET Application_Name TO 'My App'", vec![set().set("application_name", Some("My App"), false)]),
        ("SET myapp.Tenant = alpha", vec![set().set("myapp.tenant", Some("alpha"), false)]),
        (
            "SET default_transaction_read_only = off",
            vec![set().set("default_transaction_read_only", Some("off"), false)],
        ),
        ("SET search_path TO DEFAULT", vec![set().reset("search_path")]),
        ("RESET search_path", vec![st(MiscSet, "RESET").reset("search_path")]),
        ("RESET ALL", vec![st(MiscSet, "RESET").change(SettingChange::ResetAll)]),
        ("SET TIME ZONE 'UTC'", vec![set().set("timezone", Some("UTC"), false)]),
        ("SET NAMES 'UTF8'", vec![set().set("client_encoding", Some("UTF8"), false)]),
        ("SET ROLE admin", vec![set().change(SettingChange::Identity)]),
        ("SET LOCAL ROLE admin", vec![set().change(SettingChange::Identity)]),
        ("SET SESSION AUTHORIZATION 'bob'", vec![set().change(SettingChange::Identity)]),
        ("RESET ROLE", vec![st(MiscSet, "RESET").change(SettingChange::Identity)]),
        ("RESET SESSION AUTHORIZATION", vec![st(MiscSet, "RESET").change(SettingChange::Identity)]),
        ("SET TRANSACTION READ WRITE", vec![set().change(SettingChange::ReadWrite)]),
        ("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE", vec![set().change(SettingChange::ReadWrite)]),
        (
            "SELECT set_config('app.tenant', 'alpha', false)",
            vec![st(Read, "SELECT").f(&["set_config"]).set("app.tenant", Some("alpha"), false)],
        ),
        (
            "SELECT pg_catalog.set_config($1, $2, true)",
            vec![st(Read, "SELECT").f(&["pg_catalog.set_config"]).change(SettingChange::Unknown)],
        ),
        (
            "SELECT set_config('search_path', $1, $2)",
            vec![st(Read, "SELECT").f(&["set_config"]).set("search_path", None, false)],
        ),
        (
            "SELECT * FROM set_config('search_path', 'evil', false)",
            vec![st(Read, "SELECT").f(&["set_config"]).set("search_path", Some("evil"), false)],
        ),
        (
            "UPDATE t SET a = set_config('x.y', 'z', 'on')",
            vec![st(Write, "UPDATE").w("t").f(&["set_config"]).set("x.y", Some("z"), true)],
        ),
    ]);
}

#[test]
fn roles_and_privileges() {
    check(&[
        ("GRANT SELECT ON alpha.orders TO bob", vec![st(Role, "GRANT").d("alpha.orders")]),
        ("GRANT ALL ON ALL TABLES IN SCHEMA beta TO bob", vec![st(Role, "GRANT").d("beta.*")]),
        ("REVOKE INSERT ON t FROM bob", vec![st(Role, "REVOKE").d("t")]),
        ("GRANT admin TO bob WITH ADMIN OPTION", vec![st(Role, "GRANT ROLE")]),
        ("REVOKE admin FROM bob", vec![st(Role, "REVOKE ROLE")]),
        ("CREATE ROLE app LOGIN PASSWORD 'secret'", vec![st(Role, "CREATE ROLE")]),
        ("CREATE GROUP readers", vec![st(Role, "CREATE ROLE")]),
        (
            "CREATE USER MAPPING FOR bob SERVER s OPTIONS (password 'x')",
            vec![st(Role, "CREATE USER MAPPING").unparsed()],
        ),
        ("CREATE USER bob WITH PASSWORD 'pw'", vec![st(Role, "CREATE ROLE")]),
        ("ALTER ROLE app WITH PASSWORD 'new'", vec![st(Role, "ALTER ROLE")]),
        ("ALTER USER app PASSWORD 'x'", vec![st(Role, "ALTER ROLE")]),
        ("ALTER ROLE bob SET search_path TO a, b", vec![st(Role, "ALTER ROLE")]),
        ("DROP ROLE IF EXISTS app", vec![st(Role, "DROP ROLE")]),
        (
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO app",
            vec![st(Role, "ALTER DEFAULT PRIVILEGES").unparsed()],
        ),
    ]);
}

#[test]
fn maintenance_and_notifications() {
    check(&[
        (
            "LISTEN jobs; NOTIFY jobs, 'x'; UNLISTEN *",
            vec![st(Misc, "LISTEN"), st(Misc, "NOTIFY"), st(Misc, "UNLISTEN")],
        ),
        ("LOAD 'age'", vec![st(Misc, "LOAD")]),
        ("LOCK TABLE t IN ACCESS EXCLUSIVE MODE", vec![st(Misc, "LOCK TABLE").w("t")]),
        ("VACUUM t", vec![st(Misc, "VACUUM").w("t")]),
        ("VACUUM (FULL) t", vec![st(Misc, "VACUUM").w("t")]),
        ("VACUUM ANALYZE t", vec![st(Misc, "VACUUM").w("t")]),
        ("vacuum (verbose, parallel 2) s.a (x, y), b", vec![st(Misc, "VACUUM").w("s.a").w("b")]),
        ("ANALYZE VERBOSE pgbench_accounts", vec![st(Misc, "ANALYZE").w("pgbench_accounts")]),
        ("VACUUM (FULL) (SELECT 1)", vec![st(Misc, "VACUUM").unparsed()]),
        ("ANALYZE t", vec![st(Misc, "ANALYZE").w("t")]),
        ("CHECKPOINT", vec![st(Misc, "CHECKPOINT")]),
        ("REINDEX TABLE t", vec![st(Misc, "REINDEX").unparsed()]),
    ]);
}

#[test]
fn comments_quotes_and_statement_splitting() {
    check(&[
        ("", vec![]),
        (" ;; -- only a comment\n", vec![]),
        ("SELECT 1 /* ; DELETE FROM t */", vec![st(Read, "SELECT")]),
        ("SELECT 1 /* nested /* ; */ DELETE FROM t; */", vec![st(Read, "SELECT")]),
        ("SELECT $$; DROP TABLE x$$", vec![st(Read, "SELECT")]),
        ("SELECT $tag$ $$; DROP TABLE x $tag$ FROM t", vec![st(Read, "SELECT").r(&["t"])]),
        (
            "SELECT 'a;b' AS \"c;d\"; -- DROP TABLE x;\nSELECT E'\\';' FROM u",
            vec![st(Read, "SELECT"), st(Read, "SELECT").r(&["u"])],
        ),
        // One statement sqlparser rejects leaves its neighbours parsed.
        (
            "SELECT 1; VACUUM (FULL) t; SELECT * FROM u",
            vec![st(Read, "SELECT"), st(Misc, "VACUUM").w("t"), st(Read, "SELECT").r(&["u"])],
        ),
        (r#"SELECT * FROM U&"d\0061t\+000061""#, vec![st(Read, "SELECT").unparsed()]),
        // Semicolons inside parentheses (CREATE RULE) or a BEGIN ATOMIC body end no statement.
        (
            "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); DELETE FROM b); SELECT 1",
            vec![st(Ddl, "CREATE RULE").unparsed(), st(Read, "SELECT")],
        ),
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; \
             DELETE FROM t; END; SELECT 2",
            vec![st(Ddl, "CREATE FUNCTION").unparsed(), st(Read, "SELECT")],
        ),
        ("DELETE FROM t WHERE x <+> y < 1", vec![st(Write, "DELETE").unparsed()]),
        ("COPY t TO PROGRAM 'x' WITH (FORMAT x <+> y)", vec![st(Read, "COPY").out(Outside::CopyProgram).unparsed()]),
        ("COPY BINARY t FROM '/etc/passwd'", vec![st(Write, "COPY").w("t").out(Outside::CopyFile)]),
        ("SET x = 1 <+> 2", vec![st(MiscSet, "SET").set("x", None, false).unparsed()]),
        ("FROBNICATE ALL THE THINGS", vec![st(Ddl, "FROBNICATE").unparsed()]),
    ]);
}

#[test]
fn extensions_postgis_pgvector_jsonb() {
    check(&[
        (
            "SELECT id FROM places WHERE ST_DWithin(geom, ST_SetSRID(ST_MakePoint($1, $2), 4326), 1000)",
            vec![st(Read, "SELECT").r(&["places"]).f(&["st_dwithin", "st_setsrid", "st_makepoint"])],
        ),
        (
            "SELECT * FROM roads WHERE geom && ST_MakeEnvelope($1, $2, $3, $4, 4326)",
            vec![st(Read, "SELECT").r(&["roads"]).f(&["st_makeenvelope"])],
        ),
        ("SELECT id FROM items ORDER BY embedding <-> '[1,2,3]' LIMIT 5", vec![st(Read, "SELECT").r(&["items"])]),
        (
            "SELECT id, 1 - (embedding <=> $1::vector) AS score FROM items WHERE embedding <#> $1 < -0.5",
            vec![st(Read, "SELECT").r(&["items"])],
        ),
        // pgvector's L1 distance is beyond sqlparser 0.63.
        ("SELECT id FROM items ORDER BY embedding <+> $1 LIMIT 5", vec![st(Read, "SELECT").unparsed()]),
        (
            "SELECT doc ->> 'title' FROM docs WHERE doc @> '{\"a\": 1}' AND doc ? 'b' AND doc #>> '{c,d}' = 'e'",
            vec![st(Read, "SELECT").r(&["docs"])],
        ),
        ("SELECT * FROM cypher('g', $$ MATCH (n) RETURN n $$) AS (n agtype)", vec![st(Read, "SELECT").f(&["cypher"])]),
        (
            "SELECT * FROM f(1) AS (a int, b numeric(10, 2), c timestamp with time zone, d text[]) WHERE x IN (SELECT y FROM s)",
            vec![st(Read, "SELECT").f(&["f"]).r(&["s"])],
        ),
        // Not a column definition list: left to the parser, which rejects it.
        ("SELECT * FROM f(1) AS (SELECT * FROM s)", vec![st(Read, "SELECT").unparsed()]),
    ]);
}

#[test]
fn what_drivers_send_that_sqlparser_lacks() {
    check(&[
        // pgbench -i, psycopg's COPY: options sqlparser does not know.
        ("copy pgbench_accounts from stdin with (freeze on)", vec![st(Write, "COPY").w("pgbench_accounts")]),
        ("COPY s.t (a, b) TO STDOUT (FORMAT binary, HEADER false)", vec![st(Read, "COPY").r(&["s.t"])]),
        (
            "COPY t FROM PROGRAM 'cat /etc/passwd' WITH (FREEZE ON)",
            vec![st(Write, "COPY").w("t").out(Outside::CopyProgram)],
        ),
        ("COPY t TO '/tmp/x' (FREEZE ON)", vec![st(Read, "COPY").r(&["t"]).out(Outside::CopyFile)]),
        // asyncpg and psycopg cursors.
        ("MOVE FORWARD 5 FROM c1", vec![st(Misc, "MOVE").kind(Kind::Harmless)]),
        ("MOVE ABSOLUTE -1 IN \"Cur\"", vec![st(Misc, "MOVE").kind(Kind::Harmless)]),
        (
            "CREATE TABLE cp_bin (LIKE cp_text INCLUDING ALL EXCLUDING INDEXES)",
            vec![st(Ddl, "CREATE TABLE").d("cp_bin").r(&["cp_text"])],
        ),
    ]);
}
