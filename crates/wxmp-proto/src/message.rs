//! Placeholder: messages (being written).
/// A message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message;
/// A message kind.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageKind {}
