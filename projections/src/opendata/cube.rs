//! A count table per comune with its totals: the detail rows of each comune, each comune's total,
//! the union's rows (the comuni added up) and the union's total; with the equations between
//! them, so that suppression protects across rows, columns and the union's totals.

use super::suppression::{Equation, suppress};
use std::collections::{BTreeMap, BTreeSet};

/// The rest of a row's key after the comune (channel and kind, say).
pub type Key = Vec<String>;

#[derive(Debug, Clone, Default)]
pub struct Cell {
    pub counts: Vec<u64>,
    /// Values a statistic is computed from (days to answer), added up like the counts.
    pub samples: Vec<i64>,
}

/// Where a row of the cube sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Level {
    /// One comune, one key.
    Comune,
    /// One comune, every key.
    ComuneTotal,
    /// Every comune, one key.
    Union,
    /// Every comune, every key.
    UnionTotal,
}

impl Level {
    pub fn name(&self) -> &'static str {
        match self {
            Level::Comune => "comune",
            Level::ComuneTotal => "totale_comune",
            Level::Union => "unione",
            Level::UnionTotal => "totale_unione",
        }
    }
}

#[derive(Debug, Clone)]
pub struct CubeRow {
    pub level: Level,
    /// The comune's ISTAT code; `None` for the union.
    pub comune: Option<String>,
    /// `None` for a total over every key.
    pub key: Option<Key>,
    pub cell: Cell,
    /// Per count: published empty.
    pub suppressed: Vec<bool>,
}

/// Counts per comune and key, `measures` of them per cell.
pub struct Cube {
    measures: usize,
    /// Within a row: `counts[total] = Σ counts[members]` (a distribution adds up to its count).
    within_row: Vec<(usize, Vec<usize>)>,
    cells: BTreeMap<(String, Key), Cell>,
}

impl Cube {
    pub fn new(measures: usize) -> Self {
        Self {
            measures,
            within_row: Vec::new(),
            cells: BTreeMap::new(),
        }
    }

    pub fn with_row_equation(mut self, total: usize, members: Vec<usize>) -> Self {
        self.within_row.push((total, members));
        self
    }

    /// The cell of `comune` and `key`, created empty.
    pub fn cell(&mut self, comune: &str, key: Key) -> &mut Cell {
        let measures = self.measures;
        self.cells
            .entry((comune.to_owned(), key))
            .or_insert_with(|| Cell {
                counts: vec![0; measures],
                samples: Vec::new(),
            })
    }

    /// Every row in publication order — for each comune of `comuni` (all of them, at zero when
    /// they have nothing) its detail then its total, then the union's — with its suppression.
    pub fn rows(self, comuni: &[String]) -> Vec<CubeRow> {
        let keys: BTreeSet<Key> = self.cells.keys().map(|(_, k)| k.clone()).collect();
        let empty = || Cell {
            counts: vec![0; self.measures],
            samples: Vec::new(),
        };
        let add = |into: &mut Cell, from: &Cell| {
            for (t, c) in into.counts.iter_mut().zip(&from.counts) {
                *t += c;
            }
            into.samples.extend_from_slice(&from.samples);
        };
        let mut rows = Vec::new();
        // The row indexes a total adds up, for the equations.
        let mut comune_totals = Vec::new();
        let mut detail_of_key: BTreeMap<Key, Vec<usize>> = BTreeMap::new();
        let mut rows_of_total: Vec<(usize, Vec<usize>)> = Vec::new();
        let mut cells = self.cells;
        for comune in comuni {
            let mut total = empty();
            let mut members = Vec::new();
            for key in &keys {
                if let Some(cell) = cells.remove(&(comune.clone(), key.clone())) {
                    add(&mut total, &cell);
                    detail_of_key
                        .entry(key.clone())
                        .or_default()
                        .push(rows.len());
                    members.push(rows.len());
                    rows.push(row(Level::Comune, Some(comune), Some(key.clone()), cell));
                }
            }
            comune_totals.push(rows.len());
            rows_of_total.push((rows.len(), members));
            rows.push(row(Level::ComuneTotal, Some(comune), None, total));
        }
        let mut union_rows = Vec::new();
        for key in &keys {
            let members = detail_of_key.remove(key).unwrap_or_default();
            let mut total = empty();
            for &m in &members {
                add(&mut total, &rows[m].cell);
            }
            rows_of_total.push((rows.len(), members));
            union_rows.push(rows.len());
            rows.push(row(Level::Union, None, Some(key.clone()), total));
        }
        let mut grand = empty();
        for &t in &comune_totals {
            add(&mut grand, &rows[t].cell);
        }
        let grand_index = rows.len();
        rows_of_total.push((grand_index, comune_totals));
        rows_of_total.push((grand_index, union_rows));
        rows.push(row(Level::UnionTotal, None, None, grand));

        let m = self.measures;
        let values: Vec<u64> = rows.iter().flat_map(|r| r.cell.counts.clone()).collect();
        let mut equations = Vec::new();
        for (total, members) in &rows_of_total {
            for measure in 0..m {
                equations.push(Equation {
                    total: total * m + measure,
                    members: members.iter().map(|r| r * m + measure).collect(),
                });
            }
        }
        for r in 0..rows.len() {
            for (total, members) in &self.within_row {
                equations.push(Equation {
                    total: r * m + total,
                    members: members.iter().map(|x| r * m + x).collect(),
                });
            }
        }
        let suppressed = suppress(&values, &equations);
        for (r, row) in rows.iter_mut().enumerate() {
            row.suppressed = suppressed[r * m..(r + 1) * m].to_vec();
        }
        rows
    }
}

fn row(level: Level, comune: Option<&String>, key: Option<Key>, cell: Cell) -> CubeRow {
    CubeRow {
        level,
        comune: comune.cloned(),
        key,
        cell,
        suppressed: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::opendata::suppression::is_small;

    /// A row of the cube: its comune (`None`: the union) and key (`None`: the total).
    type Place<'a> = (Option<&'a str>, Option<&'a str>);

    fn cube(cells: &[(&str, &str, u64)]) -> Vec<CubeRow> {
        let mut cube = Cube::new(1);
        for (comune, key, n) in cells {
            cube.cell(comune, vec![key.to_string()]).counts[0] += n;
        }
        cube.rows(&["A".into(), "B".into(), "C".into()])
    }

    fn find<'a>(rows: &'a [CubeRow], comune: Option<&str>, key: Option<&str>) -> &'a CubeRow {
        rows.iter()
            .find(|r| r.comune.as_deref() == comune && r.key.as_ref().map(|k| k[0].as_str()) == key)
            .expect("row")
    }

    #[test]
    fn totals_add_up_per_comune_per_key_and_for_the_union() {
        let rows = cube(&[("A", "x", 5), ("A", "y", 7), ("B", "x", 4)]);
        assert_eq!(find(&rows, Some("A"), None).cell.counts, [12]);
        assert_eq!(
            find(&rows, Some("C"), None).cell.counts,
            [0],
            "a comune with nothing"
        );
        assert_eq!(find(&rows, None, Some("x")).cell.counts, [9]);
        assert_eq!(find(&rows, None, None).cell.counts, [16]);
        assert_eq!(rows.last().unwrap().level, Level::UnionTotal);
    }

    /// Cells of 0, 1, 2 and 3 in every position of a 2 × 2 detail: nothing small is published
    /// and no suppressed count is the only one hidden in any sum.
    #[test]
    fn no_suppressed_count_can_be_recovered_by_subtraction() {
        for pattern in 0..(4u32.pow(4)) {
            let values: Vec<u64> = (0..4)
                .map(|i| u64::from(pattern / 4u32.pow(i) % 4))
                .collect();
            let cells = [
                ("A", "x", values[0]),
                ("A", "y", values[1]),
                ("B", "x", values[2]),
                ("B", "y", values[3]),
            ];
            let present: Vec<_> = cells.iter().filter(|c| c.2 > 0).copied().collect();
            let rows = cube(&present);
            let published = |comune: Option<&str>, key: Option<&str>| {
                let r = rows.iter().find(|r| {
                    r.comune.as_deref() == comune && r.key.as_ref().map(|k| k[0].as_str()) == key
                });
                r.map(|r| (!r.suppressed[0]).then_some(r.cell.counts[0]))
            };
            for r in &rows {
                assert!(!is_small(r.cell.counts[0]) || r.suppressed[0], "{values:?}");
            }
            // Each sum: a row of A, a row of B, a column x, a column y, the union's total both ways.
            let sums: [(Place, [Place; 2]); 6] = [
                (
                    (Some("A"), None),
                    [(Some("A"), Some("x")), (Some("A"), Some("y"))],
                ),
                (
                    (Some("B"), None),
                    [(Some("B"), Some("x")), (Some("B"), Some("y"))],
                ),
                (
                    (None, Some("x")),
                    [(Some("A"), Some("x")), (Some("B"), Some("x"))],
                ),
                (
                    (None, Some("y")),
                    [(Some("A"), Some("y")), (Some("B"), Some("y"))],
                ),
                ((None, None), [(Some("A"), None), (Some("B"), None)]),
                ((None, None), [(None, Some("x")), (None, Some("y"))]),
            ];
            for ((tc, tk), members) in sums {
                let Some(total) = published(tc, tk) else {
                    continue;
                };
                let hidden = members
                    .iter()
                    .chain(std::iter::once(&(tc, tk)))
                    .filter(|(c, k)| published(*c, *k) == Some(None))
                    .count();
                assert_ne!(
                    hidden, 1,
                    "{values:?}: one hidden in the sum for {tc:?}/{tk:?} ({total:?})"
                );
            }
        }
    }
}
