//! Lambda function `api`: the admin REST API, and the key lookup the edge routes streams
//! with (the live event streams themselves are served by the edge).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    sightline_lambda::serve(sightline_http::admin_api_routes()).await
}
