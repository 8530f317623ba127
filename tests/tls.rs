//! TLS through pgate with real libpq (psql) and rustls clients: the sslmode matrix
//! (6 client modes x 6 pgate modes), certificate failures (wrong host, expired, other CA,
//! revoked), cert authentication with and without a map, SCRAM channel binding, direct
//! TLS, plaintext smuggled behind an SSLRequest, backend TLS modes against TLS and
//! non-TLS servers, and certificate reload.

mod common;

use std::process::Output;
use std::sync::{Arc, OnceLock};

use common::certs::{Pki, make_pki};
use common::raw::*;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MODES: [&str; 6] = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"];

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(make_pki)
}

fn tls_section(mode: &str, extra: &str) -> String {
    let p = pki();
    format!(
        "[tls]\nmode = \"{mode}\"\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\ncrl = \"{}\"\n{extra}\n",
        p.cert("server"),
        p.key("server"),
        p.path("ca.crt").display(),
        p.path("ca.crl").display()
    )
}

/// psql through pgate with `params` added to a conninfo for alice on akko; the host is
/// `localhost` (the certificate's name) at 127.0.0.1.
fn psql(pgate: &Pgate, params: &str, sql: &str) -> Output {
    let p = pki();
    let conninfo = format!(
        "host=localhost hostaddr=127.0.0.1 port={} user=alice password={ALICE_PW} dbname=akko sslrootcert={} {params}",
        pgate.port(),
        p.path("ca.crt").display()
    );
    tool("psql").arg(conninfo).args(["-X", "-A", "-t", "-c", sql]).output().unwrap()
}

fn client_cert(name: &str) -> String {
    format!("sslcert={} sslkey={}", pki().cert(name), pki().key(name))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// What a (client sslmode, pgate mode) pair must give: `None` refused, `Some(tls)` connected.
fn expected(client: &str, server: &str) -> Option<bool> {
    let client_tls = matches!(client, "prefer" | "require" | "verify-ca" | "verify-full");
    match (client, server) {
        (_, "disable") if client_tls && client != "prefer" => None,
        (_, "disable") => Some(false),
        ("disable", "require" | "verify-ca" | "verify-full") => None,
        // libpq's allow tries plaintext, and on refusal TLS.
        ("allow", "require" | "verify-ca" | "verify-full") => Some(true),
        ("disable" | "allow", _) => Some(false),
        _ => Some(true),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_matrix_with_libpq() {
    let mut failures = Vec::new();
    for server in MODES {
        let pgate = Pgate::start(&config(&tls_section(server, ""))).await;
        for client in MODES {
            let out = psql(&pgate, &format!("sslmode={client} {}", client_cert("alice")), "\\conninfo");
            let text = String::from_utf8_lossy(&out.stdout);
            let got = out.status.success().then(|| text.contains("SSL connection"));
            if got != expected(client, server) {
                failures.push(format!(
                    "client {client} / pgate {server}: expected {:?}, got {got:?}: {}{}",
                    expected(client, server),
                    text.trim(),
                    stderr(&out).trim()
                ));
            }
        }
        pgate.stop().await;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_required_refusal_says_why() {
    let pgate = Pgate::start(&config(&tls_section("require", ""))).await;
    let out = psql(&pgate, "sslmode=disable", "SELECT 1");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("TLS is required"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_failures_are_refused() {
    let pgate = Pgate::start(&config(&tls_section("verify-ca", ""))).await;
    // The client checks pgate's name: connecting to 127.0.0.1 by address, the certificate
    // names only localhost.
    let p = pki();
    let by_address = format!(
        "host=127.0.0.1 port={} user=alice password={ALICE_PW} dbname=akko sslmode=verify-full sslrootcert={} {}",
        pgate.port(),
        p.path("ca.crt").display(),
        client_cert("alice")
    );
    let out = tool("psql").arg(by_address).args(["-X", "-c", "SELECT 1"]).output().unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not match host name"), "{}", stderr(&out));
    // pgate checks the client's certificate: expired, from another CA, revoked, missing.
    for (cert, why) in [("expired", "expired"), ("stranger", "unknown ca"), ("revoked", "revoked")] {
        let out = psql(&pgate, &format!("sslmode=require {}", client_cert(cert)), "SELECT 1");
        assert!(!out.status.success(), "{cert} was accepted");
        assert!(stderr(&out).to_lowercase().contains(why), "{cert}: {}", stderr(&out));
    }
    let out = psql(&pgate, "sslmode=require", "SELECT 1");
    assert!(!out.status.success(), "no certificate was accepted");
    let out = psql(&pgate, &format!("sslmode=verify-full {}", client_cert("alice")), "SELECT 1");
    assert!(out.status.success(), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_matches_the_certificate_to_the_user_or_the_map() {
    let pgate = Pgate::start(&config(&tls_section("verify-full", ""))).await;
    let out = psql(&pgate, &format!("sslmode=require {}", client_cert("bob")), "SELECT 1");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not identify user \"alice\""), "{}", stderr(&out));

    let mapped = tls_section("verify-full", "[tls.identity_map]\n\"svc-reporting\" = [\"alice\"]\n");
    let pgate = Pgate::start(&config(&mapped)).await;
    let out = psql(&pgate, &format!("sslmode=require {}", client_cert("reporting")), "SELECT current_user");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "alice", "{}", stderr(&out));
    let out = psql(&pgate, &format!("sslmode=require {}", client_cert("alice")), "SELECT 1");
    assert!(!out.status.success(), "with a map, only mapped identities count");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_authentication_without_and_with_a_map() {
    let head = format!("{}[auth]\nmethod = \"cert\"\n", tls_section("prefer", ""));
    let pgate = Pgate::start(&config(&head)).await;
    // No password is asked: the certificate is the proof.
    let p = pki();
    let no_password = |user: &str, cert: &str| {
        let conninfo = format!(
            "host=localhost hostaddr=127.0.0.1 port={} user={user} dbname=akko sslmode=require sslrootcert={} {}",
            pgate.port(),
            p.path("ca.crt").display(),
            client_cert(cert)
        );
        tool("psql").arg(conninfo).args(["-X", "-A", "-t", "-w", "-c", "SELECT current_user"]).output().unwrap()
    };
    let out = no_password("alice", "alice");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "alice", "{}", stderr(&out));
    let out = no_password("alice", "bob");
    assert!(stderr(&out).contains("certificate authentication failed for user \"alice\""), "{}", stderr(&out));
    let out = no_password("dave", "alice");
    assert!(!out.status.success());
    let plaintext = format!("host=127.0.0.1 port={} user=alice dbname=akko sslmode=disable", pgate.port());
    let out = tool("psql").arg(plaintext).args(["-X", "-w", "-c", "SELECT 1"]).output().unwrap();
    assert!(stderr(&out).contains("not encrypted"), "{}", stderr(&out));

    let head = format!(
        "{}[auth]\nmethod = \"cert\"\n",
        tls_section("prefer", "[tls.identity_map]\n\"svc-reporting\" = [\"alice\", \"dave\"]\n")
    );
    let pgate2 = Pgate::start(&config(&head)).await;
    for user in ["alice", "dave"] {
        let conninfo = format!(
            "host=localhost hostaddr=127.0.0.1 port={} user={user} dbname=akko sslmode=require sslrootcert={} {}",
            pgate2.port(),
            p.path("ca.crt").display(),
            client_cert("reporting")
        );
        let out =
            tool("psql").arg(conninfo).args(["-X", "-A", "-t", "-w", "-c", "SELECT current_user"]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), user, "{}", stderr(&out));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_channel_binding_through_pgate() {
    let pgate = Pgate::start(&config(&tls_section("prefer", ""))).await;
    let out = psql(&pgate, "sslmode=require channel_binding=require", "SELECT current_user");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "alice", "{}", stderr(&out));
    let out = psql(&pgate, "sslmode=require channel_binding=require password=wrong", "SELECT 1");
    assert!(stderr(&out).contains("password authentication failed"), "{}", stderr(&out));
    // Without TLS there is nothing to bind to.
    let out = psql(&pgate, "sslmode=disable channel_binding=require", "SELECT 1");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("channel binding"), "{}", stderr(&out));
    // md5 cannot bind either.
    let md5 = Pgate::start(&config(&format!("{}[auth]\nmethod = \"md5\"\n", tls_section("prefer", "")))).await;
    let conninfo = format!(
        "host=localhost hostaddr=127.0.0.1 port={} user=carol password={CAROL_PW} dbname=akko sslmode=require channel_binding=require",
        md5.port()
    );
    let out = tool("psql").arg(conninfo).args(["-X", "-c", "SELECT 1"]).output().unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("channel binding"), "{}", stderr(&out));
    // Plain SCRAM over TLS still works for clients that do not bind.
    let out = psql(&pgate, "sslmode=require channel_binding=disable", "SELECT 1");
    assert!(out.status.success(), "{}", stderr(&out));
}

fn rustls_client(alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(pki().path("ca.crt")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

use rustls_pki_types::pem::PemObject;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_tls_needs_alpn_postgresql() {
    let pgate =
        Pgate::start(&config(&format!("{}[auth]\ntrust_networks = [\"127.0.0.1/32\"]\n", tls_section("require", ""))))
            .await;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tcp = tokio::net::TcpStream::connect(pgate.addr).await.unwrap();
    let mut tls = rustls_client(&[b"postgresql"]).connect(name.clone(), tcp).await.unwrap();
    tls.write_all(&startup_packet(3 << 16, &[("user", "dave"), ("database", "akko")])).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tls.read(&mut buf).await.unwrap();
    assert_eq!(buf[0], b'R', "AuthenticationOk over direct TLS: {:?}", &buf[..n]);

    let tcp = tokio::net::TcpStream::connect(pgate.addr).await.unwrap();
    let mut tls = rustls_client(&[]).connect(name, tcp).await.unwrap();
    let _ = tls.write_all(&startup_packet(3 << 16, &[("user", "dave"), ("database", "akko")])).await;
    let n = tls.read(&mut buf).await.unwrap_or(0);
    assert_eq!(n, 0, "direct TLS without ALPN must be closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_behind_an_sslrequest_is_a_protocol_violation() {
    let pgate = Pgate::start(&config(&tls_section("prefer", ""))).await;
    let mut c = RawClient::connect(pgate.addr).await;
    let mut smuggled = vec![0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    smuggled.extend(startup_packet(3 << 16, &[("user", "alice"), ("database", "akko")]));
    c.send(&smuggled).await;
    assert_eq!(c.recv_byte().await, b'S');
    let (code, body) = c.recv().await.expect("an error, in plaintext, then close");
    assert_eq!((code, error_code(&body).as_str()), (b'E', "08P01"));
    assert!(c.closed().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_reload_keeps_open_sessions() {
    let p = pki();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::copy(p.path("server.crt"), &cert).unwrap();
    std::fs::copy(p.path("server.key"), &key).unwrap();
    let section = format!("[tls]\nmode = \"prefer\"\ncert = \"{}\"\nkey = \"{}\"\n", cert.display(), key.display());
    let file = dir.path().join("pgate.toml");
    std::fs::write(&file, config(&section)).unwrap();
    let pgate = Pgate::start_file(&file).await;
    let presented = |port: u16| async move {
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        tcp.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).await.unwrap();
        let mut s = [0u8; 1];
        tcp.read_exact(&mut s).await.unwrap();
        let tls = rustls_client(&[]).connect(name, tcp).await.unwrap();
        tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
    };
    let first = presented(pgate.port()).await;
    assert_eq!(first, std::fs::read(p.path("server.crt")).map(|pem| der_of(&pem)).unwrap());
    let open = psql_session(&pgate).await;

    std::fs::copy(p.path("server2.crt"), &cert).unwrap();
    std::fs::copy(p.path("server2.key"), &key).unwrap();
    pgate::reload::reload(&pgate.shared).await.expect("reload");
    let second = presented(pgate.port()).await;
    assert_eq!(second, der_of(&std::fs::read(p.path("server2.crt")).unwrap()));
    assert_eq!(simple_row(&open, "SELECT 'still here'").await, ["still here"]);

    // A broken certificate keeps the current one (and the reload fails as a whole).
    std::fs::write(&cert, "not a certificate").unwrap();
    assert!(pgate::reload::reload(&pgate.shared).await.is_err());
    assert_eq!(presented(pgate.port()).await, second);
    // A key that does not match keeps it too.
    std::fs::copy(p.path("server.crt"), &cert).unwrap();
    assert!(pgate::reload::reload(&pgate.shared).await.is_err());
    assert_eq!(presented(pgate.port()).await, second);
}

fn der_of(pem: &[u8]) -> Vec<u8> {
    rustls_pki_types::CertificateDer::from_pem_slice(pem).unwrap().to_vec()
}

/// A tokio-postgres session over TLS (prefer mode accepts plaintext too: this uses TLS via
/// psql-compatible settings is not needed; a plaintext session shows the reload does not
/// touch established connections either way).
async fn psql_session(pgate: &Pgate) -> tokio_postgres::Client {
    pgate.alice("akko").await
}

/// pgate towards a backend with `mode`; `host` is how the backend is named.
fn backend_config(mode: &str, host: &str, port: u16) -> String {
    let p = pki();
    format!(
        "[listen]\naddress = \"127.0.0.1:0\"\n[metrics]\nenabled = false\n\n[backends.main]\nhost = \"{host}\"\nport = {port}\ndatabases = [\"*\"]\n\
         tls = {{ mode = \"{mode}\", root_cert = \"{}\" }}\n\n[[users]]\nname = \"alice\"\npassword = \"{ALICE_PW}\"\n",
        p.path("ca.crt").display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_modes_against_tls_and_plaintext_servers() {
    let p = pki();
    let tls_server = tls_cluster("tls_backend", p);
    let plain_port = backends().data.port();
    let mut failures = Vec::new();
    for mode in MODES {
        for (server, port, host) in [
            ("tls", tls_server.port(), "localhost"),
            ("plain", plain_port, "localhost"),
            ("tls-by-ip", tls_server.port(), "127.0.0.1"),
        ] {
            let expect_ok = match (server, mode) {
                ("tls", "disable") => false,
                ("tls", _) => true,
                ("plain", "require" | "verify-ca" | "verify-full") => false,
                ("plain", _) => true,
                // The certificate names localhost, not the address.
                ("tls-by-ip", "verify-full" | "disable") => false,
                ("tls-by-ip", _) => true,
                _ => unreachable!(),
            };
            let text = backend_config(mode, host, port);
            let snapshot = pgate::config::parse(&text, std::path::Path::new("t.toml")).unwrap();
            let proxy = pgate::proxy::Proxy::bind(snapshot).await.unwrap();
            let addr = proxy.local_addr().unwrap();
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(proxy.run(async {
                let _ = rx.await;
            }));
            let result = connect(&format!(
                "host=127.0.0.1 port={} user=alice password={ALICE_PW} dbname=akko sslmode=disable",
                addr.port()
            ))
            .await;
            let got = match &result {
                Ok(c) => {
                    let ssl = simple_row(c, "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()").await;
                    if server == "plain" && ssl[0] != "false" || server != "plain" && ssl[0] != "true" {
                        failures.push(format!("{mode} against {server}: connected, but pg_stat_ssl says {}", ssl[0]));
                    }
                    true
                }
                Err(_) => false,
            };
            if got != expect_ok {
                failures.push(format!("{mode} against {server}: expected {expect_ok}, got {result:?}"));
            }
            let _ = tx.send(());
            let _ = task.await;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
