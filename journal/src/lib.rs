//! Durable journal.
