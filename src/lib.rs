//! pgate: a PostgreSQL wire-protocol proxy and connection pooler.
//!
//! # Map of the crate
//! - [`proxy`]: listener, accept loop, shared state, client limit, janitor, shutdown.
//! - [`admin`]: the admin console (database `pgate`): SHOW views, PAUSE, RELOAD, ...
//! - [`access`]: workspaces: who may reach which database, what each statement may do.
//! - [`client`]: one client connection: startup packets, login, the session loop, idle
//!   limits, panic containment.
//! - [`auth`]: client authentication exchanges (SCRAM-SHA-256(-PLUS), md5, cert, trust).
//! - [`tls`]: TLS towards clients and backends, certificate identities, channel binding.
//! - [`routing`]: database name -> route (backend + server database).
//! - [`pool`]: pools of server connections, checkout with a deadline, the RAII guard, the
//!   rescue of a server whose client vanished mid-request.
//! - [`server`]: one server connection: connect and log in, protocol state, reset.
//! - [`params`]: session parameters a client asked for and their sync onto servers.
//! - [`sql`]: the SQL lexer and what a query may do to its server session.
//! - [`audit`]: the audit log: records, pgaudit and JSON lines, redaction, queue and writer.
//! - [`metrics`]: Prometheus metrics, and the HTTP endpoint with /metrics, /healthz, /readyz.
//! - [`cancel`]: pgate's own cancel keys and forwarding of CancelRequests.
//! - [`protocol`]: message codes, header-only framing, startup packets, messages.
//! - [`config`]: TOML model, validation, the immutable [`config::Snapshot`].
//! - [`reload`]: SIGHUP and RELOAD: validate the file, then apply it pool by pool.
//! - [`error`]: the errors a client can see and their one mapping to ErrorResponse.
//! - [`demo`]: throwaway PostgreSQL clusters for `pgate demo` and the tests.
//!
//! # Glossary
//! **client**: an application connection to pgate. **server**: a PostgreSQL connection
//! pgate opened. **backend**: a configured PostgreSQL instance. **route**: what a client's
//! database name resolves to. **pool**: the servers of one (backend, server database,
//! server user).
//!
//! # The path of one query (transaction pooling)
//! `proxy` accepts and spawns `client::serve`; `client::handshake` reads the startup
//! packets; `client::login` routes, authenticates and greets; `client::session` waits for
//! a request, checks a server out of the pool, syncs the client's settings onto it, and
//! relays bytes both ways. Client frames are counted on the server's
//! [`server::ServerState`]; when a ReadyForQuery leaves it `Idle`, the session drops the
//! [`pool::PooledServer`] guard, which returns the server to its pool. A client that
//! leaves with its request still running leaves the server `Busy`: the guard cancels the
//! request, drains the server and resets it (`pool::rescue`) before its place is reused.

#![forbid(unsafe_code)]

pub mod access;
pub mod admin;
pub mod audit;
pub mod auth;
pub mod cancel;
pub mod client;
pub mod config;
pub mod demo;
pub mod error;
pub mod metrics;
pub mod params;
pub mod pool;
pub mod protocol;
pub mod proxy;
pub mod reload;
pub mod routing;
pub mod server;
pub mod sql;
pub mod tls;
