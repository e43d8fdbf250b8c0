//! End-to-end tests across the tether crates live in `tests/tests/`.
