//! Checking a log on every core while walking it in order.
//!
//! Hashes and signatures of different events are independent, so workers check chunks of
//! events in parallel; the chain (links, auth) needs log order, so the calling thread consumes
//! the results in input order, overlapping with the workers instead of waiting for them.

use std::collections::BTreeMap;
use std::sync::{Mutex, mpsc};

/// Events per unit of work.
const CHUNK: usize = 512;

/// Runs `check` over `input` on every core and feeds the results to `consume` in input order.
/// Stops at the first error of `input` or `consume`.
pub(crate) fn pipeline<T, R, E>(
    input: impl Iterator<Item = Result<T, E>>,
    check: impl Fn(T) -> R + Sync,
    mut consume: impl FnMut(R) -> Result<(), E>,
) -> Result<(), E>
where
    T: Send,
    R: Send,
{
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let in_flight = workers * 2;
    let (job_tx, job_rx) = mpsc::sync_channel::<(usize, Vec<T>)>(in_flight);
    let job_rx = Mutex::new(job_rx);
    let (done_tx, done_rx) = mpsc::channel::<(usize, Vec<R>)>();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let (job_rx, done_tx, check) = (&job_rx, done_tx.clone(), &check);
            scope.spawn(move || {
                loop {
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok((index, items)) = job else { return };
                    if done_tx.send((index, items.into_iter().map(check).collect())).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        let mut input = input;
        let mut ready: BTreeMap<usize, Vec<R>> = BTreeMap::new();
        let (mut sent, mut consumed) = (0usize, 0usize);
        let result = loop {
            let mut chunk = Vec::with_capacity(CHUNK);
            let mut failed = None;
            for item in input.by_ref().take(CHUNK) {
                match item {
                    Ok(item) => chunk.push(item),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            let last = chunk.len() < CHUNK || failed.is_some();
            if !chunk.is_empty() && job_tx.send((sent, chunk)).is_ok() {
                sent += 1;
            }
            // Consume what is ready in order; wait only when the input is done or enough is queued.
            let mut outcome = Ok(());
            while consumed < sent && outcome.is_ok() {
                if let Some(results) = ready.remove(&consumed) {
                    outcome = results.into_iter().try_for_each(&mut consume);
                    consumed += 1;
                    continue;
                }
                let must_wait = last || sent - consumed >= in_flight;
                let next = if must_wait { done_rx.recv().ok() } else { done_rx.try_recv().ok() };
                match next {
                    Some((index, results)) => {
                        ready.insert(index, results);
                    }
                    // Workers only stop early by panicking; the scope re-raises that panic.
                    None if must_wait => panic!("log check workers stopped"),
                    None => break,
                }
            }
            if let Err(e) = outcome {
                break Err(e);
            }
            if let Some(e) = failed {
                break Err(e);
            }
            if last && consumed >= sent {
                break Ok(());
            }
        };
        drop(job_tx);
        result
    })
}

#[cfg(test)]
mod tests {
    use super::pipeline;

    #[test]
    fn results_arrive_in_input_order_and_errors_stop_it() {
        let mut seen = Vec::new();
        let input = (0..5000u32).map(Ok::<u32, String>);
        pipeline(
            input,
            |x| x * 2,
            |y| {
                seen.push(y);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen, (0..5000u32).map(|x| x * 2).collect::<Vec<_>>());

        let mut count = 0;
        let err = pipeline(
            (0..5000u32).map(Ok::<u32, String>),
            |x| x,
            |y| {
                count += 1;
                if y == 1234 { Err(format!("stop at {y}")) } else { Ok(()) }
            },
        );
        assert_eq!(err, Err("stop at 1234".to_owned()));
        assert_eq!(count, 1235);

        let err = pipeline(
            (0..3000u32).map(|x| if x == 2000 { Err("bad input".to_owned()) } else { Ok(x) }),
            |x| x,
            |_| Ok(()),
        );
        assert_eq!(err, Err("bad input".to_owned()));
    }
}
