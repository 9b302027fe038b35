//! Photos as files under `<data dir>/photos`.
