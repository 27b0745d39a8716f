//! Lambda function `capture`: SDK auto-register and snapshot upload (single and batched).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    sightline_lambda::serve(sightline_http::capture_routes()).await
}
