//! The in-process SSE hub: an [`EventBus`] that fans committed changes out to the open
//! streams of this process, and counts connected SDKs per (project, service).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::json;
use sightline_core::events::{names, Audience, ChangeEvent};
use sightline_core::ports::EventBus;
use tokio::sync::broadcast;

/// Events buffered per subscriber before it lags (a lagging stream gets a fresh `init`).
const CAPACITY: usize = 4096;

pub struct Hub {
    tx: broadcast::Sender<Arc<ChangeEvent>>,
    sdk_streams: Mutex<HashMap<(String, String), usize>>,
}

impl Default for Hub {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        Self {
            tx,
            sdk_streams: Mutex::new(HashMap::new()),
        }
    }
}

impl EventBus for Hub {
    fn publish(&self, event: ChangeEvent) {
        // No subscribers is fine: nobody is listening.
        let _ = self.tx.send(Arc::new(event));
    }
}

impl Hub {
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ChangeEvent>> {
        self.tx.subscribe()
    }

    fn counts(&self) -> MutexGuard<'_, HashMap<(String, String), usize>> {
        self.sdk_streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Connected SDK streams of one service.
    pub fn sdk_count(&self, project: &str, service: &str) -> usize {
        self.counts()
            .get(&(project.to_owned(), service.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Connected SDK streams of every service of a project.
    pub fn sdk_counts(&self, project: &str) -> HashMap<String, usize> {
        self.counts()
            .iter()
            .filter(|((p, _), _)| p == project)
            .map(|((_, s), n)| (s.clone(), *n))
            .collect()
    }

    /// Registers an SDK stream; the count drops again when the guard is dropped.
    pub fn connect_sdk(self: &Arc<Self>, project: &str, service: &str) -> SdkStreamGuard {
        let key = (project.to_owned(), service.to_owned());
        let n = {
            let mut counts = self.counts();
            let n = counts.entry(key.clone()).or_insert(0);
            *n += 1;
            *n
        };
        self.announce_count(&key, n);
        SdkStreamGuard {
            hub: self.clone(),
            key,
        }
    }

    fn announce_count(&self, (project, service): &(String, String), count: usize) {
        self.publish(ChangeEvent {
            project_id: project.clone(),
            service: service.clone(),
            event: names::SDK_COUNT.into(),
            data: json!({"service": service, "count": count}),
            audience: Audience::Dashboard,
        });
    }
}

pub struct SdkStreamGuard {
    hub: Arc<Hub>,
    key: (String, String),
}

impl Drop for SdkStreamGuard {
    fn drop(&mut self) {
        let n = {
            let mut counts = self.hub.counts();
            let n = counts.get_mut(&self.key).map(|n| {
                *n = n.saturating_sub(1);
                *n
            });
            if n == Some(0) {
                counts.remove(&self.key);
            }
            n.unwrap_or(0)
        };
        self.hub.announce_count(&self.key, n);
    }
}
