//! Delivery: from closed batches to Meta: the per-core batchers ([`batch`]), the
//! durable spool ([`spool`]), which keeps every acknowledged batch on disk until
//! Meta has taken it or it is dead-lettered, and what to do with Meta's answers
//! ([`policy`]).

pub mod batch;
pub mod deadletter;
pub mod handoff;
pub mod pipeline;
pub mod policy;
pub mod schedule;
pub mod sender;
pub mod spool;

/// Makes a directory's entries (new, renamed, deleted files) durable: the spool and the
/// dead-letter store both rely on it after creating or removing files.
pub(crate) fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
