//! `sightline-test-reset`: empties the test table and bootstraps it again with
//! `SIGHTLINE_TEST_API_KEY`, so each conformance test meets a fresh deployment (test
//! utility; configured like the functions, with the emulator endpoints).

use std::time::Duration;

use anyhow::Context;

/// Longer than the functions' poll-state cache (`Config::state_cache_ms`), so no function
/// answers from a read made before the reset.
const CACHE_SETTLE: Duration = Duration::from_millis(1_100);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let key =
        std::env::var("SIGHTLINE_TEST_API_KEY").context("SIGHTLINE_TEST_API_KEY is required")?;
    let stores = sightline_lambda::store_config_from_env()?;
    let (items, _) = sightline_store_aws::connect(&stores).await;
    let client = items.client();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(&stores.table)
            .projection_expression("pk, sk")
            .set_exclusive_start_key(start)
            .send()
            .await
            .context("scanning the test table")?;
        for key in page.items() {
            client
                .delete_item()
                .table_name(&stores.table)
                .set_key(Some(key.clone()))
                .send()
                .await
                .context("emptying the test table")?;
        }
        start = page.last_evaluated_key().cloned();
        if start.is_none() {
            break;
        }
    }
    let app = sightline_lambda::build_app(&stores, sightline_lambda::app_config_from_env()?).await;
    app.bootstrap(Some(&key)).await.context("bootstrapping")?;
    tokio::time::sleep(CACHE_SETTLE).await;
    Ok(())
}
