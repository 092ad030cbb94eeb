//! Shared queues: named FIFO queues of byte messages. The context that registers a queue is notified
//! (through its [`QueueNotify`] hook) whenever a message is enqueued, which is how Proxy-Wasm delivers
//! `on_queue_ready`.

use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Called with the queue id after a message is enqueued. It must not block (post to a task instead).
pub type QueueNotify = Arc<dyn Fn(u32) + Send + Sync>;

/// Most messages a queue holds; enqueueing onto a full queue fails. Default: 10 000.
pub const MAX_QUEUE_LEN: usize = 10_000;

/// Why a queue operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// No queue has that id.
    #[error("no such queue")]
    NotFound,
    /// The queue holds [`MAX_QUEUE_LEN`] messages already.
    #[error("queue is full")]
    Full,
}

struct Queue {
    messages: VecDeque<Bytes>,
    notify: Option<QueueNotify>,
}

#[derive(Default)]
struct Inner {
    by_name: HashMap<(String, String), u32>,
    queues: HashMap<u32, Queue>,
    next_id: u32,
}

/// All shared queues of the process.
#[derive(Default)]
pub struct Queues {
    inner: Mutex<Inner>,
}

impl Queues {
    /// Registers (or re-registers) the queue `name` in `namespace` and returns its id. The new `notify`
    /// replaces the previous registrant's, as in Envoy where the last root context to register owns it.
    pub fn register(&self, namespace: &str, name: &str, notify: Option<QueueNotify>) -> u32 {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let key = (namespace.to_string(), name.to_string());
        if let Some(&id) = inner.by_name.get(&key) {
            if let Some(q) = inner.queues.get_mut(&id) {
                q.notify = notify;
            }
            return id;
        }
        inner.next_id += 1;
        let id = inner.next_id;
        inner.by_name.insert(key, id);
        inner.queues.insert(
            id,
            Queue {
                messages: VecDeque::new(),
                notify,
            },
        );
        id
    }

    /// The id of a registered queue.
    pub fn resolve(&self, namespace: &str, name: &str) -> Option<u32> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .by_name
            .get(&(namespace.to_string(), name.to_string()))
            .copied()
    }

    /// Appends a message and notifies the registrant.
    pub fn enqueue(&self, id: u32, message: Bytes) -> Result<(), QueueError> {
        let notify = {
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            let q = inner.queues.get_mut(&id).ok_or(QueueError::NotFound)?;
            if q.messages.len() >= MAX_QUEUE_LEN {
                return Err(QueueError::Full);
            }
            q.messages.push_back(message);
            q.notify.clone()
        };
        if let Some(notify) = notify {
            notify(id);
        }
        Ok(())
    }

    /// Takes the oldest message; `Ok(None)` when the queue is empty.
    pub fn dequeue(&self, id: u32) -> Result<Option<Bytes>, QueueError> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let q = inner.queues.get_mut(&id).ok_or(QueueError::NotFound)?;
        Ok(q.messages.pop_front())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn register_resolve_enqueue_notify_dequeue() {
        let queues = Queues::default();
        let seen = Arc::new(AtomicU32::new(0));
        let s = seen.clone();
        let id = queues.register(
            "vm",
            "q",
            Some(Arc::new(move |id| s.store(id, Ordering::SeqCst))),
        );
        assert_eq!(queues.resolve("vm", "q"), Some(id));
        assert_eq!(queues.resolve("other", "q"), None);
        assert_eq!(queues.dequeue(id), Ok(None));
        queues.enqueue(id, Bytes::from_static(b"one")).unwrap();
        queues.enqueue(id, Bytes::from_static(b"two")).unwrap();
        assert_eq!(seen.load(Ordering::SeqCst), id);
        assert_eq!(queues.dequeue(id), Ok(Some(Bytes::from_static(b"one"))));
        assert_eq!(queues.dequeue(id), Ok(Some(Bytes::from_static(b"two"))));
        assert_eq!(
            queues.enqueue(id + 100, Bytes::new()),
            Err(QueueError::NotFound)
        );
        assert_eq!(queues.register("vm", "q", None), id);
        for _ in 0..MAX_QUEUE_LEN {
            queues.enqueue(id, Bytes::new()).unwrap();
        }
        assert_eq!(queues.enqueue(id, Bytes::new()), Err(QueueError::Full));
    }
}
