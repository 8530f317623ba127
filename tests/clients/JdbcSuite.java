// pgjdbc scenarios: server-prepared statements from the first execution
// (prepareThreshold=1) reused over many transactions by several connections at once, a
// cached statement invalidated by a schema change, streaming 100k rows with setFetchSize
// and autocommit off (portal suspension), batch inserts (plain, rewritten, failing),
// DatabaseMetaData, type round trips, cancel of a running pg_sleep (Statement.cancel and
// setQueryTimeout) while another connection keeps working, and session settings that stay
// with their connection.
//
// Usage: java -cp CLASSES:/usr/share/java/postgresql.jar JdbcSuite HOST PORT USER PASSWORD DBNAME
// (a fresh, empty database). Prints one deterministic JSON document on stdout, like the
// Python suites (suite_common.py): nothing printed may depend on timing, backend pids,
// ports or ordering the server does not guarantee. Diagnostics go to stderr.
// CLIENTS_ONLY=name,name runs only those scenarios. Exits 1 if a scenario failed.

import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.PrintStream;
import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.sql.Array;
import java.sql.BatchUpdateException;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Types;
import java.time.LocalDate;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TimeZone;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.UUID;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import org.postgresql.PGStatement;
import org.postgresql.util.PGInterval;
import org.postgresql.util.PGobject;

public final class JdbcSuite {
    static String host;
    static int port;
    static String user;
    static String password;
    static String dbname;

    static final Map<String, Object> RESULTS = new TreeMap<>();
    static final List<String> FAILED = Collections.synchronizedList(new ArrayList<>());
    static final Set<String> ONLY = new TreeSet<>();

    interface Scenario {
        Object run() throws Exception;
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 5) {
            System.err.println("usage: JdbcSuite HOST PORT USER PASSWORD DBNAME");
            System.exit(2);
        }
        // pgjdbc sends the JVM's time zone at startup: make it the same everywhere.
        TimeZone.setDefault(TimeZone.getTimeZone("UTC"));
        host = args[0];
        port = Integer.parseInt(args[1]);
        user = args[2];
        password = args[3];
        dbname = args[4];
        String only = System.getenv("CLIENTS_ONLY");
        if (only != null) {
            for (String name : only.split(",")) {
                if (!name.isEmpty()) {
                    ONLY.add(name);
                }
            }
        }

        record("prepared_transactions", JdbcSuite::preparedTransactions);
        record("fetch_size_streaming", JdbcSuite::fetchSizeStreaming);
        record("batch_insert", JdbcSuite::batchInsert);
        record("metadata", JdbcSuite::metadata);
        record("type_round_trips", JdbcSuite::typeRoundTrips);
        record("cancel", JdbcSuite::cancel);
        record("session_settings", JdbcSuite::sessionSettings);

        StringBuilder json = new StringBuilder();
        writeJson(json, RESULTS, 0);
        PrintStream stdout = new PrintStream(new FileOutputStream(FileDescriptor.out), true, StandardCharsets.UTF_8);
        stdout.println(json);
        stdout.flush();
        if (!FAILED.isEmpty()) {
            System.err.println("failed scenarios: " + String.join(", ", FAILED));
            System.exit(1);
        }
        System.exit(0);
    }

    // --- plumbing ------------------------------------------------------------------------

    static void record(String name, Scenario scenario) {
        if (!ONLY.isEmpty() && !ONLY.contains(name)) {
            return;
        }
        System.err.println("scenario " + name);
        long start = System.nanoTime();
        try {
            RESULTS.put(name, scenario.run());
            System.err.printf("scenario %s took %d ms%n", name, (System.nanoTime() - start) / 1_000_000);
        } catch (Throwable e) {
            FAILED.add(name);
            RESULTS.put(name, Map.of("unexpected error", describe(e)));
            e.printStackTrace();
        }
    }

    /** A connection with prepareThreshold=1 (server-prepared from the first execution). */
    static Connection connect(String... extra) throws SQLException {
        Properties props = new Properties();
        props.setProperty("user", user);
        props.setProperty("password", password);
        props.setProperty("sslmode", "disable");
        props.setProperty("prepareThreshold", "1");
        props.setProperty("connectTimeout", "60");
        props.setProperty("socketTimeout", "300");
        for (int i = 0; i + 1 < extra.length; i += 2) {
            props.setProperty(extra[i], extra[i + 1]);
        }
        return DriverManager.getConnection("jdbc:postgresql://" + host + ":" + port + "/" + dbname, props);
    }

    /** An error as `Class SQLSTATE: first line of the message`. */
    static String describe(Throwable e) {
        String state = e instanceof SQLException s ? s.getSQLState() : "None";
        String message = e.getMessage() == null ? "" : e.getMessage().strip();
        int nl = message.indexOf('\n');
        return e.getClass().getSimpleName() + " " + state + ": " + (nl < 0 ? message : message.substring(0, nl));
    }

    static Map<String, Object> summarize(List<String> problems) {
        List<String> sorted = new ArrayList<>(new TreeSet<>(problems));
        Map<String, Object> out = new TreeMap<>();
        out.put("count", sorted.size());
        out.put("first", sorted.subList(0, Math.min(40, sorted.size())));
        return out;
    }

    static void execute(Connection c, String... sqls) throws SQLException {
        try (Statement s = c.createStatement()) {
            for (String sql : sqls) {
                s.execute(sql);
            }
        }
    }

    /** The rows of a query, each as a list of strings (getString). */
    static List<List<String>> rows(ResultSet rs) throws SQLException {
        List<List<String>> out = new ArrayList<>();
        int n = rs.getMetaData().getColumnCount();
        while (rs.next()) {
            List<String> row = new ArrayList<>();
            for (int i = 1; i <= n; i++) {
                row.add(rs.getString(i));
            }
            out.add(row);
        }
        rs.close();
        return out;
    }

    static List<List<String>> query(Connection c, String sql, Object... params) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement(sql)) {
            for (int i = 0; i < params.length; i++) {
                ps.setObject(i + 1, params[i]);
            }
            return rows(ps.executeQuery());
        }
    }

    static String scalar(Connection c, String sql, Object... params) throws SQLException {
        return query(c, sql, params).get(0).get(0);
    }

    static MessageDigest sha256() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    static String hex(byte[] bytes) {
        return HexFormat.of().formatHex(bytes);
    }

    /** Runs `tasks` on their own threads; their results in order, or their errors described. */
    static <T> List<Object> parallel(List<Callable<T>> tasks) throws InterruptedException {
        ExecutorService pool = Executors.newFixedThreadPool(tasks.size());
        try {
            List<Future<T>> futures = new ArrayList<>();
            for (Callable<T> task : tasks) {
                futures.add(pool.submit(task));
            }
            List<Object> out = new ArrayList<>();
            for (Future<T> f : futures) {
                try {
                    out.add(f.get(300, TimeUnit.SECONDS));
                } catch (Exception e) {
                    Throwable cause = e.getCause() == null ? e : e.getCause();
                    cause.printStackTrace();
                    out.add("error: " + describe(cause));
                }
            }
            return out;
        } finally {
            pool.shutdownNow();
        }
    }

    // --- server-prepared statements over many transactions --------------------------------

    static final int TRANSFER_THREADS = 8;
    static final int TRANSFERS = 120;

    static Object preparedTransactions() throws Exception {
        Map<String, Object> out = new TreeMap<>();
        try (Connection c = connect()) {
            execute(c,
                "CREATE TABLE jd_accounts (id int PRIMARY KEY, owner int NOT NULL, balance numeric(14,2) NOT NULL)",
                "INSERT INTO jd_accounts SELECT g, (g - 1) / 10, g * 10 FROM generate_series(1, "
                    + TRANSFER_THREADS * 10 + ") g");
        }
        List<Callable<Map<String, Object>>> tasks = new ArrayList<>();
        for (int t = 0; t < TRANSFER_THREADS; t++) {
            int thread = t;
            tasks.add(() -> transfers(thread));
        }
        List<Object> perThread = parallel(tasks);
        out.put("threads", perThread);
        for (Object r : perThread) {
            if (!(r instanceof Map)) {
                FAILED.add("prepared_transactions");
                break;
            }
        }

        try (Connection c = connect()) {
            out.put("total", scalar(c, "SELECT sum(balance) FROM jd_accounts"));
            // autocommit on: one statement reused for many single-statement transactions
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT sum(balance), count(*) FROM jd_accounts WHERE id BETWEEN ? AND ?")) {
                BigDecimal sum = BigDecimal.ZERO;
                for (int k = 0; k < 200; k++) {
                    ps.setInt(1, k % 50);
                    ps.setInt(2, k % 50 + 10);
                    try (ResultSet rs = ps.executeQuery()) {
                        rs.next();
                        sum = sum.add(rs.getBigDecimal(1));
                    }
                }
                out.put("autocommit reuse", sum.toPlainString());
                out.put("autocommit reuse server prepared", ps.unwrap(PGStatement.class).isUseServerPrepare());
            }

            // a schema change under a server-prepared statement
            execute(c, "CREATE TABLE jd_shape (a int)", "INSERT INTO jd_shape VALUES (1)");
            try (PreparedStatement ps = c.prepareStatement("SELECT * FROM jd_shape")) {
                List<Object> shapes = new ArrayList<>();
                for (int k = 0; k < 3; k++) {
                    shapes.add(rows(ps.executeQuery()));
                }
                execute(c, "ALTER TABLE jd_shape ADD COLUMN b text DEFAULT 'new'");
                for (int k = 0; k < 3; k++) {
                    try {
                        shapes.add(rows(ps.executeQuery()));
                    } catch (SQLException e) {
                        shapes.add(describe(e));
                    }
                }
                out.put("schema change", shapes);
            }
        }
        return out;
    }

    static Map<String, Object> transfers(int t) throws SQLException {
        Map<String, Object> out = new TreeMap<>();
        try (Connection c = connect()) {
            c.setAutoCommit(false);
            PreparedStatement debit = c.prepareStatement("UPDATE jd_accounts SET balance = balance - ? WHERE id = ?");
            PreparedStatement credit = c.prepareStatement("UPDATE jd_accounts SET balance = balance + ? WHERE id = ?");
            PreparedStatement read = c.prepareStatement("SELECT balance, owner FROM jd_accounts WHERE id = ?");
            PreparedStatement fail = c.prepareStatement("SELECT 1 / ?");
            List<String> failures = new ArrayList<>();
            List<String> problems = new ArrayList<>();
            BigDecimal seen = BigDecimal.ZERO;
            for (int k = 0; k < TRANSFERS; k++) {
                // each thread moves money between its own ten accounts: no deadlocks
                int a = t * 10 + 1 + k % 10;
                int b = t * 10 + 1 + (k * 3 + 1) % 10;
                BigDecimal amount = BigDecimal.valueOf(k % 13).add(new BigDecimal("0.25"));
                try {
                    debit.setBigDecimal(1, amount);
                    debit.setInt(2, a);
                    credit.setBigDecimal(1, amount);
                    credit.setInt(2, b);
                    if (debit.executeUpdate() != 1 || credit.executeUpdate() != 1) {
                        problems.add("k=" + k + ": an update missed its row");
                    }
                    read.setInt(1, a);
                    try (ResultSet rs = read.executeQuery()) {
                        rs.next();
                        seen = seen.add(rs.getBigDecimal(1));
                        if (rs.getInt(2) != t) {
                            problems.add("k=" + k + ": owner " + rs.getInt(2));
                        }
                    }
                    if (k % 25 == 24) {
                        fail.setInt(1, 0);
                        fail.executeQuery().close(); // fails: the transfer is rolled back
                    }
                    c.commit();
                } catch (SQLException e) {
                    failures.add("k=" + k + ": " + describe(e));
                    c.rollback();
                }
            }
            out.put("failed transfers", failures);
            out.put("problems", problems);
            out.put("sum of balances seen", seen.toPlainString());
            out.put("server prepared", List.of(
                debit.unwrap(PGStatement.class).isUseServerPrepare(),
                read.unwrap(PGStatement.class).isUseServerPrepare(),
                fail.unwrap(PGStatement.class).isUseServerPrepare()));
            out.put("own accounts", query(c,
                "SELECT count(*), sum(balance) FROM jd_accounts WHERE owner = ?", t).get(0));
            c.commit();
            if (!problems.isEmpty()) {
                FAILED.add("prepared_transactions");
            }
        }
        return out;
    }

    // --- setFetchSize with autocommit off: 100k rows in portions ---------------------------

    static final int BIG_ROWS = 100_000;

    static Object fetchSizeStreaming() throws Exception {
        Map<String, Object> out = new TreeMap<>();
        try (Connection c = connect()) {
            execute(c,
                "CREATE TABLE jd_big (id int PRIMARY KEY, payload text NOT NULL)",
                "INSERT INTO jd_big SELECT g, md5(g::text) FROM generate_series(1, " + BIG_ROWS + ") g");
            c.setAutoCommit(false);

            try (PreparedStatement ps = c.prepareStatement("SELECT id, payload FROM jd_big WHERE id > ? ORDER BY id")) {
                ps.setFetchSize(1000);
                ps.setInt(1, 0);
                out.put("prepared stream", stream(ps.executeQuery()));
                ps.setInt(1, BIG_ROWS / 2);
                out.put("prepared stream again", stream(ps.executeQuery()));
            }
            c.commit();

            // two portals open at once in one transaction, read alternately
            try (Statement up = c.createStatement(); Statement down = c.createStatement()) {
                up.setFetchSize(700);
                down.setFetchSize(300);
                ResultSet a = up.executeQuery("SELECT id FROM jd_big ORDER BY id");
                ResultSet b = down.executeQuery("SELECT id FROM jd_big ORDER BY id DESC");
                int pairs = 0;
                int wrong = 0;
                while (a.next() & b.next()) {
                    pairs++;
                    if (a.getInt(1) + b.getInt(1) != BIG_ROWS + 1) {
                        wrong++;
                    }
                }
                out.put("interleaved", List.of(pairs, wrong));
            }
            c.commit();

            // a stream abandoned after its first rows; the transaction then goes on
            try (Statement s = c.createStatement()) {
                s.setFetchSize(100);
                ResultSet rs = s.executeQuery("SELECT id FROM jd_big ORDER BY id");
                List<Integer> first = new ArrayList<>();
                for (int k = 0; k < 5 && rs.next(); k++) {
                    first.add(rs.getInt(1));
                }
                rs.close();
                out.put("abandoned", first);
                out.put("after abandoning", scalar(c, "SELECT count(*) FROM jd_big WHERE id % 1000 = 0"));
            }
            c.commit();

            // an error in the middle of a stream aborts the transaction
            try (Statement s = c.createStatement()) {
                s.setFetchSize(1000);
                ResultSet rs = s.executeQuery("SELECT id, 1 / (id - 2500) FROM jd_big ORDER BY id");
                int n = 0;
                try {
                    while (rs.next()) {
                        n++;
                    }
                    out.put("error in a stream", "no error");
                } catch (SQLException e) {
                    out.put("error in a stream", describe(e));
                }
                out.put("rows before the error", n);
            }
            c.rollback();
        }

        // three connections streaming at the same time
        List<Callable<Object>> tasks = new ArrayList<>();
        for (int t = 0; t < 3; t++) {
            int fetch = 250 * (t + 1);
            tasks.add(() -> {
                try (Connection c = connect()) {
                    c.setAutoCommit(false);
                    try (Statement s = c.createStatement()) {
                        s.setFetchSize(fetch);
                        Object r = stream(s.executeQuery("SELECT id, payload FROM jd_big ORDER BY id"));
                        c.commit();
                        return r;
                    }
                }
            });
        }
        out.put("concurrent streams", parallel(tasks));
        return out;
    }

    static Object stream(ResultSet rs) throws SQLException {
        MessageDigest digest = sha256();
        long n = 0;
        long sum = 0;
        while (rs.next()) {
            n++;
            sum += rs.getInt(1);
            digest.update(rs.getString(2).getBytes(StandardCharsets.UTF_8));
        }
        rs.close();
        return List.of(n, sum, hex(digest.digest()));
    }

    // --- batch inserts ----------------------------------------------------------------------

    static final int BATCH_ROWS = 10_000;

    static void bindBatchRow(Connection c, PreparedStatement ps, int i) throws SQLException {
        ps.setInt(1, i);
        ps.setString(2, "row " + i);
        ps.setBigDecimal(3, BigDecimal.valueOf(i).divide(BigDecimal.valueOf(8)));
        ps.setObject(4, OffsetDateTime.of(2022, 3, 1, 0, 0, 0, 0, ZoneOffset.UTC).plusMinutes(i));
        ps.setArray(5, c.createArrayOf("text", new String[] {"t" + i % 5, i % 11 == 0 ? null : "u" + i}));
    }

    static Map<String, Object> countsSummary(int[] counts) {
        Map<String, Object> out = new TreeMap<>();
        for (int count : counts) {
            out.merge(String.valueOf(count), 1, (x, y) -> (Integer) x + (Integer) y);
        }
        return out;
    }

    static Object batchInsert() throws Exception {
        Map<String, Object> out = new TreeMap<>();
        String insert = "INSERT INTO jd_batch (id, name, amount, at, tags) VALUES (?, ?, ?, ?, ?)";
        try (Connection c = connect()) {
            execute(c, "CREATE TABLE jd_batch (id int PRIMARY KEY, name text NOT NULL, amount numeric(12,3), "
                + "at timestamptz, tags text[])");
            c.setAutoCommit(false);
            try (PreparedStatement ps = c.prepareStatement(insert)) {
                List<Object> batches = new ArrayList<>();
                for (int i = 1; i <= BATCH_ROWS; i++) {
                    bindBatchRow(c, ps, i);
                    ps.addBatch();
                    if (i % 2500 == 0) {
                        batches.add(countsSummary(ps.executeBatch()));
                    }
                }
                out.put("plain batches", batches);
            }
            c.commit();

            // a batch with a duplicate key in the middle: nothing of it stays
            try (PreparedStatement ps = c.prepareStatement(insert)) {
                for (int i = 0; i < 100; i++) {
                    bindBatchRow(c, ps, i == 50 ? 5000 : 20_001 + i);
                    ps.addBatch();
                }
                try {
                    ps.executeBatch();
                    out.put("failing batch", "no error");
                } catch (BatchUpdateException e) {
                    SQLException next = e.getNextException();
                    out.put("failing batch", List.of(e.getSQLState(), next == null ? "none" : describe(next),
                        countsSummary(e.getUpdateCounts())));
                }
                c.rollback();
            }
            out.put("after failing batch", scalar(c, "SELECT count(*) FROM jd_batch WHERE id > 20000"));
            c.commit();

            // a batch of plain statements
            try (Statement s = c.createStatement()) {
                s.addBatch("UPDATE jd_batch SET amount = amount * 2 WHERE id <= 100");
                s.addBatch("DELETE FROM jd_batch WHERE id BETWEEN 9901 AND 9950");
                s.addBatch("INSERT INTO jd_batch (id, name) VALUES (30001, 'statement batch')");
                out.put("statement batch", Arrays.stream(s.executeBatch()).boxed().toList());
            }
            c.commit();
        }

        // reWriteBatchedInserts: multi-row INSERTs, autocommit on
        try (Connection c = connect("reWriteBatchedInserts", "true");
                PreparedStatement ps = c.prepareStatement(insert)) {
            for (int i = BATCH_ROWS + 1; i <= 2 * BATCH_ROWS; i++) {
                bindBatchRow(c, ps, i);
                ps.addBatch();
            }
            int[] counts = ps.executeBatch();
            out.put("rewritten batch", List.of(counts.length, countsSummary(counts)));
        }

        try (Connection c = connect()) {
            out.put("table", query(c, "SELECT count(*), sum(id), sum(amount), min(at), max(at), "
                + "md5(string_agg(id || ':' || name || ':' || coalesce(array_to_string(tags, ',', '~'), ''), ';' "
                + "ORDER BY id)) FROM jd_batch").get(0));
        }
        return out;
    }

    // --- DatabaseMetaData ---------------------------------------------------------------------

    static List<List<String>> metaRows(ResultSet rs, String... columns) throws SQLException {
        List<List<String>> out = new ArrayList<>();
        while (rs.next()) {
            List<String> row = new ArrayList<>();
            for (String column : columns) {
                row.add(rs.getString(column));
            }
            out.add(row);
        }
        rs.close();
        out.sort((x, y) -> String.join("\u0000", x.stream().map(String::valueOf).toList())
            .compareTo(String.join("\u0000", y.stream().map(String::valueOf).toList())));
        return out;
    }

    static Object metadata() throws Exception {
        Map<String, Object> out = new TreeMap<>();
        try (Connection c = connect()) {
            execute(c,
                "CREATE SCHEMA jd_meta",
                "CREATE TABLE jd_meta.parent (id int PRIMARY KEY, code varchar(12) UNIQUE NOT NULL, "
                    + "created timestamptz DEFAULT now(), price numeric(10,2))",
                "CREATE TABLE jd_meta.child (id bigserial PRIMARY KEY, parent_id int NOT NULL "
                    + "REFERENCES jd_meta.parent (id) ON DELETE CASCADE, note text, tags text[])",
                "CREATE INDEX child_parent ON jd_meta.child (parent_id, id)",
                "CREATE VIEW jd_meta.expensive AS SELECT id, code FROM jd_meta.parent WHERE price > 100",
                "COMMENT ON TABLE jd_meta.parent IS 'the parents'",
                "CREATE FUNCTION jd_meta.add_up(a int, b int DEFAULT 1) RETURNS int LANGUAGE sql AS 'SELECT a + b'");
            DatabaseMetaData md = c.getMetaData();
            Map<String, Object> about = new LinkedHashMap<>();
            about.put("product", md.getDatabaseProductName());
            about.put("major version", md.getDatabaseMajorVersion());
            about.put("driver", md.getDriverName());
            about.put("user", md.getUserName());
            about.put("quote", md.getIdentifierQuoteString());
            about.put("batch updates", md.supportsBatchUpdates());
            about.put("savepoints", md.supportsSavepoints());
            about.put("default isolation", md.getDefaultTransactionIsolation());
            about.put("read only", md.isReadOnly());
            out.put("about", about);
            out.put("schemas", metaRows(md.getSchemas(null, "jd_%"), "TABLE_SCHEM"));
            out.put("tables", metaRows(md.getTables(null, "jd_meta", "%", null), "TABLE_NAME", "TABLE_TYPE", "REMARKS"));
            out.put("columns", metaRows(md.getColumns(null, "jd_meta", "%", "%"), "TABLE_NAME", "ORDINAL_POSITION",
                "COLUMN_NAME", "DATA_TYPE", "TYPE_NAME", "COLUMN_SIZE", "DECIMAL_DIGITS", "NULLABLE", "COLUMN_DEF",
                "IS_AUTOINCREMENT"));
            out.put("primary keys", metaRows(md.getPrimaryKeys(null, "jd_meta", "child"), "COLUMN_NAME", "PK_NAME"));
            out.put("imported keys", metaRows(md.getImportedKeys(null, "jd_meta", "child"), "PKTABLE_NAME",
                "PKCOLUMN_NAME", "FKTABLE_NAME", "FKCOLUMN_NAME", "DELETE_RULE", "FK_NAME"));
            out.put("exported keys", metaRows(md.getExportedKeys(null, "jd_meta", "parent"), "FKTABLE_NAME",
                "FKCOLUMN_NAME"));
            out.put("indexes", metaRows(md.getIndexInfo(null, "jd_meta", "child", false, false), "INDEX_NAME",
                "ORDINAL_POSITION", "COLUMN_NAME", "NON_UNIQUE"));
            out.put("unique indexes", metaRows(md.getIndexInfo(null, "jd_meta", "parent", true, false),
                "INDEX_NAME", "COLUMN_NAME"));
            out.put("functions", metaRows(md.getFunctions(null, "jd_meta", "%"), "FUNCTION_NAME", "FUNCTION_TYPE"));
            out.put("function columns", metaRows(md.getFunctionColumns(null, "jd_meta", "add_up", "%"),
                "COLUMN_NAME", "COLUMN_TYPE", "TYPE_NAME", "ORDINAL_POSITION"));
            out.put("type info count", metaRows(md.getTypeInfo(), "TYPE_NAME").size());

            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT p.id, p.code, p.price, ch.note, ch.tags, p.price * 2 AS doubled "
                        + "FROM jd_meta.parent p LEFT JOIN jd_meta.child ch ON ch.parent_id = p.id WHERE p.id = ?")) {
                ps.setInt(1, 1);
                ResultSetMetaData rsmd = ps.getMetaData();
                List<List<Object>> cols = new ArrayList<>();
                for (int i = 1; i <= rsmd.getColumnCount(); i++) {
                    cols.add(List.of(rsmd.getColumnLabel(i), rsmd.getColumnTypeName(i), rsmd.getPrecision(i),
                        rsmd.getScale(i), rsmd.isNullable(i), rsmd.getTableName(i), rsmd.isAutoIncrement(i)));
                }
                out.put("result set metadata", cols);
                out.put("parameter metadata", List.of(ps.getParameterMetaData().getParameterCount(),
                    ps.getParameterMetaData().getParameterTypeName(1)));
            }
        }
        return out;
    }

    // --- type round trips ---------------------------------------------------------------------

    static Object typeRoundTrips() throws Exception {
        Map<String, Object> out = new TreeMap<>();
        BigDecimal numeric = new BigDecimal("-98765432109876543210.0123456789012345678901234567890123");
        OffsetDateTime ts = OffsetDateTime.of(2024, 2, 29, 23, 59, 59, 123456000, ZoneOffset.ofHoursMinutes(5, 30));
        UUID uuid = UUID.fromString("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
        byte[] blob = new byte[1 << 20];
        for (int i = 0; i < blob.length; i++) {
            blob[i] = (byte) (i * 31 + i / 256);
        }
        PGobject doc = new PGobject();
        doc.setType("jsonb");
        doc.setValue("{\"a\": [1, 2, {\"b\": null}], \"snow\": \"\u2603\", \"n\": 1.5}");
        PGInterval interval = new PGInterval(0, 1, 3, 4, 5, 6.5);
        try (Connection c = connect()) {
            Integer[] ints = {1, 2, null, 4};
            String[] texts = {"plain", null, "comma,inside", "quote\"inside", "", "NULL", "back\\slash"};
            Array intArray = c.createArrayOf("int4", ints);
            Array textArray = c.createArrayOf("text", texts);
            String sql = "SELECT ?::numeric, ?::timestamptz, ?::jsonb, ?::int[], ?::text[], ?::uuid, ?::bytea, "
                + "?::date, ?::interval, ?::float8, ?::bool";
            try (PreparedStatement ps = c.prepareStatement(sql)) {
                List<Object> runs = new ArrayList<>();
                // twice: the second execution reads the server-prepared statement's results
                for (int run = 0; run < 2; run++) {
                    ps.setBigDecimal(1, numeric);
                    ps.setObject(2, ts);
                    ps.setObject(3, doc);
                    ps.setArray(4, intArray);
                    ps.setArray(5, textArray);
                    ps.setObject(6, uuid);
                    ps.setBytes(7, blob);
                    ps.setObject(8, LocalDate.of(1999, 12, 31));
                    ps.setObject(9, interval);
                    ps.setDouble(10, 0.1 + 0.2);
                    ps.setBoolean(11, true);
                    try (ResultSet rs = ps.executeQuery()) {
                        rs.next();
                        Map<String, Object> got = new LinkedHashMap<>();
                        got.put("numeric", rs.getBigDecimal(1).compareTo(numeric) == 0);
                        got.put("timestamptz", rs.getObject(2, OffsetDateTime.class).isEqual(ts));
                        got.put("timestamptz utc", rs.getObject(2, OffsetDateTime.class).toString());
                        got.put("jsonb", rs.getString(3));
                        got.put("int[]", Arrays.equals((Object[]) rs.getArray(4).getArray(), ints));
                        got.put("text[]", Arrays.equals((Object[]) rs.getArray(5).getArray(), texts));
                        got.put("uuid", uuid.equals(rs.getObject(6)));
                        got.put("bytea", Arrays.equals(rs.getBytes(7), blob));
                        got.put("date", rs.getObject(8, LocalDate.class).toString());
                        got.put("interval", rs.getString(9));
                        got.put("float8", rs.getDouble(10) == 0.1 + 0.2);
                        got.put("bool", rs.getBoolean(11));
                        runs.add(got);
                    }
                }
                out.put("runs", runs);
            }
            out.put("server text", query(c, "SELECT (?::numeric * 3)::text, ?::timestamptz AT TIME ZONE 'UTC', "
                + "?::text[]::text, length(?::bytea), md5(?::bytea)", numeric, ts, textArray, blob, blob).get(0));
            out.put("nulls", query(c, "SELECT ?::numeric, ?::timestamptz, ?::jsonb, ?::uuid, ?::bytea",
                null, null, null, null, null).get(0));
        }
        return out;
    }

    // --- cancel -------------------------------------------------------------------------------

    /** Waits until a statement containing `marker` runs on some server (pg_stat_activity). */
    static boolean waitUntilRunning(Connection monitor, String marker) throws Exception {
        try (PreparedStatement ps = monitor.prepareStatement("SELECT count(*) FROM pg_stat_activity "
                + "WHERE state = 'active' AND strpos(query, ?) > 0 AND pid <> pg_backend_pid()")) {
            ps.setString(1, marker);
            for (int i = 0; i < 600; i++) {
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    if (rs.getInt(1) > 0) {
                        return true;
                    }
                }
                Thread.sleep(50);
            }
        }
        return false;
    }

    interface SqlAction {
        void run() throws SQLException;
    }

    /** Runs `action` (a long statement) on its own thread, cancels it with `stmt.cancel()`
     *  once a statement containing `marker` runs; the outcome, and whether it ended long
     *  before it would have. */
    static List<Object> cancelWhileRunning(Connection monitor, Statement stmt, String marker, SqlAction action)
            throws Exception {
        ExecutorService exec = Executors.newSingleThreadExecutor();
        try {
            long start = System.nanoTime();
            Future<String> f = exec.submit(() -> {
                try {
                    action.run();
                    return "no error";
                } catch (SQLException e) {
                    return describe(e);
                }
            });
            boolean running = waitUntilRunning(monitor, marker);
            stmt.cancel();
            String outcome = f.get(120, TimeUnit.SECONDS);
            boolean early = System.nanoTime() - start < TimeUnit.SECONDS.toNanos(30);
            return List.of(running, outcome, early);
        } finally {
            exec.shutdownNow();
        }
    }

    static Object cancel() throws Exception {
        Map<String, Object> out = new TreeMap<>();
        AtomicBoolean stop = new AtomicBoolean(false);
        AtomicInteger bystanderRuns = new AtomicInteger();
        AtomicReference<String> phase = new AtomicReference<>("start");
        List<String> bystanderErrors = Collections.synchronizedList(new ArrayList<>());
        // another client running short statements all along: the cancels must not hit it
        Thread bystander = new Thread(() -> {
            try (Connection c = connect(); PreparedStatement ps = c.prepareStatement("SELECT pg_sleep(0.005), ?::int")) {
                while (!stop.get()) {
                    ps.setInt(1, bystanderRuns.incrementAndGet());
                    try {
                        ps.executeQuery().close();
                    } catch (SQLException e) {
                        bystanderErrors.add("during " + phase.get() + ": " + describe(e));
                    }
                }
            } catch (SQLException e) {
                bystanderErrors.add("during " + phase.get() + ": " + describe(e));
            }
        });
        bystander.start();
        try (Connection monitor = connect(); Connection c = connect()) {
            execute(c, "CREATE TABLE jd_cancel (id int)");

            phase.set("autocommit");
            String sleep = "SELECT pg_sleep(60) /* jdbc cancel: autocommit */";
            try (Statement s = c.createStatement()) {
                out.put("autocommit", cancelWhileRunning(monitor, s, "jdbc cancel: autocommit", () -> s.execute(sleep)));
            }
            out.put("autocommit: next statement", scalar(c, "SELECT 41 + 1"));

            phase.set("in a transaction");
            c.setAutoCommit(false);
            execute(c, "INSERT INTO jd_cancel VALUES (1)");
            String inTx = "SELECT pg_sleep(60) /* jdbc cancel: in a transaction */";
            try (Statement s = c.createStatement()) {
                out.put("in a transaction",
                    cancelWhileRunning(monitor, s, "jdbc cancel: in a transaction", () -> s.execute(inTx)));
            }
            try {
                scalar(c, "SELECT 1");
                out.put("in a transaction: next statement", "no error");
            } catch (SQLException e) {
                out.put("in a transaction: next statement", describe(e));
            }
            c.rollback();
            out.put("in a transaction: rows after rollback", scalar(c, "SELECT count(*) FROM jd_cancel"));
            c.commit();
            c.setAutoCommit(true);

            // a server-prepared statement (it ran once before), canceled on its second run
            phase.set("prepared");
            String prepared = "SELECT pg_sleep(?) /* jdbc cancel: prepared */";
            try (PreparedStatement ps = c.prepareStatement(prepared)) {
                ps.setDouble(1, 0);
                ps.executeQuery().close();
                ps.setDouble(1, 60);
                out.put("prepared",
                    cancelWhileRunning(monitor, ps, "jdbc cancel: prepared", () -> ps.executeQuery().close()));
                ps.setDouble(1, 0);
                ps.executeQuery().close();
                out.put("prepared: runs again", true);
            }

            // setQueryTimeout: pgjdbc cancels the statement itself
            phase.set("query timeout");
            try (Statement s = c.createStatement()) {
                s.setQueryTimeout(1);
                long start = System.nanoTime();
                try {
                    s.execute("SELECT pg_sleep(60) /* jdbc cancel: query timeout */");
                    out.put("query timeout", "no error");
                } catch (SQLException e) {
                    out.put("query timeout", describe(e));
                }
                out.put("query timeout: early", System.nanoTime() - start < TimeUnit.SECONDS.toNanos(30));
            }
            phase.set("after all cancels");
            out.put("after all cancels", scalar(c, "SELECT count(*) FROM generate_series(1, 10)"));
        } finally {
            stop.set(true);
            bystander.join(120_000);
        }
        out.put("bystander errors", bystanderErrors);
        out.put("bystander ran", bystanderRuns.get() > 0);
        return out;
    }

    // --- session settings stay with their connection ------------------------------------------

    static final int SETTING_CONNS = 6;
    static final String[] ZONES = {"UTC", "Asia/Kolkata", "America/New_York", "Europe/Berlin",
        "Australia/Adelaide", "Pacific/Chatham"};
    static final String[] LEVELS = {"read committed", "repeatable read", "serializable"};
    static final int[] JDBC_LEVELS = {Connection.TRANSACTION_READ_COMMITTED, Connection.TRANSACTION_REPEATABLE_READ,
        Connection.TRANSACTION_SERIALIZABLE};
    static final String CHECK = "SELECT current_setting('application_name'), current_setting('search_path'), "
        + "current_setting('TimeZone'), current_setting('transaction_isolation'), "
        + "current_setting('transaction_read_only'), (SELECT v FROM whoami), "
        + "'2024-03-04 05:06:07+00'::timestamptz::text";

    static Object sessionSettings() throws Exception {
        try (Connection c = connect()) {
            execute(c, "CREATE TABLE public.whoami (v int)", "INSERT INTO public.whoami VALUES (-1)");
            for (int i = 0; i < SETTING_CONNS; i++) {
                execute(c, "CREATE SCHEMA jd_iso_" + i, "CREATE TABLE jd_iso_" + i + ".whoami (v int)",
                    "INSERT INTO jd_iso_" + i + ".whoami VALUES (" + i + ")");
            }
        }
        List<String> mismatches = Collections.synchronizedList(new ArrayList<>());
        List<Callable<Object>> tasks = new ArrayList<>();
        for (int i = 0; i < SETTING_CONNS; i++) {
            int conn = i;
            tasks.add(() -> settingsClient(conn, mismatches));
        }
        List<Object> observed = parallel(tasks);
        Map<String, Object> out = new TreeMap<>();
        out.put("mismatches", summarize(mismatches));
        out.put("observed", observed);
        if (!mismatches.isEmpty()) {
            FAILED.add("session_settings");
        }
        for (Object o : observed) {
            if (o instanceof String) {
                FAILED.add("session_settings");
                break;
            }
        }
        return out;
    }

    static Object settingsClient(int i, List<String> mismatches) throws Exception {
        Set<String> seen = new TreeSet<>();
        try (Connection c = connect("ApplicationName", "jdbc_startup_" + i)) {
            c.setClientInfo("ApplicationName", "jdbc_" + i);
            c.setSchema("jd_iso_" + i);
            c.setTransactionIsolation(JDBC_LEVELS[i % 3]);
            execute(c, "SET TIME ZONE '" + ZONES[i] + "'");
            c.setAutoCommit(false);
            List<String> want = new ArrayList<>(List.of("jdbc_" + i, "jd_iso_" + i, ZONES[i], LEVELS[i % 3], "off",
                String.valueOf(i)));
            try (PreparedStatement check = c.prepareStatement(CHECK)) {
                for (int round = 0; round < 25; round++) {
                    boolean readOnly = round % 5 == 2;
                    c.setReadOnly(readOnly);
                    List<String> row = rows(check.executeQuery()).get(0);
                    List<String> expect = new ArrayList<>(want);
                    expect.set(4, readOnly ? "on" : "off");
                    if (!row.subList(0, 6).equals(expect)) {
                        mismatches.add("client " + i + " round " + round + ": " + row.subList(0, 6) + " is not "
                            + expect);
                    }
                    seen.add(String.join(" | ", row));
                    if (round == 10) {
                        // a session SET inside a rolled back transaction is undone
                        execute(c, "SET TIME ZONE 'Asia/Tokyo'");
                        c.rollback();
                    } else if (round == 15) {
                        // a session SET inside a committed transaction stays
                        execute(c, "SET TIME ZONE '" + ZONES[(i + 1) % SETTING_CONNS] + "'");
                        want.set(2, ZONES[(i + 1) % SETTING_CONNS]);
                        c.commit();
                    } else {
                        c.commit();
                    }
                    c.setReadOnly(false);
                }
            }
            c.commit();
        }
        return new ArrayList<>(seen);
    }

    // --- JSON -------------------------------------------------------------------------------

    static void writeJson(StringBuilder sb, Object value, int indent) {
        if (value == null) {
            sb.append("null");
        } else if (value instanceof String s) {
            writeString(sb, s);
        } else if (value instanceof Boolean || value instanceof Integer || value instanceof Long) {
            sb.append(value);
        } else if (value instanceof Map<?, ?> map) {
            if (map.isEmpty()) {
                sb.append("{}");
                return;
            }
            Map<String, Object> sorted = new TreeMap<>();
            map.forEach((k, v) -> sorted.put(String.valueOf(k), v));
            sb.append("{\n");
            int k = 0;
            for (Map.Entry<String, Object> e : sorted.entrySet()) {
                sb.append(" ".repeat(indent + 1));
                writeString(sb, e.getKey());
                sb.append(": ");
                writeJson(sb, e.getValue(), indent + 1);
                sb.append(++k < sorted.size() ? ",\n" : "\n");
            }
            sb.append(" ".repeat(indent)).append('}');
        } else if (value instanceof List<?> list) {
            if (list.isEmpty()) {
                sb.append("[]");
                return;
            }
            sb.append("[\n");
            for (int k = 0; k < list.size(); k++) {
                sb.append(" ".repeat(indent + 1));
                writeJson(sb, list.get(k), indent + 1);
                sb.append(k + 1 < list.size() ? ",\n" : "\n");
            }
            sb.append(" ".repeat(indent)).append(']');
        } else {
            writeString(sb, value.toString());
        }
    }

    static void writeString(StringBuilder sb, String s) {
        sb.append('"');
        for (int i = 0; i < s.length(); i++) {
            char ch = s.charAt(i);
            switch (ch) {
                case '"' -> sb.append("\\\"");
                case '\\' -> sb.append("\\\\");
                case '\n' -> sb.append("\\n");
                case '\r' -> sb.append("\\r");
                case '\t' -> sb.append("\\t");
                default -> {
                    if (ch < 0x20) {
                        sb.append(String.format("\\u%04x", (int) ch));
                    } else {
                        sb.append(ch);
                    }
                }
            }
        }
        sb.append('"');
    }
}
