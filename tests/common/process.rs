//! pgate as a child process, the binary as it is deployed: its configuration file, its log
//! file, signals, its resident memory, and the samples of its /metrics endpoint.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A port nobody listens on right now (for the configuration of a child pgate).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `pgate --config <file>`; killed if the test ends early.
pub struct PgateProcess {
    child: Child,
    pub config: PathBuf,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl PgateProcess {
    /// Starts pgate on `text` with `PGATE_LOG` set to `log_filter`; stderr goes to a file.
    pub fn start(text: &str, log_filter: &str) -> PgateProcess {
        let dir = tempfile::tempdir().unwrap();
        let (config, log) = (dir.path().join("pgate.toml"), dir.path().join("pgate.log"));
        std::fs::write(&config, text).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_pgate"))
            .arg("--config")
            .arg(&config)
            .env("PGATE_LOG", log_filter)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        PgateProcess { child, config, log, _dir: dir }
    }

    /// Waits (up to 20 s) until `port` accepts connections.
    pub async fn wait_listening(&self, port: u16) {
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "pgate did not listen on {port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").args([&format!("-{name}"), &self.child.id().to_string()]).status();
        assert!(status.unwrap().success());
    }

    /// Replaces the configuration file and sends SIGHUP; waits `settle` for the reload.
    pub async fn reload(&self, text: &str, settle: Duration) {
        std::fs::write(&self.config, text).unwrap();
        self.signal("HUP");
        tokio::time::sleep(settle).await;
    }

    /// Resident memory (VmRSS) in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS in /proc/PID/status");
        line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmRSS in KiB")
    }

    /// SIGTERM, then asserts a clean exit; returns everything pgate logged.
    pub fn stop(mut self) -> String {
        self.signal("TERM");
        assert!(self.child.wait().unwrap().success(), "pgate exits 0 after SIGTERM");
        std::fs::read_to_string(&self.log).unwrap()
    }
}

impl Drop for PgateProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Echoes a child pgate's stderr to the test's output when `PGATE_TEST_LOG` is set, and
/// drains it otherwise (so a chatty pgate never blocks on a full pipe).
pub fn forward_stderr(process: &mut std::process::Child) {
    let Some(stderr) = process.stderr.take() else { return };
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if std::env::var("PGATE_TEST_LOG").is_ok() {
                eprintln!("pgate: {line}");
            }
        }
    });
}

/// One HTTP/1.1 GET with `Connection: close`: status code and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("metrics endpoint accepts");
    let request = format!("GET {path} HTTP/1.1\r\nHost: pgate\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8(response).expect("text");
    let (head, body) = response.split_once("\r\n\r\n").expect("headers end");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
    (status, body.to_owned())
}

/// The sum of the samples of `name` whose labels include all of `labels`.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, v) = line.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            let ok = n == name && labels.iter().all(|(k, val)| rest.contains(&format!("{k}=\"{val}\"")));
            ok.then(|| v.parse::<f64>().ok()).flatten()
        })
        .sum()
}
