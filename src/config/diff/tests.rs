use std::path::Path;

use super::*;
use crate::config::parse;

const BASE: &str = r#"
[backends.infra]
host = "10.0.0.1"
databases = ["keycloak"]

[backends.data]
host = "10.0.0.2"
databases = ["akko", "*"]

[databases.rag]
backend = "data"
dbname = "lightrag"

[[users]]
name = "alice"
password = "alice-pw"

[[users]]
name = "bob"
password = "bob-pw"
server_password = "bob-server-secret"
"#;

const WORKSPACE: &str = r#"
[[workspaces]]
name = "alpha"
users = ["alice"]
databases = ["akko"]
relations = { allow = ["alpha.*"] }
"#;

fn snapshot(text: &str) -> Snapshot {
    match parse(text, Path::new("test.toml")) {
        Ok(s) => s,
        Err(e) => panic!("{e}\n{text}"),
    }
}

fn changes(running: &str, next: &str) -> Vec<Change> {
    diff(&snapshot(running), &snapshot(next)).changes
}

fn change(what: &str, effect: Effect) -> Change {
    Change { what: what.into(), effect }
}

#[test]
fn identical_configurations_have_no_changes() {
    let d = diff(&snapshot(BASE), &snapshot(BASE));
    assert!(d.is_empty(), "{d}");
    assert_eq!(d.to_string(), "no changes\n");
    let with_all = format!("[audit]\nsink = \"stdout\"\n[auth]\nauth_user = \"bob\"\n{BASE}{WORKSPACE}");
    assert!(diff(&snapshot(&with_all), &snapshot(&with_all)).is_empty());
}

#[test]
fn a_route_s_pool_size_replaces_only_that_route_s_pools() {
    let next = BASE.replace("dbname = \"lightrag\"", "dbname = \"lightrag\"\npool = { size = 5 }");
    assert_eq!(
        changes(BASE, &next),
        [
            change("pool data/lightrag/alice (size 20 -> 5)", Effect::PoolReplaced),
            change("pool data/lightrag/bob (size 20 -> 5)", Effect::PoolReplaced),
        ]
    );
}

#[test]
fn a_route_to_another_server_database_moves_its_pools() {
    let next = BASE.replace("dbname = \"lightrag\"", "dbname = \"lightrag2\"");
    let d = changes(BASE, &next);
    let pools: Vec<&Change> = d.iter().filter(|c| c.what.starts_with("pool ")).collect();
    assert_eq!(
        pools,
        [
            &change("pool data/lightrag/alice (database lightrag -> lightrag2)", Effect::PoolMoved),
            &change("pool data/lightrag/bob (database lightrag -> lightrag2)", Effect::PoolMoved),
        ]
    );
}

#[test]
fn a_server_password_change_replaces_the_user_s_pools_and_is_never_printed() {
    let next = BASE.replace("bob-server-secret", "bob-new-secret");
    let d = diff(&snapshot(BASE), &snapshot(&next));
    let text = d.to_string();
    assert!(!text.contains("bob-server-secret") && !text.contains("bob-new-secret"), "{text}");
    assert!(d.changes.contains(&change("user bob (server password changed)", Effect::NextLogin)), "{text}");
    let replaced: Vec<&str> =
        d.changes.iter().filter(|c| c.effect == Effect::PoolReplaced).map(|c| c.what.as_str()).collect();
    assert_eq!(
        replaced,
        [
            "pool data/*/bob (server password changed)",
            "pool data/akko/bob (server password changed)",
            "pool data/lightrag/bob (server password changed)",
            "pool infra/keycloak/bob (server password changed)",
        ],
        "{text}"
    );
    assert_eq!(d.changes.len(), 5, "{text}");
}

#[test]
fn a_client_password_change_says_changed() {
    let text = diff(&snapshot(BASE), &snapshot(&BASE.replace("alice-pw", "alice-pw2"))).to_string();
    // alice's plain password is also her server password.
    assert!(text.contains("user alice (password changed, server password changed): applies to the next login"));
    assert!(!text.contains("alice-pw"), "{text}");
}

#[test]
fn the_listen_address_needs_a_restart() {
    let next = format!("[listen]\naddress = \"127.0.0.1:6432\"\n{BASE}");
    let d = diff(&snapshot(BASE), &snapshot(&next));
    assert_eq!(d.changes, [change("listen.address 0.0.0.0:5432 -> 127.0.0.1:6432", Effect::NeedsRestart)]);
    assert_eq!(
        d.to_string(),
        "listen.address 0.0.0.0:5432 -> 127.0.0.1:6432: not applied by a reload; restart pgate\n"
    );
}

#[test]
fn a_new_user_applies_to_the_next_login() {
    let next = format!("{BASE}\n[[users]]\nname = \"carol\"\npassword = \"carol-pw\"\n");
    assert_eq!(changes(BASE, &next), [change("user carol added", Effect::NextLogin)]);
    assert_eq!(changes(&next, BASE), [change("user carol removed", Effect::NextLogin)]);
}

#[test]
fn a_removed_route_refuses_new_logins() {
    let next = BASE.replace("[databases.rag]\nbackend = \"data\"\ndbname = \"lightrag\"\n", "");
    let d = diff(&snapshot(BASE), &snapshot(&next));
    assert_eq!(d.changes, [change("route rag removed", Effect::RouteRemoved)]);
    assert_eq!(d.to_string(), "route rag removed: new logins get 3D000; existing sessions stay\n");
    assert_eq!(changes(&next, BASE), [change("route rag added (-> data, database lightrag)", Effect::NextLogin)]);
}

#[test]
fn workspace_rules_apply_to_the_next_statement_and_members_to_the_next_login() {
    let running = format!("{BASE}{WORKSPACE}");
    let rules = running.replace("allow = [\"alpha.*\"]", "allow = [\"alpha.*\"], deny = [\"alpha.secrets\"]");
    assert_eq!(
        changes(&running, &rules),
        [change(
            "workspace alpha rules (relations allow [alpha.*] deny [] -> allow [alpha.*] deny [alpha.secrets])",
            Effect::NextStatement
        )]
    );
    let members = running.replace("users = [\"alice\"]", "users = [\"alice\", \"bob\"]");
    assert_eq!(
        changes(&running, &members),
        [change("workspace alpha (users [alice] -> [alice, bob])", Effect::NextLogin)]
    );
    assert_eq!(changes(BASE, &running), [change("workspace alpha added", Effect::NextLogin)]);
}

#[test]
fn audit_queue_size_needs_a_restart_and_the_rest_applies_at_once() {
    let running = format!("[audit]\nsink = \"stdout\"\n{BASE}");
    let next = running.replace("sink = \"stdout\"", "sink = \"stdout\"\nqueue_size = 50\nformat = \"json\"");
    assert_eq!(
        changes(&running, &next),
        [
            change("audit.queue_size 10000 -> 50", Effect::NeedsRestart),
            change("audit.format pgaudit -> json", Effect::NextStatement),
        ]
    );
    assert_eq!(changes(BASE, &running), [change("[audit] added (sink stdout)", Effect::NeedsRestart)]);
}

#[test]
fn a_backend_host_change_replaces_its_pools_with_the_placeholder_for_unlisted_users() {
    // auth_query lets users not in [[users]] log in: their pools change too.
    let running = format!("[auth]\nauth_user = \"bob\"\n{BASE}");
    let next = running.replace("10.0.0.1", "10.0.0.9");
    assert_eq!(
        changes(&running, &next),
        [
            change("pool infra/keycloak/* (host 10.0.0.1 -> 10.0.0.9)", Effect::PoolReplaced),
            change("pool infra/keycloak/alice (host 10.0.0.1 -> 10.0.0.9)", Effect::PoolReplaced),
            change("pool infra/keycloak/bob (host 10.0.0.1 -> 10.0.0.9)", Effect::PoolReplaced),
        ]
    );
}
