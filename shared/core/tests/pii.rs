#![allow(clippy::unwrap_used, clippy::expect_used)]
//! PII scrubber: the 13 built-in patterns, nesting, flags, idempotence, custom patterns,
//! request headers and the false positives we deliberately avoid.

use serde_json::{json, Value};
use sightline_core::pii::{
    is_marker, CustomPattern, PiiError, Scrubber, SecurityFlag, BUILTIN_PATTERNS, DEPTH_MARKER,
    MAX_CUSTOM_PATTERNS, MAX_DEPTH, SENSITIVE_NAME_MARKER,
};

fn scrubber() -> &'static Scrubber {
    Scrubber::builtin()
}

/// What the built-in scrubber turns the string `s` into (`None` when left alone).
fn redact(s: &str) -> Option<String> {
    let mut v = Value::String(s.to_owned());
    let flags = scrubber().scrub_value(&mut v, "v");
    let out = v.as_str().unwrap().to_owned();
    if out == s {
        assert!(flags.is_empty(), "{s:?} unchanged but flagged: {flags:?}");
        None
    } else {
        assert_eq!(flags.len(), 1, "{s:?}: {flags:?}");
        Some(out)
    }
}

#[track_caller]
fn assert_redacted(marker: &str, cases: &[&str]) {
    for s in cases {
        assert_eq!(
            redact(s).as_deref(),
            Some(marker),
            "{s:?} should be {marker}"
        );
    }
}

#[track_caller]
fn assert_kept(cases: &[&str]) {
    for s in cases {
        assert_eq!(redact(s), None, "{s:?} should be kept");
    }
}

fn flag(ty: &str, category: &str, severity: &str, variable: &str) -> SecurityFlag {
    SecurityFlag {
        r#type: ty.to_owned(),
        category: category.to_owned(),
        severity: severity.to_owned(),
        variable: variable.to_owned(),
        redacted: true,
    }
}

// ---------------------------------------------------------------------------------------
// The 12 value patterns: positives and near-miss negatives.

#[test]
fn rule_01_email() {
    assert_redacted(
        "[REDACTED:email]",
        &[
            "dev@example.com",
            "contact John.Doe+tag@mail.example.co.uk please",
            "mailto:a_b%c@x-y.io",
        ],
    );
    assert_kept(&[
        "user@localhost",
        "@handle",
        "foo@bar",
        "a@b.c",
        "twitter: @example.com",
    ]);
}

#[test]
fn rule_02_ssn() {
    assert_redacted(
        "[REDACTED:ssn]",
        &["123-45-6789", "SSN 078-05-1120 on file", "ssn=219-09-9999;"],
    );
    assert_kept(&[
        "123-456-789",
        "123-45-67890",
        "2026-11-22",
        "12-345-6789",
        "1234-56-789",
    ]);
}

#[test]
fn rule_03_credit_card() {
    assert_redacted(
        "[REDACTED:credit_card]",
        &[
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "card=4111111111111111;",
            "paid with 5555555555554444",
        ],
    );
    assert_kept(&[
        "4111 1111 1111",
        "41111 1111 1111 1111",
        "4111.1111.1111.1111",
        "41111111111111111",
        "order 4111-1111",
    ]);
}

#[test]
fn rule_04_phone() {
    assert_redacted(
        "[REDACTED:phone]",
        &[
            "555-123-4567",
            "555.123.4567",
            "5551234567",
            "call +1 555-123-4567 now",
            "1-555-123-4567",
            "(555) 123-4567",
            "(555)123-4567",
            "tel:2125551234",
            "0612345678",
        ],
    );
    assert_kept(&[
        "555-1234",
        "555-123-456",
        "55512345678",
        "phone: 555 12 34",
        "v1.2.3-4567",
    ]);
}

#[test]
fn rule_05_aws_key() {
    assert_redacted(
        "[REDACTED:aws_key]",
        &[
            "AKIAIOSFODNN7EXAMPLE",
            "key id AKIAI44QH8DHBEXAMPLE in config",
        ],
    );
    assert_kept(&[
        "AKIA1234",
        "akiaiosfodnn7example",
        "AKIAiosfodnn7EXAMPLE",
        "ASIAIOSFODNN7EXAMPLE",
    ]);
}

#[test]
fn rule_06_aws_secret() {
    assert_redacted(
        "[REDACTED:aws_secret]",
        &[
            "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "AWS Secret: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ],
    );
    assert_kept(&[
        "aws secret is rotated monthly",
        "secret for aws wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "aws_secret=wJalrXUtnFEMI/K7MDENG/bPxRfiCY",
    ]);
}

#[test]
fn rule_07_oauth_token() {
    assert_redacted(
        "[REDACTED:oauth_token]",
        &[
            "Bearer abcdefghijklmnopqrstuvwxyz0123",
            "authorization: bearer   ya29.a0AfH6SMBx3example-token_value",
            "BEARER\tAbCdEfGhIjKlMnOpQrStUv==",
        ],
    );
    assert_kept(&[
        "Bearer short",
        "bearer",
        "bearertoken abcdefghijklmnopqrstuvwxyz",
        "the bearer of bad news",
    ]);
}

#[test]
fn rule_08_stripe_key() {
    assert_redacted(
        "[REDACTED:stripe_key]",
        &[
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "STRIPE=sk_live_abcdefghij",
        ],
    );
    assert_kept(&[
        "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
        "sk_live_short",
        "pk_live_4eC39HqLyjWDarjtT1zdp7dc",
    ]);
}

#[test]
fn rule_09_password() {
    assert_redacted(
        "[REDACTED:password]",
        &[
            "password=hunter22",
            "DB_PASSWORD: 's3cr3tP@ss'",
            "pwd = abcdef",
            "passwd:\"letmein!\"",
            "{password=hunter22, user=bob}",
        ],
    );
    assert_kept(&[
        "password",
        "password=abc",
        "password reset requested",
        r#"{"password":"hunter22"}"#,
        "password= 'ab cd ef'",
    ]);
}

#[test]
fn rule_10_jwt() {
    assert_redacted(
        "[REDACTED:jwt]",
        &[
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "session eyJa.eyJb.c",
        ],
    );
    assert_kept(&[
        "eyJhbGciOiJIUzI1NiJ9",
        "eyJa.eyJb",
        "eyJa.abc.def",
        "eyj.eyj.x",
    ]);
}

#[test]
fn rule_11_private_key() {
    assert_redacted(
        "[REDACTED:private_key]",
        &[
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
            "-----BEGIN PRIVATE KEY-----",
            "key: -----BEGIN EC PRIVATE KEY-----",
            "-----BEGIN OPENSSH PRIVATE KEY-----",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----",
            "-----BEGIN PGP PRIVATE KEY BLOCK-----",
        ],
    );
    assert_kept(&[
        "-----BEGIN PUBLIC KEY-----",
        "-----BEGIN CERTIFICATE-----",
        "BEGIN RSA PRIVATE KEY",
        "-----BEGIN rsa private key-----",
    ]);
}

#[test]
fn rule_12_api_key() {
    assert_redacted(
        "[REDACTED:api_key]",
        &[
            "api_key=abcdefghijklmnopqrstuvwxyz",
            "X-API-KEY: 0123456789abcdefghijKLMN",
            "apikey: 'AbCdEfGhIjKlMnOpQrStUv'",
            "https://x.test/v1?api-key=abcdefghij0123456789",
        ],
    );
    assert_kept(&[
        "api_key=short",
        "api_key is required",
        "apiKeyValue=abcdefghijklmnopqrstuvwxyz",
        "api_kye=abcdefghijklmnopqrstuvwxyz",
    ]);
}

#[test]
fn first_pattern_in_reference_order_wins() {
    assert_eq!(
        redact("dev@example.com 123-45-6789").as_deref(),
        Some("[REDACTED:email]")
    );
    assert_eq!(
        redact("ssn 123-45-6789 card 4111111111111111").as_deref(),
        Some("[REDACTED:ssn]")
    );
    assert_eq!(
        redact("password=hunter22 eyJa.eyJb.c").as_deref(),
        Some("[REDACTED:password]")
    );
    // the whole string is replaced, not only the match
    assert_eq!(
        redact("hello, my card is 4111 1111 1111 1111, thanks").as_deref(),
        Some("[REDACTED:credit_card]")
    );
}

#[test]
fn flag_severity_and_category_per_pattern() {
    let expected = [
        ("email", "medium"),
        ("ssn", "critical"),
        ("credit_card", "critical"),
        ("phone", "medium"),
        ("aws_key", "critical"),
        ("aws_secret", "critical"),
        ("oauth_token", "high"),
        ("stripe_key", "critical"),
        ("password", "critical"),
        ("jwt", "high"),
        ("private_key", "critical"),
        ("api_key", "critical"),
    ];
    for (p, (name, severity)) in BUILTIN_PATTERNS.iter().zip(expected) {
        assert_eq!(p.name, name);
        assert_eq!(p.severity, severity);
        assert_eq!(p.marker, format!("[REDACTED:{name}]"));
    }
    let mut v = json!({"e": "dev@example.com", "k": "AKIAIOSFODNN7EXAMPLE", "t": "eyJa.eyJb.c"});
    let flags = scrubber().scrub_variables(&mut v);
    assert_eq!(
        flags,
        vec![
            flag("sensitive_data", "email", "medium", "e"),
            flag("sensitive_data", "aws_key", "critical", "k"),
            flag("sensitive_data", "jwt", "high", "t"),
        ]
    );
}

// ---------------------------------------------------------------------------------------
// Rule 13: names.

#[test]
fn rule_13_sensitive_names() {
    let names_hit = [
        "user_token",
        "api_key",
        "apiKey",
        "password",
        "db.password",
        "x-api-key",
        "SECRET",
        "client_credential",
        "pwd",
        "passwd",
        "key",
        "token_count",
    ];
    let names_kept = [
        "monkey",
        "keyboard",
        "userToken",
        "tokens",
        "secretary",
        "passwords",
        "keys",
        "username",
    ];
    let mut vars = serde_json::Map::new();
    for n in names_hit.iter().chain(&names_kept) {
        vars.insert((*n).to_owned(), json!("plain"));
    }
    let mut v = Value::Object(vars);
    let flags = scrubber().scrub_variables(&mut v);
    for n in names_hit {
        assert_eq!(v[n], json!(SENSITIVE_NAME_MARKER), "{n}");
    }
    for n in names_kept {
        assert_eq!(v[n], json!("plain"), "{n}");
    }
    assert_eq!(flags.len(), names_hit.len());
    assert_eq!(
        flags[0],
        flag("sensitive_variable_name", "name", "medium", "user_token")
    );
    assert_eq!(flags[4].variable, "db.password");
}

#[test]
fn name_rule_replaces_whole_value_of_any_type_but_not_null_or_markers() {
    let mut v = json!({
        "secret": {"a": 1, "b": [1, 2]},
        "token": [1, 2, 3],
        "api_key": 12345,
        "password": true,
        "pwd": "",
        "credential": null,
        "user_token": "[REDACTED]",
        "apikey": "[REDACTED:api_key]",
        "key": "[REDACTED:sensitive_name]"
    });
    let flags = scrubber().scrub_variables(&mut v);
    assert_eq!(
        v,
        json!({
            "secret": SENSITIVE_NAME_MARKER,
            "token": SENSITIVE_NAME_MARKER,
            "api_key": SENSITIVE_NAME_MARKER,
            "password": SENSITIVE_NAME_MARKER,
            "pwd": SENSITIVE_NAME_MARKER,
            "credential": null,
            "user_token": "[REDACTED]",
            "apikey": "[REDACTED:api_key]",
            "key": "[REDACTED:sensitive_name]"
        })
    );
    let vars: Vec<&str> = flags.iter().map(|f| f.variable.as_str()).collect();
    assert_eq!(vars, ["secret", "token", "api_key", "password", "pwd"]);
}

#[test]
fn nested_key_names_are_caught_at_any_depth() {
    let mut v = json!({
        "config": {"db": {"host": "db.local", "password": "hunter2"}},
        "clients": [{"name": "a", "oauth": {"refresh_token": "r1"}}, {"name": "b"}]
    });
    let flags = scrubber().scrub_variables(&mut v);
    assert_eq!(v["config"]["db"]["password"], json!(SENSITIVE_NAME_MARKER));
    assert_eq!(v["config"]["db"]["host"], json!("db.local"));
    assert_eq!(
        v["clients"][0]["oauth"]["refresh_token"],
        json!(SENSITIVE_NAME_MARKER)
    );
    assert_eq!(
        flags,
        vec![
            flag(
                "sensitive_variable_name",
                "name",
                "medium",
                "config.db.password"
            ),
            flag(
                "sensitive_variable_name",
                "name",
                "medium",
                "clients[0].oauth.refresh_token"
            ),
        ]
    );
}

// ---------------------------------------------------------------------------------------
// Nesting, paths, document order.

#[test]
fn nested_values_objects_in_arrays_in_objects() {
    let mut v = json!({
        "amount": 42.5,
        "order": {
            "id": "ord_123",
            "items": [
                {"sku": "A1", "qty": 2},
                {"sku": "B2", "buyer": {"contact": "dev@example.com", "phone": "555-123-4567"}},
                ["nested", ["4111 1111 1111 1111"]]
            ]
        },
        "note": "nothing here"
    });
    let flags = scrubber().scrub_variables(&mut v);
    assert_eq!(
        v,
        json!({
            "amount": 42.5,
            "order": {
                "id": "ord_123",
                "items": [
                    {"sku": "A1", "qty": 2},
                    {"sku": "B2", "buyer": {"contact": "[REDACTED:email]", "phone": "[REDACTED:phone]"}},
                    ["nested", ["[REDACTED:credit_card]"]]
                ]
            },
            "note": "nothing here"
        })
    );
    assert_eq!(
        flags,
        vec![
            flag(
                "sensitive_data",
                "email",
                "medium",
                "order.items[1].buyer.contact"
            ),
            flag(
                "sensitive_data",
                "phone",
                "medium",
                "order.items[1].buyer.phone"
            ),
            flag(
                "sensitive_data",
                "credit_card",
                "critical",
                "order.items[2][1][0]"
            ),
        ]
    );
}

#[test]
fn scrub_value_root_path() {
    let mut v = json!({"profile": {"email": "dev@example.com"}});
    let flags = scrubber().scrub_value(&mut v, "user");
    assert_eq!(flags[0].variable, "user.profile.email");

    let mut v = json!(["a", "dev@example.com"]);
    let flags = scrubber().scrub_value(&mut v, "items");
    assert_eq!(flags[0].variable, "items[1]");

    let mut v = json!([{"card": "4111111111111111"}]);
    let flags = scrubber().scrub_value(&mut v, "");
    assert_eq!(flags[0].variable, "[0].card");

    let mut v = json!("dev@example.com");
    let flags = scrubber().scrub_value(&mut v, "");
    assert_eq!(v, json!("[REDACTED:email]"));
    assert_eq!(flags[0].variable, "");

    // PHP sends `[]` for empty variables
    let mut v = json!([]);
    assert!(scrubber().scrub_variables(&mut v).is_empty());
}

#[test]
fn keys_that_contain_pii_are_renamed() {
    let mut v = json!({
        "by_user": {
            "bob@example.com": {"visits": 3},
            "alice@example.com": {"visits": 1, "password": "x"},
            "[REDACTED:email#3]": "pre-existing"
        }
    });
    let flags = scrubber().scrub_variables(&mut v);
    let keys: Vec<&String> = v["by_user"].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "[REDACTED:email]",
            "[REDACTED:email#2]",
            "[REDACTED:email#3]"
        ]
    );
    assert_eq!(v["by_user"]["[REDACTED:email]"], json!({"visits": 3}));
    assert_eq!(
        v["by_user"]["[REDACTED:email#2]"],
        json!({"visits": 1, "password": SENSITIVE_NAME_MARKER})
    );
    assert_eq!(v["by_user"]["[REDACTED:email#3]"], json!("pre-existing"));
    assert_eq!(
        flags,
        vec![
            flag(
                "sensitive_data",
                "email",
                "medium",
                "by_user.[REDACTED:email]"
            ),
            flag(
                "sensitive_data",
                "email",
                "medium",
                "by_user.[REDACTED:email#2]"
            ),
            flag(
                "sensitive_variable_name",
                "name",
                "medium",
                "by_user.[REDACTED:email#2].password"
            ),
        ]
    );
    assert_idempotent(&v);
}

// ---------------------------------------------------------------------------------------
// Numbers and the false positives of the official SDKs.

#[test]
fn numbers_only_card_numbers_with_luhn() {
    let mut v = json!({
        "visa": 4111111111111111u64,
        "mastercard": 5555555555554444u64,
        "mc2": 2223003122003222u64,
        "amex": 378282246310005u64,
        "discover": 6011111111111117u64,
        "negative": -4111111111111111i64,
        "float": 4111111111111111.0,
        "luhn_fails": 4111111111111112u64,
        "phone_as_number": 5551234567u64,
        "ssn_as_number": 123456789,
        "epoch_s": 1732280000,
        "epoch_ms": 1732280000123u64,
        "epoch_us": 1732280000123456u64,
        "epoch_ns": 1732280000123456789u64,
        "luhn_ok_but_starts_with_1": 1000000000000008u64,
        "luhn_ok_but_12_digits": 411111111116u64,
        "amount": 42.5,
        "zero": 0,
        "big": 18446744073709551615u64,
        "tiny": -1e-300
    });
    let flags = scrubber().scrub_variables(&mut v);
    let redacted: Vec<&str> = flags.iter().map(|f| f.variable.as_str()).collect();
    assert_eq!(
        redacted,
        [
            "visa",
            "mastercard",
            "mc2",
            "amex",
            "discover",
            "negative",
            "float"
        ]
    );
    assert!(flags.iter().all(|f| f.category == "credit_card"));
    assert_eq!(v["visa"], json!("[REDACTED:credit_card]"));
    assert_eq!(v["epoch_s"], json!(1732280000));
    assert_eq!(v["phone_as_number"], json!(5551234567u64));
}

#[test]
fn timestamps_and_ids_are_not_phones() {
    assert_kept(&[
        "1732280000",
        "1732280000.123456",
        "1732280000123",
        "2026-11-22T12:41:37.444557Z",
        "2026-04-15T10:00:00.123456789+02:00",
        "2026-04-15T08:00:00.1234567Z",
        "20261122124137",
        "2026-11-22 12:41:37",
        "3.1415926535",
        "2.7182818284",
        "0.7234567890",
        "3e6aca49-5554-497c-b907-4716445dc187",
        "113e29b9fb746af129af65946898829e",
        "c07de95b97de086c",
        "order-1732280000",
        "v=1732280000",
    ]);
    // ...while real phones in the same shapes are still caught
    assert_redacted(
        "[REDACTED:phone]",
        &[
            "5551234567",
            "555-123-4567",
            "555.123.4567",
            "created 1732280000, call 555-123-4567",
            "pi 3.1415926535 or 2125551234",
        ],
    );
}

// ---------------------------------------------------------------------------------------
// Markers and idempotence.

#[test]
fn markers() {
    for m in [
        "[REDACTED]",
        "[REDACTED:email]",
        "[REDACTED:sensitive_name]",
        "[REDACTED:Employee ID]",
    ] {
        assert!(is_marker(m), "{m}");
        assert_kept(&[m]);
    }
    for m in [
        "REDACTED",
        "[REDACTED:]",
        "[REDACTED:a]b]",
        "[redacted:email]",
        "[REDACTED:email",
        "x[REDACTED]",
        "[NULL]",
    ] {
        assert!(!is_marker(m), "{m}");
    }
    // a "marker" smuggling PII in its name is not trusted
    assert!(is_marker("[REDACTED:bob@example.com]"));
    assert_eq!(
        redact("[REDACTED:bob@example.com]").as_deref(),
        Some("[REDACTED:email]")
    );
    let mut v = json!({"password": "[REDACTED:pwd=hunter22]"});
    scrubber().scrub_variables(&mut v);
    assert_eq!(v["password"], json!(SENSITIVE_NAME_MARKER));
}

#[track_caller]
fn assert_idempotent(scrubbed: &Value) {
    let mut again = scrubbed.clone();
    let flags = scrubber().scrub_variables(&mut again);
    assert!(flags.is_empty(), "second pass flagged {flags:?}");
    assert_eq!(&again, scrubbed);
}

#[test]
fn idempotent() {
    let mut v = json!({
        "email": "dev@example.com",
        "password": "hunter22",
        "card": 4111111111111111u64,
        "nested": {"a": [1, 2, {"b": "555-123-4567", "apiKey": {"x": 1}}]},
        "sdk_already": "[REDACTED]",
        "sdk_typed": "[REDACTED:email]",
        "mypassword=abcdefg": "value",
        "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY": 1,
        "ok": "fine"
    });
    let first = scrubber().scrub_variables(&mut v);
    assert_eq!(first.len(), 9, "{first:?}");
    assert_eq!(v["sdk_already"], json!("[REDACTED]"));
    assert_eq!(v["sdk_typed"], json!("[REDACTED:email]"));
    // a key renamed to a marker whose name matches rule 13 also gets its value redacted,
    // so that the second pass has nothing left to do
    assert_eq!(v["[REDACTED:password]"], json!(SENSITIVE_NAME_MARKER));
    assert_idempotent(&v);
}

// ---------------------------------------------------------------------------------------
// Depth bound.

#[test]
fn too_deep_subtrees_are_truncated() {
    let mut deep = json!({"email": "dev@example.com"});
    for i in 0..100 {
        deep = if i % 2 == 0 {
            json!([deep])
        } else {
            json!({ "k": deep })
        };
    }
    let mut v = json!({ "root": deep });
    let flags = scrubber().scrub_variables(&mut v);
    assert!(flags.is_empty());
    let text = serde_json::to_string(&v).unwrap();
    assert!(!text.contains("example.com"));
    assert!(text.contains(DEPTH_MARKER));
    // the marker sits exactly at MAX_DEPTH
    let mut node = &v;
    let mut depth = 0;
    while let Some(child) = match node {
        Value::Object(m) => m.values().next(),
        Value::Array(a) => a.first(),
        _ => None,
    } {
        node = child;
        depth += 1;
    }
    assert_eq!(node, &json!(DEPTH_MARKER));
    assert_eq!(depth, MAX_DEPTH);
    assert_idempotent(&v);

    // shallow PII next to the deep branch is still found
    let mut v = json!({"a": "dev@example.com", "b": v});
    assert_eq!(scrubber().scrub_variables(&mut v).len(), 1);
}

// ---------------------------------------------------------------------------------------
// Custom patterns.

#[test]
fn custom_patterns() {
    let s = Scrubber::with_custom(&[
        CustomPattern {
            name: "employee_id".into(),
            pattern: r"\bEMP-\d{6}\b".into(),
        },
        CustomPattern {
            name: "Internal Ticket".into(),
            pattern: r"TICKET-[A-Z]{3}".into(),
        },
        CustomPattern {
            name: "account".into(),
            pattern: r"^9\d{8}$".into(),
        },
    ])
    .unwrap();
    let mut v = json!({
        "who": "EMP-123456",
        "t": ["TICKET-ABC"],
        "both": "EMP-123456 dev@example.com",
        "acct": 912345678,
        "other": "EMP-12",
    });
    let flags = s.scrub_variables(&mut v);
    assert_eq!(
        v,
        json!({
            "who": "[REDACTED:employee_id]",
            "t": ["[REDACTED:Internal Ticket]"],
            "both": "[REDACTED:email]",
            "acct": "[REDACTED:account]",
            "other": "EMP-12",
        })
    );
    assert_eq!(
        flags,
        vec![
            flag("custom", "employee_id", "high", "who"),
            flag("custom", "Internal Ticket", "high", "t[0]"),
            flag("sensitive_data", "email", "medium", "both"),
            flag("custom", "account", "high", "acct"),
        ]
    );
    // idempotent with custom patterns too
    let mut again = v.clone();
    assert!(s.scrub_variables(&mut again).is_empty());
    assert_eq!(again, v);
    // built-ins still apply
    let mut v = json!({"password": "x", "n": "555-123-4567"});
    assert_eq!(s.scrub_variables(&mut v).len(), 2);
    // no custom patterns = built-ins
    let plain = Scrubber::with_custom(&[]).unwrap();
    let mut v = json!({"who": "EMP-123456"});
    assert!(plain.scrub_variables(&mut v).is_empty());
}

#[test]
fn invalid_custom_patterns_are_rejected() {
    let bad = |name: &str, pattern: &str| {
        Scrubber::with_custom(&[CustomPattern {
            name: name.into(),
            pattern: pattern.into(),
        }])
        .err()
        .unwrap()
    };
    match bad("broken", r"(unclosed") {
        PiiError::InvalidPattern { name, message } => {
            assert_eq!(name, "broken");
            assert!(!message.is_empty());
        }
        e => panic!("unexpected {e:?}"),
    }
    assert!(matches!(bad("empty", ""), PiiError::InvalidPattern { .. }));
    assert!(matches!(bad("opt", "a*"), PiiError::InvalidPattern { .. }));
    assert!(matches!(
        bad("huge", r"\w{1000}\w{1000}\w{1000}"),
        PiiError::InvalidPattern { .. }
    ));
    assert!(matches!(
        bad("long", &"a".repeat(5000)),
        PiiError::InvalidPattern { .. }
    ));
    assert!(matches!(bad("", "abc"), PiiError::InvalidName { .. }));
    assert!(matches!(bad("a]b", "abc"), PiiError::InvalidName { .. }));
    assert!(matches!(
        bad("dev@example.com", "abc"),
        PiiError::InvalidName { .. }
    ));
    assert!(matches!(
        bad(&"n".repeat(65), "abc"),
        PiiError::InvalidName { .. }
    ));
    let many: Vec<CustomPattern> = (0..=MAX_CUSTOM_PATTERNS)
        .map(|i| CustomPattern {
            name: format!("p{i}"),
            pattern: format!("x{i}y"),
        })
        .collect();
    assert!(matches!(
        Scrubber::with_custom(&many).err().unwrap(),
        PiiError::TooManyPatterns { .. }
    ));
    assert!(Scrubber::with_custom(&many[..MAX_CUSTOM_PATTERNS]).is_ok());
    // the error renders
    assert!(bad("broken", "(").to_string().contains("broken"));
}

// ---------------------------------------------------------------------------------------
// Request context.

#[test]
fn request_context_headers() {
    let mut ctx = json!({
        "method": "GET",
        "path": "/api/orders",
        "remote_addr": "10.0.0.1",
        "query_params": {"email": "dev@example.com", "page": "2"},
        "url": "https://shop.test/api/orders?api_key=abcdefghijklmnopqrstuvwxyz",
        "headers": {
            "Authorization": "Basic dXNlcjpwYXNz",
            "cookie": "session=abc",
            "SET-COOKIE": ["a=1", "b=2"],
            "X-Api-Key": "k",
            "x_api_key": "k2",
            "Proxy-Authorization": "Basic Zm9vOmJhcg==",
            "Content-Type": "application/json",
            "User-Agent": "curl/8",
            "X-Auth-Token": "t",
            "Referer": "https://shop.test/?contact=dev@example.com"
        }
    });
    let flags = scrubber().scrub_request_context(&mut ctx);
    assert_eq!(
        ctx["headers"],
        json!({
            "Authorization": "[REDACTED]",
            "cookie": "[REDACTED]",
            "SET-COOKIE": "[REDACTED]",
            "X-Api-Key": "[REDACTED]",
            "x_api_key": "[REDACTED]",
            "Proxy-Authorization": "[REDACTED]",
            "Content-Type": "application/json",
            "User-Agent": "curl/8",
            "X-Auth-Token": SENSITIVE_NAME_MARKER,
            "Referer": "[REDACTED:email]"
        })
    );
    assert_eq!(ctx["query_params"]["email"], json!("[REDACTED:email]"));
    assert_eq!(ctx["url"], json!("[REDACTED:api_key]"));
    assert_eq!(ctx["method"], json!("GET"));
    assert_eq!(
        flags[0],
        flag(
            "sensitive_data",
            "email",
            "medium",
            "request_context.query_params.email"
        )
    );
    assert_eq!(
        flags[2],
        flag(
            "sensitive_variable_name",
            "header",
            "high",
            "request_context.headers.Authorization"
        )
    );
    assert_eq!(flags.len(), 10);

    // Go/Gin already redacted some: no new flags, and a second pass is a no-op
    let mut again = ctx.clone();
    assert!(scrubber().scrub_request_context(&mut again).is_empty());
    assert_eq!(again, ctx);
}

#[test]
fn request_context_nested_headers_and_headers_outside_requests() {
    let mut ctx = json!({
        "request": {"Headers": {"authorization": "Bearer x", "raw": {"Cookie": "a=b"}}},
        "Cookie": "top-level is not a header object",
        "headers": null
    });
    let flags = scrubber().scrub_request_context(&mut ctx);
    assert_eq!(
        ctx["request"]["Headers"]["authorization"],
        json!("[REDACTED]")
    );
    assert_eq!(
        ctx["request"]["Headers"]["raw"]["Cookie"],
        json!("[REDACTED]")
    );
    assert_eq!(ctx["Cookie"], json!("top-level is not a header object"));
    assert_eq!(flags.len(), 2);
    assert_eq!(
        flags[1].variable,
        "request_context.request.Headers.raw.Cookie"
    );

    // scrub_variables does not apply the header list (a variable named "headers" keeps
    // a Cookie; names are still checked by rule 13)
    let mut vars = json!({"headers": {"Cookie": "a=b", "X-Api-Key": "k"}});
    scrubber().scrub_variables(&mut vars);
    assert_eq!(
        vars,
        json!({"headers": {"Cookie": "a=b", "X-Api-Key": SENSITIVE_NAME_MARKER}})
    );
}

// ---------------------------------------------------------------------------------------
// Wire shape, thread safety, robustness.

#[test]
fn security_flag_json_shape() {
    let f = flag("sensitive_data", "email", "medium", "user.email");
    assert_eq!(
        serde_json::to_value(&f).unwrap(),
        json!({"type": "sensitive_data", "category": "email", "severity": "medium",
               "variable": "user.email", "redacted": true})
    );
    let back: SecurityFlag = serde_json::from_value(serde_json::to_value(&f).unwrap()).unwrap();
    assert_eq!(back, f);
    // DOTNET PascalCase and GO's minimal shape parse too
    let dotnet: SecurityFlag = serde_json::from_value(json!({"Type": "pii", "Category": "email",
        "Severity": "medium", "Variable": "e", "Redacted": true}))
    .unwrap();
    assert_eq!(dotnet, flag("pii", "email", "medium", "e"));
    let go: SecurityFlag = serde_json::from_value(
        json!({"type": "sensitive_variable_name", "severity": "medium", "variable": "password"}),
    )
    .unwrap();
    assert_eq!(go.category, "");
    assert!(go.redacted);
}

#[test]
fn scrubber_is_send_sync_and_shared() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Scrubber>();
    assert!(std::ptr::eq(Scrubber::builtin(), Scrubber::builtin()));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(|| {
                let mut v = json!({"e": "dev@example.com"});
                Scrubber::builtin().scrub_variables(&mut v).len()
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 1);
    }
}

#[test]
fn odd_inputs_do_not_panic() {
    let long_digits = "1".repeat(100_000);
    let long_mixed = "a@b ".repeat(20_000);
    let cases = [
        "",
        "é",
        "\u{0}\u{ffff}\u{10ffff}",
        "(((((((((((",
        "-----",
        "[REDACTED:",
        "[REDACTED:\u{0}]",
        "AKIA\u{212a}",
        "ſecret",
        long_digits.as_str(),
        long_mixed.as_str(),
        "5551234567\u{301}",
        "١٢٣-٤٥-٦٧٨٩",
    ];
    for c in cases {
        let mut v = json!({ c: c, "arr": [c, {"k": c}] });
        let _ = scrubber().scrub_variables(&mut v);
        let mut again = v.clone();
        assert!(scrubber().scrub_variables(&mut again).is_empty(), "{c:?}");
    }
    // non-ASCII digits are not ASCII \d (like Go and JS)
    assert_kept(&["١٢٣-٤٥-٦٧٨٩"]);
    // non-ASCII names go through the regex (Kelvin sign folds to k)
    let mut v = json!({"\u{212a}ey": "v", "clé": "v"});
    let flags = scrubber().scrub_variables(&mut v);
    assert_eq!(flags.len(), 1);
    assert_eq!(v["\u{212a}ey"], json!(SENSITIVE_NAME_MARKER));
}
