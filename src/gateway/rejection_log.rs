//! Rejections in the log, at `info`, aggregated. The first rejection of a (problem code, client)
//! pair in an interval is logged at once ("webhook rejected"); later ones are counted and
//! logged as one line per pair when the interval ends ("N more rejections"). A flood so writes
//! a line per pair per interval, not one per request, and memory stays bounded: at most
//! [`MAX_PAIRS`] pairs per interval, rejections of further pairs counted by code alone ("from
//! other clients").
//!
//! An interval opens with the first rejection after a quiet one and is flushed by one task per
//! process when it ends (or by the next rejection, should that come first). Only answers
//! carrying a [`ProblemCode`] come here: an accepted delivery costs naming its client (as the
//! limiters do, from the socket peer and trusted proxies' header) and nothing more. No line
//! holds a header's value: no signature, no secret.

use std::{
    collections::HashMap,
    fmt,
    net::IpAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError, Weak},
    time::{Duration, Instant},
};

use crate::{client_ip::ClientIp, problem::ProblemCode, rate_limit::KeyExtractor};
use http::{Request, StatusCode};
use tokio::sync::Notify;

/// The (problem code, client) pairs counted per interval; rejections of further pairs are
/// counted by code alone.
pub(crate) const MAX_PAIRS: usize = 1024;

/// A rejected client, as the gateway's [`ClientIp`] finds it (IPv6 by prefix), or unidentified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Client(pub(crate) Option<IpAddr>);

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(ip) => write!(f, "{ip}"),
            None => f.write_str("unidentified"),
        }
    }
}

/// A line of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// The first rejection of a pair in an interval.
    First {
        code: ProblemCode,
        status: StatusCode,
        client: Client,
    },
    /// The pair's other rejections in the interval.
    More {
        code: ProblemCode,
        status: StatusCode,
        client: Client,
        count: u64,
    },
    /// Rejections of pairs over the cap in the interval, by code.
    Others {
        code: ProblemCode,
        status: StatusCode,
        count: u64,
    },
}

impl Line {
    fn emit(&self) {
        match self {
            Self::First {
                code,
                status,
                client,
            } => tracing::info!(
                code = %code,
                status = status.as_u16(),
                %client,
                "webhook rejected"
            ),
            Self::More {
                code,
                status,
                client,
                count,
            } => tracing::info!(
                code = %code,
                status = status.as_u16(),
                %client,
                count,
                "{count} more rejections"
            ),
            Self::Others {
                code,
                status,
                count,
            } => tracing::info!(
                code = %code,
                status = status.as_u16(),
                count,
                "{count} more rejections from other clients (over {MAX_PAIRS} clients in the interval)"
            ),
        }
    }
}

/// A pair's count in the current interval: its status (the first one's) and the rejections
/// after the first.
#[derive(Debug)]
struct Counted {
    status: StatusCode,
    more: u64,
}

/// The counts of one interval.
#[derive(Debug)]
struct Window {
    interval: Duration,
    cap: usize,
    /// When the interval's first rejection came; `None` while there was none.
    opened: Option<Instant>,
    pairs: HashMap<(ProblemCode, Client), Counted>,
    others: HashMap<ProblemCode, Counted>,
}

impl Window {
    fn new(interval: Duration, cap: usize) -> Self {
        Self {
            interval,
            cap,
            opened: None,
            pairs: HashMap::new(),
            others: HashMap::new(),
        }
    }

    /// When the open interval ends.
    fn due(&self) -> Option<Instant> {
        self.opened.map(|opened| opened + self.interval)
    }

    /// Counts a rejection at `now`, adding to `lines` those of an interval that ended and the
    /// rejection's own when it is the first of its pair. True when it opened an interval.
    fn record(
        &mut self,
        now: Instant,
        code: ProblemCode,
        status: StatusCode,
        client: Client,
        lines: &mut Vec<Line>,
    ) -> bool {
        if self.due().is_some_and(|due| now >= due) {
            self.flush(lines);
        }
        let opened = self.opened.is_none();
        self.opened.get_or_insert(now);
        if let Some(counted) = self.pairs.get_mut(&(code, client)) {
            counted.more += 1;
        } else if self.pairs.len() < self.cap {
            self.pairs
                .insert((code, client), Counted { status, more: 0 });
            lines.push(Line::First {
                code,
                status,
                client,
            });
        } else {
            self.others
                .entry(code)
                .or_insert(Counted { status, more: 0 })
                .more += 1;
        }
        opened
    }

    /// Ends the interval: the lines of the pairs rejected more than once, and of the others.
    fn flush(&mut self, lines: &mut Vec<Line>) {
        self.opened = None;
        lines.extend(
            self.pairs
                .drain()
                .filter(|(_, counted)| counted.more > 0)
                .map(|((code, client), counted)| Line::More {
                    code,
                    status: counted.status,
                    client,
                    count: counted.more,
                }),
        );
        lines.extend(self.others.drain().map(|(code, counted)| Line::Others {
            code,
            status: counted.status,
            count: counted.more,
        }));
    }
}

/// The gateway's rejection log, shared by every worker.
#[derive(Debug)]
pub(crate) struct RejectionLog {
    client_ip: ClientIp,
    window: Mutex<Window>,
    /// Wakes the flush task when an interval opens, and when the log is dropped.
    wake: Arc<Notify>,
}

impl RejectionLog {
    /// A log counting over `interval`, naming clients as `client_ip` finds them (the gateway's
    /// limiters' own). Spawns its flush task on the current tokio runtime, if any; the task ends
    /// with the log.
    pub(crate) fn start(client_ip: ClientIp, interval: Duration) -> Arc<Self> {
        let log = Arc::new(Self::new(client_ip, interval, MAX_PAIRS));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(flush_when_due(Arc::downgrade(&log), log.wake.clone()));
        }
        log
    }

    fn new(client_ip: ClientIp, interval: Duration, cap: usize) -> Self {
        Self {
            client_ip,
            window: Mutex::new(Window::new(interval, cap)),
            wake: Arc::new(Notify::new()),
        }
    }

    /// The client of `request`, as the gateway's limiters key it.
    pub(crate) fn client_of<B>(&self, request: &Request<B>) -> Client {
        Client(self.client_ip.extract(request).ok())
    }

    /// Logs a rejection of `client`'s request, at once or counted into the interval's line.
    pub(crate) fn record(&self, code: ProblemCode, status: StatusCode, client: Client) {
        let mut lines = Vec::new();
        let opened = self
            .lock()
            .record(Instant::now(), code, status, client, &mut lines);
        if opened {
            self.wake.notify_one();
        }
        // Written outside the lock.
        for line in &lines {
            line.emit();
        }
    }

    /// Logs the counts of an interval that has ended.
    fn flush_due(&self) {
        let mut lines = Vec::new();
        {
            let mut window = self.lock();
            if window.due().is_some_and(|due| Instant::now() >= due) {
                window.flush(&mut lines);
            }
        }
        for line in &lines {
            line.emit();
        }
    }

    /// When the open interval ends.
    fn due(&self) -> Option<Instant> {
        self.lock().due()
    }

    fn lock(&self) -> MutexGuard<'_, Window> {
        // Counting never panics half-way; a poisoned lock still holds sound counts.
        self.window.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for RejectionLog {
    /// Logs what the last interval counted (at shutdown), and ends the flush task.
    fn drop(&mut self) {
        let mut lines = Vec::new();
        self.window
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .flush(&mut lines);
        for line in &lines {
            line.emit();
        }
        self.wake.notify_one();
    }
}

/// The flush task: sleeps until the open interval ends, or until one opens.
async fn flush_when_due(log: Weak<RejectionLog>, wake: Arc<Notify>) {
    loop {
        let Some(due) = log.upgrade().map(|log| log.due()) else {
            return;
        };
        match due {
            Some(due) => tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await,
            // A window opened since `due` was read left a permit: no wake-up is lost.
            None => wake.notified().await,
        }
        match log.upgrade() {
            Some(log) => log.flush_due(),
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use crate::client_ip::ForwardedHeader;
    use http::HeaderValue;

    use super::*;

    const MISMATCH: ProblemCode = ProblemCode::SIGNATURE_MISMATCH;
    const UNAUTHORIZED: StatusCode = StatusCode::UNAUTHORIZED;

    fn client(last: u8) -> Client {
        Client(Some(IpAddr::from([192, 0, 2, last])))
    }

    fn record(window: &mut Window, now: Instant, code: ProblemCode, who: Client) -> Vec<Line> {
        let mut lines = Vec::new();
        window.record(now, code, UNAUTHORIZED, who, &mut lines);
        lines
    }

    #[test]
    fn the_first_rejection_of_a_pair_is_logged_and_the_rest_counted_into_one_line() {
        let start = Instant::now();
        let mut window = Window::new(Duration::from_secs(10), MAX_PAIRS);
        let first = Line::First {
            code: MISMATCH,
            status: UNAUTHORIZED,
            client: client(1),
        };
        assert_eq!(
            record(&mut window, start, MISMATCH, client(1)),
            std::slice::from_ref(&first)
        );
        for _ in 0..49 {
            assert_eq!(record(&mut window, start, MISMATCH, client(1)), []);
        }
        // Another code or another client is another pair.
        assert_eq!(
            record(&mut window, start, ProblemCode::RATE_LIMITED, client(1)).len(),
            1
        );
        assert_eq!(record(&mut window, start, MISMATCH, client(2)).len(), 1);
        assert_eq!(window.due(), Some(start + Duration::from_secs(10)));

        // The interval ends: one line for the pair rejected more than once, then the next
        // rejection is the first of a new interval.
        let later = start + Duration::from_secs(10);
        let lines = record(&mut window, later, MISMATCH, client(1));
        assert_eq!(
            lines,
            [
                Line::More {
                    code: MISMATCH,
                    status: UNAUTHORIZED,
                    client: client(1),
                    count: 49,
                },
                first,
            ]
        );
        assert_eq!(window.due(), Some(later + Duration::from_secs(10)));
        let mut lines = Vec::new();
        window.flush(&mut lines);
        assert_eq!(lines, [], "a single rejection has no second line");
        assert_eq!(window.due(), None);
    }

    #[test]
    fn pairs_over_the_cap_are_counted_by_code() {
        let now = Instant::now();
        let mut window = Window::new(Duration::from_secs(10), 2);
        for last in 1..=5 {
            record(&mut window, now, MISMATCH, client(last));
        }
        assert_eq!(window.pairs.len(), 2);
        record(&mut window, now, MISMATCH, client(1));
        let mut lines = Vec::new();
        window.flush(&mut lines);
        assert_eq!(lines.len(), 2);
        assert!(lines.contains(&Line::Others {
            code: MISMATCH,
            status: UNAUTHORIZED,
            count: 3,
        }));
        assert!(lines.contains(&Line::More {
            code: MISMATCH,
            status: UNAUTHORIZED,
            client: client(1),
            count: 1,
        }));
        assert!(window.pairs.is_empty() && window.others.is_empty());
    }

    fn request(peer: Option<[u8; 4]>, forwarded: &[&str]) -> Request<()> {
        let mut request = Request::new(());
        if let Some(peer) = peer {
            request
                .extensions_mut()
                .insert(SocketAddr::from((peer, 40000)));
        }
        for line in forwarded {
            request
                .headers_mut()
                .append("x-forwarded-for", HeaderValue::from_str(line).unwrap());
        }
        request
    }

    #[test]
    fn clients_are_named_as_the_gateways_client_ip_finds_them() {
        let direct = RejectionLog::new(ClientIp::peer(), Duration::from_secs(1), MAX_PAIRS);
        let behind = RejectionLog::new(
            ClientIp::behind_proxies(["10.0.0.0/8"], ForwardedHeader::XForwardedFor).unwrap(),
            Duration::from_secs(1),
            MAX_PAIRS,
        );
        let name = |log: &RejectionLog, request: &Request<()>| log.client_of(request).to_string();

        let spoofed = request(Some([198, 51, 100, 4]), &["203.0.113.9"]);
        assert_eq!(name(&direct, &spoofed), "198.51.100.4");
        assert_eq!(name(&behind, &spoofed), "198.51.100.4");

        let proxied = request(Some([10, 0, 0, 2]), &["6.6.6.6, 203.0.113.9, 10.0.0.7"]);
        assert_eq!(name(&behind, &proxied), "203.0.113.9");
        assert_eq!(name(&direct, &proxied), "10.0.0.2");

        let two_lines = request(Some([10, 0, 0, 2]), &["203.0.113.9", "10.0.0.7"]);
        assert_eq!(name(&behind, &two_lines), "203.0.113.9");
        assert_eq!(name(&direct, &request(None, &[])), "unidentified");
    }
}
