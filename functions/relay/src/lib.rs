//! The relay: DynamoDB Streams records → core change events → one signed publish per batch.
//!
//! Every committed write reaches the table's stream with its old and new image. The relay
//! reads each image back into a core [`Item`] exactly as the store does
//! ([`item_from_attributes`]), maps the pair to the events the local server would have
//! published in-process ([`item_change_events`]), and posts them to the edge in one signed
//! request. A failed publish fails the invocation, so Lambda retries the whole batch.

use std::collections::HashMap;

use aws_lambda_events::dynamodb::{Event, EventRecord};
use aws_sdk_dynamodb::types::AttributeValue;
use sightline_core::events::ChangeEvent;
use sightline_core::ports::Item;
use sightline_core::publish::PublishBatch;
use sightline_core::stream::item_change_events;
use sightline_http::edge_publish::{EdgePublishError, EdgePublisher};
use sightline_store_aws::item_from_attributes;

/// The change events of a batch of stream records, in stream order. An image that cannot
/// be read is skipped with a warning: retrying would never make it readable.
pub fn change_events(event: &Event, now_ms: i64) -> Vec<ChangeEvent> {
    event
        .records
        .iter()
        .flat_map(|record| {
            let old = image(record, &record.change.old_image);
            let new = image(record, &record.change.new_image);
            item_change_events(old.as_ref(), new.as_ref(), now_ms)
        })
        .collect()
}

fn image(record: &EventRecord, image: &serde_dynamo::Item) -> Option<Item> {
    if image.is_empty() {
        return None;
    }
    let stored: HashMap<String, AttributeValue> = image.clone().into();
    match item_from_attributes(&stored) {
        Ok(item) => Some(item),
        Err(e) => {
            tracing::warn!(event_id = %record.event_id, error = %e, "skipping an unreadable stream image");
            None
        }
    }
}

/// Publishes the batch's events to the edge in one signed request; returns how many.
/// A batch without events sends nothing.
pub async fn relay(
    publisher: &EdgePublisher,
    event: &Event,
    now_ms: i64,
    batch_id: String,
) -> Result<usize, EdgePublishError> {
    let events = change_events(event, now_ms);
    if events.is_empty() {
        return Ok(0);
    }
    let n = events.len();
    publisher
        .publish(&PublishBatch {
            id: batch_id,
            events,
        })
        .await?;
    tracing::info!(records = event.records.len(), events = n, "published");
    Ok(n)
}
