//! Placeholder: replies (being written).
/// A reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {}
/// An article.
#[derive(Debug, Clone, PartialEq)]
pub struct Article;
