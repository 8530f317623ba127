//! Result sets of the admin console: RowDescription, DataRow and CommandComplete, all
//! columns in text format, typed as PgBouncer types them (text, int4, numeric).

use bytes::{BufMut, BytesMut};

use crate::protocol::codes::backend;

/// A column's type; PgBouncer's `s`, `i` and `N` (its times are text, like ours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Text,
    Int4,
    Numeric,
}

impl Type {
    /// The PostgreSQL type OID and length.
    fn oid_and_len(self) -> (i32, i16) {
        match self {
            Type::Text => (25, -1),
            Type::Int4 => (23, 4),
            Type::Numeric => (1700, -1),
        }
    }
}

/// One value of a row (`None`: NULL).
pub type Cell = Option<String>;

pub fn text(value: impl Into<String>) -> Cell {
    Some(value.into())
}

pub fn num(value: impl std::fmt::Display) -> Cell {
    Some(value.to_string())
}

pub const NULL: Cell = None;

/// A result set being built.
#[derive(Debug, Clone)]
pub struct Table {
    columns: Vec<(&'static str, Type)>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new(columns: &[(&'static str, Type)]) -> Self {
        Self { columns: columns.to_vec(), rows: Vec::new() }
    }

    /// Appends a row; it must have one cell per column.
    pub fn push(&mut self, row: Vec<Cell>) {
        debug_assert_eq!(row.len(), self.columns.len(), "a row of the wrong width");
        self.rows.push(row);
    }

    /// RowDescription, the DataRows, and CommandComplete `SHOW`.
    pub fn encode(&self, out: &mut BytesMut) {
        message(out, backend::ROW_DESCRIPTION, |b| {
            b.put_i16(self.columns.len() as i16);
            for (name, ty) in &self.columns {
                let (oid, len) = ty.oid_and_len();
                put_cstr(b, name);
                b.put_i32(0); // table OID
                b.put_i16(0); // column number
                b.put_i32(oid);
                b.put_i16(len);
                b.put_i32(-1); // type modifier
                b.put_i16(0); // text format
            }
        });
        for row in &self.rows {
            message(out, backend::DATA_ROW, |b| {
                b.put_i16(row.len() as i16);
                for cell in row {
                    match cell {
                        Some(value) => {
                            b.put_i32(value.len() as i32);
                            b.put_slice(value.as_bytes());
                        }
                        None => b.put_i32(-1),
                    }
                }
            });
        }
        command_complete(out, "SHOW");
    }
}

pub fn command_complete(out: &mut BytesMut, tag: &str) {
    message(out, backend::COMMAND_COMPLETE, |b| put_cstr(b, tag));
}

pub fn empty_query_response(out: &mut BytesMut) {
    message(out, backend::EMPTY_QUERY_RESPONSE, |_| {});
}

fn put_cstr(b: &mut BytesMut, s: &str) {
    // Names and values pgate writes never hold NUL; one would end the string early.
    b.put_slice(s.replace('\0', "").as_bytes());
    b.put_u8(0);
}

/// A message: its code, its length, and the body `fill` writes.
fn message(out: &mut BytesMut, code: u8, fill: impl FnOnce(&mut BytesMut)) {
    out.put_u8(code);
    let at = out.len();
    out.put_i32(0);
    fill(out);
    let len = (out.len() - at) as i32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_framed_as_postgresql_frames_them() {
        let mut t = Table::new(&[("list", Type::Text), ("items", Type::Int4)]);
        t.push(vec![text("pools"), num(3)]);
        t.push(vec![text("x"), NULL]);
        let mut out = BytesMut::new();
        t.encode(&mut out);
        let mut frames = Vec::new();
        while let Some(f) = crate::protocol::frame::split_frame(&mut out, 1 << 20).unwrap() {
            frames.push(f);
        }
        let codes: Vec<u8> = frames.iter().map(|f| f.code).collect();
        assert_eq!(codes, b"TDDC");
        let desc = &frames[0].body;
        assert_eq!(&desc[..2], &[0, 2]);
        assert_eq!(&desc[2..7], b"list\0");
        assert_eq!(&desc[13..17], &25i32.to_be_bytes(), "text OID");
        let row = crate::protocol::extended::decode_data_row(&frames[2].body).unwrap();
        assert_eq!(row, vec![Some("x".to_owned()), None]);
        assert_eq!(&frames[3].body[..], b"SHOW\0");
    }
}
