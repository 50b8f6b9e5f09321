//! Policy values bound to a statement: each an element of one `text[]` parameter, cast to its
//! column's type, so that no policy text is ever part of a statement's text. The plan collects
//! them while it is built; the statements read them back.

use super::fixes::Bind;
use crate::constraints::check::DatabaseSpelling;
use crate::db::introspect::ColumnType;
use std::cell::RefCell;
use std::collections::HashMap;

/// Policy values as elements of one bound `text[]` parameter, each cast to the type of the
/// column it is written into: no policy text is ever part of a statement's text. Asking for a
/// value not yet in the list appends it (how [`TablePlan::new`] collects them).
pub(super) struct Bound<'a> {
    /// The parameter, e.g. `$4::text[]`.
    pub(super) array: &'a str,
    pub(super) values: RefCell<Vec<String>>,
    pub(super) table: &'static str,
    pub(super) spelling: &'a DatabaseSpelling,
    /// The table's columns: a value is cast to its column's type without modifier.
    pub(super) types: &'a [ColumnType],
    /// Each value's place in `values` (1-based), so that finding it costs no scan of the list:
    /// a policy may bring thousands of synonyms.
    positions: RefCell<HashMap<String, usize>>,
}

impl<'a> Bound<'a> {
    pub(super) fn new(
        array: &'a str,
        values: Vec<String>,
        table: &'static str,
        spelling: &'a DatabaseSpelling,
        types: &'a [ColumnType],
    ) -> Bound<'a> {
        let mut positions = HashMap::new();
        for (i, value) in values.iter().enumerate() {
            positions.entry(value.clone()).or_insert(i + 1);
        }
        Bound {
            array,
            values: RefCell::new(values),
            table,
            spelling,
            types,
            positions: RefCell::new(positions),
        }
    }

    fn index(&self, text: &str) -> usize {
        if let Some(i) = self.positions.borrow().get(text) {
            return *i;
        }
        let mut values = self.values.borrow_mut();
        values.push(text.to_string());
        self.positions
            .borrow_mut()
            .insert(text.to_string(), values.len());
        values.len()
    }
}

impl Bind for Bound<'_> {
    fn value(&self, column: &str, text: &str) -> String {
        let i = self.index(text);
        let column_type = self
            .spelling
            .actual_name(self.table, column)
            .and_then(|actual| self.types.iter().find(|c| c.name == actual))
            .map_or("text", |c| c.base_type.as_str());
        format!("CAST(({})[{i}] AS {column_type})", self.array)
    }

    fn key(&self, text: &str) -> String {
        format!("({})[{}]", self.array, self.index(text))
    }
}
