//! Placeholder: the emulator (being written).
