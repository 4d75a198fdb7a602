//! The request rate limit, per client (GCRA from the `governor` crate): a
//! signed request (open, step, direct L1 step) counts against the key that
//! signed it, once its signature verified; any other request, and a signed
//! one whose signature fails, against the peer's IP address. One noisy
//! client is refused with 429 `rate_limited` and a `Retry-After`, while
//! every other client keeps its own allowance.
//!
//! Memory: one small entry per client seen recently. The service calls
//! [`RateLimits::forget_idle`] every second, which drops every client whose
//! allowance is full again (idle for `burst / rate` seconds), so the table
//! holds at most the clients active within that window.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

pub use governor::clock::FakeRelativeClock;
use governor::clock::{Clock, Reference as _};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use tandem_core::PublicKey;

/// Who a request counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Client {
    /// The key that signed it.
    Key(PublicKey),
    /// The peer's address; `None` when the server gives none (in-process
    /// use), which makes all such requests one client.
    Peer(Option<IpAddr>),
}

/// The limiter's clock: the machine's monotonic clock, or a manual one that
/// only moves when told (tests).
#[derive(Clone, Debug)]
pub enum RateClock {
    /// Time since the limiter was made.
    Real(Instant),
    /// Moves by [`FakeRelativeClock::advance`] only.
    Manual(FakeRelativeClock),
}

impl Default for RateClock {
    fn default() -> Self {
        RateClock::Real(Instant::now())
    }
}

impl Clock for RateClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        match self {
            RateClock::Real(start) => Nanos::from(start.elapsed()),
            RateClock::Manual(c) => c.now(),
        }
    }
}

type Keyed = RateLimiter<Client, DefaultKeyedStateStore<Client>, RateClock, NoOpMiddleware<Nanos>>;

/// Per-client limits: `rate` requests a second sustained, bursts of `burst`.
pub struct RateLimits {
    limiter: Keyed,
    clock: RateClock,
    rate: u32,
}

impl RateLimits {
    /// Limits of `rate` a second with bursts of `burst`, on `clock`.
    pub fn new(rate: u32, burst: u32, clock: RateClock) -> RateLimits {
        let per_s = NonZeroU32::new(rate.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(per_s).allow_burst(burst);
        RateLimits { limiter: RateLimiter::new(quota, DefaultKeyedStateStore::default(), clock.clone()), clock, rate: rate.max(1) }
    }

    /// Count one request of `client`: `Err(wait)` when it is over its limit,
    /// with how long until one more would be admitted.
    pub fn check(&self, client: &Client) -> Result<(), Duration> {
        self.limiter.check_key(client).map_err(|not_until| {
            let now = self.clock.now();
            Duration::from(not_until.earliest_possible().duration_since(now))
        })
    }

    /// Drop the clients whose allowance is full again, and the memory they
    /// used.
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Clients remembered now.
    pub fn clients(&self) -> usize {
        self.limiter.len()
    }

    /// The sustained rate, per client per second.
    pub fn rate(&self) -> u32 {
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manual() -> (RateClock, FakeRelativeClock) {
        let c = FakeRelativeClock::default();
        (RateClock::Manual(c.clone()), c)
    }

    #[test]
    fn each_client_has_its_own_allowance_and_is_told_how_long_to_wait() {
        let (clock, time) = manual();
        let limits = RateLimits::new(2, 3, clock);
        let noisy = Client::Peer(Some(IpAddr::from([127, 0, 0, 1])));
        let quiet = Client::Key(PublicKey([7; 32]));
        for _ in 0..3 {
            assert_eq!(limits.check(&noisy), Ok(()));
        }
        // Two a second: the next one is admitted half a second later.
        assert_eq!(limits.check(&noisy), Err(Duration::from_millis(500)));
        assert_eq!(limits.check(&quiet), Ok(()));
        time.advance(Duration::from_millis(500));
        assert_eq!(limits.check(&noisy), Ok(()));
        assert_eq!(limits.check(&noisy), Err(Duration::from_millis(500)));
    }

    #[test]
    fn idle_clients_are_forgotten() {
        let (clock, time) = manual();
        let limits = RateLimits::new(10, 10, clock);
        for i in 0..100u8 {
            assert_eq!(limits.check(&Client::Key(PublicKey([i; 32]))), Ok(()));
        }
        assert_eq!(limits.clients(), 100);
        limits.forget_idle();
        assert_eq!(limits.clients(), 100, "each still has less than its full allowance");
        // Idle for long enough (a full allowance refills in one second).
        time.advance(Duration::from_secs(1));
        limits.forget_idle();
        assert_eq!(limits.clients(), 0);
    }
}
