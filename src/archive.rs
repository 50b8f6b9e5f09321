//! Archiving what a rollback would drop, into schema ruleiq_archive.
