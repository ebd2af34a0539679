//! What a load run is doing at each moment: deliveries in progress, or deliveries only waiting
//! for their next attempt (after a retryable answer, on the ElevenLabs schedule).
//!
//! The time when no delivery was in progress but at least one was waiting for a retry is the
//! run's *waiting time*: the rate "excluding retry waits" is the events handled over the wall
//! time less that waiting time. While some deliveries wait and others go on, the time counts as
//! active: the rate is then what the receiver actually took.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use indicatif::ProgressBar;

use crate::units;

/// Shared by every worker of a load run (a lock taken only when a retry wait starts or ends,
/// and when a worker ends: never per request).
#[derive(Debug)]
pub(crate) struct Activity {
    state: Mutex<State>,
    /// The run's progress bar (hidden when stderr is not a terminal).
    pub(crate) progress: ProgressBar,
}

#[derive(Debug)]
struct State {
    /// Workers delivering (not in a retry wait, not finished).
    active: usize,
    /// Deliveries in a retry wait.
    waiting: usize,
    /// Since when nothing but retry waits has been going on.
    only_waiting_since: Option<Instant>,
    /// The waiting time of the periods that have ended.
    only_waiting: Duration,
    /// The wait most recently started.
    last_wait: Duration,
}

impl Activity {
    pub(crate) fn new(workers: usize, progress: ProgressBar) -> Self {
        Self {
            state: Mutex::new(State {
                active: workers,
                waiting: 0,
                only_waiting_since: None,
                only_waiting: Duration::ZERO,
                last_wait: Duration::ZERO,
            }),
            progress,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A worker's delivery begins a retry wait of `wait`.
    pub(crate) fn wait_started(&self, wait: Duration) {
        let message = {
            let mut state = self.state();
            state.active = state.active.saturating_sub(1);
            state.waiting += 1;
            state.last_wait = wait;
            if state.active == 0 {
                state.only_waiting_since.get_or_insert_with(Instant::now);
            }
            waiting_message(state.waiting, state.last_wait)
        };
        self.progress.set_message(message);
    }

    /// The wait is over (or cut short): the worker delivers again.
    pub(crate) fn wait_ended(&self) {
        let message = {
            let mut state = self.state();
            state.waiting = state.waiting.saturating_sub(1);
            state.active += 1;
            if let Some(since) = state.only_waiting_since.take() {
                state.only_waiting += since.elapsed();
            }
            waiting_message(state.waiting, state.last_wait)
        };
        self.progress.set_message(message);
    }

    /// A worker has no more events to deliver.
    pub(crate) fn worker_done(&self) {
        let mut state = self.state();
        state.active = state.active.saturating_sub(1);
        if state.active == 0 && state.waiting > 0 {
            state.only_waiting_since.get_or_insert_with(Instant::now);
        }
    }

    /// The waiting time so far (a period still going on included).
    pub(crate) fn only_waiting(&self) -> Duration {
        let state = self.state();
        state.only_waiting
            + state
                .only_waiting_since
                .map_or(Duration::ZERO, |s| s.elapsed())
    }

    /// `handled` events over `elapsed` less the waiting time, as `123/s`.
    pub(crate) fn rate_text(&self, handled: u64, elapsed: Duration) -> String {
        let active = elapsed.saturating_sub(self.only_waiting()).as_secs_f64();
        if active <= 0.0 {
            return "-/s".to_owned();
        }
        format!("{:.0}/s", handled as f64 / active)
    }
}

/// The progress bar's message: how many deliveries wait for a retry, and the latest wait.
pub(crate) fn waiting_message(waiting: usize, last_wait: Duration) -> String {
    if waiting == 0 {
        String::new()
    } else {
        format!(
            "waiting for a retry: {waiting} (latest wait {})",
            units::human(last_wait)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_tells_waiting_from_progress() {
        assert_eq!(waiting_message(0, Duration::from_secs(30)), "");
        assert_eq!(
            waiting_message(3, Duration::from_millis(33_400)),
            "waiting for a retry: 3 (latest wait 33.4s)"
        );
    }

    #[test]
    fn only_time_with_nothing_but_waits_is_waiting_time() {
        let activity = Activity::new(2, ProgressBar::hidden());
        // One worker waits while the other delivers: active time.
        activity.wait_started(Duration::from_millis(50));
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(activity.only_waiting(), Duration::ZERO);
        assert_eq!(
            activity.progress.message(),
            "waiting for a retry: 1 (latest wait 50ms)"
        );
        // The other one finishes: from now on, only a wait goes on.
        activity.worker_done();
        std::thread::sleep(Duration::from_millis(40));
        let during = activity.only_waiting();
        assert!(during >= Duration::from_millis(40), "{during:?}");
        activity.wait_ended();
        assert_eq!(activity.progress.message(), "");
        let waited = activity.only_waiting();
        std::thread::sleep(Duration::from_millis(20));
        // Delivering again: the waiting time no longer grows.
        assert_eq!(activity.only_waiting(), waited);
        activity.worker_done();
        assert_eq!(activity.only_waiting(), waited);
    }

    #[test]
    fn the_rate_leaves_the_waiting_time_out() {
        let activity = Activity::new(1, ProgressBar::hidden());
        assert_eq!(activity.rate_text(100, Duration::from_secs(2)), "50/s");
        assert_eq!(activity.rate_text(0, Duration::ZERO), "-/s");
    }
}
