//! Partition logs: segments of raw record batches, sparse indexes, recovery, flushing.
//! (Being written; see the storage helper's brief.)
