//! Progress output.
