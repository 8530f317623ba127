//! Configuration reload as a diff against real servers: the pool whose settings changed
//! gets new servers as the old ones come free while the other pool keeps its servers
//! (same backend PIDs); a transaction open across the reload commits; a removed route
//! refuses new logins with 3D000 and leaves its sessions be; an invalid file changes
//! nothing.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use pgate::pool::PoolChange;

async fn pid(client: &tokio_postgres::Client) -> i32 {
    simple_row(client, "SELECT pg_backend_pid()").await[0].parse().expect("a pid")
}

/// Whether the data cluster still has a backend with this PID (closing is asynchronous).
async fn data_backend_gone(pid: i32) -> bool {
    let port = backends().data.port();
    let admin = connect(&format!("host=127.0.0.1 port={port} user=alice password='{ALICE_PW}' dbname=akko"))
        .await
        .expect("direct connection");
    for _ in 0..50 {
        let rows = admin.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1", &[&pid]).await.unwrap();
        if rows.is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("config written");
}

fn described(changes: &[PoolChange]) -> Vec<String> {
    changes.iter().map(ToString::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_pool_gets_new_servers_and_the_other_keeps_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pgate.toml");
    let before = config("[pool]\nmode = \"transaction\"\nsize = 1\n");
    write(&path, &before);
    let pgate = Pgate::start_file(&path).await;
    let alice = pgate.alice("akko").await;
    let bob = pgate.connect("bob", BOB_PW, "akko").await.expect("bob connects");
    let (alice_pid, bob_pid) = (pid(&alice).await, pid(&bob).await);
    // A transaction stays open across the reload: its server is busy when the pool changes.
    alice.batch_execute("BEGIN").await.unwrap();
    assert_eq!(pid(&alice).await, alice_pid);

    let after = before.replacen(
        &format!("name = \"alice\"\npassword = \"{ALICE_PW}\""),
        &format!("name = \"alice\"\npassword = \"{ALICE_PW}\"\npool = {{ size = 2 }}"),
        1,
    );
    assert_ne!(after, before, "the test edits alice's entry");
    write(&path, &after);
    let changes = pgate::reload::reload(&pgate.shared).await.expect("a valid reload");
    assert_eq!(
        described(&changes),
        ["pool data/akko/alice: size: 1 -> 2; servers are replaced as they come free"],
        "only alice's pool changed"
    );

    assert_eq!(pid(&alice).await, alice_pid, "the open transaction keeps its server");
    alice.batch_execute("COMMIT").await.expect("the transaction commits");
    let alice_next = pid(&alice).await;
    assert_ne!(alice_next, alice_pid, "the changed pool's server was replaced when it came free");
    assert!(data_backend_gone(alice_pid).await, "the old server was closed");
    assert_eq!(pid(&bob).await, bob_pid, "the unchanged pool kept its server");

    // An invalid file changes nothing: same servers, same settings, and the caller is told.
    write(&path, &after.replace("size = 1", "size = \"one\""));
    let e = pgate::reload::reload(&pgate.shared).await.expect_err("an invalid file is refused");
    assert!(e.to_string().contains("pgate.toml"), "{e}");
    assert_eq!(pid(&alice).await, alice_next);
    assert_eq!(pid(&bob).await, bob_pid);
    let sizes: Vec<(String, usize)> =
        pgate.shared.pools.all().iter().map(|p| (p.key().to_string(), p.settings().size)).collect();
    assert!(
        sizes.contains(&("data/akko/alice".into(), 2)) && sizes.contains(&("data/akko/bob".into(), 1)),
        "{sizes:?}"
    );

    // The same file again: nothing to change, nobody's server is touched.
    write(&path, &after);
    let changes = pgate::reload::reload(&pgate.shared).await.expect("a valid reload");
    assert!(changes.is_empty(), "{:?}", described(&changes));
    assert_eq!(pid(&alice).await, alice_next);
    assert_eq!(pid(&bob).await, bob_pid);
    pgate.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_route_refuses_new_logins_and_leaves_its_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pgate.toml");
    let before = config("[pool]\nmode = \"transaction\"\n");
    write(&path, &before);
    let pgate = Pgate::start_file(&path).await;
    let session = pgate.alice("keycloak").await;
    assert_eq!(simple_row(&session, "SELECT current_database()").await, ["keycloak"]);

    let after = before.replace("databases = [\"keycloak\", \"airflow\"]", "databases = [\"airflow\"]");
    assert_ne!(after, before);
    write(&path, &after);
    let changes = pgate::reload::reload(&pgate.shared).await.expect("a valid reload");
    assert_eq!(
        described(&changes),
        ["pool infra/keycloak/alice: database \"keycloak\" is no longer routed; its sessions keep it"]
    );

    let e = pgate.connect("alice", ALICE_PW, "keycloak").await.expect_err("no route any more");
    assert_eq!(sqlstate(&e).as_deref(), Some("3D000"), "{}", db_message(&e));
    for _ in 0..3 {
        assert_eq!(simple_row(&session, "SELECT current_database()").await, ["keycloak"], "the session goes on");
    }
    assert_eq!(simple_row(&pgate.alice("airflow").await, "SELECT current_database()").await, ["airflow"]);
    pgate.stop().await;
}
