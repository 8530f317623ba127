//! Routing by database name (both backends, aliases, fallback, unknown names) and client
//! and server authentication (SCRAM, md5, cleartext, trust, trust networks).

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databases_route_to_their_backend_and_aliases_to_their_server_database() {
    let b = backends();
    let pgate = Pgate::start(&config("")).await;
    for (db, port, server_db) in [
        ("keycloak", b.infra.port(), "keycloak"),
        ("airflow", b.infra.port(), "airflow"),
        ("akko", b.data.port(), "akko"),
        ("rag", b.data.port(), "lightrag"),
    ] {
        let client = pgate.alice(db).await;
        let row = client.query_one("SELECT current_setting('port')::int, current_database()::text", &[]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), port as i32, "{db} reached the wrong backend");
        assert_eq!(row.get::<_, String>(1), server_db);
    }
    let client = pgate.alice("akko").await;
    let n: i64 = client.query_one("SELECT count(*) FROM items", &[]).await.unwrap().get(0);
    assert_eq!(n, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_database_is_3d000_listing_the_routed_names() {
    let pgate = Pgate::start(&config("")).await;
    let err = pgate.connect("alice", ALICE_PW, "nope").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("3D000"));
    assert_eq!(db_message(&err), "database \"nope\" is not routed by pgate; known: aden, airflow, akko, keycloak, rag");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_backend_takes_unlisted_names_and_reports_missing_databases() {
    let b = backends();
    let text = config("").replace("databases = [\"akko\", \"aden\"]", "databases = [\"akko\", \"*\"]");
    let pgate = Pgate::start(&text).await;
    // aden is not listed but exists on the data backend.
    let client = pgate.alice("aden").await;
    let port: i32 = client.query_one("SELECT current_setting('port')::int", &[]).await.unwrap().get(0);
    assert_eq!(port, b.data.port() as i32);
    let err = pgate.connect("alice", ALICE_PW, "no_such_db").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("3D000"));
    assert!(db_message(&err).contains("no_such_db"), "{}", db_message(&err));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_user_fail_alike_with_28p01() {
    let pgate = Pgate::start(&config("")).await;
    let wrong = pgate.connect("alice", "not-it", "akko").await.unwrap_err();
    assert_eq!(sqlstate(&wrong).as_deref(), Some("28P01"));
    assert_eq!(db_message(&wrong), "password authentication failed for user \"alice\"");
    let ghost = pgate.connect("ghost", "whatever", "akko").await.unwrap_err();
    assert_eq!(sqlstate(&ghost).as_deref(), Some("28P01"));
    assert_eq!(db_message(&ghost), "password authentication failed for user \"ghost\"");
    // dave has no password: without a trust network he cannot log in either.
    let dave = pgate.connect("dave", "", "akko").await.unwrap_err();
    assert_eq!(sqlstate(&dave).as_deref(), Some("28P01"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_auth_methods_scram_md5_cleartext_and_trust() {
    let text = config("[auth]\ntrust_networks = [\"127.0.0.1/32\"]\n");
    let pgate = Pgate::start(&text).await;
    for user in ["alice", "bob", "carol", "dave"] {
        // From a trusted network no client password is needed; the server login still
        // uses each user's own method (SCRAM, md5, cleartext, trust).
        let client = pgate.connect(user, "", "aden").await.unwrap_or_else(|e| panic!("{user}: {e}"));
        let who: String = client.query_one("SELECT current_user::text", &[]).await.unwrap().get(0);
        assert_eq!(who, user);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_md5_and_scram_secrets() {
    let pgate = Pgate::start(&config("[auth]\nmethod = \"md5\"\n")).await;
    // carol's plain password answers md5; bob's SCRAM secret makes pgate use SCRAM anyway.
    pgate.connect("carol", CAROL_PW, "akko").await.expect("carol over md5");
    pgate.connect("bob", BOB_PW, "akko").await.expect("bob over SCRAM");
    let err = pgate.connect("carol", "bad", "akko").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("28P01"));
    let out = tool("psql")
        .arg(pgate.conninfo("carol", CAROL_PW, "akko"))
        .args(["-X", "-A", "-t", "-c", "SELECT current_user"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "carol", "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_networks_admit_only_listed_addresses() {
    let inside = Pgate::start(&config("[auth]\ntrust_networks = [\"127.0.0.1/32\"]\n")).await;
    inside.connect("dave", "", "akko").await.expect("trusted from 127.0.0.1");
    let outside = Pgate::start(&config("[auth]\ntrust_networks = [\"10.0.0.0/8\"]\n")).await;
    let err = outside.connect("dave", "", "akko").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("28P01"));
    // The same listener, entered from another loopback address (127.0.0.2), is not trusted.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let stream = socket.connect(inside.addr).await.unwrap();
    let config: tokio_postgres::Config = inside.conninfo("dave", "", "akko").parse().unwrap();
    let Err(err) = config.connect_raw(stream, tokio_postgres::NoTls).await else {
        panic!("a client from 127.0.0.2 was let in without a password");
    };
    assert_eq!(sqlstate(&err).as_deref(), Some("28P01"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_method_trust_refuses_other_networks() {
    let pgate = Pgate::start(&config("[auth]\nmethod = \"trust\"\ntrust_networks = [\"10.0.0.0/8\"]\n")).await;
    let err = pgate.connect("alice", ALICE_PW, "akko").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("28000"));
    assert!(db_message(&err).contains("not in auth.trust_networks"), "{}", db_message(&err));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_server_password_is_reported_as_a_pgate_setup_problem() {
    let text = config("").replace(&format!("server_password = \"{BOB_PW}\""), "server_password = \"stale\"");
    let pgate = Pgate::start(&text).await;
    let err = pgate.connect("bob", BOB_PW, "akko").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("08006"));
    let db = err.as_db_error().unwrap();
    assert!(db.message().contains("backend data refused the login of \"bob\""), "{}", db.message());
    assert!(db.hint().unwrap_or_default().contains("server_password"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_logs_in_with_scram_and_sees_its_application_name() {
    let pgate = Pgate::start(&config("")).await;
    let out = tool("psql")
        .arg(format!("{} application_name=from_psql", pgate.conninfo("alice", ALICE_PW, "akko")))
        .args(["-X", "-A", "-t", "-c", "SELECT current_setting('application_name'), count(*) FROM items"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "from_psql|100");
}
