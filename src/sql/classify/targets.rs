//! The relations a statement writes or defines, and those sqlparser's relation visits miss
//! (COPY, GRANT, DROP, COMMENT, VACUUM, SELECT INTO, foreign keys).

use sqlparser::ast::{
    AlterTableOperation, ColumnDef, CommentObject, CopySource, CreateTableLikeKind, FromTable, GrantObjects,
    ObjectName as SqlName, ObjectType, Statement, TableConstraint, TableFactor, TableObject, TableWithJoins,
};

use super::names::object_name;
use super::walk::Walk;
use crate::sql::statement::{Access, ObjectName};

/// Called for every statement, nested ones included (a CTE's DELETE, EXPLAIN's statement).
pub(super) fn note_statement(walk: &mut Walk, statement: &Statement) {
    match statement {
        Statement::Insert(insert) => {
            walk.writes = true;
            if let TableObject::TableName(name) = &insert.table {
                target(walk, name, Access::Write);
            }
        }
        Statement::Update(update) => {
            walk.writes = true;
            written_table(walk, &update.table);
        }
        Statement::Delete(delete) => {
            walk.writes = true;
            delete.tables.iter().for_each(|name| target(walk, name, Access::Write));
            let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &delete.from;
            from.iter().for_each(|table| written_table(walk, table));
        }
        Statement::Merge(merge) => {
            walk.writes = true;
            written_factor(walk, &merge.table);
        }
        Statement::Truncate(truncate) => {
            walk.writes = true;
            truncate.table_names.iter().for_each(|t| target(walk, &t.name, Access::Write));
        }
        Statement::Copy { source, to, .. } => {
            walk.writes |= !to;
            if let CopySource::Table { table_name, .. } = source {
                walk.relation(table_name, if *to { Access::Read } else { Access::Write });
            }
        }
        Statement::Call(procedure) => walk.function(&procedure.name),
        // Locks and maintenance need more than read rights, and block or rewrite the table.
        Statement::Lock(lock) => lock.tables.iter().for_each(|t| target(walk, &t.name, Access::Write)),
        Statement::Vacuum(vacuum) => vacuum.table_name.iter().for_each(|n| walk.relation(n, Access::Write)),
        Statement::Analyze(analyze) => analyze.table_name.iter().for_each(|n| target(walk, n, Access::Write)),
        _ => note_definition(walk, statement),
    }
}

/// DDL and GRANT / REVOKE targets.
fn note_definition(walk: &mut Walk, statement: &Statement) {
    match statement {
        Statement::CreateTable(create) => {
            target(walk, &create.name, Access::Define);
            create.partition_of.iter().for_each(|parent| target(walk, parent, Access::Define));
            create.inherits.iter().flatten().for_each(|parent| walk.relation(parent, Access::Read));
            if let Some(CreateTableLikeKind::Parenthesized(like) | CreateTableLikeKind::Plain(like)) = &create.like {
                walk.relation(&like.name, Access::Read);
            }
            create.columns.iter().for_each(|column| column_references(walk, column));
            create.constraints.iter().for_each(|constraint| constraint_references(walk, constraint));
        }
        Statement::AlterTable(alter) => {
            target(walk, &alter.name, Access::Define);
            for operation in &alter.operations {
                match operation {
                    AlterTableOperation::AddConstraint { constraint, .. } => constraint_references(walk, constraint),
                    AlterTableOperation::AddColumn { column_def, .. } => column_references(walk, column_def),
                    _ => {}
                }
            }
        }
        Statement::CreateView(view) => target(walk, &view.name, Access::Define),
        Statement::CreateIndex(index) => target(walk, &index.table_name, Access::Define),
        Statement::AlterView { name, .. } => target(walk, name, Access::Define),
        Statement::AlterIndex { name, .. } => walk.relation(name, Access::Define),
        Statement::CreateSequence { name, .. } => walk.relation(name, Access::Define),
        Statement::CreatePolicy(policy) => target(walk, &policy.table_name, Access::Define),
        Statement::AlterPolicy(policy) => target(walk, &policy.table_name, Access::Define),
        Statement::DropPolicy(policy) => target(walk, &policy.table_name, Access::Define),
        Statement::CreateTrigger(trigger) => walk.relation(&trigger.table_name, Access::Define),
        Statement::DropTrigger(trigger) => trigger.table_name.iter().for_each(|t| walk.relation(t, Access::Define)),
        Statement::Drop { object_type, names, .. } if is_relation_kind(object_type) => {
            names.iter().for_each(|name| walk.relation(name, Access::Define));
        }
        Statement::Comment { object_type, object_name, .. } => commented(walk, object_type, object_name),
        Statement::Grant(grant) => granted(walk, grant.objects.as_ref()),
        Statement::Revoke(revoke) => granted(walk, revoke.objects.as_ref()),
        _ => {}
    }
}

/// Noted now, so it comes first where it is written first, and claimed again when the tree
/// visits it, so that visit does not count it as read.
fn target(walk: &mut Walk, name: &SqlName, access: Access) {
    walk.relation(name, access);
    walk.target(name, access);
}

fn written_table(walk: &mut Walk, table: &TableWithJoins) {
    written_factor(walk, &table.relation);
}

fn written_factor(walk: &mut Walk, factor: &TableFactor) {
    if let TableFactor::Table { name, .. } = factor {
        target(walk, name, Access::Write);
    }
}

/// Tables, views, materialized views, sequences and indexes are all relations (pg_class).
fn is_relation_kind(object_type: &ObjectType) -> bool {
    matches!(
        object_type,
        ObjectType::Table | ObjectType::View | ObjectType::MaterializedView | ObjectType::Index | ObjectType::Sequence
    )
}

fn commented(walk: &mut Walk, object_type: &CommentObject, name: &SqlName) {
    match object_type {
        CommentObject::Table
        | CommentObject::View
        | CommentObject::MaterializedView
        | CommentObject::Sequence
        | CommentObject::Index => walk.relation(name, Access::Define),
        CommentObject::Column => {
            let table = SqlName(name.0.iter().take(name.0.len().saturating_sub(1)).cloned().collect());
            walk.relation(&table, Access::Define);
        }
        _ => {}
    }
}

/// `ALL TABLES IN SCHEMA s` becomes the relation `s.*`: every relation of the schema.
fn granted(walk: &mut Walk, objects: Option<&GrantObjects>) {
    match objects {
        Some(GrantObjects::Tables(names) | GrantObjects::Views(names) | GrantObjects::Sequences(names)) => {
            names.iter().for_each(|name| walk.relation(name, Access::Define));
        }
        Some(
            GrantObjects::AllTablesInSchema { schemas }
            | GrantObjects::AllSequencesInSchema { schemas }
            | GrantObjects::AllViewsInSchema { schemas }
            | GrantObjects::AllMaterializedViewsInSchema { schemas },
        ) => {
            for schema in schemas {
                match object_name(schema) {
                    Some(schema) => {
                        walk.push_relation(ObjectName { schema: Some(schema.name), name: "*".into() }, Access::Define)
                    }
                    None => walk.relation(schema, Access::Define),
                }
            }
        }
        _ => {}
    }
}

/// Tables a foreign key refers to are read (REFERENCES privilege).
fn column_references(walk: &mut Walk, column: &ColumnDef) {
    for option in &column.options {
        if let sqlparser::ast::ColumnOption::ForeignKey(key) = &option.option {
            walk.relation(&key.foreign_table, Access::Read);
        }
    }
}

fn constraint_references(walk: &mut Walk, constraint: &TableConstraint) {
    if let TableConstraint::ForeignKey(key) = constraint {
        walk.relation(&key.foreign_table, Access::Read);
    }
}
