//! The YAML machinery every format of the project shares: a spanned node tree with input limits
//! ([`node`]), a schema check that collects every problem with its place ([`schema_check`]), and
//! bounded reads of the files they come from.

pub mod node;
pub mod schema_check;

use std::path::Path;

/// Reads at most `limit + 1` bytes, so a huge file is rejected without reading it whole.
pub fn read_bounded(path: &Path, limit: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(limit as u64 + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}
