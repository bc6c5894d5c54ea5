//! Run summaries.
