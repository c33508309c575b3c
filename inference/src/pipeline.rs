//! A bounded three-stage pipeline for at-scale inference (§10.3): decode workers → inference
//! workers (each owning its own session, since `Session::run` takes `&mut self`) →
//! post-processing workers (fuse + atomic write).
//!
//! The stages are joined by bounded channels, so at most `queue` decoded images wait for the
//! network and at most `queue` network outputs wait for post-processing, whatever the number of
//! images: memory is flat in the dataset size. A failing item is passed down to `done` as an
//! error and never stops the others. Inference workers take up to `batch` waiting items at
//! once (the stage function decides what it can batch together).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Sizes of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipelineConfig {
    /// Threads decoding and preparing images.
    pub decode_workers: usize,
    /// Threads post-processing network outputs.
    pub post_workers: usize,
    /// Capacity of each of the two channels.
    pub queue: usize,
    /// Most items an inference worker takes at once.
    pub batch: usize,
}

impl PipelineConfig {
    /// Sizes for `threads` cores and `infer_workers` sessions.
    pub fn for_threads(threads: usize, infer_workers: usize, batch: usize) -> Self {
        let threads = threads.max(1);
        PipelineConfig {
            decode_workers: threads,
            post_workers: threads,
            queue: 2 * (infer_workers.max(1) * batch.max(1)).max(threads),
            batch: batch.max(1),
        }
    }
}

/// Busy time summed over the workers of each stage (waiting on channels excluded).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimes {
    /// Decoding and preparation.
    pub decode: Duration,
    /// Network inference.
    pub infer: Duration,
    /// Post-processing (including writing).
    pub post: Duration,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs every item through `decode` → `infer` → `post` and calls `done` exactly once per item
/// with the outcome (the first error of its stages, or `Ok`). `workers` holds one state (e.g.
/// a session) per inference worker; `infer` gets a batch of `(item index, decoded)` pairs and
/// returns one result per pair, in order. With no worker nothing runs and `done` is not
/// called.
#[allow(clippy::too_many_arguments)]
pub fn run<I, P, O, E, W>(
    items: &[I],
    cfg: &PipelineConfig,
    workers: Vec<W>,
    decode: impl Fn(&I) -> Result<P, E> + Sync,
    infer: impl Fn(&mut W, Vec<(usize, P)>) -> Vec<Result<O, E>> + Sync,
    post: impl Fn(&I, O) -> Result<(), E> + Sync,
    done: impl Fn(&I, Result<(), E>) + Sync,
) -> StageTimes
where
    I: Sync,
    P: Send,
    O: Send,
    E: Send,
    W: Send,
{
    if workers.is_empty() {
        // Nothing could drain the decoded queue; the caller opens at least one session.
        return StageTimes::default();
    }
    let queue = cfg.queue.max(1);
    let (tx_dec, rx_dec) = sync_channel::<(usize, Result<P, E>)>(queue);
    let (tx_out, rx_out) = sync_channel::<(usize, Result<O, E>)>(queue);
    let rx_dec = Mutex::new(rx_dec);
    let rx_out = Mutex::new(rx_out);
    let next = AtomicUsize::new(0);
    let times = Mutex::new(StageTimes::default());
    let add = |f: &dyn Fn(&mut StageTimes) -> &mut Duration, d: Duration| {
        *f(&mut lock(&times)) += d;
    };
    std::thread::scope(|s| {
        for _ in 0..cfg.decode_workers.max(1) {
            let tx: SyncSender<_> = tx_dec.clone();
            let (next, decode, add) = (&next, &decode, &add);
            s.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let t = Instant::now();
                    let r = decode(item);
                    add(&|s| &mut s.decode, t.elapsed());
                    if tx.send((i, r)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx_dec);
        for mut w in workers {
            let tx = tx_out.clone();
            let (rx, infer, add) = (&rx_dec, &infer, &add);
            let batch = cfg.batch.max(1);
            s.spawn(move || {
                while let Some(got) = take_batch(rx, batch) {
                    let mut ok = Vec::with_capacity(got.len());
                    for (i, r) in got {
                        match r {
                            Ok(p) => ok.push((i, p)),
                            Err(e) => {
                                if tx.send((i, Err(e))).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    if ok.is_empty() {
                        continue;
                    }
                    let ids: Vec<usize> = ok.iter().map(|(i, _)| *i).collect();
                    let t = Instant::now();
                    let results = infer(&mut w, ok);
                    add(&|s| &mut s.infer, t.elapsed());
                    for (i, r) in ids.into_iter().zip(results) {
                        if tx.send((i, r)).is_err() {
                            return;
                        }
                    }
                }
            });
        }
        drop(tx_out);
        for _ in 0..cfg.post_workers.max(1) {
            let (rx, post, done, add) = (&rx_out, &post, &done, &add);
            s.spawn(move || {
                loop {
                    let Ok((i, r)) = lock(rx).recv() else { break };
                    let item = &items[i];
                    let outcome = match r {
                        Ok(o) => {
                            let t = Instant::now();
                            let r = post(item, o);
                            add(&|s| &mut s.post, t.elapsed());
                            r
                        }
                        Err(e) => Err(e),
                    };
                    done(item, outcome);
                }
            });
        }
    });
    *lock(&times)
}

/// Blocks for one item, then takes up to `batch − 1` more that are already waiting.
fn take_batch<T>(rx: &Mutex<Receiver<T>>, batch: usize) -> Option<Vec<T>> {
    let rx = lock(rx);
    let first = rx.recv().ok()?;
    let mut got = vec![first];
    while got.len() < batch {
        match rx.try_recv() {
            Ok(v) => got.push(v),
            Err(_) => break,
        }
    }
    Some(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn every_item_is_done_once_and_errors_pass_through() {
        let items: Vec<u32> = (0..200).collect();
        let cfg = PipelineConfig {
            decode_workers: 3,
            post_workers: 2,
            queue: 4,
            batch: 5,
        };
        let done: Vec<AtomicUsize> = items.iter().map(|_| AtomicUsize::new(0)).collect();
        let failed = AtomicUsize::new(0);
        let biggest = AtomicUsize::new(0);
        run(
            &items,
            &cfg,
            vec![0u32, 0u32],
            |&i| {
                if i % 17 == 0 {
                    Err(format!("bad {i}"))
                } else {
                    Ok(i * 2)
                }
            },
            |calls: &mut u32, batch: Vec<(usize, u32)>| {
                *calls += 1;
                biggest.fetch_max(batch.len(), Ordering::Relaxed);
                batch
                    .into_iter()
                    .map(|(i, p)| {
                        assert_eq!(p, items[i] * 2, "payload travels with its index");
                        if i % 23 == 0 {
                            Err(format!("infer {i}"))
                        } else {
                            Ok(p + 1)
                        }
                    })
                    .collect()
            },
            |&i, o| {
                assert_eq!(o, i * 2 + 1);
                Ok(())
            },
            |&i, r: Result<(), String>| {
                done[i as usize].fetch_add(1, Ordering::Relaxed);
                if let Err(e) = r {
                    assert!(i % 17 == 0 || i % 23 == 0, "{e}");
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            },
        );
        assert!(done.iter().all(|d| d.load(Ordering::Relaxed) == 1));
        let want = items
            .iter()
            .filter(|i| *i % 17 == 0 || *i % 23 == 0)
            .count();
        assert_eq!(failed.load(Ordering::Relaxed), want);
        assert!(biggest.load(Ordering::Relaxed) <= 5);
    }

    #[test]
    fn queues_stay_bounded() {
        // Inference is slow and decoding fast: the number decoded but not yet inferred never
        // exceeds the queue plus what the workers hold.
        let items: Vec<u32> = (0..60).collect();
        let cfg = PipelineConfig {
            decode_workers: 2,
            post_workers: 1,
            queue: 3,
            batch: 2,
        };
        let decoded = AtomicUsize::new(0);
        let inferred = AtomicUsize::new(0);
        let worst = AtomicUsize::new(0);
        run(
            &items,
            &cfg,
            vec![(), ()],
            |&i| {
                let d = decoded.fetch_add(1, Ordering::SeqCst) + 1;
                worst.fetch_max(d - inferred.load(Ordering::SeqCst), Ordering::SeqCst);
                Ok::<u32, ()>(i)
            },
            |_, batch: Vec<(usize, u32)>| {
                std::thread::sleep(Duration::from_millis(2));
                inferred.fetch_add(batch.len(), Ordering::SeqCst);
                batch.into_iter().map(|(_, p)| Ok(p)).collect()
            },
            |_, _| Ok(()),
            |_, _| {},
        );
        // queue (3) + 2 workers × batch 2 + one in flight per decoder (2).
        assert!(worst.load(Ordering::SeqCst) <= 3 + 4 + 2, "{worst:?}");
    }
}
