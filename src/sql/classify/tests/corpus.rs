//! Real clients' statements: LightRAG's PostgreSQL storage (tables, upserts, vector search,
//! Apache AGE graph), and the catalog queries of asyncpg, pgjdbc and psycopg. Every one
//! must be classified from its syntax tree, none by the keyword fallback.

use super::{check, st};
use crate::sql::statement::AuditClass::{Ddl, Misc, MiscSet, Read, Write};
use crate::sql::statement::{Kind, SettingChange};

#[test]
fn lightrag_tables_and_kv_statements() {
    check(&[
        (
            "CREATE TABLE IF NOT EXISTS LIGHTRAG_VDB_CHUNKS (
                id VARCHAR(255), workspace VARCHAR(255), full_doc_id VARCHAR(256), chunk_order_index INTEGER,
                tokens INTEGER, content TEXT, content_vector VECTOR(1024), file_path TEXT NULL,
                create_time TIMESTAMP(0) DEFAULT CURRENT_TIMESTAMP, update_time TIMESTAMP(0) DEFAULT CURRENT_TIMESTAMP,
                CONSTRAINT LIGHTRAG_VDB_CHUNKS_PK PRIMARY KEY (workspace, id))",
            vec![st(Ddl, "CREATE TABLE").d("lightrag_vdb_chunks")],
        ),
        (
            "CREATE TABLE LIGHTRAG_DOC_STATUS (workspace varchar(255) NOT NULL, id varchar(255) NOT NULL,
                chunks_list JSONB NULL DEFAULT '[]'::jsonb, metadata JSONB NULL DEFAULT '{}'::jsonb,
                chunk_ids VARCHAR(255)[] NULL, created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
                CONSTRAINT LIGHTRAG_DOC_STATUS_PK PRIMARY KEY (workspace, id))",
            vec![st(Ddl, "CREATE TABLE").d("lightrag_doc_status")],
        ),
        (
            "INSERT INTO LIGHTRAG_VDB_CHUNKS (workspace, id, tokens, chunk_order_index, full_doc_id, content,
                content_vector, file_path, create_time, update_time)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (workspace,id) DO UPDATE
             SET tokens=EXCLUDED.tokens, content = EXCLUDED.content, content_vector=EXCLUDED.content_vector,
                 update_time = EXCLUDED.update_time",
            vec![st(Write, "INSERT").w("lightrag_vdb_chunks")],
        ),
        (
            "INSERT INTO LIGHTRAG_DOC_FULL (id, content, doc_name, workspace, parse_format, chunk_options)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (workspace,id) DO UPDATE
             SET content = EXCLUDED.content,
                 parse_format = COALESCE(NULLIF(EXCLUDED.parse_format, ''), LIGHTRAG_DOC_FULL.parse_format),
                 chunk_options = CASE WHEN EXCLUDED.chunk_options IS NULL OR EXCLUDED.chunk_options = '{}'::jsonb
                                      THEN LIGHTRAG_DOC_FULL.chunk_options ELSE EXCLUDED.chunk_options END,
                 update_time = CURRENT_TIMESTAMP",
            vec![st(Write, "INSERT").w("lightrag_doc_full").f(&["coalesce", "nullif"])],
        ),
        (
            "SELECT id, tokens, COALESCE(content, '') as content, COALESCE(llm_cache_list, '[]'::jsonb) as llm_cache_list,
                EXTRACT(EPOCH FROM create_time)::BIGINT as create_time
             FROM LIGHTRAG_DOC_CHUNKS WHERE workspace=$1 AND id = ANY($2)",
            vec![st(Read, "SELECT").r(&["lightrag_doc_chunks"]).f(&["coalesce"])],
        ),
        (
            "SELECT id FROM LIGHTRAG_DOC_FULL WHERE workspace=$1 AND id IN ('a', 'b')",
            vec![st(Read, "SELECT").r(&["lightrag_doc_full"])],
        ),
        (
            "SELECT id, content, file_path, EXTRACT(EPOCH FROM create_time)::BIGINT AS created_at
             FROM LIGHTRAG_VDB_CHUNKS
             WHERE workspace = $1 AND content_vector <=> $4::vector < $2
             ORDER BY content_vector <=> $4::vector
             LIMIT $3;",
            vec![st(Read, "SELECT").r(&["lightrag_vdb_chunks"])],
        ),
        (
            "SELECT id FROM LIGHTRAG_VDB_ENTITY ORDER BY content_vector <=> '[0.1,0.2,0.3]'::vector LIMIT $3",
            vec![st(Read, "SELECT").r(&["lightrag_vdb_entity"])],
        ),
        ("DELETE FROM LIGHTRAG_DOC_STATUS WHERE workspace=$1", vec![st(Write, "DELETE").w("lightrag_doc_status")]),
        (
            "CREATE INDEX IF NOT EXISTS idx_lightrag_vdb_chunks_hnsw_cosine ON LIGHTRAG_VDB_CHUNKS
             USING hnsw (content_vector vector_cosine_ops) WITH (m = 16, ef_construction = 64)",
            vec![st(Ddl, "CREATE INDEX").d("lightrag_vdb_chunks")],
        ),
        ("CREATE EXTENSION IF NOT EXISTS vector", vec![st(Ddl, "CREATE EXTENSION")]),
    ]);
}

#[test]
fn lightrag_migrations_and_vector_indexes() {
    check(&[
        (
            "ALTER TABLE LIGHTRAG_VDB_CHUNKS ALTER COLUMN content_vector TYPE VECTOR(1024)",
            vec![st(Ddl, "ALTER TABLE").d("lightrag_vdb_chunks")],
        ),
        (
            "ALTER TABLE LIGHTRAG_DOC_STATUS ADD COLUMN chunks_list JSONB NULL DEFAULT '[]'::jsonb",
            vec![st(Ddl, "ALTER TABLE").d("lightrag_doc_status")],
        ),
        (
            "DROP INDEX IF EXISTS idx_lightrag_vdb_chunks_ivfflat_cosine",
            vec![st(Ddl, "DROP INDEX").d("idx_lightrag_vdb_chunks_ivfflat_cosine")],
        ),
        (
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_lightrag_doc_status_workspace_status_updated_at
             ON LIGHTRAG_DOC_STATUS (workspace, status, updated_at DESC)",
            vec![st(Ddl, "CREATE INDEX").d("lightrag_doc_status")],
        ),
        (
            "CREATE INDEX IF NOT EXISTS idx_lightrag_doc_status_workspace_content_hash
             ON LIGHTRAG_DOC_STATUS (workspace, content_hash)
             WHERE content_hash IS NOT NULL AND content_hash <> ''",
            vec![st(Ddl, "CREATE INDEX").d("lightrag_doc_status")],
        ),
        (
            "CREATE INDEX idx_lightrag_vdb_chunks_vchordrq_cosine ON LIGHTRAG_VDB_CHUNKS
             USING vchordrq (content_vector vector_cosine_ops) WITH (options = $$ residual_quantization = true $$)",
            vec![st(Ddl, "CREATE INDEX").d("lightrag_vdb_chunks")],
        ),
        (
            "SELECT EXISTS (SELECT FROM information_schema.tables WHERE table_name = $1)",
            vec![st(Read, "SELECT").r(&["information_schema.tables"])],
        ),
        (
            "SELECT indexname FROM pg_indexes WHERE tablename = 'lightrag_doc_status' AND indexname = ANY($1)",
            vec![st(Read, "SELECT").r(&["pg_indexes"])],
        ),
        (
            "UPDATE LIGHTRAG_LLM_CACHE
             SET id = mode || ':' || CASE WHEN mode = 'default' THEN 'extract' ELSE 'unknown' END || ':' || md5(original_prompt),
                 update_time = CURRENT_TIMESTAMP
             WHERE id NOT LIKE '%:%'",
            vec![st(Write, "UPDATE").w("lightrag_llm_cache").f(&["md5"])],
        ),
        (
            "WITH new_ids AS (
                SELECT workspace, mode, id as old_id, mode || ':' || md5(original_prompt) as new_id
                FROM LIGHTRAG_LLM_CACHE WHERE id NOT LIKE '%:%'
            )
            SELECT COUNT(*) as conflicts
            FROM new_ids n1 JOIN LIGHTRAG_LLM_CACHE existing ON existing.workspace = n1.workspace
            WHERE existing.id LIKE '%:%'  -- Only check conflicts with existing new format records",
            vec![st(Read, "SELECT").r(&["lightrag_llm_cache"]).f(&["md5", "count"])],
        ),
        ("SET vchordrq.probes TO '10'", vec![st(MiscSet, "SET").set("vchordrq.probes", Some("10"), false)]),
        ("SET vchordrq.epsilon TO 1.9", vec![st(MiscSet, "SET").set("vchordrq.epsilon", Some("1.9"), false)]),
    ]);
}

#[test]
fn lightrag_apache_age_graph() {
    check(&[
        ("CREATE EXTENSION IF NOT EXISTS AGE CASCADE", vec![st(Ddl, "CREATE EXTENSION")]),
        (
            r#"LOAD 'age'; SET search_path = ag_catalog, "$user", public; select create_graph('chunk_entity_relation')"#,
            vec![
                st(Misc, "LOAD"),
                st(MiscSet, "SET").set("search_path", Some(r#"ag_catalog, "$user", public"#), false),
                st(Read, "SELECT").f(&["create_graph"]),
            ],
        ),
        ("SELECT create_vlabel('g', 'base');", vec![st(Read, "SELECT").f(&["create_vlabel"])]),
        (
            r#"CREATE INDEX CONCURRENTLY entity_idx_node_id ON g."base" (ag_catalog.agtype_access_operator(properties, '"entity_id"'::agtype))"#,
            vec![st(Ddl, "CREATE INDEX").d("g.base").f(&["ag_catalog.agtype_access_operator"])],
        ),
        (
            r#"CREATE INDEX CONCURRENTLY entity_node_id_gin_idx ON g."base" using gin(properties)"#,
            vec![st(Ddl, "CREATE INDEX").d("g.base")],
        ),
        (r#"ALTER TABLE g."DIRECTED" CLUSTER ON directed_sid_idx"#, vec![st(Ddl, "ALTER TABLE").d("g.DIRECTED")]),
        (
            r#"SELECT * FROM cypher('g', $$ MATCH (n:base {entity_id: "Alice"}) RETURN count(n) > 0 AS node_exists $$) AS (node_exists bool)"#,
            vec![st(Read, "SELECT").f(&["cypher"])],
        ),
        (
            "SELECT * FROM cypher('g', $$
                MATCH (n)
                DETACH DELETE n
                $$) AS (result agtype)",
            vec![st(Read, "SELECT").f(&["cypher"])],
        ),
        (
            "SELECT * FROM cypher($AGE1$g$AGE1$::name,
                                 $AGE2$UNWIND $pairs AS p MATCH (a:base {entity_id: p.src})-[r]->(b) RETURN p.src AS source, properties(r) AS edge_properties$AGE2$::cstring,
                                 $1::agtype)
              AS (source text, target text, edge_properties agtype)",
            vec![st(Read, "SELECT").f(&["cypher"])],
        ),
        (
            r#"SELECT EXISTS (
              SELECT 1 FROM g.base
              WHERE ag_catalog.agtype_access_operator(VARIADIC ARRAY[properties, '"entity_id"'::agtype]) = (to_json($1::text)::text)::agtype
              LIMIT 1
            ) AS node_exists;"#,
            vec![st(Read, "SELECT").r(&["g.base"]).f(&["ag_catalog.agtype_access_operator", "to_json"])],
        ),
        (
            r#"WITH input(v, ord) AS (
              SELECT v, ord FROM unnest($1::text[]) WITH ORDINALITY AS t(v, ord)
            ),
            ids(node_id, ord) AS (
              SELECT (to_json(v)::text)::agtype AS node_id, ord FROM input
            )
            SELECT i.node_id::text AS node_id, b.properties
            FROM g.base AS b
            JOIN ids i ON ag_catalog.agtype_access_operator(VARIADIC ARRAY[b.properties, '"entity_id"'::agtype]) = i.node_id
            ORDER BY i.ord;"#,
            vec![st(Read, "SELECT").f(&["unnest", "to_json", "ag_catalog.agtype_access_operator"]).r(&["g.base"])],
        ),
        (
            "WITH node_degrees AS (
                SELECT node_id, COUNT(*) AS degree FROM (
                    SELECT start_id AS node_id FROM g._ag_label_edge
                    UNION ALL
                    SELECT end_id AS node_id FROM g._ag_label_edge
                ) AS all_edges GROUP BY node_id
            )
            SELECT (ag_catalog.agtype_access_operator(VARIADIC ARRAY[v.properties, '\"entity_id\"'::agtype]))::text AS label
            FROM node_degrees d JOIN g._ag_label_vertex v ON d.node_id = v.id
            ORDER BY d.degree DESC, label ASC LIMIT $1;",
            vec![
                st(Read, "SELECT")
                    .f(&["count", "ag_catalog.agtype_access_operator"])
                    .r(&["g._ag_label_edge", "g._ag_label_vertex"]),
            ],
        ),
    ]);
}

/// asyncpg's type introspection (INTRO_LOOKUP_TYPES_13 with its type-info subquery; the
/// second copy of that subquery abridged).
pub(super) const ASYNCPG_INTRO_LOOKUP_TYPES: &str = "WITH RECURSIVE typeinfo_tree(
    oid, ns, name, kind, basetype, elemtype, elemdelim, range_subtype, attrtypoids, attrnames, depth)
AS (
    SELECT ti.oid, ti.ns, ti.name, ti.kind, ti.basetype, ti.elemtype, ti.elemdelim, ti.range_subtype,
        ti.attrtypoids, ti.attrnames, 0
    FROM (
        SELECT t.oid AS oid, ns.nspname AS ns, t.typname AS name, t.typtype AS kind,
            (CASE WHEN t.typtype = 'd' THEN
                (WITH RECURSIVE typebases(oid, depth) AS (
                    SELECT t2.typbasetype AS oid, 0 AS depth FROM pg_type t2 WHERE t2.oid = t.oid
                    UNION ALL
                    SELECT t2.typbasetype AS oid, tb.depth + 1 AS depth FROM pg_type t2, typebases tb
                    WHERE tb.oid = t2.oid AND t2.typbasetype != 0
               ) SELECT oid FROM typebases ORDER BY depth DESC LIMIT 1)
               ELSE NULL
            END) AS basetype,
            t.typelem AS elemtype, elem_t.typdelim AS elemdelim, range_t.rngsubtype AS range_subtype,
            (CASE WHEN t.typtype = 'c' THEN
                (SELECT array_agg(ia.atttypid ORDER BY ia.attnum)
                FROM pg_attribute ia INNER JOIN pg_class c ON (ia.attrelid = c.oid)
                WHERE ia.attnum > 0 AND NOT ia.attisdropped AND c.reltype = t.oid)
                ELSE NULL
            END) AS attrtypoids,
            (CASE WHEN t.typtype = 'c' THEN
                (SELECT array_agg(ia.attname::text ORDER BY ia.attnum)
                FROM pg_attribute ia INNER JOIN pg_class c ON (ia.attrelid = c.oid)
                WHERE ia.attnum > 0 AND NOT ia.attisdropped AND c.reltype = t.oid)
                ELSE NULL
            END) AS attrnames
        FROM pg_catalog.pg_type AS t
            INNER JOIN pg_catalog.pg_namespace ns ON (ns.oid = t.typnamespace)
            LEFT JOIN pg_type elem_t ON (t.typlen = -1 AND t.typelem != 0 AND t.typelem = elem_t.oid)
            LEFT JOIN pg_range range_t ON (t.oid = range_t.rngtypid)
    ) AS ti
    WHERE ti.oid = any($1::oid[])
    UNION ALL
    SELECT ti.oid, ti.ns, ti.name, ti.kind, ti.basetype, ti.elemtype, ti.elemdelim, ti.range_subtype,
        ti.attrtypoids, ti.attrnames, tt.depth + 1
    FROM (SELECT t.oid AS oid, t.typelem AS elemtype FROM pg_catalog.pg_type AS t) ti, typeinfo_tree tt
    WHERE (tt.elemtype IS NOT NULL AND ti.oid = tt.elemtype)
        OR (tt.attrtypoids IS NOT NULL AND ti.oid = any(tt.attrtypoids))
)
SELECT DISTINCT *, basetype::regtype::text AS basetype_name, elemtype::regtype::text AS elemtype_name,
    range_subtype::regtype::text AS range_subtype_name
FROM typeinfo_tree
ORDER BY depth DESC";

/// pgjdbc's DatabaseMetaData.getTables, getColumns and getPrimaryKeys (parameters as $n).
const PGJDBC_GET_TABLES: &str = "SELECT current_database() AS \"TABLE_CAT\", n.nspname AS \"TABLE_SCHEM\", c.relname AS \"TABLE_NAME\", \
     CASE n.nspname ~ '^pg_' OR n.nspname = 'information_schema' WHEN true THEN CASE \
     WHEN n.nspname = 'pg_catalog' OR n.nspname = 'information_schema' THEN CASE c.relkind \
      WHEN 'r' THEN 'SYSTEM TABLE' WHEN 'v' THEN 'SYSTEM VIEW' WHEN 'i' THEN 'SYSTEM INDEX' ELSE NULL END \
     WHEN n.nspname = 'pg_toast' THEN CASE c.relkind WHEN 'r' THEN 'SYSTEM TOAST TABLE' ELSE NULL END \
     ELSE CASE c.relkind WHEN 'r' THEN 'TEMPORARY TABLE' ELSE NULL END END \
     WHEN false THEN CASE c.relkind WHEN 'r' THEN 'TABLE' WHEN 'p' THEN 'PARTITIONED TABLE' WHEN 'v' THEN 'VIEW' \
     ELSE NULL END ELSE NULL END AS \"TABLE_TYPE\", d.description AS \"REMARKS\", \
     '' as \"TYPE_CAT\", '' as \"TYPE_SCHEM\", '' as \"TYPE_NAME\", '' AS \"SELF_REFERENCING_COL_NAME\", '' AS \"REF_GENERATION\" \
     FROM pg_catalog.pg_namespace n, pg_catalog.pg_class c \
     LEFT JOIN pg_catalog.pg_description d ON (c.oid = d.objoid AND d.objsubid = 0 and d.classoid = 'pg_class'::regclass) \
     WHERE c.relnamespace = n.oid AND n.nspname LIKE $1 AND has_table_privilege(c.oid, $2) AND c.relname LIKE $3 \
     AND (false OR ( c.relkind IN ('r', 'p') AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema' ) ) \
     ORDER BY \"TABLE_TYPE\",\"TABLE_SCHEM\",\"TABLE_NAME\" ";

const PGJDBC_GET_COLUMNS: &str = "SELECT * FROM (SELECT current_database() AS current_database, n.nspname,c.relname,a.attname,a.atttypid,\
     a.attnotnull OR (t.typtype = 'd' AND t.typnotnull) AS attnotnull,a.atttypmod,a.attlen,t.typtypmod,\
     row_number() OVER (PARTITION BY a.attrelid ORDER BY a.attnum) AS attnum, nullif(a.attidentity, '') as attidentity,\
     nullif(a.attgenerated, '') as attgenerated,pg_catalog.pg_get_expr(def.adbin, def.adrelid) AS adsrc,dsc.description,\
     t.typbasetype,t.typtype  FROM pg_catalog.pg_namespace n  JOIN pg_catalog.pg_class c ON (c.relnamespace = n.oid) \
      JOIN pg_catalog.pg_attribute a ON (a.attrelid=c.oid)  JOIN pg_catalog.pg_type t ON (a.atttypid = t.oid) \
      LEFT JOIN pg_catalog.pg_attrdef def ON (a.attrelid=def.adrelid AND a.attnum = def.adnum) \
      LEFT JOIN pg_catalog.pg_description dsc ON (c.oid=dsc.objoid AND a.attnum = dsc.objsubid) \
      LEFT JOIN pg_catalog.pg_class dc ON (dc.oid=dsc.classoid AND dc.relname='pg_class') \
      LEFT JOIN pg_catalog.pg_namespace dn ON (dc.relnamespace=dn.oid AND dn.nspname='pg_catalog') \
      WHERE c.relkind in ('r','p','v','f','m') and a.attnum > 0 AND NOT a.attisdropped  AND n.nspname LIKE $1 \
     AND c.relname LIKE $2) c WHERE true  AND attname LIKE $3 ORDER BY nspname,c.relname,attnum ";

const PGJDBC_GET_PRIMARY_KEYS: &str = "SELECT        result.TABLE_CAT AS \"TABLE_CAT\",        result.TABLE_SCHEM AS \"TABLE_SCHEM\", \
            result.TABLE_NAME AS \"TABLE_NAME\",        result.COLUMN_NAME AS \"COLUMN_NAME\", \
            result.KEY_SEQ AS \"KEY_SEQ\",        result.PK_NAME AS \"PK_NAME\"FROM      (\
     SELECT current_database() AS TABLE_CAT, n.nspname AS TABLE_SCHEM,   ct.relname AS TABLE_NAME, a.attname AS COLUMN_NAME, \
       (information_schema._pg_expandarray(con.conkey)).n AS KEY_SEQ, con.conname AS PK_NAME, \
       information_schema._pg_expandarray(con.conkey) AS KEYS, a.attnum AS A_ATTNUM \
     FROM pg_catalog.pg_constraint con   JOIN pg_catalog.pg_class ct ON (con.conrelid = ct.oid) \
       JOIN pg_catalog.pg_namespace n ON (ct.relnamespace = n.oid)   JOIN pg_catalog.pg_attribute a ON (a.attrelid = ct.oid) \
     WHERE con.contype = 'p'  AND n.nspname = $1 AND ct.relname = $2 ) result where  result.A_ATTNUM = (result.KEYS).x \
      ORDER BY result.table_name, result.pk_name, result.key_seq";

/// psycopg's TypeInfo query (its `%(name)s` sent as `$1`).
const PSYCOPG_TYPE_INFO: &str = "SELECT
    typname AS name, oid, typarray AS array_oid,
    oid::regtype::text AS regtype, typdelim AS delimiter
FROM pg_type t
WHERE t.oid = to_regtype($1)
ORDER BY t.oid
";

#[test]
fn driver_catalog_queries() {
    check(&[
        (
            ASYNCPG_INTRO_LOOKUP_TYPES,
            vec![
                st(Read, "SELECT")
                    .r(&[
                        "pg_type",
                        "pg_attribute",
                        "pg_class",
                        "pg_catalog.pg_type",
                        "pg_catalog.pg_namespace",
                        "pg_range",
                    ])
                    .f(&["array_agg"]),
            ],
        ),
        (
            PGJDBC_GET_TABLES,
            vec![st(Read, "SELECT").f(&["current_database", "has_table_privilege"]).r(&[
                "pg_catalog.pg_namespace",
                "pg_catalog.pg_class",
                "pg_catalog.pg_description",
            ])],
        ),
        (
            PGJDBC_GET_COLUMNS,
            vec![st(Read, "SELECT").f(&["current_database", "row_number", "nullif", "pg_catalog.pg_get_expr"]).r(&[
                "pg_catalog.pg_namespace",
                "pg_catalog.pg_class",
                "pg_catalog.pg_attribute",
                "pg_catalog.pg_type",
                "pg_catalog.pg_attrdef",
                "pg_catalog.pg_description",
            ])],
        ),
        (
            PGJDBC_GET_PRIMARY_KEYS,
            vec![st(Read, "SELECT").f(&["current_database", "information_schema._pg_expandarray"]).r(&[
                "pg_catalog.pg_constraint",
                "pg_catalog.pg_class",
                "pg_catalog.pg_namespace",
                "pg_catalog.pg_attribute",
            ])],
        ),
        (PSYCOPG_TYPE_INFO, vec![st(Read, "SELECT").r(&["pg_type"]).f(&["to_regtype"])]),
        // asyncpg's reset query, on every release of a pooled connection.
        (
            "SELECT pg_advisory_unlock_all();\nCLOSE ALL;\nUNLISTEN *;\nRESET ALL;",
            vec![
                st(Read, "SELECT").f(&["pg_advisory_unlock_all"]),
                st(Misc, "CLOSE CURSOR ALL").kind(Kind::Harmless),
                st(Misc, "UNLISTEN"),
                st(MiscSet, "RESET").change(SettingChange::ResetAll),
            ],
        ),
        ("BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY", vec![st(Misc, "BEGIN").kind(Kind::Transaction)]),
        ("SET extra_float_digits = 3", vec![st(MiscSet, "SET").set("extra_float_digits", Some("3"), false)]),
        ("SELECT pg_catalog.version()", vec![st(Read, "SELECT").f(&["pg_catalog.version"])]),
        ("SELECT current_schema()", vec![st(Read, "SELECT").f(&["current_schema"])]),
        ("SHOW standard_conforming_strings", vec![st(Misc, "SHOW").kind(Kind::Harmless)]),
    ]);
}
