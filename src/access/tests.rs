//! Table tests of login grants and statement rules, on hand-built classifications (the
//! classifier has its own tests; the escape tests run both together against PostgreSQL).

use super::*;
use crate::sql::statement::{Access, AuditClass, Kind, ObjectName, Outside, RelationUse, SettingChange, Statement};

fn workspace(toml_text: &str) -> Workspace {
    let raw: RawWorkspace = toml::from_str(toml_text).expect("test workspace parses");
    build(&raw).expect("test workspace is valid")
}

/// READ (and MISC) on schema alpha and LightRAG's tables in public, one table denied.
fn alpha() -> Workspace {
    workspace(
        r#"
name = "alpha"
users = ["alice", "rag_alpha"]
databases = ["akko", "aden"]
allow = ["READ", "MISC"]
relations = { allow = ["alpha.*", "public.lightrag_*"], deny = ["alpha.secrets"] }
session = { search_path = "alpha" }
"#,
    )
}

fn service() -> Workspace {
    workspace("name = \"svc\"\nusers = [\"airflow\"]\ndatabases = [\"airflow\"]\n")
}

fn rel(schema: Option<&str>, name: &str, access: Access) -> RelationUse {
    RelationUse { name: ObjectName::new(schema, name), access }
}

fn select(relations: Vec<RelationUse>, functions: &[(&str, &str)]) -> Statement {
    let mut s = Statement::new(AuditClass::Read, "SELECT");
    s.relations = relations;
    s.functions =
        functions.iter().map(|(schema, f)| ObjectName::new((!schema.is_empty()).then_some(*schema), f)).collect();
    s
}

fn run(ws: &Workspace, s: &Statement, path: &[&str]) -> Result<(), Rule> {
    let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
    check(ws, &Builtins::default(), s, Scope { search_path: &path }).map_err(|d| d.rule)
}

#[test]
fn reads_of_allowed_relations_pass_and_others_are_denied() {
    let ws = alpha();
    let p = &["alpha"];
    let cases: Vec<(Statement, Result<(), Rule>)> = vec![
        (select(vec![rel(Some("alpha"), "orders", Access::Read)], &[]), Ok(())),
        (select(vec![rel(None, "orders", Access::Read)], &[("", "count")]), Ok(())),
        (select(vec![rel(Some("public"), "lightrag_doc_chunks", Access::Read)], &[]), Ok(())),
        (select(vec![rel(Some("public"), "orders", Access::Read)], &[]), Err(Rule::RelationAllow)),
        (select(vec![rel(Some("beta"), "orders", Access::Read)], &[]), Err(Rule::RelationAllow)),
        (select(vec![rel(Some("alpha"), "secrets", Access::Read)], &[]), Err(Rule::RelationDeny)),
        (select(vec![rel(None, "secrets", Access::Read)], &[]), Err(Rule::RelationDeny)),
        (select(vec![rel(None, "pg_class", Access::Read)], &[]), Ok(())),
        (select(vec![rel(Some("information_schema"), "tables", Access::Read)], &[]), Ok(())),
        (select(vec![rel(None, "pg_authid", Access::Read)], &[]), Err(Rule::SensitiveCatalog)),
        (select(vec![rel(Some("pg_catalog"), "pg_shadow", Access::Read)], &[]), Err(Rule::SensitiveCatalog)),
        (select(vec![rel(Some("pg_catalog"), "pg_stat_activity", Access::Read)], &[]), Err(Rule::SensitiveCatalog)),
    ];
    for (i, (s, want)) in cases.iter().enumerate() {
        assert_eq!(&run(&ws, s, p), want, "case {i}: {s:?}");
    }
}

#[test]
fn unqualified_names_are_checked_on_every_schema_of_the_path() {
    let ws = alpha();
    let s = select(vec![rel(None, "orders", Access::Read)], &[]);
    assert_eq!(run(&ws, &s, &["alpha"]), Ok(()));
    assert_eq!(run(&ws, &s, &["alpha", "public"]), Err(Rule::RelationAllow), "public.orders could be the one");
    let chunks = select(vec![rel(None, "lightrag_doc_chunks", Access::Read)], &[]);
    assert_eq!(run(&ws, &chunks, &["alpha", "public"]), Ok(()));
}

#[test]
fn classes_outside_and_functions() {
    let ws = alpha();
    let p = &["alpha"];
    let mut delete = Statement::new(AuditClass::Write, "DELETE");
    delete.relations = vec![rel(Some("alpha"), "orders", Access::Write)];
    assert_eq!(run(&ws, &delete, p), Err(Rule::Class));
    let mut do_block = Statement::new(AuditClass::Function, "DO");
    do_block.kind = Kind::Other;
    assert_eq!(run(&ws, &do_block, p), Err(Rule::Class));
    let mut copy = Statement::new(AuditClass::Read, "COPY");
    copy.relations = vec![rel(Some("alpha"), "orders", Access::Read)];
    copy.outside = vec![Outside::CopyProgram];
    assert_eq!(run(&ws, &copy, p), Err(Rule::Outside));
    type Calls = &'static [(&'static str, &'static str)];
    let functions: Vec<(Calls, Result<(), Rule>)> = vec![
        (&[("", "lower"), ("", "now")], Ok(())),
        (&[("alpha", "my_func")], Ok(())),
        (&[("", "my_func")], Ok(())),
        (&[("beta", "their_func")], Err(Rule::FunctionAllow)),
        (&[("", "pg_read_file")], Err(Rule::FunctionDeny)),
        (&[("pg_catalog", "pg_read_file")], Err(Rule::FunctionDeny)),
        (&[("", "lo_import")], Err(Rule::FunctionDeny)),
        (&[("public", "dblink_exec")], Err(Rule::FunctionDeny)),
        (&[("", "query_to_xml")], Err(Rule::FunctionDeny)),
        (&[("", "pg_terminate_backend")], Err(Rule::FunctionDeny)),
        (&[("", "pg_reload_conf")], Err(Rule::FunctionDeny)),
    ];
    for (fs, want) in functions {
        assert_eq!(run(&ws, &select(vec![], fs), p), want, "{fs:?}");
    }
    // An unqualified non-built-in resolves through the path: beta is not allowed (public
    // is: functions default to the schemas relations.allow opens).
    assert_eq!(run(&ws, &select(vec![], &[("", "my_func")]), &["alpha", "beta"]), Err(Rule::FunctionAllow));
    assert_eq!(run(&ws, &select(vec![], &[("", "st_distance")]), &["alpha", "public"]), Ok(()));
}

#[test]
fn transaction_control_and_harmless_statements_pass_any_class_rule() {
    let ws = workspace("name = \"w\"\nusers = [\"u\"]\ndatabases = [\"*\"]\nallow = [\"READ\"]\n");
    for kind in [Kind::Transaction, Kind::Harmless] {
        let mut s = Statement::new(AuditClass::Misc, "X");
        s.kind = kind;
        assert_eq!(run(&ws, &s, &["public"]), Ok(()));
    }
    let set = |name: &str| {
        let mut s = Statement::new(AuditClass::MiscSet, "SET");
        s.settings = vec![SettingChange::Set { name: name.into(), value: Some("1".into()), local: false }];
        s
    };
    assert_eq!(run(&ws, &set("work_mem"), &["public"]), Err(Rule::Class), "SET follows the MISC_SET rule");
}

#[test]
fn pinned_settings_cannot_change_in_any_workspace() {
    let set = |change: SettingChange| {
        let mut s = Statement::new(AuditClass::MiscSet, "SET");
        s.settings = vec![change];
        s
    };
    let svc = service();
    assert_eq!(svc.pinned("pgate.workspace"), Some("svc"), "every workspace pins its name");
    for ws in [alpha(), svc] {
        let cases = [
            (SettingChange::Set { name: "pgate.workspace".into(), value: Some("beta".into()), local: true }, false),
            (SettingChange::Reset { name: "pgate.workspace".into() }, false),
            (SettingChange::Unknown, false),
            (SettingChange::ResetAll, true),
        ];
        for (change, ok) in cases {
            let got = check(&ws, &Builtins::default(), &set(change.clone()), Scope { search_path: &[] });
            assert_eq!(got.is_ok(), ok, "{}: {change:?}", ws.name);
        }
    }
    let ws = alpha();
    let search_path =
        set(SettingChange::Set { name: "search_path".into(), value: Some("public".into()), local: false });
    assert_eq!(run(&ws, &search_path, &["alpha"]), Err(Rule::PinnedSetting));
    let role = set(SettingChange::Identity);
    assert_eq!(run(&ws, &role, &["alpha"]), Err(Rule::Identity));
    assert_eq!(run(&service(), &role, &["public"]), Ok(()), "a service workspace with ALL may");
}

#[test]
fn rules_pin_how_query_text_is_read() {
    let ws = alpha();
    assert_eq!(ws.pinned("standard_conforming_strings"), Some("on"));
    assert_eq!(ws.pinned("client_encoding"), Some("UTF8"));
    assert_eq!(service().pinned("standard_conforming_strings"), None, "no rules, nothing to misread");
    let mut off = Statement::new(AuditClass::MiscSet, "SET");
    off.settings = vec![SettingChange::Set {
        name: "standard_conforming_strings".into(),
        value: Some("off".into()),
        local: false,
    }];
    assert_eq!(run(&ws, &off, &["alpha"]), Err(Rule::PinnedSetting));
}

#[test]
fn read_only_workspaces() {
    let ws = workspace("name = \"ro\"\nusers = [\"u\"]\ndatabases = [\"*\"]\nread_only = true\n");
    assert_eq!(ws.pinned("default_transaction_read_only"), Some("on"));
    assert!(ws.has_statement_rules());
    let mut insert = Statement::new(AuditClass::Write, "INSERT");
    insert.relations = vec![rel(Some("public"), "t", Access::Write)];
    assert_eq!(run(&ws, &insert, &["public"]), Err(Rule::Class));
    let mut begin = Statement::new(AuditClass::Misc, "BEGIN");
    begin.kind = Kind::Transaction;
    begin.settings = vec![SettingChange::ReadWrite];
    assert_eq!(run(&ws, &begin, &["public"]), Err(Rule::ReadOnly));
    let mut off = Statement::new(AuditClass::MiscSet, "SET");
    off.settings =
        vec![SettingChange::Set { name: "transaction_read_only".into(), value: Some("off".into()), local: false }];
    assert_eq!(run(&ws, &off, &["public"]), Err(Rule::ReadOnly));
    assert_eq!(run(&ws, &select(vec![rel(None, "t", Access::Read)], &[]), &["public"]), Ok(()));
}

#[test]
fn unparsed_statements_are_denied_only_where_rules_exist() {
    let mut s = Statement::new(AuditClass::Misc, "VACUUM");
    s.unparsed = Some(crate::sql::statement::Unparsed::Syntax("x".into()));
    assert_eq!(run(&alpha(), &s, &["alpha"]), Err(Rule::Unparsed));
    assert_eq!(run(&service(), &s, &["public"]), Ok(()));
    let lenient =
        workspace("name = \"l\"\nusers = [\"u\"]\ndatabases = [\"*\"]\nallow = [\"MISC\"]\nunparsed = \"allow\"\n");
    assert_eq!(run(&lenient, &s, &["public"]), Ok(()));
}

#[test]
fn logins_are_granted_by_membership_and_database() {
    let ws = Workspaces { list: vec![Arc::new(alpha()), Arc::new(service())], builtins: Builtins::default() };
    let who = |user, database, requested| Identity { user, certificate: None, database, requested };
    assert_eq!(ws.authorize(who("alice", "akko", None)).unwrap().unwrap().workspace.name, "alpha");
    assert!(matches!(ws.authorize(who("alice", "keycloak", None)), Err(LoginDenial::NoGrant { .. })));
    assert!(matches!(ws.authorize(who("mallory", "akko", None)), Err(LoginDenial::NoWorkspace { .. })));
    assert!(matches!(ws.authorize(who("alice", "akko", Some("svc"))), Err(LoginDenial::NotMember { .. })));
    assert!(matches!(ws.authorize(who("airflow", "akko", Some("svc"))), Err(LoginDenial::DatabaseNotGranted { .. })));
    assert!(Workspaces::default().authorize(who("anyone", "x", None)).unwrap().is_none());
    let message = ws.authorize(who("alice", "keycloak", None)).unwrap_err().to_string();
    assert!(
        message.contains("alice") && message.contains("keycloak") && message.contains("alpha (aden, akko)"),
        "{message}"
    );
}

#[test]
fn workspace_client_limits() {
    let ws = workspace("name = \"w\"\nusers = [\"u\"]\ndatabases = [\"*\"]\nmax_client_connections = 2\n");
    let clients = WorkspaceClients::default();
    let a = clients.admit(&ws).unwrap();
    let _b = clients.admit(&ws).unwrap();
    assert!(clients.admit(&ws).is_err());
    assert_eq!(clients.count("w"), 2);
    drop(a);
    assert!(clients.admit(&ws).is_ok());
}

#[test]
fn invalid_workspaces_say_why() {
    let bad = |text: &str| {
        let raw: RawWorkspace = toml::from_str(text).unwrap();
        build(&raw).unwrap_err()
    };
    assert!(bad("name = \"w\"\ndatabases = [\"*\"]\n").contains("members"));
    assert!(bad("name = \"w\"\nusers = [\"u\"]\n").contains("databases"));
    assert!(bad("name = \"w\"\nusers = [\"u\"]\ndatabases = [\"*\"]\nallow = [\"REED\"]\n").contains("REED"));
    assert!(
        bad("name = \"w\"\nusers = [\"u\"]\ndatabases = [\"*\"]\nrelations = { allow = [\"orders\"] }\n")
            .contains("schema.name")
    );
    assert!(
        bad("name = \"w\"\nusers = [\"u\"]\ndatabases = [\"*\"]\nsession = { \"pgate.workspace\" = \"x\" }\n")
            .contains("own name")
    );
}
