//! The floor under any tokio proxy: bytes relayed between each client and a server of its
//! own, with no parsing, pooling or bookkeeping. The benchmark compares pgate's CPU per
//! transaction with this to tell pgate's own cost from the runtime's.
//!
//! `cargo run --release --example relay_floor -- LISTEN_ADDR SERVER_ADDR [threads]`
//! (threads: 0 for tokio's current-thread runtime; default 2 workers).

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = || std::io::Error::other("usage: relay_floor LISTEN_ADDR SERVER_ADDR [threads]");
    let listen: SocketAddr = args.next().and_then(|a| a.parse().ok()).ok_or_else(usage)?;
    let server: SocketAddr = args.next().and_then(|a| a.parse().ok()).ok_or_else(usage)?;
    let threads: usize = args.next().map_or(Ok(2), |t| t.parse()).map_err(|_| usage())?;
    let runtime = match threads {
        0 => tokio::runtime::Builder::new_current_thread().enable_all().build()?,
        n => tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build()?,
    };
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen).await?;
        loop {
            let (mut client, _) = listener.accept().await?;
            tokio::spawn(async move {
                let Ok(mut upstream) = TcpStream::connect(server).await else { return };
                let _ = (client.set_nodelay(true), upstream.set_nodelay(true));
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    })
}
