//! Ready-set bookkeeping for the step graph: which steps may start, and which can no longer
//! run because a step they need did not pass. Pure: the executor does the running.
//!
//! Two kinds of edge: `needs` (run after, and only if, the other passed or was skipped) and
//! `after` (run after the other has finished or been ruled out, whatever its result; used to
//! keep fixers off each other's files).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Running,
    Done,
}

pub struct Scheduler {
    needed_by: Vec<Vec<usize>>,
    followed_by: Vec<Vec<usize>>,
    state: Vec<State>,
    /// Edges (of either kind) still to be released before the step may start.
    unmet: Vec<usize>,
    ready: Vec<usize>,
}

impl Scheduler {
    /// `needs[i]` and `after[i]` list the steps step `i` waits for (the graph is acyclic).
    pub fn new(needs: &[Vec<usize>], after: &[Vec<usize>]) -> Self {
        let n = needs.len();
        let mut needed_by = vec![Vec::new(); n];
        let mut followed_by = vec![Vec::new(); n];
        for i in 0..n {
            for &j in &needs[i] {
                needed_by[j].push(i);
            }
            for &j in &after[i] {
                followed_by[j].push(i);
            }
        }
        let unmet: Vec<usize> = (0..n).map(|i| needs[i].len() + after[i].len()).collect();
        let mut s = Scheduler {
            needed_by,
            followed_by,
            state: vec![State::Waiting; n],
            unmet,
            ready: Vec::new(),
        };
        s.ready = (0..n).filter(|&i| s.unmet[i] == 0).collect();
        s.sort_ready();
        s
    }

    /// Popping from the end yields steps in configuration order.
    fn sort_ready(&mut self) {
        self.ready.sort_unstable_by(|a, b| b.cmp(a));
    }

    /// The next step that may start now, in configuration order.
    pub fn next_ready(&mut self) -> Option<usize> {
        let i = self.ready.pop()?;
        self.state[i] = State::Running;
        Some(i)
    }

    /// Records that step `i` finished; `ok` when the steps that need it may run.
    /// Returns the steps that can now never run, each with the needed step that stopped it.
    pub fn finish(&mut self, i: usize, ok: bool) -> Vec<(usize, usize)> {
        self.state[i] = State::Done;
        let mut blocked = Vec::new();
        self.release(i, ok, &mut blocked);
        self.sort_ready();
        blocked
    }

    fn release(&mut self, i: usize, ok: bool, blocked: &mut Vec<(usize, usize)>) {
        for d in self.followed_by[i].clone() {
            self.unmet[d] -= 1;
            self.make_ready_if_free(d);
        }
        for d in self.needed_by[i].clone() {
            if self.state[d] != State::Waiting {
                continue;
            }
            if ok {
                self.unmet[d] -= 1;
                self.make_ready_if_free(d);
            } else {
                // Ruled out: it will never run, so whatever waits on it is released in turn.
                self.state[d] = State::Done;
                self.ready.retain(|&r| r != d);
                blocked.push((d, i));
                self.release(d, false, blocked);
            }
        }
    }

    fn make_ready_if_free(&mut self, d: usize) {
        if self.unmet[d] == 0 && self.state[d] == State::Waiting && !self.ready.contains(&d) {
            self.ready.push(d);
        }
    }

    /// Every step that has not started, taken out of the run (after a cancel).
    pub fn drain_waiting(&mut self) -> Vec<usize> {
        self.ready.clear();
        let waiting: Vec<usize> = (0..self.state.len())
            .filter(|&i| self.state[i] == State::Waiting)
            .collect();
        for &i in &waiting {
            self.state[i] = State::Done;
        }
        waiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only_needs(needs: Vec<Vec<usize>>) -> Scheduler {
        let after = vec![Vec::new(); needs.len()];
        Scheduler::new(&needs, &after)
    }

    #[test]
    fn steps_start_when_their_needs_pass() {
        // 0 <- 1 <- 2, and 3 alone
        let mut s = only_needs(vec![vec![], vec![0], vec![1], vec![]]);
        assert_eq!(s.next_ready(), Some(0));
        assert_eq!(s.next_ready(), Some(3));
        assert_eq!(s.next_ready(), None);
        assert!(s.finish(0, true).is_empty());
        assert_eq!(s.next_ready(), Some(1));
    }

    #[test]
    fn a_failure_blocks_everything_downstream() {
        let mut s = only_needs(vec![vec![], vec![0], vec![1], vec![]]);
        s.next_ready();
        s.next_ready();
        assert_eq!(s.finish(0, false), vec![(1, 0), (2, 1)]);
        assert!(s.finish(3, true).is_empty());
        assert_eq!(s.next_ready(), None);
    }

    #[test]
    fn a_step_with_two_needs_waits_for_both() {
        let mut s = only_needs(vec![vec![], vec![], vec![0, 1]]);
        s.next_ready();
        s.next_ready();
        s.finish(0, true);
        assert_eq!(s.next_ready(), None);
        s.finish(1, true);
        assert_eq!(s.next_ready(), Some(2));
    }

    #[test]
    fn after_waits_for_any_result_and_for_ruled_out_steps() {
        // 1 needs 0; 2 runs after 1 whatever happens.
        let mut s = Scheduler::new(&[vec![], vec![0], vec![]], &[vec![], vec![], vec![1]]);
        assert_eq!(s.next_ready(), Some(0));
        assert_eq!(s.next_ready(), None, "2 waits for 1");
        assert_eq!(s.finish(0, false), vec![(1, 0)]);
        assert_eq!(s.next_ready(), Some(2), "1 was ruled out, so 2 may go");
    }
}
