//! "No passwords in pgate": users not in the configuration are looked up on their
//! backend with `auth_query` (through `auth_user`), and pgate logs into the backend with the
//! client's SCRAM ClientKey (or the stored md5 hash), over plaintext and over TLS with
//! channel binding.

mod common;

use common::certs::make_pki;
use common::process::{PgateProcess, free_port};
use common::*;

const RITA_PW: &str = "rita-secret";
const LOOKUP_PW: &str = "lookup-secret";
const MONA_PW: &str = "mona-secret";

/// The roles these tests share, each created once; tests run in parallel, so an advisory
/// lock serializes the check-then-create.
fn ensure_roles(cluster: &pgate::demo::cluster::Cluster) {
    cluster
        .psql(
            "postgres",
            &format!(
                "BEGIN;
                 SELECT pg_advisory_xact_lock(4242);
                 DO $$BEGIN
                   IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgate_auth') THEN
                     CREATE ROLE pgate_auth LOGIN PASSWORD '{LOOKUP_PW}';
                   END IF;
                   IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rita') THEN
                     CREATE ROLE rita LOGIN PASSWORD '{RITA_PW}';
                   END IF;
                   IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mona') THEN
                     SET LOCAL password_encryption = 'md5';
                     CREATE ROLE mona LOGIN PASSWORD '{MONA_PW}';
                   END IF;
                 END$$;
                 COMMIT;"
            ),
        )
        .unwrap();
}

/// The lookup function README documents, and the roles for these tests.
fn prepare(cluster: &pgate::demo::cluster::Cluster, db: &str) {
    ensure_roles(cluster);
    cluster
        .psql(
            db,
            "CREATE SCHEMA IF NOT EXISTS pgate;
             CREATE OR REPLACE FUNCTION pgate.user_lookup(i_username text, OUT usename name, OUT passwd text)
               RETURNS record LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS
             $$ SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END
                FROM pg_authid WHERE rolname = i_username AND rolcanlogin $$;
             REVOKE ALL ON FUNCTION pgate.user_lookup(text) FROM PUBLIC;
             GRANT USAGE ON SCHEMA pgate TO pgate_auth;
             GRANT EXECUTE ON FUNCTION pgate.user_lookup(text) TO pgate_auth;
             GRANT ALL ON SCHEMA public TO rita, mona;",
        )
        .unwrap();
}

/// mona's password is checked by the server with md5 (stored as md5, and pg_hba says so).
fn allow_md5(cluster: &pgate::demo::cluster::Cluster) {
    let hba = cluster.data_dir().join("pg_hba.conf");
    let old = std::fs::read_to_string(&hba).unwrap();
    if !old.contains("mona") {
        std::fs::write(&hba, format!("host all mona 127.0.0.1/32 md5\n{old}")).unwrap();
        cluster.psql("postgres", "SELECT pg_reload_conf()").unwrap();
    }
}

fn lookup_config(head: &str, port: u16, tls: &str) -> String {
    format!(
        "[listen]\naddress = \"127.0.0.1:0\"\n[metrics]\naddress = \"127.0.0.1:0\"\n{head}\n[auth]\nauth_user = \"pgate_auth\"\nauth_password = \"{LOOKUP_PW}\"\n\
         auth_query_ttl = \"1h\"\n\n[backends.main]\nhost = \"localhost\"\nport = {port}\ndatabases = [\"*\"]\n{tls}\n"
    )
}

async fn login(
    pgate: &Pgate,
    user: &str,
    password: &str,
    db: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    pgate.connect(user, password, db).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_passthrough_with_the_password_nowhere_in_pgate() {
    fresh_database("pt_scram");
    let data = &backends().data;
    prepare(data, "pt_scram");
    let text = lookup_config("", data.port(), "");
    assert!(!text.contains(RITA_PW));
    let pgate = Pgate::start(&text).await;

    let rita = login(&pgate, "rita", RITA_PW, "pt_scram").await.expect("rita logs in with her own password");
    let row =
        simple_row(&rita, "SELECT current_user, (SELECT count(*) FROM pg_stat_activity WHERE usename = 'rita')").await;
    assert_eq!(row[0], "rita", "pgate logged into the backend as rita");
    // More servers for the same pool: each logs in with the passed-through key.
    let more: Vec<_> = futures::future::join_all((0..3).map(|_| login(&pgate, "rita", RITA_PW, "pt_scram"))).await;
    let busy = more.iter().map(|c| c.as_ref().unwrap().batch_execute("BEGIN; SELECT pg_sleep(0.2); COMMIT"));
    for r in futures::future::join_all(busy).await {
        r.unwrap();
    }

    let wrong = login(&pgate, "rita", "not-it", "pt_scram").await.unwrap_err();
    assert_eq!(sqlstate(&wrong).as_deref(), Some("28P01"));
    let ghost = login(&pgate, "nobody_here", "x", "pt_scram").await.unwrap_err();
    assert_eq!(db_message(&ghost), "password authentication failed for user \"nobody_here\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_password_is_picked_up_after_one_failure() {
    fresh_database("pt_change");
    let data = &backends().data;
    prepare(data, "pt_change");
    data.psql("postgres", "CREATE ROLE rosa LOGIN PASSWORD 'old-pw'").unwrap();
    let pgate = Pgate::start(&lookup_config("", data.port(), "")).await;
    login(&pgate, "rosa", "old-pw", "pt_change").await.expect("old password");
    data.psql("postgres", "ALTER ROLE rosa PASSWORD 'new-pw'").unwrap();
    // The cached secret is stale: this attempt fails and drops it; the next one works.
    assert!(login(&pgate, "rosa", "new-pw", "pt_change").await.is_err());
    login(&pgate, "rosa", "new-pw", "pt_change").await.expect("new password after the refresh");
    assert!(login(&pgate, "rosa", "old-pw", "pt_change").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_secrets_pass_through_too() {
    fresh_database("pt_md5");
    let data = &backends().data;
    prepare(data, "pt_md5");
    allow_md5(data);
    let pgate =
        Pgate::start(&lookup_config("", data.port(), "").replace("[auth]\n", "[auth]\nmethod = \"md5\"\n")).await;
    let mona = login(&pgate, "mona", MONA_PW, "pt_md5").await.expect("md5 login");
    assert_eq!(simple_row(&mona, "SELECT current_user").await, ["mona"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_lookup_function_is_a_clear_error() {
    fresh_database("pt_nofunc");
    let pgate = Pgate::start(&lookup_config("", backends().data.port(), "")).await;
    ensure_roles(&backends().data);
    let err = login(&pgate, "whoever", "x", "pt_nofunc").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("28000"));
    assert!(db_message(&err).contains("auth_query"), "{}", db_message(&err));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_over_tls_with_channel_binding() {
    let pki = make_pki();
    let cluster = tls_cluster("pt_tls", &pki);
    prepare(&cluster, "akko");
    let tls = format!("tls = {{ mode = \"verify-full\", root_cert = \"{}\" }}", pki.path("ca.crt").display());
    let pgate = Pgate::start(&lookup_config("", cluster.port(), &tls)).await;
    let rita = login(&pgate, "rita", RITA_PW, "akko").await.expect("rita over TLS");
    let row = simple_row(&rita, "SELECT current_user, ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()").await;
    assert_eq!(row, ["rita", "true"]);
}

/// rita's SCRAM keys as PostgreSQL stores them and as her login proves them: StoredKey and
/// ServerKey (base64, from pg_authid), and ClientKey (base64 and hex).
fn rita_keys(cluster: &pgate::demo::cluster::Cluster) -> Vec<String> {
    use base64::Engine;
    let verifier = cluster.psql("postgres", "SELECT rolpassword FROM pg_authid WHERE rolname = 'rita'").unwrap();
    // SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
    let (_, rest) = verifier.trim().split_once('$').expect("a SCRAM verifier");
    let (params, keys) = rest.split_once('$').unwrap();
    let (iterations, salt) = params.split_once(':').unwrap();
    let (stored, server) = keys.split_once(':').unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let salt = b64.decode(salt).unwrap();
    let mut salted = [0u8; 32];
    let iterations = std::num::NonZeroU32::new(iterations.parse().unwrap()).unwrap();
    ring::pbkdf2::derive(ring::pbkdf2::PBKDF2_HMAC_SHA256, iterations, &salt, RITA_PW.as_bytes(), &mut salted);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &salted);
    let client_key = ring::hmac::sign(&key, b"Client Key");
    // The key is right if it hashes to the StoredKey PostgreSQL keeps.
    assert_eq!(b64.encode(ring::digest::digest(&ring::digest::SHA256, client_key.as_ref())), stored);
    let hex: String = client_key.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    vec![stored.to_owned(), server.to_owned(), b64.encode(client_key.as_ref()), hex]
}

/// pgate on `text` (its listen address replaced by a free port) at the most verbose log
/// level, every crate: `PGATE_LOG=trace`. Returns it and its port once it listens.
async fn verbose_pgate(text: &str) -> (PgateProcess, u16) {
    let port = free_port();
    let text = text.replacen("address = \"127.0.0.1:0\"", &format!("address = \"127.0.0.1:{port}\""), 1);
    let pgate = PgateProcess::start(&text, "trace");
    pgate.wait_listening(port).await;
    (pgate, port)
}

/// Asserts that the log is verbose (at least `lines` long, with each of `expected`) and that
/// no line holds a secret.
fn assert_no_secret(logged: &str, lines: usize, expected: &[&str], secrets: &[String]) {
    assert!(logged.lines().count() >= lines, "verbose logging is on: {} lines", logged.lines().count());
    for expected in expected {
        assert!(logged.contains(expected), "the log has {expected:?}");
    }
    for secret in secrets {
        let leak = logged.lines().find(|line| line.contains(secret.as_str()));
        assert!(leak.is_none(), "a secret is in the log: {}", leak.unwrap_or_default());
    }
}

/// Logs in with tokio-postgres; asserts the login's outcome and, if in, who it is.
async fn login_as(conninfo: &str, user: &str, ok: bool) {
    match connect(conninfo).await {
        Ok(client) => {
            assert!(ok, "{user} with a wrong password got in");
            assert_eq!(simple_row(&client, "SELECT current_user").await, [user]);
        }
        Err(e) => assert!(!ok, "{user}: {}", db_message(&e)),
    }
}

/// Logins (ok and failed; SCRAM, md5, passthrough of a SCRAM ClientKey) and reloads (valid,
/// invalid, and unparsable on a password's line) through the pgate binary at the most
/// verbose log level: no password, SCRAM secret, ClientKey or `auth_password` appears in
/// any log line, nor in what `pgate check` says of the broken files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_log_at_the_most_verbose_level() {
    fresh_database("pt_logs");
    let data = &backends().data;
    prepare(data, "pt_logs");
    let bob_secret = postgres_protocol::password::scram_sha_256(BOB_PW.as_bytes());
    let users = format!(
        "[[users]]\nname = \"alice\"\npassword = \"{ALICE_PW}\"\nserver_password = \"{ALICE_PW}\"\n\n\
         [[users]]\nname = \"bob\"\npassword = \"{bob_secret}\"\nserver_password = \"{BOB_PW}\"\n\n\
         [[users]]\nname = \"carol\"\npassword = \"{CAROL_PW}\"\nauth = \"md5\"\nserver_password = \"{CAROL_PW}\"\n"
    );
    let text = format!("{}\n{users}", lookup_config("", data.port(), ""));
    let (pgate, port) = verbose_pgate(&text).await;
    let text = std::fs::read_to_string(&pgate.config).unwrap();
    let conninfo = |user: &str, password: &str| {
        format!("host=127.0.0.1 port={port} user={user} password='{password}' dbname=pt_logs sslmode=disable")
    };
    let logins = [
        ("alice", ALICE_PW, true),
        ("alice", "alice-wrong-guess", false),
        ("bob", BOB_PW, true),
        ("carol", CAROL_PW, true),
        ("carol", "carol-wrong-guess", false),
        ("rita", RITA_PW, true),
        ("rita", "rita-wrong-guess", false),
    ];
    // Broken files a reload refuses: an invalid value, a string left open on a password's
    // line, junk behind a password, and a numeric password written without quotes.
    const NUMERIC_PW: &str = "98765432";
    let broken = [
        text.replace("auth_query_ttl = \"1h\"", "auth_query_ttl = \"soon\""),
        text.replace(&format!("password = \"{ALICE_PW}\"\n"), &format!("password = \"{ALICE_PW}\n")),
        text.replace(&format!("password = \"{BOB_PW}\"\n"), &format!("password = \"{BOB_PW}\" {CAROL_PW}\n")),
        format!("{text}\n[[users]]\nname = \"zed\"\npassword = {NUMERIC_PW}\n"),
    ];
    let settle = std::time::Duration::from_millis(500);
    for round in 0..2 {
        for (user, password, ok) in logins {
            login_as(&conninfo(user, password), user, ok).await;
        }
        if round == 0 {
            // A valid reload, then the broken ones: all are logged.
            pgate.reload(&text, settle).await;
            for bad in &broken {
                pgate.reload(bad, settle).await;
                let check = std::process::Command::new(env!("CARGO_BIN_EXE_pgate"))
                    .args(["check", "--config", pgate.config.to_str().unwrap()])
                    .output()
                    .unwrap();
                let said =
                    format!("{}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));
                assert!(!check.status.success(), "pgate check accepts a broken file: {said}");
                for secret in [ALICE_PW, BOB_PW, CAROL_PW, NUMERIC_PW] {
                    assert!(!said.contains(secret), "pgate check shows a secret: {said}");
                }
            }
            std::fs::write(&pgate.config, &text).unwrap();
        }
    }
    let logged = pgate.stop();

    // What the most verbose level gives: every login and session end, refusals, reloads.
    let expected = [
        "configuration reloaded",
        "configuration reload failed",
        "DEBUG",
        "logged in",
        "invalid type: integer, expected a string",
    ];
    let mut secrets: Vec<String> = [ALICE_PW, BOB_PW, CAROL_PW, RITA_PW, LOOKUP_PW, MONA_PW, NUMERIC_PW]
        .into_iter()
        .chain(["alice-wrong-guess", "carol-wrong-guess", "rita-wrong-guess"])
        .map(str::to_owned)
        .collect();
    let bob_keys = bob_secret.split(['$', ':']).filter(|part| part.len() >= 24).map(str::to_owned);
    secrets.extend(bob_keys.chain(rita_keys(data)));
    // The md5 hash carol's server login sends.
    secrets.push(postgres_protocol::password::md5(CAROL_PW.as_bytes(), "carol"));
    assert_no_secret(&logged, 20, &expected, &secrets);
}

/// md5 for every client (`[auth] method = "md5"`) with passthrough: pgate logs into the
/// backend with the md5 hash auth_query found. Neither the password nor that hash is logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_log_with_md5_passthrough() {
    fresh_database("pt_md5_logs");
    let data = &backends().data;
    prepare(data, "pt_md5_logs");
    allow_md5(data);
    let text = lookup_config("", data.port(), "").replace("[auth]\n", "[auth]\nmethod = \"md5\"\n");
    let (pgate, port) = verbose_pgate(&text).await;
    let conninfo = |password: &str| {
        format!("host=127.0.0.1 port={port} user=mona password='{password}' dbname=pt_md5_logs sslmode=disable")
    };
    for _ in 0..2 {
        login_as(&conninfo(MONA_PW), "mona", true).await;
        login_as(&conninfo("mona-wrong-guess"), "mona", false).await;
    }
    let logged = pgate.stop();
    let stored = data.psql("postgres", "SELECT rolpassword FROM pg_authid WHERE rolname = 'mona'").unwrap();
    assert!(stored.starts_with("md5"), "mona's password is stored as md5: {stored}");
    let secrets = [MONA_PW, "mona-wrong-guess", LOOKUP_PW, stored.as_str(), &stored[3..]].map(str::to_owned);
    // Two logins in, two refused, each logged; the DEBUG lines are the sessions'.
    assert_no_secret(&logged, 6, &["DEBUG", "logged in", "password authentication failed"], &secrets);
}

/// Certificate logins over TLS (`[auth] method = "cert"`, a CRL), accepted and refused:
/// no line of pgate's private key or the clients' appears, nor the server password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_log_with_certificate_logins() {
    let pki = make_pki();
    let tls = format!(
        "[tls]\nmode = \"require\"\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\ncrl = \"{}\"\n\n\
         [auth]\nmethod = \"cert\"\n",
        pki.cert("server"),
        pki.key("server"),
        pki.path("ca.crt").display(),
        pki.path("ca.crl").display()
    );
    let data = &backends().data;
    let text = format!(
        "[listen]\naddress = \"127.0.0.1:0\"\n[metrics]\naddress = \"127.0.0.1:0\"\n{tls}\n\
         [backends.data]\nhost = \"127.0.0.1\"\nport = {}\ndatabases = [\"akko\"]\n\n\
         [[users]]\nname = \"alice\"\nserver_password = \"{ALICE_PW}\"\n",
        data.port()
    );
    let (pgate, port) = verbose_pgate(&text).await;
    let psql = |cert: &str| {
        let conninfo = format!(
            "host=localhost hostaddr=127.0.0.1 port={port} user=alice dbname=akko sslmode=verify-full \
             sslrootcert={} sslcert={} sslkey={}",
            pki.path("ca.crt").display(),
            pki.cert(cert),
            pki.key(cert)
        );
        tool("psql").arg(conninfo).args(["-X", "-A", "-t", "-w", "-c", "SELECT current_user"]).output().unwrap()
    };
    for (cert, ok) in [("alice", true), ("bob", false), ("revoked", false), ("stranger", false), ("alice", true)] {
        let out = psql(cert);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(stdout.trim() == "alice", ok, "{cert}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    }
    let logged = pgate.stop();
    // Every base64 line of every private key (the PEM armor lines excepted).
    let mut secrets = vec![ALICE_PW.to_owned()];
    for entry in std::fs::read_dir(&pki.dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "key") {
            let pem = std::fs::read_to_string(&path).unwrap();
            secrets.extend(pem.lines().filter(|l| !l.starts_with("-----") && l.len() >= 16).map(str::to_owned));
        }
    }
    assert!(secrets.len() > 10, "key material to look for: {}", secrets.len());
    assert_no_secret(&logged, 8, &["DEBUG", "logged in", "certificate"], &secrets);
}
