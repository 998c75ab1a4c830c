//! Single flight: concurrent requests for one key share one execution of the work and its
//! result. A failure is shared too (the followers do not retry it one after another); the next
//! request after the flight has landed starts a new one.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

pub(crate) struct SingleFlight<K, T> {
    flights: Mutex<HashMap<K, Arc<OnceCell<T>>>>,
}

impl<K, T> Default for SingleFlight<K, T> {
    fn default() -> Self {
        SingleFlight {
            flights: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone, T: Clone> SingleFlight<K, T> {
    /// Runs `work` unless a flight for `key` is already under way, whose result is returned
    /// instead. If the request running the work is cancelled, a waiting one runs its own.
    pub(crate) async fn run<F, Fut>(&self, key: K, work: F) -> T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let cell = self
            .lock()
            .entry(key.clone())
            .or_insert_with(|| Arc::new(OnceCell::new()))
            .clone();
        let result = cell.get_or_init(work).await.clone();
        let mut flights = self.lock();
        if flights.get(&key).is_some_and(|now| Arc::ptr_eq(now, &cell)) {
            flights.remove(&key);
        }
        result
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Arc<OnceCell<T>>>> {
        self.flights.lock().expect("single flight lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_requests_share_one_execution() {
        let flights = SingleFlight::<u8, Result<u32, String>>::default();
        let runs = AtomicUsize::new(0);
        let gate = tokio::sync::Notify::new();
        // Polled together in one task: the first registers the flight and waits on the gate,
        // the others join it, then the gate opens.
        let requests = (0..50).map(|_| {
            flights.run(1, || async {
                runs.fetch_add(1, Ordering::SeqCst);
                gate.notified().await;
                Err::<u32, _>("down".to_owned())
            })
        });
        let opener = async {
            tokio::task::yield_now().await;
            gate.notify_one();
        };
        let (results, ()) = tokio::join!(futures::future::join_all(requests), opener);
        assert!(results.iter().all(|r| r == &Err("down".to_owned())));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // The flight has landed: the next request runs the work again.
        let again = flights.run(1, || async { Ok(7) }).await;
        assert_eq!(again, Ok(7));
    }

    #[tokio::test]
    async fn a_cancelled_leader_hands_over() {
        let flights = Arc::new(SingleFlight::<u8, u32>::default());
        let leader = {
            let flights = flights.clone();
            tokio::spawn(async move { flights.run(1, std::future::pending::<u32>).await })
        };
        tokio::task::yield_now().await;
        leader.abort();
        let _ = leader.await;
        assert_eq!(flights.run(1, || async { 5 }).await, 5);
    }
}
