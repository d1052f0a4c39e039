//! Integration tests: real RocksDB stores on disk, the real binary, checked-in vectors.

mod cli;
mod common;
mod crash;
mod hub;
mod properties;
mod replay;
mod vectors;
