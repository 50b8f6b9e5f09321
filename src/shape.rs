//! The expected shape of each schema version and comparison with a live database.
