//! Placeholder: the callback server (`/wx/{app}`), being written.
use crate::server::AppState;
use axum::Router;
/// The callback routes.
pub fn routes() -> Router<AppState> {
    Router::new()
}
