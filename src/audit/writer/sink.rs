//! Where the lines go: a file opened for appending (reopened on request or after an error)
//! or the process's standard output. Blocking I/O: the writer task runs these calls on
//! tokio's blocking pool.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use crate::audit::config::SinkTarget;

/// A batch of formatted lines, and how much of it has reached the sink.
pub(super) struct Pending {
    pub bytes: Vec<u8>,
    pub records: u64,
    pub written: usize,
}

impl Pending {
    /// A batch half written to a file that has since been replaced by an empty one
    /// restarts at its torn line, so the new file holds no fragment (so does a batch handed
    /// to another sink by a reload).
    pub(super) fn restart_torn_line(&mut self) {
        self.written = self.bytes[..self.written].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    }
}

pub(super) struct Sink {
    target: SinkTarget,
    file: Option<File>,
}

/// Audit logs hold statement text: readable by the owner and its group (log shippers).
#[cfg(unix)]
fn open_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new().create(true).append(true).mode(0o640).open(path)
}

#[cfg(not(unix))]
fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl Sink {
    /// Opens a file sink now, so that a bad path fails at startup.
    pub fn open(target: &SinkTarget) -> io::Result<Sink> {
        let file = match target {
            SinkTarget::File(path) => Some(open_append(path)?),
            SinkTarget::Stdout => None,
        };
        Ok(Sink { target: target.clone(), file })
    }

    /// A sink whose file the next write opens.
    pub fn unopened(target: &SinkTarget) -> Sink {
        Sink { target: target.clone(), file: None }
    }

    /// Closes the file and opens the configured path again (a new file after rotation).
    pub fn reopen(&mut self) -> io::Result<()> {
        if let SinkTarget::File(path) = &self.target {
            self.file = None;
            self.file = Some(open_append(path)?);
        }
        Ok(())
    }

    /// Writes what is left of `pending`, advancing `pending.written` as bytes land; after
    /// an error (or with `reopen`) the path is opened again first.
    pub fn write(&mut self, pending: &mut Pending, reopen: bool) -> io::Result<()> {
        if let SinkTarget::File(_) = self.target
            && (reopen || self.file.is_none())
        {
            self.reopen()?;
            let fresh = self.file.as_ref().map(|f| f.metadata().map(|m| m.len() == 0)).transpose()?;
            if fresh == Some(true) {
                pending.restart_torn_line();
            }
        }
        let result = match &mut self.file {
            Some(file) => write_from(file, pending),
            None => write_from(&mut io::stdout().lock(), pending),
        };
        if result.is_err() {
            self.file = None;
        }
        result
    }

    /// Makes what was written durable (a file), or flushes standard output.
    pub fn sync(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(file) => file.sync_data(),
            None if self.target == SinkTarget::Stdout => io::stdout().flush(),
            None => Ok(()),
        }
    }
}

fn write_from(out: &mut impl Write, pending: &mut Pending) -> io::Result<()> {
    while pending.written < pending.bytes.len() {
        match out.write(&pending.bytes[pending.written..]) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "the audit sink accepted no bytes")),
            Ok(n) => pending.written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    out.flush()
}
