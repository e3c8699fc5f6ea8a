//! Small-cell suppression (Sistan: a count of 1 or 2 is not published), with secondary
//! suppression so that no suppressed count can be recovered by subtraction.
//!
//! A table is a list of counts and the equations that hold between them (`total = Σ members`,
//! across rows, columns, the union's totals and within a row). An equation with exactly one
//! suppressed cell gives that cell away; so, until no such equation is left, each of them gets a
//! second suppressed cell: the smallest published member above zero, else a member at zero, else
//! its total (which then counts in the equations it is a member of). Suppressions only grow, so
//! this ends; it is the greedy method of τ-ARGUS's "hypercube" family, not an optimum.

/// The counts below this (and above zero) are suppressed (Sistan's threshold).
pub const THRESHOLD: u64 = 3;

/// `cells[total] = Σ cells[members]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Equation {
    pub total: usize,
    pub members: Vec<usize>,
}

/// True for a count that is published empty on its own (1 or 2).
pub fn is_small(count: u64) -> bool {
    (1..THRESHOLD).contains(&count)
}

/// Which cells are suppressed: the small ones, and the complements that protect them.
pub fn suppress(cells: &[u64], equations: &[Equation]) -> Vec<bool> {
    let mut suppressed: Vec<bool> = cells.iter().map(|&c| is_small(c)).collect();
    loop {
        let mut changed = false;
        for equation in equations {
            let hidden = equation
                .members
                .iter()
                .chain(std::iter::once(&equation.total))
                .filter(|&&i| suppressed[i])
                .count();
            if hidden != 1 {
                continue;
            }
            let complement = equation
                .members
                .iter()
                .copied()
                .filter(|&i| !suppressed[i])
                .min_by_key(|&i| (cells[i] == 0, cells[i], i))
                .or((!suppressed[equation.total]).then_some(equation.total));
            if let Some(i) = complement {
                suppressed[i] = true;
                changed = true;
            }
        }
        if !changed {
            return suppressed;
        }
    }
}

/// True when no equation has exactly one suppressed cell (what [`suppress`] guarantees).
pub fn protects(suppressed: &[bool], equations: &[Equation]) -> bool {
    equations.iter().all(|e| {
        e.members
            .iter()
            .chain(std::iter::once(&e.total))
            .filter(|&&i| suppressed[i])
            .count()
            != 1
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2 × 2 table with its margins: cells 0..4 row-major, row totals 4, 5, column totals 6, 7,
    /// grand total 8.
    fn table(values: [u64; 4]) -> (Vec<u64>, Vec<Equation>) {
        let [a, b, c, d] = values;
        let cells = vec![a, b, c, d, a + b, c + d, a + c, b + d, a + b + c + d];
        let eq = |total, members: &[usize]| Equation {
            total,
            members: members.to_vec(),
        };
        let equations = vec![
            eq(4, &[0, 1]),
            eq(5, &[2, 3]),
            eq(6, &[0, 2]),
            eq(7, &[1, 3]),
            eq(8, &[4, 5]),
            eq(8, &[6, 7]),
        ];
        (cells, equations)
    }

    #[test]
    fn counts_of_one_and_two_are_suppressed_zero_and_three_are_not() {
        assert!(!is_small(0));
        assert!(is_small(1));
        assert!(is_small(2));
        assert!(!is_small(3));
    }

    #[test]
    fn a_table_without_small_cells_publishes_everything() {
        let (cells, equations) = table([0, 3, 5, 40]);
        assert!(suppress(&cells, &equations).iter().all(|s| !s));
    }

    #[test]
    fn one_small_cell_takes_its_row_and_column_partners_and_the_fourth_corner() {
        let (cells, equations) = table([1, 10, 20, 30]);
        let s = suppress(&cells, &equations);
        assert_eq!(&s[..4], &[true, true, true, true], "{s:?}");
        assert!(s[4..].iter().all(|x| !x), "margins stay published: {s:?}");
        assert!(protects(&s, &equations));
    }

    #[test]
    fn the_smallest_partner_is_chosen() {
        // Row 0 is [2, 50 | 4]: the only partner in the row is 50; column 0 is [2, 4]: 4 is chosen.
        let (cells, equations) = table([2, 50, 4, 60]);
        let s = suppress(&cells, &equations);
        assert!(s[0] && s[1] && s[2] && s[3]);
        assert!(protects(&s, &equations));
    }

    #[test]
    fn a_total_equal_to_its_lone_member_is_suppressed_and_protected_in_turn() {
        // A lone member equals its total; the total is a member above, where it needs a partner.
        let cells = vec![2, 2, 10, 12];
        let equations = vec![
            Equation {
                total: 1,
                members: vec![0],
            },
            Equation {
                total: 3,
                members: vec![1, 2],
            },
        ];
        let s = suppress(&cells, &equations);
        assert_eq!(s, vec![true, true, true, false]);
        assert!(protects(&s, &equations));
    }

    #[test]
    fn every_position_of_every_small_value_ends_protected() {
        for position in 0..4 {
            for small in [1, 2] {
                for other in [0, 1, 2, 3, 7] {
                    let mut values = [other, 3, 5, 9];
                    values[position] = small;
                    let (cells, equations) = table(values);
                    let s = suppress(&cells, &equations);
                    assert!(s[position], "{values:?}");
                    assert!(protects(&s, &equations), "{values:?} → {s:?}");
                    for (i, &c) in cells.iter().enumerate() {
                        if is_small(c) {
                            assert!(s[i], "small cell {i} of {values:?} published");
                        }
                    }
                }
            }
        }
    }
}
