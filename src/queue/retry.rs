//! The one retry policy: exponential backoff with jitter that honours what the other side asked
//! for, used by the bounded [`retry`] loop around single calls and by the durable queues'
//! per-destination [`Backoff`] (which never gives up: its entries are durable).
//!
//! Neither retries an error its [`Retryable`] implementation calls final (a 4xx other than 429,
//! a malformed answer); both wait at least what the server asked for (`retry_after_ms`,
//! `Retry-After`). The loop stops at whichever comes first, the attempt limit or the time budget,
//! and reports how many retries it made, so callers can feed a "retries" metric.

use std::fmt::Display;
use std::time::Duration;

use tokio::time::Instant;

/// When and how often to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Wait before the first retry; doubled for each further one. Default 100 ms.
    pub initial_delay: Duration,
    /// The longest wait between two attempts (before jitter). Default 10 s.
    pub max_delay: Duration,
    /// The most attempts in all, the first included; at least one attempt is always made.
    /// Default 6.
    pub max_attempts: u32,
    /// The time budget: no retry starts (nor is waited for) past this much time since the first
    /// attempt began. Default 60 s.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            max_attempts: 6,
            max_elapsed: Duration::from_mins(1),
        }
    }
}

impl RetryPolicy {
    /// A policy that makes exactly one attempt.
    pub fn no_retry() -> Self {
        Self { max_attempts: 1, ..Self::default() }
    }

    /// The backoff before retry number `retry` (0-based), before jitter: `initial_delay · 2^retry`,
    /// capped at `max_delay`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry);
        self.initial_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// What the retry loop needs to know about an error.
pub trait Retryable {
    /// Whether another attempt may succeed.
    fn is_retryable(&self) -> bool;
    /// How long the server asked the caller to wait, if it did.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

/// The outcome of [`retry`]: the last attempt's result and how many retries preceded it.
#[derive(Debug)]
#[must_use = "the result of the retried call is inside"]
pub struct Retried<T, E> {
    /// The result of the last attempt.
    pub result: Result<T, E>,
    /// How many attempts were made after the first (0 when the first attempt settled it).
    pub retries: u32,
}

impl<T, E> Retried<T, E> {
    /// The result alone, for callers that do not count retries.
    pub fn into_result(self) -> Result<T, E> {
        self.result
    }
}

/// Runs `op` until it succeeds, fails with a final error, or `policy` runs out.
///
/// Waits grow as [`RetryPolicy::backoff`], each shortened by up to half at random so that many
/// callers failing together do not retry in lockstep; a server's `retry_after` is a floor.
pub async fn retry<T, E, F, Fut>(policy: &RetryPolicy, mut op: F) -> Retried<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Retryable + Display,
{
    let start = Instant::now();
    let mut retries = 0u32;
    loop {
        let result = op().await;
        let Err(ref error) = result else {
            return Retried { result, retries };
        };
        if !error.is_retryable() || retries.saturating_add(1) >= policy.max_attempts {
            return Retried { result, retries };
        }
        let delay = policy.delay(retries, error);
        if start.elapsed().saturating_add(delay) > policy.max_elapsed {
            return Retried { result, retries };
        }
        tracing::warn!(%error, retry = retries + 1, delay_ms = delay.as_millis(), "call failed, retrying");
        tokio::time::sleep(delay).await;
        retries += 1;
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0-based) after `error`: the jittered backoff, or
    /// what the server asked for if that is longer.
    pub fn delay(&self, retry: u32, error: &impl Retryable) -> Duration {
        let backoff = jitter(self.backoff(retry));
        error.retry_after().map_or(backoff, |asked| asked.max(backoff))
    }
}

/// The backoff of one destination of a durable queue: the policy's delays, growing with each
/// failure in a row and reset by a success. It ignores the policy's attempt limit and time
/// budget, because what it retries is durable and must eventually go.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryPolicy,
    failures: u32,
}

impl Backoff {
    /// A backoff with no failures yet.
    pub fn new(policy: RetryPolicy) -> Self {
        Self { policy, failures: 0 }
    }

    /// Records a failure and returns how long to wait before trying again.
    pub fn failed(&mut self, error: &impl Retryable) -> Duration {
        let delay = self.policy.delay(self.failures, error);
        self.failures = self.failures.saturating_add(1);
        delay
    }

    /// Records a success: the next failure waits the initial delay again.
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// Between half and all of `delay`, uniformly ("equal jitter").
fn jitter(delay: Duration) -> Duration {
    let half = delay / 2;
    // If the OS has no randomness to give, waiting the full delay is still correct.
    let fraction = getrandom::u32().map_or(1.0, |r| f64::from(r) / f64::from(u32::MAX));
    half + half.mul_f64(fraction)
}
