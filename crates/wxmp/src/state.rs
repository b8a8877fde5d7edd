//! The state every handler shares, passed once through `with_state`.
//!
//! It lives apart from the server assembly so a capability (callback, business API, OAuth,
//! menus) depends on what it reads, not on how the server is put together. Handlers take the
//! whole `AppState` and use the parts they need; every part is cheap to clone.

use std::sync::Arc;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::token::TokenCore;

/// What every handler may need, passed once through `with_state`.
#[derive(Clone)]
pub struct AppState {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// The 中控.
    pub tokens: TokenCore,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
}
