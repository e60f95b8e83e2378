//! Computations on collected statistics that need no I/O.

pub mod rates;
