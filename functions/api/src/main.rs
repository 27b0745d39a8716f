//! Lambda function `api`: the admin REST API, the dashboard (pages, sign-in, assets), and
//! the key lookup the edge routes streams with (the live event streams themselves are served
//! by the edge).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let routes = sightline_http::admin_api_routes().merge(sightline_dashboard::routes());
    sightline_lambda::serve(routes).await
}
