//! The signals a server answers: SIGINT and SIGTERM stop it, SIGHUP reloads its config.
//!
//! Both are futures the caller selects on, so the policy (drain, reload) stays with the code
//! that owns the server. SIGHUP's default action is to kill the process, which is what
//! `systemctl reload` would do to a server that never asked for it: [`Reloads::new`] installs
//! the handler, and must be called before serving starts.

/// Resolves on Ctrl-C or SIGTERM: stop accepting and drain.
pub async fn terminate() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown signal received; draining");
}

/// SIGHUP, received as often as it is sent.
pub struct Reloads {
    #[cfg(unix)]
    hangup: Option<tokio::signal::unix::Signal>,
}

impl Reloads {
    /// Installs the SIGHUP handler (from now on the signal no longer kills the process).
    pub fn new() -> Self {
        #[cfg(unix)]
        {
            let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .map_err(|e| tracing::warn!(error = %e, "cannot handle SIGHUP; reloading is off"))
                .ok();
            Reloads { hangup }
        }
        #[cfg(not(unix))]
        Reloads {}
    }

    /// The next SIGHUP; never resolves where there is none.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(hangup) = &mut self.hangup {
            if hangup.recv().await.is_some() {
                return;
            }
        }
        std::future::pending::<()>().await;
    }
}

impl Default for Reloads {
    fn default() -> Self {
        Self::new()
    }
}
