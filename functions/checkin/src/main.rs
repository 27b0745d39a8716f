//! Lambda function `checkin`: evaluates server-only breakpoint conditions for the SDKs.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    sightline_lambda::serve(sightline_http::checkin_routes()).await
}
