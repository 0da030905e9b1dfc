//! Ranks as threads of one process: the in-memory twin of a multi-process job.
//!
//! Each collective is a *round*: every rank deposits its contribution, the last to arrive
//! publishes all of them, and each rank computes its result from the same published list, so a
//! sum is always taken in rank order (reproducible, and equal to a sequential sum). A rank
//! that drops its handle (it returned early, failed, or panicked) leaves the group: the others'
//! waits for it fail at once with [`CommError::PeerLeft`]; a rank that stays away longer than
//! the timeout makes them fail with [`CommError::Timeout`].
//!
//! Ranks take turns: from its first collective on, a rank computes only while it holds the
//! process's one *turn*, and gives it up while it waits in a collective. Separate processes
//! share nothing, but ranks as threads share burn's process-wide state (its autodiff graph
//! registry, swept by every backward pass): a two-rank run here once ended with the ranks'
//! weights differing after the same all-reduced gradients, under CI load, and never in 23
//! runs on a quiet machine. Taking turns keeps one rank's work from overlapping another's,
//! as between processes, at no cost in what the tests compare.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::{Collective, CommError, check_chunks, collective_timeout};

/// One rank of an in-process group; see the module docs. Made by [`ThreadGroup::new`], one
/// handle per rank, each moved to its rank's thread.
#[derive(Debug)]
pub struct ThreadGroup {
    rank: usize,
    world: usize,
    /// Collectives this rank has entered: the round it takes part in next.
    round: Cell<u64>,
    /// Whether this rank holds the process's turn (see the module docs).
    turn: Cell<bool>,
    shared: Arc<Shared>,
}

/// Whether some rank of some group in this process holds the turn.
static TURN: Mutex<bool> = Mutex::new(false);
static TURN_FREED: Condvar = Condvar::new();

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    timeout: Duration,
}

#[derive(Debug, Default)]
struct State {
    rounds: BTreeMap<u64, Round>,
    /// Ranks that left, with what they said.
    departed: BTreeMap<usize, Option<String>>,
}

#[derive(Debug)]
struct Round {
    op: &'static str,
    deposits: Vec<Option<Payload>>,
    published: Option<Arc<Vec<Payload>>>,
    taken: usize,
}

#[derive(Debug, Clone)]
enum Payload {
    Floats(Vec<f32>),
    Bytes(Vec<u8>),
    Count(u64),
}

impl ThreadGroup {
    /// The handles of a group of `world` ranks, rank `r` at index `r`, waiting at most
    /// [`collective_timeout`] for each other.
    pub fn new(world: usize) -> Vec<Self> {
        Self::with_timeout(world, collective_timeout())
    }

    /// The same, with an explicit bound on every wait.
    pub fn with_timeout(world: usize, timeout: Duration) -> Vec<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            timeout,
        });
        (0..world)
            .map(|rank| Self {
                rank,
                world,
                round: Cell::new(0),
                turn: Cell::new(false),
                shared: shared.clone(),
            })
            .collect()
    }

    /// Leaves the group, telling the others why (their waits fail naming this rank).
    pub fn leave(self, reason: impl Into<String>) {
        self.depart(Some(reason.into()));
    }

    fn depart(&self, reason: Option<String>) {
        let mut state = lock(&self.shared.state);
        state.departed.entry(self.rank).or_insert(reason);
        drop(state);
        self.shared.changed.notify_all();
    }

    /// Gives up the turn (if held) while waiting for `op`'s round, and takes it back after.
    fn round(&self, op: &'static str, payload: Payload) -> Result<Arc<Vec<Payload>>, CommError> {
        self.give_turn();
        let result = self.take_part(op, payload);
        let started = Instant::now();
        let mut taken = TURN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while *taken {
            let waited = started.elapsed();
            if waited >= self.shared.timeout {
                // A rank that computes past the timeout without a collective is hung.
                return Err(CommError::Timeout {
                    op,
                    rank: self.rank,
                    waited,
                    missing: Vec::new(),
                });
            }
            taken = TURN_FREED
                .wait_timeout(taken, self.shared.timeout - waited)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
        *taken = true;
        self.turn.set(true);
        result
    }

    fn give_turn(&self) {
        if self.turn.replace(false) {
            *TURN
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = false;
            TURN_FREED.notify_one();
        }
    }

    fn take_part(
        &self,
        op: &'static str,
        payload: Payload,
    ) -> Result<Arc<Vec<Payload>>, CommError> {
        let id = self.round.get();
        self.round.set(id + 1);
        let mut state = lock(&self.shared.state);
        let world = self.world;
        let round = state.rounds.entry(id).or_insert_with(|| Round {
            op,
            deposits: vec![None; world],
            published: None,
            taken: 0,
        });
        if round.op != op {
            let detail = format!(
                "rank {} called {op} where another rank called {}",
                self.rank, round.op
            );
            return Err(CommError::Mismatch { op, detail });
        }
        round.deposits[self.rank] = Some(payload);
        if round.deposits.iter().all(Option::is_some) {
            let all = round.deposits.iter_mut().filter_map(Option::take).collect();
            round.published = Some(Arc::new(all));
            self.shared.changed.notify_all();
        }
        let started = Instant::now();
        loop {
            let round = state
                .rounds
                .get_mut(&id)
                .ok_or_else(|| CommError::Mismatch {
                    op,
                    detail: format!("round {id} vanished"),
                })?;
            if let Some(published) = round.published.clone() {
                round.taken += 1;
                if round.taken == world {
                    state.rounds.remove(&id);
                }
                return Ok(published);
            }
            let missing: Vec<usize> = (0..world)
                .filter(|r| round.deposits[*r].is_none())
                .collect();
            if let Some((&peer, reason)) = state
                .departed
                .iter()
                .find(|(peer, _)| missing.contains(peer))
            {
                return Err(CommError::PeerLeft {
                    op,
                    peer,
                    reason: reason.clone(),
                });
            }
            let waited = started.elapsed();
            if waited >= self.shared.timeout {
                return Err(CommError::Timeout {
                    op,
                    rank: self.rank,
                    waited,
                    missing,
                });
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, self.shared.timeout - waited)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
    }

    fn floats(&self, op: &'static str, local: &[f32]) -> Result<Vec<Vec<f32>>, CommError> {
        let all = self.round(op, Payload::Floats(local.to_vec()))?;
        let mut out = Vec::with_capacity(all.len());
        for (rank, payload) in all.iter().enumerate() {
            match payload {
                Payload::Floats(values) if values.len() == local.len() => out.push(values.clone()),
                Payload::Floats(values) => {
                    return Err(CommError::Mismatch {
                        op,
                        detail: format!(
                            "rank {rank} passed {} values, rank {} {}",
                            values.len(),
                            self.rank,
                            local.len()
                        ),
                    });
                }
                _ => return Err(kind_mismatch(op, rank)),
            }
        }
        Ok(out)
    }
}

fn kind_mismatch(op: &'static str, rank: usize) -> CommError {
    CommError::Mismatch {
        op,
        detail: format!("rank {rank} passed another kind of buffer"),
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Drop for ThreadGroup {
    fn drop(&mut self) {
        self.give_turn();
        self.depart(None);
    }
}

impl Collective for ThreadGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world(&self) -> usize {
        self.world
    }

    fn engine(&self) -> &'static str {
        "threads"
    }

    fn barrier(&self) -> Result<(), CommError> {
        self.round("barrier", Payload::Count(0)).map(drop)
    }

    fn broadcast(&self, buf: &mut [f32], root: usize) -> Result<(), CommError> {
        if root >= self.world {
            return Err(CommError::Mismatch {
                op: "broadcast",
                detail: format!("root {root} in a world of {}", self.world),
            });
        }
        let all = self.floats("broadcast", buf)?;
        buf.copy_from_slice(&all[root]);
        Ok(())
    }

    fn all_gather(&self, local: &[f32]) -> Result<Vec<f32>, CommError> {
        Ok(self.floats("all_gather", local)?.concat())
    }

    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<(), CommError> {
        let all = self.floats("all_reduce", buf)?;
        sum_in_rank_order(&all, buf);
        Ok(())
    }

    fn reduce_scatter_sum(&self, buf: &[f32]) -> Result<Vec<f32>, CommError> {
        let chunk = check_chunks("reduce_scatter", buf.len(), self.world)?;
        let all = self.floats("reduce_scatter", buf)?;
        let mine = self.rank * chunk..(self.rank + 1) * chunk;
        let parts: Vec<Vec<f32>> = all.iter().map(|a| a[mine.clone()].to_vec()).collect();
        let mut out = vec![0.0; chunk];
        sum_in_rank_order(&parts, &mut out);
        Ok(out)
    }

    fn all_gather_bytes(&self, local: &[u8]) -> Result<Vec<Vec<u8>>, CommError> {
        let all = self.round("all_gather_bytes", Payload::Bytes(local.to_vec()))?;
        all.iter()
            .enumerate()
            .map(|(rank, p)| match p {
                Payload::Bytes(bytes) => Ok(bytes.clone()),
                _ => Err(kind_mismatch("all_gather_bytes", rank)),
            })
            .collect()
    }

    fn all_reduce_max(&self, value: u64) -> Result<u64, CommError> {
        let all = self.round("all_reduce_max", Payload::Count(value))?;
        all.iter()
            .enumerate()
            .try_fold(0, |max, (rank, p)| match p {
                Payload::Count(v) => Ok(max.max(*v)),
                _ => Err(kind_mismatch("all_reduce_max", rank)),
            })
    }
}

/// `out = all[0] + all[1] + …`, element-wise, left to right.
fn sum_in_rank_order(all: &[Vec<f32>], out: &mut [f32]) {
    for (i, value) in out.iter_mut().enumerate() {
        let mut sum = all[0][i];
        for rank in &all[1..] {
            sum += rank[i];
        }
        *value = sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `body(handle)` on one thread per rank; results in rank order.
    fn on_ranks<R: Send>(world: usize, body: impl Fn(ThreadGroup) -> R + Sync) -> Vec<R> {
        let handles = ThreadGroup::with_timeout(world, Duration::from_secs(20));
        std::thread::scope(|scope| {
            let body = &body;
            let threads: Vec<_> = handles
                .into_iter()
                .map(|h| scope.spawn(move || body(h)))
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().expect("rank thread"))
                .collect()
        })
    }

    #[test]
    fn collectives_give_the_sums_and_concatenations_by_hand() {
        // 3 ranks; rank r holds [r, 10 r, 100 r, 1000 r, 1, 2].
        let results = on_ranks(3, |g| {
            let r = g.rank() as f32;
            let mine = vec![r, 10.0 * r, 100.0 * r, 1000.0 * r, 1.0, 2.0];
            let gathered = g.all_gather(&mine[..2]).expect("all_gather");
            let mut summed = mine.clone();
            g.all_reduce_sum(&mut summed).expect("all_reduce");
            let scattered = g.reduce_scatter_sum(&mine).expect("reduce_scatter");
            let mut root = vec![r; 2];
            g.broadcast(&mut root, 2).expect("broadcast");
            let bytes = g
                .all_gather_bytes(&vec![b'a' + g.rank() as u8; g.rank()])
                .expect("bytes");
            let max = g.all_reduce_max(7 * g.rank() as u64).expect("max");
            g.barrier().expect("barrier");
            (gathered, summed, scattered, root, bytes, max)
        });
        for (rank, (gathered, summed, scattered, root, bytes, max)) in results.iter().enumerate() {
            // all_gather of [r, 10 r]: [0, 0, 1, 10, 2, 20].
            assert_eq!(gathered, &[0.0, 0.0, 1.0, 10.0, 2.0, 20.0]);
            // Sum over r = 0, 1, 2 of [r, 10 r, 100 r, 1000 r, 1, 2] = 3 · [1, 10, 100, 1000] and
            // [3, 6].
            assert_eq!(summed, &[3.0, 30.0, 300.0, 3000.0, 3.0, 6.0]);
            // Chunks of 2: rank 0 gets [3, 30], rank 1 [300, 3000], rank 2 [3, 6].
            let want = [[3.0, 30.0], [300.0, 3000.0], [3.0, 6.0]][rank];
            assert_eq!(scattered, &want);
            assert_eq!(root, &[2.0, 2.0]);
            assert_eq!(bytes, &[b"".to_vec(), b"b".to_vec(), b"cc".to_vec()]);
            assert_eq!(*max, 14);
        }
    }

    #[test]
    fn ranks_take_turns_between_collectives() {
        // Each rank, 20 times: enter, count those inside, wait, leave, barrier. Taking turns,
        // never two inside at once (without turns, the 5 ms waits overlap nearly every round).
        let inside = std::sync::atomic::AtomicUsize::new(0);
        let most = on_ranks(3, |g| {
            g.barrier().expect("first barrier");
            let mut most = 0;
            for _ in 0..20 {
                let now = inside.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                most = most.max(now);
                std::thread::sleep(Duration::from_millis(5));
                inside.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                g.barrier().expect("barrier");
            }
            most
        });
        assert_eq!(most, vec![1, 1, 1]);
    }

    #[test]
    fn a_rank_that_leaves_fails_the_others_naming_it() {
        let results = on_ranks(3, |g| {
            if g.rank() == 1 {
                g.leave("data error on rank 1");
                return None;
            }
            Some(g.barrier().expect_err("rank 1 left").to_string())
        });
        for message in results.into_iter().flatten() {
            assert!(message.contains("rank 1 left"), "{message}");
            assert!(message.contains("data error on rank 1"), "{message}");
        }
    }

    #[test]
    fn a_rank_that_never_arrives_times_out() {
        let mut handles = ThreadGroup::with_timeout(2, Duration::from_millis(200));
        let absent = handles.pop().expect("rank 1");
        let g = handles.pop().expect("rank 0");
        let started = Instant::now();
        let err = g.barrier().expect_err("rank 1 never comes");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            matches!(&err, CommError::Timeout { missing, .. } if missing == &[1]),
            "{err}"
        );
        drop(absent);
    }

    #[test]
    fn mismatched_calls_are_refused() {
        let results = on_ranks(2, |g| {
            if g.rank() == 0 {
                g.all_gather(&[1.0, 2.0]).map(drop)
            } else {
                g.all_gather(&[1.0]).map(drop)
            }
        });
        for r in results {
            let err = r.expect_err("lengths differ");
            assert!(err.to_string().contains("passed"), "{err}");
        }
    }
}
