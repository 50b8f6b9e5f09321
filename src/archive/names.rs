//! How archives are named and described: the schema, the suffix that says which rollback made
//! an archive, and the comment that [`super::restore`] reads back.

use crate::catalog::sql::quote_ident;

/// The schema that holds archived tables and columns.
pub const SCHEMA: &str = "ruleiq_archive";

/// How every archive's comment begins; [`super::restore`] reads the rest (what it holds, and
/// when).
pub(super) const COMMENT_PREFIX: &str = "ruleiq-db rollback of ";

/// PostgreSQL's identifier limit (NAMEDATALEN - 1): longer names are silently truncated.
pub(super) const MAX_IDENTIFIER: usize = 63;

/// When a rollback runs, as archive names spell it: `20261125t101500z`. Lower case, so that
/// the archive's name needs no quoting in hand-written SQL.
#[derive(Debug, Clone)]
pub struct Stamp(pub(super) String);

impl Stamp {
    pub fn now() -> Stamp {
        Stamp::at(chrono::Utc::now())
    }

    pub fn at(time: chrono::DateTime<chrono::Utc>) -> Stamp {
        Stamp(time.format("%Y%m%dt%H%M%Sz").to_string())
    }

    pub(super) fn suffix(&self, version: i32, attempt: u32) -> String {
        let repeat = if attempt > 1 {
            format!("_{attempt}")
        } else {
            String::new()
        };
        format!("__v{version}_{}{repeat}", self.0)
    }
}

/// `base` + `suffix`, shortening `base` so the whole stays within PostgreSQL's identifier limit
/// (a silently truncated name would not be the one we report).
pub(super) fn archive_name(base: &str, suffix: &str) -> String {
    let room = MAX_IDENTIFIER.saturating_sub(suffix.len());
    let mut cut = base.len().min(room);
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}", &base[..cut])
}

/// The archive table's name, schema-qualified and quoted.
pub(super) fn qualified(name: &str) -> String {
    format!("{}.{}", quote_ident(SCHEMA), quote_ident(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names_fit_postgres_and_keep_their_suffix() {
        use chrono::TimeZone;
        let stamp = Stamp::at(
            chrono::Utc
                .with_ymd_and_hms(2026, 11, 25, 10, 15, 0)
                .unwrap(),
        );
        let suffix = stamp.suffix(3, 1);
        assert_eq!(suffix, "__v3_20261125t101500z");
        assert_eq!(archive_name("users", &suffix), "users__v3_20261125t101500z");
        assert_eq!(stamp.suffix(5, 2), "__v5_20261125t101500z_2");
        let long = archive_name(&"x".repeat(80), &suffix);
        assert_eq!(long.len(), MAX_IDENTIFIER);
        assert!(long.ends_with(&suffix));
    }
}
