//! The one place preflight turns stop signals into calls: every command that runs something
//! (`run`, the hooks, `watch`, `worker`) installs its handler here, and says what the first,
//! second and later signal mean.

use crate::error::{Error, Result};

/// Which signals stop the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stops {
    /// Ctrl-C, SIGTERM and SIGHUP (a closed terminal): a run or a watch.
    InterruptTermHangup,
    /// Ctrl-C and SIGTERM only: a long-lived worker outlives its terminal.
    InterruptTerm,
}

/// Calls `on_signal` on a thread of its own each time one of `stops` arrives, with how many
/// have arrived so far (1 for the first).
pub fn on_stop(stops: Stops, mut on_signal: impl FnMut(usize) + Send + 'static) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let wanted: &[i32] = match stops {
        Stops::InterruptTermHangup => &[SIGINT, SIGTERM, SIGHUP],
        Stops::InterruptTerm => &[SIGINT, SIGTERM],
    };
    let mut signals = signal_hook::iterator::Signals::new(wanted)
        .map_err(|e| Error::io("cannot install signal handlers", e))?;
    std::thread::spawn(move || {
        let mut count = 0;
        for _ in signals.forever() {
            count += 1;
            on_signal(count);
        }
    });
    Ok(())
}
