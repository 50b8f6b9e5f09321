// 008: the repair. Generated from the rename map and the constraint catalog, so that the
// migration, the preflight, `check-constraints` and `cleanup` share one source of truth.
pub fn migration() -> String {
    crate::catalog::repair::up_sql()
}
