//! The local router sends every path of template.yaml to the function that owns it there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sightline_aws_functions_tests::function_for;

/// (path, binary) of every HttpApi event in template.yaml.
fn template_routes() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml"))
        .unwrap();
    let mut binary = String::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(b) = line.trim().strip_prefix("Binary: ") {
            binary = b.trim().to_owned();
        }
        if let Some(rest) = line.split("Path: ").nth(1) {
            let path = rest.split(',').next().unwrap().trim().trim_matches('"');
            out.push((path.to_owned(), binary.clone()));
        }
    }
    out
}

#[test]
fn every_template_route_goes_to_its_function() {
    let routes = template_routes();
    assert!(routes.len() >= 10, "{routes:?}");
    for (path, binary) in routes {
        let concrete = path
            .replace("{service}", "checkout")
            .replace("{proxy+}", "breakpoints");
        assert_eq!(function_for(&concrete), binary, "{path}");
    }
}

#[test]
fn unknown_and_stream_paths_fall_to_the_api_function() {
    for p in [
        "/nope",
        "/sdk/snapshots/stream/x",
        "/api/events",
        "/sdk/snapshots/active/a/b",
    ] {
        assert_eq!(function_for(p), "api", "{p}");
    }
}
