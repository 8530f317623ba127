//! Data through pgate: COPY both ways, large results and large values, and the libpq
//! tools (psql, pgbench) under load in transaction pooling.

mod common;

use bytes::Bytes;
use common::*;
use futures::{SinkExt, TryStreamExt};
use tokio_postgres::types::Type;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out_through_transaction_pooling() {
    fresh_database("data_copy");
    let pgate = Pgate::start(&config_with_fallback("[pool]\nsize = 2\n")).await;
    let client = pgate.alice("data_copy").await;
    client.batch_execute("CREATE TABLE c (id int, label text)").await.unwrap();

    let sink = client.copy_in("COPY c (id, label) FROM STDIN").await.unwrap();
    futures::pin_mut!(sink);
    let mut chunk = String::new();
    for i in 0..20_000 {
        chunk.push_str(&format!("{i}\tlabel {i}\n"));
        if chunk.len() > 60_000 {
            sink.send(Bytes::from(std::mem::take(&mut chunk))).await.unwrap();
        }
    }
    sink.send(Bytes::from(chunk)).await.unwrap();
    assert_eq!(sink.finish().await.unwrap(), 20_000);

    let stream = client.copy_out("COPY (SELECT * FROM c ORDER BY id) TO STDOUT").await.unwrap();
    let chunks: Vec<Bytes> = stream.try_collect().await.unwrap();
    let text: Vec<u8> = chunks.concat();
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 20_000);
    assert_eq!(lines[19_999], b"19999\tlabel 19999");

    // A COPY that fails midway leaves the session and the server usable.
    let sink = client.copy_in("COPY c (id, label) FROM STDIN").await.unwrap();
    futures::pin_mut!(sink);
    sink.send(Bytes::from_static(b"1\tok\nnot-a-number\tbad\n")).await.unwrap();
    let err = sink.finish().await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("22P02"));
    assert_eq!(simple_row(&client, "SELECT count(*) FROM c").await, ["20000"]);

    // psql's \copy (COPY ... FROM STDIN over the simple protocol).
    let file = std::env::temp_dir().join(format!("pgate-copy-{}.csv", std::process::id()));
    std::fs::write(&file, "1,psql one\n2,psql two\n").unwrap();
    let out = tool("psql")
        .arg(pgate.conninfo("alice", ALICE_PW, "data_copy"))
        .args(["-X", "-c", &format!("\\copy c FROM '{}' CSV", file.display())])
        .output()
        .unwrap();
    std::fs::remove_file(&file).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(simple_row(&client, "SELECT count(*) FROM c WHERE label LIKE 'psql%'").await, ["2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_results_and_values_pass_whole() {
    let pgate = Pgate::start(&config("[pool]\nsize = 2\n")).await;
    let client = pgate.alice("akko").await;
    let rows = client.query_typed("SELECT g, md5(g::text) FROM generate_series(1, 100000) g", &[]).await.unwrap();
    assert_eq!(rows.len(), 100_000);
    assert_eq!(rows[99_999].get::<_, i32>(0), 100_000);
    let messages = client.simple_query("SELECT g FROM generate_series(1, 100000) g").await.unwrap();
    let n = messages.iter().filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_))).count();
    assert_eq!(n, 100_000);

    // 10 MB out (one DataRow larger than every buffer) and 10 MB in (one Bind).
    let ten_mb = 10 * 1024 * 1024;
    let row =
        &client.query_typed("SELECT decode(repeat('ab', $1), 'hex')", &[(&(ten_mb as i32), Type::INT4)]).await.unwrap()
            [0];
    let value: Vec<u8> = row.get(0);
    assert_eq!(value.len(), ten_mb);
    assert!(value.iter().all(|&b| b == 0xab));
    let payload: Vec<u8> = (0..ten_mb).map(|i| (i % 251) as u8).collect();
    let row = &client.query_typed("SELECT length($1), md5($1)", &[(&payload, Type::BYTEA)]).await.unwrap()[0];
    assert_eq!(row.get::<_, i32>(0), ten_mb as i32);
    let expected = md5_hex(&payload);
    assert_eq!(row.get::<_, String>(1), expected);
}

fn md5_hex(data: &[u8]) -> String {
    use md5::Digest;
    md5::Md5::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

fn pgbench(pgate: &Pgate, db: &str, args: &[&str]) -> String {
    let out = tool("pgbench")
        .args(["-h", "127.0.0.1", "-p", &pgate.port().to_string(), "-U", "alice"])
        .args(args)
        .arg(db)
        .env("PGPASSWORD", ALICE_PW)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "pgbench {args:?} failed:\n{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_runs_clean_in_transaction_pooling() {
    fresh_database("data_bench");
    let pgate = Pgate::start(&config_with_fallback("[pool]\nsize = 4\n")).await;
    let watch = ConnectionWatch::start("data_bench", "alice");
    pgbench(&pgate, "data_bench", &["-i", "-q", "-s", "1"]);
    for mode in ["simple", "extended"] {
        let out = pgbench(&pgate, "data_bench", &["-n", "-c", "16", "-j", "2", "-t", "100", "-M", mode]);
        assert!(out.contains("number of transactions actually processed: 1600/1600"), "{out}");
        assert!(out.contains("number of failed transactions: 0"), "{out}");
    }
    let out = pgbench(&pgate, "data_bench", &["-n", "-c", "8", "-j", "2", "-t", "50", "-S", "-C"]);
    assert!(out.contains("number of transactions actually processed: 400/400"), "{out}");
    assert!(watch.max() <= 4);
    // The TPC-B-like runs added up: every transaction inserted one history row (-n keeps
    // pgbench from truncating the history before each run).
    let client = pgate.alice("data_bench").await;
    assert_eq!(simple_row(&client, "SELECT count(*) FROM pgbench_history").await, ["3200"]);
}
