//! Ready-set bookkeeping for the step graph: which steps may start, and which can no longer
//! run because a step they need did not pass. Pure: the executor does the running.

/// Where a step is in the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Running,
    /// Passed or skipped: its dependents may go.
    Satisfied,
    /// Failed, or will never run: its dependents cannot go.
    Blocked,
}

pub struct Scheduler {
    needs: Vec<Vec<usize>>,
    dependents: Vec<Vec<usize>>,
    state: Vec<State>,
    unmet: Vec<usize>,
    ready: Vec<usize>,
}

impl Scheduler {
    /// `needs[i]` lists the steps step `i` needs (the graph is acyclic).
    pub fn new(needs: Vec<Vec<usize>>) -> Self {
        let n = needs.len();
        let mut dependents = vec![Vec::new(); n];
        for (i, ns) in needs.iter().enumerate() {
            for &j in ns {
                dependents[j].push(i);
            }
        }
        let unmet: Vec<usize> = needs.iter().map(Vec::len).collect();
        // Reverse so that popping yields steps in configuration order.
        let ready = (0..n).rev().filter(|&i| unmet[i] == 0).collect();
        Scheduler {
            needs,
            dependents,
            state: vec![State::Waiting; n],
            unmet,
            ready,
        }
    }

    /// The next step that may start now, in configuration order.
    pub fn next_ready(&mut self) -> Option<usize> {
        let i = self.ready.pop()?;
        self.state[i] = State::Running;
        Some(i)
    }

    /// Records that step `i` finished; `ok` when its dependents may run.
    /// Returns the steps that can now never run, each with the needed step that stopped it.
    pub fn finish(&mut self, i: usize, ok: bool) -> Vec<(usize, usize)> {
        if ok {
            self.state[i] = State::Satisfied;
            for &d in &self.dependents[i] {
                self.unmet[d] -= 1;
                if self.unmet[d] == 0 && self.state[d] == State::Waiting {
                    self.ready.push(d);
                    self.ready.sort_unstable_by(|a, b| b.cmp(a));
                }
            }
            Vec::new()
        } else {
            self.state[i] = State::Blocked;
            let mut blocked = Vec::new();
            self.block_dependents(i, &mut blocked);
            blocked
        }
    }

    fn block_dependents(&mut self, i: usize, out: &mut Vec<(usize, usize)>) {
        for d in self.dependents[i].clone() {
            if self.state[d] == State::Waiting {
                self.state[d] = State::Blocked;
                self.ready.retain(|&r| r != d);
                out.push((d, i));
                self.block_dependents(d, out);
            }
        }
    }

    /// Every step that has not started, taken out of the run (after a cancel).
    pub fn drain_waiting(&mut self) -> Vec<usize> {
        self.ready.clear();
        let waiting: Vec<usize> = (0..self.state.len())
            .filter(|&i| self.state[i] == State::Waiting)
            .collect();
        for &i in &waiting {
            self.state[i] = State::Blocked;
        }
        waiting
    }

    pub fn needs(&self, i: usize) -> &[usize] {
        &self.needs[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_start_when_their_needs_pass() {
        // 0 <- 1 <- 2, and 3 alone
        let mut s = Scheduler::new(vec![vec![], vec![0], vec![1], vec![]]);
        assert_eq!(s.next_ready(), Some(0));
        assert_eq!(s.next_ready(), Some(3));
        assert_eq!(s.next_ready(), None);
        assert!(s.finish(0, true).is_empty());
        assert_eq!(s.next_ready(), Some(1));
    }

    #[test]
    fn a_failure_blocks_everything_downstream() {
        let mut s = Scheduler::new(vec![vec![], vec![0], vec![1], vec![]]);
        s.next_ready();
        s.next_ready();
        assert_eq!(s.finish(0, false), vec![(1, 0), (2, 1)]);
        assert!(s.finish(3, true).is_empty());
        assert_eq!(s.next_ready(), None);
    }

    #[test]
    fn a_step_with_two_needs_waits_for_both() {
        let mut s = Scheduler::new(vec![vec![], vec![], vec![0, 1]]);
        s.next_ready();
        s.next_ready();
        s.finish(0, true);
        assert_eq!(s.next_ready(), None);
        s.finish(1, true);
        assert_eq!(s.next_ready(), Some(2));
    }
}
