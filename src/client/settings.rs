//! The client's session settings: what it asked for at startup and since, and their sync
//! onto whichever server serves its next request (SET / RESET of what differs).

use tokio::io::{AsyncRead, AsyncWrite};

use super::session::Session;
use crate::error::Error;
use crate::params::{self, Params};
use crate::pool::{PoolError, PooledServer};
use crate::protocol::messages;
use crate::server::ServerError;

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// Applies the client's settings to the server; `false` if the server failed first
    /// (the request was refused and the client may retry).
    pub(super) async fn sync_params(&mut self, server: &mut PooledServer) -> Result<bool, Error> {
        match self.apply_params(server).await {
            Ok(()) => Ok(true),
            Err(ServerError::Query(fields)) => Err(Error::StartupSetting(fields)),
            Err(e) => {
                self.refuse_request(Error::Checkout(PoolError::Server(e))).await?;
                Ok(false)
            }
        }
    }

    /// SET / RESET on the server what differs from the client's settings.
    pub(super) async fn apply_params(&mut self, server: &mut PooledServer) -> Result<(), ServerError> {
        let fingerprint = self.client_fingerprint();
        if server.synced_for() == Some(fingerprint) {
            return Ok(());
        }
        let Some(sql) = params::sync_statements(&self.login.params, server.params(), server.defaults()) else {
            // Nothing differs: the server has its defaults overlaid with these settings.
            server.mark_synced(fingerprint);
            return Ok(());
        };
        self.login.pool.metrics().settings_syncs.inc();
        let changes = Box::pin(server.run_internal(&sql)).await?;
        for (name, value) in changes {
            // Keep the server's spelling of the client's own settings, so the next
            // comparison agrees, and tell the client when the spelling differs.
            if let Some(asked) = self.login.params.get(&name)
                && asked != value
            {
                self.set_client_param(&name, &value);
                messages::parameter_status(&mut self.out, &name, &value);
            }
        }
        // The server now has its defaults overlaid with the client's settings, including
        // those it does not report.
        let mut now = (**server.defaults()).clone();
        for (name, value) in self.login.params.iter() {
            now.set(name, value);
        }
        let fingerprint = self.client_fingerprint();
        server.set_params(now, Some(fingerprint));
        Ok(())
    }

    fn client_fingerprint(&mut self) -> u64 {
        *self.params_fingerprint.get_or_insert_with(|| self.login.params.fingerprint())
    }

    /// The client's settings from its StartupMessage.
    pub(super) fn startup_params(&self) -> &Params {
        self.startup_params.as_ref().unwrap_or(&self.login.params)
    }

    /// Keeps the startup settings before the client's settings change for the first time.
    fn keep_startup_params(&mut self) {
        if self.startup_params.is_none() {
            self.startup_params = Some(self.login.params.clone());
        }
    }

    pub(super) fn set_client_param(&mut self, name: &str, value: &str) {
        self.keep_startup_params();
        self.login.params.set(name, value);
        self.params_fingerprint = None;
    }

    pub(super) fn set_client_params(&mut self, params: Params) {
        self.keep_startup_params();
        self.login.params = params;
        self.params_fingerprint = None;
    }
}
