//! Shared fixtures for capig benchmarks.
