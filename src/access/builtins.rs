//! What workspace rules know about PostgreSQL itself: the built-in function names (an
//! unqualified call of one resolves to pg_catalog, which the search_path cannot override),
//! the built-ins denied by default, and the catalogs too sensitive to read by default.

use std::collections::HashSet;

use super::pattern::glob;

/// `SELECT DISTINCT proname FROM pg_proc WHERE pronamespace = 'pg_catalog'::regnamespace`
/// on PostgreSQL 15.
const BUILTIN_FUNCTIONS: &str = include_str!("builtins.txt");

/// Functions denied in every workspace with statement rules, whatever their schema (name
/// patterns): they reach files, large objects, other servers, other sessions or the server
/// process, or run SQL text that pgate cannot see.
pub const DENIED_FUNCTIONS: &[(&str, &str)] = &[
    ("pg_read_file", "reads files on the database server"),
    ("pg_read_binary_file", "reads files on the database server"),
    ("pg_stat_file", "reads files on the database server"),
    ("pg_ls_*", "lists directories on the database server"),
    ("pg_file_*", "writes files on the database server"),
    ("pg_logdir_ls", "lists directories on the database server"),
    ("lo_*", "reads or writes large objects and server files"),
    ("loread", "reads large objects"),
    ("lowrite", "writes large objects"),
    ("dblink*", "reaches other database servers"),
    ("*_to_xml", "runs SQL text pgate cannot check"),
    ("*_to_xml_and_xmlschema", "runs SQL text pgate cannot check"),
    ("*_to_xmlschema", "runs SQL text pgate cannot check"),
    ("ts_stat", "runs SQL text pgate cannot check"),
    ("pg_terminate_backend", "signals other sessions"),
    ("pg_cancel_backend", "signals other sessions"),
    ("pg_reload_conf", "controls the server"),
    ("pg_rotate_logfile*", "controls the server"),
    ("pg_promote", "controls the server"),
    ("pg_switch_wal", "controls the server"),
    ("pg_create_restore_point", "controls the server"),
    ("pg_backup_*", "controls the server"),
    ("pg_start_backup", "controls the server"),
    ("pg_stop_backup", "controls the server"),
    ("pg_wal_replay_*", "controls the server"),
    ("pg_log_backend_memory_contexts", "controls the server"),
    ("pg_stat_reset*", "controls the server"),
    ("pg_import_system_collations", "controls the server"),
    ("pg_*replication_slot*", "controls replication"),
    ("pg_replication_origin_*", "controls replication"),
    ("pg_logical_slot_*", "controls replication"),
    ("pg_logical_emit_message", "controls replication"),
];

/// Catalogs a workspace may not read unless a relation rule names them exactly: they hold
/// password hashes, other users' credentials, data samples, or other sessions' queries.
pub const SENSITIVE_CATALOGS: &[&str] = &[
    "pg_authid",
    "pg_shadow",
    "pg_user_mapping",
    "pg_user_mappings",
    "pg_statistic",
    "pg_statistic_ext_data",
    "pg_largeobject",
    "pg_subscription",
    "pg_hba_file_rules",
    "pg_ident_file_mappings",
    "pg_file_settings",
    "pg_stat_activity",
];

/// Schemas whose relations are PostgreSQL's own catalogs; drivers read them to work.
pub const CATALOG_SCHEMAS: &[&str] = &["pg_catalog", "information_schema"];

/// The built-in function names, built once per configuration.
#[derive(Debug)]
pub struct Builtins {
    functions: HashSet<&'static str>,
}

impl Default for Builtins {
    fn default() -> Self {
        let functions = BUILTIN_FUNCTIONS.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
        Self { functions }
    }
}

impl Builtins {
    pub fn is_builtin(&self, name: &str) -> bool {
        self.functions.contains(name)
    }
}

/// Why a function is on the default deny list, if it is.
pub fn denied_function(name: &str) -> Option<&'static str> {
    DENIED_FUNCTIONS.iter().find(|(pattern, _)| glob(pattern, name)).map(|(_, why)| *why)
}

pub fn is_sensitive_catalog(schema: &str, name: &str) -> bool {
    schema == "pg_catalog" && SENSITIVE_CATALOGS.contains(&name)
}

pub fn is_catalog_schema(schema: &str) -> bool {
    CATALOG_SCHEMAS.contains(&schema)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_list_is_complete_enough() {
        let b = Builtins::default();
        for f in ["count", "now", "set_config", "pg_read_file", "lo_import", "generate_series", "to_regtype"] {
            assert!(b.is_builtin(f), "{f}");
        }
        assert!(!b.is_builtin("st_distance"));
        assert!(!b.is_builtin("# Function names"));
    }

    #[test]
    fn the_deny_list() {
        for f in ["pg_read_file", "lo_import", "lo_export", "dblink_exec", "query_to_xml", "table_to_xmlschema"] {
            assert!(denied_function(f).is_some(), "{f}");
        }
        for f in ["pg_terminate_backend", "pg_reload_conf", "pg_ls_dir", "pg_create_logical_replication_slot"] {
            assert!(denied_function(f).is_some(), "{f}");
        }
        for f in ["count", "lower", "st_distance", "current_setting", "pg_advisory_lock", "xmlelement"] {
            assert!(denied_function(f).is_none(), "{f}");
        }
    }
}
