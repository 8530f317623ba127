//! Throwaway PostgreSQL clusters: find the server binaries, initdb (once, then copy a
//! template), start on a free port bound to 127.0.0.1, run SQL through psql, stop.
//! Used by `pgate demo` and by the test harness. When run as root, clusters run as the
//! `postgres` system user, since initdb refuses root.

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found on PATH or under \
         /usr/lib/postgresql/*/bin. Install them (Debian/Ubuntu: apt-get install postgresql; \
         macOS: brew install postgresql@15) or put their directory on PATH."
    )]
    BinariesMissing,
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

type Result<T> = std::result::Result<T, ClusterError>;

/// Where initdb, pg_ctl and postgres live.
#[derive(Debug, Clone)]
pub struct PgBinaries {
    dir: PathBuf,
}

impl PgBinaries {
    /// PATH first, then the newest /usr/lib/postgresql/<version>/bin.
    pub fn find() -> Result<Self> {
        let on_path =
            std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default();
        let has_all = |d: &Path| ["initdb", "pg_ctl", "postgres"].iter().all(|b| d.join(b).is_file());
        if let Some(dir) = on_path.into_iter().find(|d| has_all(d)) {
            return Ok(Self { dir });
        }
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
            .filter(|(_, d)| has_all(d))
            .collect();
        versions.sort();
        versions.pop().map(|(_, dir)| Self { dir }).ok_or(ClusterError::BinariesMissing)
    }

    /// A client tool (psql, pgbench): next to the server binaries, else from PATH.
    pub fn tool(&self, name: &str) -> PathBuf {
        let local = self.dir.join(name);
        if local.is_file() { local } else { PathBuf::from(name) }
    }
}

/// A temp directory holding clusters; removes them (stopped) when dropped, and a detached
/// watchdog does the same if this process dies without dropping it.
pub struct ClusterSet {
    root: PathBuf,
    bins: PgBinaries,
    run_as: Option<String>,
    template: Mutex<Option<PathBuf>>,
}

impl ClusterSet {
    pub fn new() -> Result<Self> {
        let bins = PgBinaries::find()?;
        let root = tempfile::Builder::new().prefix("pgate-clusters-").tempdir()?.keep();
        let run_as = running_as_root().then(|| "postgres".to_owned());
        let set = Self { root, bins, run_as, template: Mutex::new(None) };
        if set.run_as.is_some() {
            set.run("chown", Command::new("chown").arg("postgres:").arg(&set.root))?;
        }
        set.spawn_watchdog();
        Ok(set)
    }

    pub fn binaries(&self) -> &PgBinaries {
        &self.bins
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn command(&self, program: &Path) -> Command {
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    fn run(&self, what: &str, cmd: &mut Command) -> Result<String> {
        let out = cmd.stdin(Stdio::null()).output()?;
        if !out.status.success() {
            let detail = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            return Err(ClusterError::Command { what: what.to_owned(), detail: detail.trim().to_owned() });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Creates and starts a cluster: local connections trusted, TCP on 127.0.0.1 with
    /// scram-sha-256, superuser `postgres`.
    pub fn start_cluster(&self, name: &str) -> Result<Cluster<'_>> {
        let data_dir = self.root.join(name);
        let template = self.template()?;
        self.run(
            "copying the cluster template",
            self.command(Path::new("cp")).arg("-a").arg(&template).arg(&data_dir),
        )?;
        let mut cluster = Cluster { set: self, name: name.to_owned(), data_dir, port: 0 };
        cluster.start()?;
        Ok(cluster)
    }

    fn template(&self) -> Result<PathBuf> {
        let mut template = self.template.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = template.as_ref() {
            return Ok(t.clone());
        }
        let dir = self.root.join("template");
        self.run(
            "initdb",
            self.command(&self.bins.dir.join("initdb"))
                .arg("-D")
                .arg(&dir)
                .args(["-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8"])
                .args(["--locale=C.UTF-8", "--no-sync"]),
        )?;
        let conf = "\nlisten_addresses = '127.0.0.1'\nfsync = off\nsynchronous_commit = off\n\
                    full_page_writes = off\nmax_connections = 300\nlog_min_messages = warning\n";
        let conf_path = dir.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path)?;
        text.push_str(conf);
        std::fs::write(&conf_path, text)?;
        *template = Some(dir.clone());
        Ok(dir)
    }

    fn spawn_watchdog(&self) {
        let pg_ctl = self.bins.dir.join("pg_ctl");
        let as_user = self.run_as.as_ref().map(|u| format!("runuser -u {u} --")).unwrap_or_default();
        let script = format!(
            "while kill -0 \"$1\" 2>/dev/null; do sleep 1; done; \
             for d in \"$2\"/*/; do [ -f \"$d/postmaster.pid\" ] && {as_user} {} stop -D \"$d\" -m immediate >/dev/null 2>&1; done; \
             rm -rf \"$2\"",
            pg_ctl.display()
        );
        let mut cmd = Command::new("setsid");
        cmd.args(["sh", "-c", &script, "pgate-watchdog"])
            .arg(std::process::id().to_string())
            .arg(&self.root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if cmd.spawn().is_err() {
            tracing::warn!("setsid not found: clusters leak if this process is killed");
        }
    }
}

impl Drop for ClusterSet {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// One running PostgreSQL cluster of a [`ClusterSet`]. Stopped when dropped.
pub struct Cluster<'a> {
    set: &'a ClusterSet,
    name: String,
    data_dir: PathBuf,
    port: u16,
}

impl Cluster<'_> {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Starts (again) on a fresh free port, or on the same one if it is still free.
    pub fn start(&mut self) -> Result<()> {
        let mut last = None;
        for attempt in 0..5 {
            let port = if self.port != 0 && attempt == 0 { self.port } else { free_port()? };
            match self.pg_ctl_start(port) {
                Ok(()) => {
                    self.port = port;
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(ClusterError::BinariesMissing))
    }

    fn pg_ctl_start(&self, port: u16) -> Result<()> {
        let options = format!("-p {port} -k {}", self.set.root.display());
        let log = self.set.root.join(format!("{}.log", self.name));
        self.set
            .run(
                &format!("starting cluster {}", self.name),
                self.set
                    .command(&self.set.bins.dir.join("pg_ctl"))
                    .arg("-D")
                    .arg(&self.data_dir)
                    .args(["-o", &options, "-l"])
                    .arg(&log)
                    .args(["-w", "-t", "30", "start"]),
            )
            .map(drop)
    }

    /// Stops the cluster: `fast` disconnects clients cleanly, `immediate` kills it.
    pub fn stop(&self, mode: &str) -> Result<()> {
        self.set
            .run(
                &format!("stopping cluster {}", self.name),
                self.set
                    .command(&self.set.bins.dir.join("pg_ctl"))
                    .arg("-D")
                    .arg(&self.data_dir)
                    .args(["-m", mode, "-w", "stop"]),
            )
            .map(drop)
    }

    /// Runs SQL as the superuser over the Unix socket; returns unaligned tuples-only output.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String> {
        let out = self.set.run(
            &format!("psql on {}", self.name),
            Command::new(self.set.bins.tool("psql"))
                .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-h"])
                .arg(&self.set.root)
                .args(["-p", &self.port.to_string(), "-d", database, "-c", sql]),
        )?;
        Ok(out.trim_end().to_owned())
    }
}

impl Drop for Cluster<'_> {
    fn drop(&mut self) {
        let _ = self.stop("immediate");
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}
