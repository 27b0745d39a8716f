//! `sightline-local-router LISTEN UPSTREAM`: the HTTP API of template.yaml on loopback, in
//! front of `cargo lambda watch` (test utility).

use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args
        .next()
        .context("usage: sightline-local-router LISTEN_ADDR UPSTREAM_URL")?
        .parse()
        .context("LISTEN_ADDR must be ip:port")?;
    let upstream = args.next().context("UPSTREAM_URL is required")?;
    sightline_aws_functions_tests::serve(listen, &upstream).await
}
