//! "No passwords in pgate": users not in the configuration are looked up on their
//! backend with `auth_query` (through `auth_user`), and pgate logs into the backend with the
//! client's SCRAM ClientKey (or the stored md5 hash), over plaintext and over TLS with
//! channel binding.

mod common;

use common::certs::make_pki;
use common::*;

const RITA_PW: &str = "rita-secret";
const LOOKUP_PW: &str = "lookup-secret";

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
                     CREATE ROLE mona LOGIN PASSWORD 'mona-secret';
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
    let hba = data.data_dir().join("pg_hba.conf");
    let old = std::fs::read_to_string(&hba).unwrap();
    if !old.contains("mona") {
        std::fs::write(&hba, format!("host all mona 127.0.0.1/32 md5\n{old}")).unwrap();
        data.psql("postgres", "SELECT pg_reload_conf()").unwrap();
    }
    let pgate =
        Pgate::start(&lookup_config("", data.port(), "").replace("[auth]\n", "[auth]\nmethod = \"md5\"\n")).await;
    let mona = login(&pgate, "mona", "mona-secret", "pt_md5").await.expect("md5 login");
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

/// The pgate process of a test; killed if the test ends early.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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

/// Logins (ok and failed; SCRAM, md5, passthrough of a SCRAM ClientKey) and reloads (valid and not) through the pgate binary at the most verbose log level
/// (`PGATE_LOG=trace`, every crate): no password, SCRAM secret, ClientKey or
/// `auth_password` appears in any log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_log_at_the_most_verbose_level() {
    fresh_database("pt_logs");
    let data = &backends().data;
    prepare(data, "pt_logs");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let bob_secret = postgres_protocol::password::scram_sha_256(BOB_PW.as_bytes());
    let users = format!(
        "[[users]]\nname = \"alice\"\npassword = \"{ALICE_PW}\"\nserver_password = \"{ALICE_PW}\"\n\n\
         [[users]]\nname = \"bob\"\npassword = \"{bob_secret}\"\nserver_password = \"{BOB_PW}\"\n\n\
         [[users]]\nname = \"carol\"\npassword = \"{CAROL_PW}\"\nauth = \"md5\"\nserver_password = \"{CAROL_PW}\"\n"
    );
    let text = format!("{}\n{users}", lookup_config("", data.port(), ""))
        .replace("address = \"127.0.0.1:0\"\n[metrics]", &format!("address = \"127.0.0.1:{port}\"\n[metrics]"));
    let dir = tempfile::tempdir().unwrap();
    let (config, log) = (dir.path().join("pgate.toml"), dir.path().join("pgate.log"));
    std::fs::write(&config, &text).unwrap();
    let mut child = Running(
        std::process::Command::new(env!("CARGO_BIN_EXE_pgate"))
            .args(["--config", config.to_str().unwrap()])
            .env("PGATE_LOG", "trace")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let conninfo = |user: &str, password: &str| {
        format!("host=127.0.0.1 port={port} user={user} password='{password}' dbname=pt_logs sslmode=disable")
    };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let signal = |name: &str| {
        let status = std::process::Command::new("kill").args([&format!("-{name}"), &child.0.id().to_string()]).status();
        assert!(status.unwrap().success());
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
    for round in 0..2 {
        for (user, password, ok) in logins {
            let result = connect(&conninfo(user, password)).await;
            match result {
                Ok(client) => {
                    assert!(ok, "{user} with a wrong password got in");
                    assert_eq!(simple_row(&client, "SELECT current_user").await, [user]);
                }
                Err(e) => assert!(!ok, "{user}: {}", db_message(&e)),
            }
        }
        if round == 0 {
            // A valid reload, then one of a file with an error: both are logged.
            signal("HUP");
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            std::fs::write(&config, text.replace("auth_query_ttl = \"1h\"", "auth_query_ttl = \"soon\"")).unwrap();
            signal("HUP");
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            std::fs::write(&config, &text).unwrap();
        }
    }
    signal("TERM");
    assert!(child.0.wait().unwrap().success());

    let logged = std::fs::read_to_string(&log).unwrap();
    // What the most verbose level gives: every login and session end, refusals, reloads.
    assert!(logged.lines().count() >= 20, "verbose logging is on: {} lines", logged.lines().count());
    for expected in ["configuration reloaded", "configuration reload failed", "DEBUG", "logged in"] {
        assert!(logged.contains(expected), "the log has {expected:?}");
    }
    let mut secrets: Vec<String> = [ALICE_PW, BOB_PW, CAROL_PW, RITA_PW, LOOKUP_PW, "mona-secret"]
        .into_iter()
        .chain(["alice-wrong-guess", "carol-wrong-guess", "rita-wrong-guess"])
        .map(str::to_owned)
        .collect();
    let bob_keys = bob_secret.split(['$', ':']).filter(|part| part.len() >= 24).map(str::to_owned);
    secrets.extend(bob_keys.chain(rita_keys(data)));
    // The md5 hash carol's server login sends.
    secrets.push(postgres_protocol::password::md5(CAROL_PW.as_bytes(), "carol"));
    for secret in &secrets {
        let leak = logged.lines().find(|line| line.contains(secret.as_str()));
        assert!(leak.is_none(), "a secret is in the log: {}", leak.unwrap_or_default());
    }
}
