//! The order of the end-to-end rounds: the three set-ups of the API server's webhooks take turns,
//! in an order that rotates round by round (so that a change in the machine's load falls on all of
//! them alike), and the last turn always leaves the webhooks pointing at ours, the set-up the rest
//! of the bench (the reconcile rounds) runs against, whatever the number of rounds.

/// A set-up of the API server's webhooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    /// No webhooks registered.
    NoWebhooks,
    /// The floor's webhooks.
    Floor,
    /// The operator's webhooks: the set-up under test, registered when the bench starts.
    Ours,
}

impl Setup {
    /// Every set-up, in the order of the printed table.
    pub const ALL: [Setup; 3] = [Setup::NoWebhooks, Setup::Floor, Setup::Ours];

    /// Its name in the printed table and the progress lines.
    pub fn label(self) -> &'static str {
        match self {
            Setup::NoWebhooks => "none",
            Setup::Floor => "floor",
            Setup::Ours => "ours",
        }
    }

    /// Its row in [`Setup::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One switch of the API server's webhooks to `setup`: measured in round `round`, or, without a
/// round, only putting ours back once the rounds are over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Turn {
    /// The set-up the webhooks are switched to.
    pub setup: Setup,
    /// The round whose creates are measured on it; `None` for the final restoring switch.
    pub round: Option<usize>,
}

/// The turns of `rounds` rounds: round `r` measures every set-up once, starting at the `r`-th
/// (modulo three); a restoring turn to ours follows when the last measured turn left another set-up
/// in place.
pub fn turns(rounds: usize) -> Vec<Turn> {
    let count = Setup::ALL.len();
    let mut turns: Vec<Turn> = (0..rounds)
        .flat_map(|round| {
            (0..count).map(move |turn| Turn { setup: Setup::ALL[(turn + round) % count], round: Some(round) })
        })
        .collect();
    if turns.last().is_some_and(|last| last.setup != Setup::Ours) {
        turns.push(Turn { setup: Setup::Ours, round: None });
    }
    turns
}

#[cfg(test)]
mod tests {
    // Only `tests/bench_units.rs` runs these (the bench has no test harness): paths through `super`.

    #[test]
    fn the_webhooks_point_at_ours_after_any_number_of_rounds() {
        for rounds in 0..=12 {
            // The bench registers ours when it starts: no turn leaves ours in place.
            let in_place = super::turns(rounds).last().map_or(super::Setup::Ours, |turn| turn.setup);
            assert_eq!(in_place, super::Setup::Ours, "after {rounds} rounds");
        }
    }

    #[test]
    fn three_rounds_end_on_the_floor_and_then_restore_ours() {
        use super::Setup::{Floor, NoWebhooks, Ours};
        let turns = super::turns(3);
        let measured: Vec<super::Setup> = turns.iter().filter(|t| t.round.is_some()).map(|t| t.setup).collect();
        assert_eq!(measured, [NoWebhooks, Floor, Ours, Floor, Ours, NoWebhooks, Ours, NoWebhooks, Floor]);
        assert_eq!(turns.last(), Some(&super::Turn { setup: Ours, round: None }));
    }

    #[test]
    fn every_round_measures_every_set_up_once_and_nothing_is_restored_needlessly() {
        for rounds in 0..=12 {
            let turns = super::turns(rounds);
            for round in 0..rounds {
                let mut setups: Vec<usize> =
                    turns.iter().filter(|t| t.round == Some(round)).map(|t| t.setup.index()).collect();
                assert_eq!(setups.first(), Some(&(round % 3)), "round {round} starts one further");
                setups.sort_unstable();
                assert_eq!(setups, [0, 1, 2], "round {round} of {rounds}");
            }
            let restoring = turns.iter().filter(|t| t.round.is_none()).count();
            assert_eq!(restoring, usize::from(rounds > 0 && rounds % 3 != 1), "{rounds} rounds");
        }
    }
}
