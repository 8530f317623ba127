//! The network layer's client side: one connection per case, each sending one mutated
//! stream across many writes, then (mostly) closing its sending side; pgate must end every
//! connection within the deadline, and afterwards hold no server and no client slot.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::generate::{Gen, Piece, message, ssl_request, startup};

/// How long pgate may take to end a connection after the client's last byte (or after
/// `login_timeout` for a client that stays silent during login). Generous: the machine is
/// a loaded 2-core VM.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// Connections in flight at once.
const CONCURRENCY: usize = 32;

/// One connection's script.
pub struct Case {
    pub writes: Vec<Vec<u8>>,
    /// Keep the connection open after the last write (only inside a startup packet, where
    /// `login_timeout` must end it).
    pub hold_open: bool,
}

/// A case: the login phase mutated, or a valid login followed by a mutated session.
pub fn case(g: &mut Gen, user: &str, database: &str) -> Case {
    if g.chance(0.01) {
        // Silent mid-packet: only login_timeout can end it (a complete packet might log
        // in, and an idle session may stay open).
        let mut packet = startup(user, database, &[]);
        packet.truncate(g.below(packet.len()));
        let mut pieces = vec![packet];
        if g.chance(0.3) {
            pieces.insert(0, ssl_request());
        }
        return Case { writes: g.split(&pieces), hold_open: true };
    }
    if g.chance(0.4) {
        let mut pieces: Vec<Piece> = vec![g.startup_packet(user, database)];
        if g.chance(0.3) {
            pieces.insert(0, ssl_request());
        }
        pieces.extend((0..g.below(3)).map(|_| g.password_message()));
        let mutations = 1 + g.below(3);
        g.mutate(&mut pieces, mutations);
        return Case { writes: g.split(&pieces), hold_open: false };
    }
    let n = 1 + g.below(10);
    let mut pieces = g.pipeline(n);
    let mutations = g.below(4);
    g.mutate(&mut pieces, mutations);
    if g.chance(0.3) {
        pieces.push(message(b'X', &[]));
    }
    pieces.insert(0, startup(user, database, &[]));
    Case { writes: g.split(&pieces), hold_open: false }
}

/// Plays one case; `Err` says how it overran the deadline.
async fn play(addr: SocketAddr, case: Case) -> Result<(), String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let (mut read, mut write) = stream.into_split();
    // Read all the time, so pgate never blocks writing to us.
    let drained = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        let mut total = 0usize;
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    });
    for chunk in &case.writes {
        if write.write_all(chunk).await.is_err() {
            break; // pgate closed already
        }
        if chunk.len() < 4 {
            tokio::task::yield_now().await;
        }
    }
    if !case.hold_open {
        let _ = write.shutdown().await;
    }
    let ended = tokio::time::timeout(DEADLINE, drained).await;
    drop(write);
    match ended {
        Ok(_) => Ok(()),
        Err(_) => Err(format!("still open {DEADLINE:?} after the last write; writes: {:?}", case.writes)),
    }
}

/// Plays `cases` cases from `seed` against `addr`; returns the connections that overran.
pub async fn run(addr: SocketAddr, cases: usize, seed: u64, user: &str, database: &str) -> Vec<String> {
    let limit = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    let mut g = Gen::new(seed);
    let mut late = Vec::new();
    for i in 0..cases {
        let case = case(&mut g, user, database);
        let permit = limit.clone().acquire_owned().await.expect("the semaphore stays open");
        tasks.spawn(async move {
            let outcome = play(addr, case).await;
            drop(permit);
            outcome.map_err(|e| format!("case {i}: {e}"))
        });
        while let Some(done) = tasks.try_join_next() {
            late.extend(done.expect("a case's task does not panic").err());
        }
    }
    while let Some(done) = tasks.join_next().await {
        late.extend(done.expect("a case's task does not panic").err());
    }
    late
}

/// Polls `check` every 100 ms for up to `secs`; true once it holds.
pub async fn eventually(secs: u64, mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..secs * 10 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check()
}
