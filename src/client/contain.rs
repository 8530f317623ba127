//! Panic containment for one client's task: a panic is caught, logged with the client's
//! address, counted, and cuts off only that client; servers it held are closed.

use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::Poll;

use crate::metrics::Metrics;

/// How a contained task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Normally,
    /// It panicked with this message; the client was cut off.
    Panicked(String),
}

/// Runs `task` (one client's work) to its end. A panic while it is polled is caught
/// here, not by the runtime, so it can be logged with `peer` and counted in
/// `pgate_client_panics_total`; what the task held is then dropped with servers closed
/// (see [`crate::pool::drop_abandoned`]), and the caller's own guards (the client slot)
/// are released as after any other end.
///
/// The task comes boxed (`Unpin`): its state can then be dropped at a chosen moment, inside
/// the abandoned scope, and the future of `contain` itself stays small, where a task taken
/// by value would be carried twice, once inline and once boxed, by every client.
///
/// `metrics` may be a reference or an owner (the task spawned per client passes one, so
/// it needs no state of its own around this future).
pub async fn contain<F, M>(mut task: F, peer: SocketAddr, metrics: M) -> Ended
where
    F: Future<Output = ()> + Unpin,
    M: std::ops::Deref<Target = Metrics>,
{
    let polled =
        std::future::poll_fn(|cx| match std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(&mut task).poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(())) => Poll::Ready(Ok(())),
            Err(payload) => Poll::Ready(Err(payload)),
        })
        .await;
    let payload = match polled {
        Ok(()) => return Ended::Normally,
        Err(payload) => payload,
    };
    let message = panic_message(payload.as_ref());
    metrics.client_panicked();
    tracing::error!(%peer, panic = %message, "client task panicked; the client was disconnected");
    // A Drop that panics as well must not take the worker down with it.
    if std::panic::catch_unwind(AssertUnwindSafe(|| crate::pool::drop_abandoned(task))).is_err() {
        tracing::error!(%peer, "dropping the state of a panicked client task panicked too");
    }
    Ended::Panicked(message)
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-text panic payload>".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    fn peer() -> SocketAddr {
        "10.0.0.7:51514".parse().unwrap()
    }

    /// Sets its flag when dropped, and records whether it was dropped as abandoned.
    struct Witness(Arc<AtomicBool>);
    impl Drop for Witness {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_is_caught_counted_and_leaves_other_tasks_alone() {
        let metrics = Arc::new(Metrics::new().unwrap());
        let dropped = Arc::new(AtomicBool::new(false));
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        // A neighbour that is mid-way through its own work when the panic happens.
        let neighbour = tokio::spawn({
            let metrics = metrics.clone();
            async move { contain(Box::pin(async move { assert_eq!(rx.await.unwrap(), 7) }), peer(), metrics).await }
        });
        let witness = Witness(dropped.clone());
        let panicking = async move {
            let _held = witness;
            tokio::time::sleep(Duration::from_millis(10)).await;
            let v: Vec<u8> = Vec::new();
            let _ = v[usize::from(v.is_empty())]; // index out of bounds, after an await
        };
        let ended = contain(Box::pin(panicking), peer(), metrics.clone()).await;
        let Ended::Panicked(message) = ended else { panic!("the panic was not reported: {ended:?}") };
        assert!(message.contains("index out of bounds"), "{message}");
        assert_eq!(metrics.client_panics(), 1);
        assert!(dropped.load(Ordering::SeqCst), "what the task held was dropped");
        tx.send(7).unwrap();
        assert_eq!(neighbour.await.unwrap(), Ended::Normally, "the other client ran to its end");
        assert_eq!(metrics.client_panics(), 1);
    }

    #[tokio::test]
    async fn a_task_that_ends_is_not_counted() {
        let metrics = Metrics::new().unwrap();
        assert_eq!(contain(Box::pin(async {}), peer(), &metrics).await, Ended::Normally);
        assert_eq!(
            contain(Box::pin(async { panic!("with {}", "text") }), peer(), &metrics).await,
            Ended::Panicked("with text".into())
        );
        assert_eq!(metrics.client_panics(), 1);
    }

    #[tokio::test]
    async fn the_state_is_dropped_as_abandoned() {
        struct Probe(Arc<AtomicBool>);
        impl Drop for Probe {
            fn drop(&mut self) {
                // What PooledServer's Drop checks: panicking, or inside drop_abandoned.
                let abandoned = std::thread::panicking() || crate::pool::is_abandoned();
                self.0.store(abandoned, Ordering::SeqCst);
            }
        }
        let metrics = Metrics::new().unwrap();
        let seen = Arc::new(AtomicBool::new(false));
        let probe = Probe(seen.clone());
        let task = async move {
            let _held = probe;
            tokio::task::yield_now().await;
            panic!("boom");
        };
        assert!(matches!(contain(Box::pin(task), peer(), &metrics).await, Ended::Panicked(_)));
        assert!(seen.load(Ordering::SeqCst), "held state must be dropped as abandoned");
    }
}
