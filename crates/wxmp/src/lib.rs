//! # wxmp — the WeChat Official Account developer server
//!
//! (Module map filled in as the crate grows.)

pub mod config;
pub mod emulator;
pub mod store;
pub mod token;
