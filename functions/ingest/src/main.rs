//! Lambda function `ingest`: OTLP/HTTP traces (protobuf or JSON, gzip) and metrics.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    sightline_lambda::serve(sightline_http::ingest_routes()).await
}
