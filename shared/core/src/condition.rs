//! Breakpoint conditions (expr language). Filled in below.
