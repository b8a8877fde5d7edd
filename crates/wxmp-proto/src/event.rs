//! Placeholder: events (being written).
/// An event.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {}
