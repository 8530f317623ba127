//! The end of a transaction in transaction and statement pooling. When the client's
//! statements may have changed its session (see `sql::effects`), pgate asks the server
//! before letting it go: its session settings become the client's, session state
//! (LISTEN, locks, temp tables, held cursors, SQL PREPARE, SET SESSION AUTHORIZATION) pins
//! the client to the server until it is gone, and wiped statements are forgotten.

use tokio::io::{AsyncRead, AsyncWrite};

use super::io::flush;
use super::session::Session;
use crate::error::Error;
use crate::params::{Params, is_valid_name, quote_literal};
use crate::pool::PooledServer;
use crate::protocol::codes::tx_status;
use crate::protocol::messages;
use crate::server::ServerError;
use crate::server::statements::parse_global_name;
use crate::sql::{Effects, PinReason};

/// One query with the session's settings (source `session`: every SET, including pgate's
/// own for the client's startup parameters), its role, its state and its protocol-level
/// statements.
fn probe_sql(login_user: &str, custom: &[String]) -> String {
    let names: Vec<String> = custom.iter().map(|n| quote_literal(n)).collect();
    let custom_rows = if names.is_empty() {
        String::new()
    } else {
        format!(
            " UNION ALL SELECT n, pg_catalog.current_setting(n, true) FROM pg_catalog.unnest(ARRAY[{}]::text[]) AS n \
             WHERE COALESCE(pg_catalog.current_setting(n, true), '') <> ''",
            names.join(", ")
        )
    };
    format!(
        "SELECT name, setting FROM pg_catalog.pg_settings WHERE source = 'session' \
         UNION ALL SELECT 'role', pg_catalog.current_setting('role') WHERE pg_catalog.current_setting('role') <> 'none' \
         UNION ALL SELECT '.state', pg_catalog.concat_ws(',', \
           CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_listening_channels()) THEN 'LISTEN' END, \
           CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_locks WHERE pid = pg_catalog.pg_backend_pid() AND locktype = 'advisory') THEN 'session advisory lock' END, \
           CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_class WHERE relnamespace = pg_catalog.pg_my_temp_schema()) THEN 'temporary table' END, \
           CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_cursors WHERE is_holdable) THEN 'WITH HOLD cursor' END, \
           CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_prepared_statements WHERE from_sql) THEN 'SQL PREPARE' END, \
           CASE WHEN session_user <> {} THEN 'SET SESSION AUTHORIZATION' END) \
         UNION ALL SELECT '.statements', pg_catalog.string_agg(name, ',') FROM pg_catalog.pg_prepared_statements WHERE NOT from_sql{}",
        quote_literal(login_user),
        custom_rows
    )
}

/// What the probe found.
#[derive(Debug, Default)]
struct Found {
    settings: Params,
    state: Vec<PinReason>,
    statements: Vec<u64>,
}

impl Found {
    fn read(rows: &[Vec<Option<String>>]) -> Found {
        let mut found = Found::default();
        for row in rows {
            let (Some(Some(name)), value) = (row.first(), row.get(1).cloned().flatten()) else {
                continue;
            };
            let value = value.unwrap_or_default();
            match name.as_str() {
                ".state" => found.state = value.split(',').filter_map(PinReason::from_name).collect(),
                ".statements" => found.statements = value.split(',').filter_map(parse_global_name).collect(),
                _ => found.settings.set(name, &value),
            }
        }
        found
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) async fn after_transaction(&mut self, server: &mut PooledServer) -> Result<(), Error> {
        let fx = std::mem::take(&mut self.effects);
        let pinned = !self.pinned.is_empty();
        if !(fx.settings || fx.creates.is_some() || fx.drops_statements || (fx.releases && pinned)) {
            return Ok(());
        }
        let found = match self.probe(server, &fx).await {
            Ok(found) => found,
            Err(ServerError::Query(fields)) => {
                // Cannot tell: keep the client where its state may be.
                tracing::warn!(error = %fields.message, "session probe failed; keeping the client on its server");
                self.pin(fx.creates.into_iter().collect());
                return Ok(());
            }
            Err(e) => return Err(Error::ServerLost(e)),
        };
        let reset = self.adopt_settings(server, &fx, &found.settings);
        if fx.drops_statements {
            server.statements.rebuild(found.statements);
            self.statements.clear();
        }
        if fx.discard_all {
            self.restore_startup_settings(server).await?;
        }
        self.restore_reset_settings(server, reset).await?;
        self.pin(found.state);
        Ok(())
    }

    /// Session pooling, at rest after statements that may have changed the session: a
    /// startup setting they reset goes back to the client's value, not the server's
    /// default, as on a dedicated connection.
    pub(super) async fn after_session_statements(&mut self, server: &mut PooledServer) -> Result<(), Error> {
        let fx = std::mem::take(&mut self.effects);
        if fx.discard_all {
            // A dedicated connection keeps its startup settings through DISCARD ALL (they
            // are its defaults); this server's defaults are the backend's, so they are set
            // again, the workspace's pinned settings among them.
            let defaults = (**server.defaults()).clone();
            server.set_params(defaults, None);
            return self.restore_startup_settings(server).await;
        }
        if !fx.resets {
            return Ok(());
        }
        let found = match self.probe(server, &fx).await {
            Ok(found) => found,
            Err(ServerError::Query(fields)) => {
                tracing::warn!(error = %fields.message, "session probe failed; startup settings not checked");
                return Ok(());
            }
            Err(e) => return Err(Error::ServerLost(e)),
        };
        let reset = self.adopt_settings(server, &fx, &found.settings);
        self.restore_reset_settings(server, reset).await
    }

    /// Asks the server what the client's statements did to its session.
    async fn probe(&mut self, server: &mut PooledServer, fx: &Effects) -> Result<Found, ServerError> {
        // Custom settings are asked for by name: those the client named, and those the
        // client or the server is known to have.
        let mut custom: Vec<String> = fx.custom_settings.iter().filter(|n| is_valid_name(n)).cloned().collect();
        let known = server.params().iter().chain(self.login.params.iter()).map(|(n, _)| n);
        for name in known.filter(|n| n.contains('.') && is_valid_name(n)) {
            if !custom.iter().any(|c| c.eq_ignore_ascii_case(name)) {
                custom.push(name.to_owned());
            }
        }
        let sql = probe_sql(&server.pool().target().user, &custom);
        Ok(Found::read(&Box::pin(server.query_internal(&sql)).await?.rows))
    }

    /// Makes the server's session settings the client's; returns the startup settings the
    /// client reset (gone from the session though they differ from the server's defaults).
    fn adopt_settings(&mut self, server: &mut PooledServer, fx: &Effects, session: &Params) -> Params {
        let mut reset = Params::default();
        if fx.resets && !fx.discard_all {
            for (name, value) in self.startup_params().iter() {
                if session.get(name).is_none() && server.defaults().get(name) != Some(value) {
                    reset.set(name, value);
                }
            }
        }
        self.set_client_params(session.clone());
        let mut now = (**server.defaults()).clone();
        for (name, value) in session.iter() {
            now.set(name, value);
        }
        server.set_params(now, None);
        reset
    }

    /// Puts reset startup settings back.
    async fn restore_reset_settings(&mut self, server: &mut PooledServer, reset: Params) -> Result<(), Error> {
        if reset.is_empty() {
            return Ok(());
        }
        let mut params = self.login.params.clone();
        for (name, value) in reset.iter() {
            params.set(name, value);
        }
        self.reapply_settings(server, params, &reset).await
    }

    /// After DISCARD ALL a dedicated connection is back at its startup settings.
    async fn restore_startup_settings(&mut self, server: &mut PooledServer) -> Result<(), Error> {
        let startup = self.startup_params().clone();
        self.reapply_settings(server, startup.clone(), &startup).await
    }

    /// Makes `params` the client's settings, on the server too, and reports those of
    /// `changed` the client is told about (ParameterStatus).
    async fn reapply_settings(
        &mut self,
        server: &mut PooledServer,
        params: Params,
        changed: &Params,
    ) -> Result<(), Error> {
        self.set_client_params(params);
        self.apply_params(server).await.map_err(|e| match e {
            ServerError::Query(fields) => Error::StartupSetting(fields),
            e => Error::ServerLost(e),
        })?;
        for (name, value) in changed.iter() {
            if server.defaults().get(name).is_some() {
                messages::parameter_status(&mut self.out, name, value);
            }
        }
        flush(&mut self.client, &mut self.out).await
    }

    fn pin(&mut self, reasons: Vec<PinReason>) {
        let was = !self.pinned.is_empty();
        for reason in &reasons {
            if !self.pin_counted.contains(reason) {
                self.pin_counted.push(*reason);
                self.shared.metrics.pinned(*reason);
            }
        }
        if !reasons.is_empty() && !was && !self.pin_logged {
            self.pin_logged = true;
            let names: Vec<_> = reasons.iter().map(|r| r.name()).collect();
            tracing::info!(
                user = %self.login.user,
                database = %self.login.database,
                reasons = %names.join(", "),
                "client pinned to its server until this session state is gone"
            );
        }
        self.pinned = reasons;
    }

    /// Statement pooling: the statement left a transaction open. Roll it back and tell the
    /// client, whose next statement starts clean.
    pub(super) async fn end_refused_transaction(&mut self, server: &mut PooledServer) -> Result<(), Error> {
        self.refused_transaction = false;
        self.tx_started = None;
        Box::pin(server.run_internal("ROLLBACK")).await.map_err(Error::ServerLost)?;
        if let Some(fields) = Error::TransactionInStatementPooling.to_response() {
            fields.encode(&mut self.out);
        }
        messages::ready_for_query(&mut self.out, tx_status::IDLE);
        flush(&mut self.client, &mut self.out).await
    }
}
