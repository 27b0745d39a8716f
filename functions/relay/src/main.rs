//! Lambda function `relay`: the table's change stream → signed publish to the edge.

use aws_lambda_events::dynamodb::Event;
use lambda_runtime::{service_fn, LambdaEvent};
use sightline_core::ports::{Clock, IdGen};
use sightline_store_local::{RandomIds, SystemClock};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    sightline_lambda::init_logging();
    let publisher = &sightline_lambda::edge_publisher_from_env().await?;
    lambda_runtime::run(service_fn(|ev: LambdaEvent<Event>| async move {
        // A fresh id per attempt: a retried batch is a new request, not a replay.
        let batch_id = RandomIds.random_hex128();
        sightline_fn_relay::relay(publisher, &ev.payload, SystemClock.now_ms(), batch_id)
            .await
            .map_err(lambda_runtime::Error::from)
    }))
    .await
}
