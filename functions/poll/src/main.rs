//! Lambda function `poll`: `GET|POST /sdk/snapshots/active/{service}`, one DynamoDB Query per poll.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    sightline_lambda::serve(sightline_http::poll_routes()).await
}
