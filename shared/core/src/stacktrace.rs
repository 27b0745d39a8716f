//! Stack-trace parsing for automatic code discovery (DESIGN §8, wire-protocol reference §8.3
//! and §5.2): turns the `exception.stacktrace` text of span events and the `stack_trace` of
//! snapshots, in every SDK language's format, into code locations ([`Frame`]s).
//!
//! # Formats
//!
//! The format is detected per line, so concatenated or mixed traces work. Recognised lines
//! (leading/trailing whitespace, CR, ANSI colour codes and Python exception-group `|`
//! margins are ignored):
//!
//! | language | line forms |
//! |---|---|
//! | Python | `File "/app/x.py", line 25, in process_payment` (traceback, also `<module>`, `<frozen …>`); TraceKit PY SDK `process_payment at /app/x.py:25` and `/app/x.py:36`; pytest `app/x.py:25: in f` |
//! | Go | `runtime.Stack` text (`main.f(0x1, …)` then `\t/app/main.go:42 +0x1d`), TraceKit GO SDK `pkg.Func` then `\t/path/file.go:42`, `created by main.main in goroutine 1` |
//! | Node | V8 `    at fn (/app/x.js:88:11)`, `at /app/x.js:88:11`, `at new Foo (file:///app/x.mjs:3:5)`, `at fn [as alias] (…)`, eval frames; TraceKit NODE SDK `fn at /app/x.js:88` and `/app/x.js:88`; browser `fn@https://host/app.js:10:5` |
//! | Java | `\tat com.example.Foo.bar(Foo.java:57)` (with `java.base/` module or class-loader prefixes and logback `~[jar:?]` suffixes); JAVA SDK `StackTraceElement.toString()` lines without `at` |
//! | .NET | `   at Api.Orders.Place() in /src/Orders.cs:line 33` |
//! | Ruby | `/app/app.rb:10:in 'pay'`, `` /app/app.rb:10:in `pay' ``, `from /app/x.rb:3:in 'block in <main>'`, Ruby 3.4 `'Foo#bar'`, first line of an uncaught error `…:in 'pay': boom (RuntimeError)` |
//! | PHP | native `#0 /var/www/Checkout.php(12): Checkout->handle()`, `PHP Fatal error:  Uncaught E: msg in /x.php:5`; TraceKit PHP SDK `/x.php:10`, `Class::fn at /x.php:10`, `Class::fn(/x.php:10)` |
//!
//! Lines that carry no file and line are skipped (`(Native Method)`, `(Unknown Source)`,
//! `at async Promise.all (index 0)`, .NET frames without ` in `, `#1 {main}`, `... 5 more`,
//! `Caused by:` headers, Go `goroutine 1 [running]:` headers, …). Every returned frame has a
//! non-empty `file` and `line > 0`.
//!
//! # Frame order
//!
//! Frames are returned in **textual order**. Most runtimes print the innermost (throwing)
//! frame first; Python tracebacks print the **outermost** call first ("most recent call
//! last"), and that order is kept too: callers wanting innermost-first Python frames reverse
//! them.
//!
//! # Normalisation
//!
//! * `function` is `""` when the format gives none. Argument lists are removed (Go
//!   `main.f(0x1, 0x2)` → `main.f`; .NET `Place()` → `Api.OrdersController.Place`; PHP
//!   `Checkout->handle(Object(X))` → `Checkout->handle`). V8's `async `/`new ` markers and
//!   ` [as alias]` are dropped (`new Foo` → `Foo`); a bare `<anonymous>` becomes `""`. Go's
//!   `created by f in goroutine N` gives `f`. Old .NET async state machines
//!   (`Api.Foo.<Bar>d__5.MoveNext`) become the method they implement (`Api.Foo.Bar`), as
//!   .NET Core prints them.
//! * `file://` URLs become paths (`file:///app/x.mjs` → `/app/x.mjs`).
//! * **Java** frames only name the source file (`OrderService.java`). The file becomes the
//!   class's package path plus that name, `com/example/OrderService.java` for
//!   `com.example.OrderService.place`, which is the `file_path` form the TraceKit Java SDK
//!   sends for breakpoints, so discovered locations and breakpoints line up. Frames whose
//!   location already contains a path separator keep it.
//! * `language` comes from the line format; for the formats several SDKs share (`fn at
//!   file:line`, bare `file:line`, `fn(file:line)`) it comes from the file extension
//!   ([`Language::Unknown`] when unrecognised). Browser JavaScript counts as [`Language::Node`].
//!
//! # Bounds
//!
//! At most [`MAX_FRAMES`] frames are returned and lines longer than [`MAX_LINE_LEN`] bytes
//! are ignored. Each line is classified with cheap prefix/substring checks before any regex
//! runs. [`parse`] never panics; should the built-in regexes ever fail to compile it returns
//! no frames.

use std::borrow::Cow;
use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// Most frames [`parse`] returns.
pub const MAX_FRAMES: usize = 256;
/// Lines longer than this many bytes are ignored by [`parse`].
pub const MAX_LINE_LEN: usize = 4096;

/// One code location taken from a stack trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    /// Source path as printed (Java: package path + file name, see the module docs).
    pub file: String,
    /// 1-based line number, always `> 0`.
    pub line: i64,
    /// Function/method name without arguments; `""` when unknown.
    pub function: String,
    /// Language the frame was recognised as.
    pub language: Language,
}

/// Source language of a [`Frame`] (serialised lowercase: `"python"`, `"dotnet"`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Python,
    Go,
    /// JavaScript/TypeScript: Node, Deno, Bun and browsers.
    Node,
    /// JVM languages (Java, Kotlin, Scala, Groovy, Clojure).
    Java,
    /// C#, F#, VB.NET.
    Dotnet,
    Ruby,
    Php,
    Unknown,
}

/// Parses stack-trace text of any supported format (detected per line, so mixed text works)
/// into frames in textual order: innermost first as most runtimes print them, except Python
/// tracebacks, which print the outermost call first (kept as printed).
///
/// Bounded: at most [`MAX_FRAMES`] frames; lines longer than [`MAX_LINE_LEN`] bytes are
/// ignored. Never panics.
pub fn parse(text: &str) -> Vec<Frame> {
    let Some(p) = patterns() else {
        return Vec::new();
    };
    let mut frames = Vec::new();
    // A Go function line (`main.f(0x1)` / `pkg.Func`) waiting for its indented `file:line`.
    let mut pending_go: Option<String> = None;
    for raw in text.lines() {
        if frames.len() >= MAX_FRAMES {
            break;
        }
        if raw.len() > MAX_LINE_LEN {
            pending_go = None;
            continue;
        }
        let cleaned = strip_ansi(raw);
        let raw: &str = &cleaned;
        let indented = raw.starts_with([' ', '\t']);
        let line = strip_margin(raw.trim());
        if line.is_empty() {
            pending_go = None;
            continue;
        }
        match parse_line(p, line, indented, pending_go.take()) {
            Parsed::Frame(frame) => frames.push(frame),
            Parsed::GoFunction(function) => pending_go = Some(function),
            Parsed::Nothing => {}
        }
    }
    frames
}

/// True for frames of runtimes and third-party libraries rather than user code, so the code
/// index can prefer user frames: Python `site-packages`/`dist-packages`, the standard library
/// (`/usr/lib/python3.12/`, `…/lib/python3.x/`) and `<frozen …>`; `node_modules`, `node:…`
/// core modules, old `internal/…` paths and `<anonymous>`; Go's GOROOT (`/usr/local/go/src/`,
/// distro/Homebrew installs), the module cache (`/pkg/mod/`) and `runtime.*`/`testing.*`;
/// JVM `java.*`, `javax.*`, `jakarta.*`, `sun.*`, `jdk.*`, `com.sun.*`, `kotlin(x).*`,
/// `scala.*` and a few ubiquitous frameworks (`org.springframework.*`, `org.apache.*`,
/// `io.netty.*`, `org.junit.*`); .NET `System.*`/`Microsoft.*` and SourceLink `/_/` paths;
/// Ruby `/gems/`, `/lib/ruby/<version>/` and `<internal:…>`; PHP (and Go) `vendor/`.
pub fn is_library_frame(f: &Frame) -> bool {
    let file: Cow<'_, str> = if f.file.contains('\\') {
        Cow::Owned(f.file.replace('\\', "/"))
    } else {
        Cow::Borrowed(&f.file)
    };
    let file = file.as_ref();
    const PREFIXES: [&str; 11] = [
        "<frozen",
        "<internal:",
        "<anonymous>",
        "<autogenerated>",
        "node:",
        "internal/",
        "ext:",
        "node_modules/",
        "vendor/",
        "site-packages/",
        "/_/",
    ];
    const PARTS: [&str; 12] = [
        "/site-packages/",
        "/dist-packages/",
        "/usr/lib/python",
        "/node_modules/",
        "/gems/",
        "/vendor/",
        "/usr/local/go/src/",
        "/pkg/mod/",
        "/libexec/src/",
        "/Cellar/go/",
        "/sdk/go1.",
        "/goroot/src/",
    ];
    if PREFIXES.iter().any(|p| file.starts_with(p)) || PARTS.iter().any(|p| file.contains(p)) {
        return true;
    }
    if contains_then_digit(file, "/lib/python")
        || contains_then_digit(file, "/lib64/python")
        || contains_then_digit(file, "/lib/ruby/")
        || (file.contains("/usr/lib/go") && file.contains("/src/"))
    {
        return true;
    }
    let function = f.function.as_str();
    let prefixes: &[&str] = match f.language {
        Language::Go => &["runtime.", "runtime/", "testing.", "reflect."],
        Language::Java => &[
            "java.",
            "javax.",
            "jakarta.",
            "sun.",
            "jdk.",
            "com.sun.",
            "kotlin.",
            "kotlinx.",
            "scala.",
            "org.springframework.",
            "org.apache.",
            "io.netty.",
            "org.junit.",
        ],
        Language::Dotnet => &["System.", "Microsoft."],
        _ => &[],
    };
    prefixes.iter().any(|p| function.starts_with(p))
}

// ---------------------------------------------------------------------------------------
// Patterns
// ---------------------------------------------------------------------------------------

struct Patterns {
    /// `File "/app/x.py", line 25, in f` (after trimming).
    python: Regex,
    /// pytest short traceback `app/x.py:25: in f`.
    pytest: Regex,
    /// After `at `: `Ns.T.M(args) in /p/f.cs:line 42`.
    dotnet: Regex,
    /// `[from ]/app/x.rb:10:in 'meth'[: message (Class)]`.
    ruby: Regex,
    /// `#0 /var/www/x.php(12): Class->fn(args)`.
    php_native: Regex,
    /// `… Uncaught Exception: msg in /var/www/x.php:5`.
    php_uncaught: Regex,
    /// JavaScript location `path:line[:col]`.
    js_location: Regex,
    /// Bare `path:line[:col]`, Go `path:line +0x1d [fp=… sp=… pc=…]`.
    bare: Regex,
    /// SDK short form `fn at path:line`.
    short: Regex,
    /// `fn(path:line)`: Java `StackTraceElement.toString()`, PHP SDK `Class::fn(/x.php:10)`.
    call: Regex,
    /// Firefox/Safari `fn@url:line:col`.
    browser: Regex,
}

static PATTERNS: OnceLock<Option<Patterns>> = OnceLock::new();

fn patterns() -> Option<&'static Patterns> {
    PATTERNS.get_or_init(Patterns::compile).as_ref()
}

impl Patterns {
    fn compile() -> Option<Self> {
        let re = |s: &str| Regex::new(s).ok();
        Some(Self {
            python: re(r#"^File "(.+)", line ([0-9]+)(?:, in (.*))?$"#)?,
            pytest: re(r"^(.+?):([0-9]+): in (\S+)$")?,
            dotnet: re(r"^(.+?\)) in (.+):line ([0-9]+)$")?,
            ruby: re(r"^(?:from\s+)?(.+?):([0-9]+):in [`'](.*?)'(?::\s.*)?$")?,
            php_native: re(r"^#[0-9]+\s+([^()]+)\(([0-9]+)\):\s*(.*)$")?,
            php_uncaught: re(r"\sin\s+(\S+\.php):([0-9]+)$")?,
            js_location: re(r"^(.+?):([0-9]+)(?::[0-9]+)?$")?,
            bare: re(
                r"^(.+?):([0-9]+)(?::[0-9]+)?(?:\s+\+0x[0-9a-fA-F]+)?(?:\s+fp=\S+\s+sp=\S+\s+pc=\S+)?$",
            )?,
            short: re(r"^(\S+) at (.+?):([0-9]+)(?::[0-9]+)?$")?,
            call: re(r"^([^\s()]+)\(([^()]+):([0-9]+)\)$")?,
            browser: re(r"^([^@]*)@(.+?):([0-9]+):([0-9]+)$")?,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Line classification
// ---------------------------------------------------------------------------------------

enum Parsed {
    Frame(Frame),
    GoFunction(String),
    Nothing,
}

impl From<Option<Frame>> for Parsed {
    fn from(f: Option<Frame>) -> Self {
        f.map_or(Parsed::Nothing, Parsed::Frame)
    }
}

/// Classifies one trimmed, non-empty line. `indented` tells whether the original line started
/// with whitespace; `pending_go` is the Go function named on the previous line, if any.
fn parse_line(p: &Patterns, line: &str, indented: bool, pending_go: Option<String>) -> Parsed {
    // Formats with an unambiguous prefix.
    if line.starts_with("File \"") {
        return python_traceback(p, line).into();
    }
    if let Some(rest) = line.strip_prefix("at ") {
        return at_line(p, rest.trim_start()).into();
    }
    if line.starts_with('#') && line.as_bytes().get(1).is_some_and(u8::is_ascii_digit) {
        return php_native(p, line).into();
    }

    let ends_with_digit = line.as_bytes().last().is_some_and(u8::is_ascii_digit);
    if line.contains(":in ") {
        if let Some(f) = ruby(p, line) {
            return Parsed::Frame(f);
        }
    }
    if line.contains(": in ") {
        if let Some(f) = pytest(p, line) {
            return Parsed::Frame(f);
        }
    }
    if ends_with_digit && line.contains(" at ") {
        if let Some(f) = short_form(p, line) {
            return Parsed::Frame(f);
        }
    }
    if line.ends_with(')') && line.contains('(') {
        if let Some(f) = call_form(p, line) {
            return Parsed::Frame(f);
        }
    }
    if ends_with_digit && line.contains('@') {
        if let Some(f) = browser(p, line) {
            return Parsed::Frame(f);
        }
    }
    if ends_with_digit && line.contains("Uncaught ") {
        if let Some(f) = php_uncaught(p, line) {
            return Parsed::Frame(f);
        }
    }
    if ends_with_digit || line.contains(" +0x") {
        // An indented location right after a Go function line belongs to it.
        let go_function = if indented { pending_go } else { None };
        if let Some(f) = bare_location(p, line, go_function) {
            return Parsed::Frame(f);
        }
    }
    if !indented {
        if let Some(function) = go_function_line(line) {
            return Parsed::GoFunction(function);
        }
    }
    Parsed::Nothing
}

/// `File "/app/x.py", line 25, in process_payment`
fn python_traceback(p: &Patterns, line: &str) -> Option<Frame> {
    let c = p.python.captures(line)?;
    let function = c.get(3).map_or("", |m| m.as_str());
    make_frame(&c[1], &c[2], function, Language::Python)
}

/// pytest `--tb=short`: `tests/test_x.py:25: in test_pay`
fn pytest(p: &Patterns, line: &str) -> Option<Frame> {
    let c = p.pytest.captures(line)?;
    let file = &c[1];
    if !plausible_path(file) {
        return None;
    }
    make_frame(file, &c[2], &c[3], language_or(file, Language::Python))
}

/// Everything after a leading `at `: .NET, Java or V8.
fn at_line(p: &Patterns, rest: &str) -> Option<Frame> {
    if rest.contains(" in ") && rest.contains(":line ") {
        if let Some(c) = p.dotnet.captures(rest) {
            let function = dotnet_function(&c[1]);
            return make_frame(&c[2], &c[3], &function, Language::Dotnet);
        }
    }
    let rest = strip_jvm_suffix(rest);
    if rest.ends_with(')') {
        let open = matching_open(rest)?;
        let head = &rest[..open];
        let inner = &rest[open + 1..rest.len() - 1];
        if head.is_empty() || head.ends_with(' ') {
            return js_frame(p, clean_js_function(head), inner, false);
        }
        // Java: `com.example.Foo.bar(Foo.java:57)`.
        let (file, line) = split_location(inner)?;
        if file.contains(char::is_whitespace) {
            return None;
        }
        let function = strip_jvm_module(head);
        let file = java_path(function, file);
        return make_frame(&file, line, function, Language::Java);
    }
    js_frame(p, "", rest, true)
}

/// A V8 location (`/app/x.js:1:2`, `file:///…`, `node:internal/…:1:2`, `eval at f
/// (/app/x.js:1:2), <anonymous>:1:1`). `strict` (no parentheses around the location) demands
/// something that looks like a file.
fn js_frame(p: &Patterns, function: &str, location: &str, strict: bool) -> Option<Frame> {
    let mut location = location.trim();
    if location.starts_with("eval at ") {
        // The eval'd code has no file of its own; use the innermost call site of `eval`.
        let close = location.find(')')?;
        let open = location[..close].rfind('(')?;
        location = &location[open + 1..close];
    }
    let c = p.js_location.captures(location)?;
    let file = strip_file_url(c.get(1)?.as_str());
    if file.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if strict
        && !(file.starts_with("node:") || file.starts_with("internal/") || plausible_path(file))
    {
        return None;
    }
    make_frame(file, &c[2], function, Language::Node)
}

/// `#0 /var/www/app/Checkout.php(12): Checkout->handle()`
fn php_native(p: &Patterns, line: &str) -> Option<Frame> {
    let c = p.php_native.captures(line)?;
    let function = strip_args(&c[3]);
    make_frame(&c[1], &c[2], function, Language::Php)
}

/// `PHP Fatal error:  Uncaught Exception: boom in /var/www/html/index.php:5`
fn php_uncaught(p: &Patterns, line: &str) -> Option<Frame> {
    let c = p.php_uncaught.captures(line)?;
    make_frame(&c[1], &c[2], "", Language::Php)
}

/// `/app/x.rb:10:in 'pay'`, `` from /app/x.rb:10:in `pay' ``
fn ruby(p: &Patterns, line: &str) -> Option<Frame> {
    let c = p.ruby.captures(line)?;
    let file = &c[1];
    if file.contains(char::is_whitespace) && !is_absolute(file) {
        return None;
    }
    make_frame(file, &c[2], &c[3], Language::Ruby)
}

/// SDK short form `fn at /path/file.ext:LINE`.
fn short_form(p: &Patterns, line: &str) -> Option<Frame> {
    let c = p.short.captures(line)?;
    let file = strip_file_url(c.get(2)?.as_str());
    if file.starts_with("node:") {
        return make_frame(file, &c[3], &c[1], Language::Node);
    }
    if !plausible_path(file) {
        return None;
    }
    make_frame(file, &c[3], &c[1], language_or(file, Language::Unknown))
}

/// `fn(path:line)`: Java `StackTraceElement.toString()` without `at`, PHP SDK
/// `Class::fn(/file.php:10)`.
fn call_form(p: &Patterns, line: &str) -> Option<Frame> {
    let c = p.call.captures(line)?;
    let file = c.get(2)?.as_str().trim();
    if !plausible_path(file) {
        return None;
    }
    let language = language_or(file, Language::Unknown);
    let function = &c[1];
    if language == Language::Java {
        let function = strip_jvm_module(function);
        let file = java_path(function, file);
        return make_frame(&file, &c[3], function, language);
    }
    make_frame(file, &c[3], function, language)
}

/// Firefox/Safari `fn@https://host/app.js:10:5`.
fn browser(p: &Patterns, line: &str) -> Option<Frame> {
    let c = p.browser.captures(line)?;
    let file = strip_file_url(c.get(2)?.as_str());
    if !plausible_path(file) {
        return None;
    }
    let function = clean_js_function(&c[1]);
    make_frame(file, &c[3], function, language_or(file, Language::Node))
}

/// `/path/file.ext:LINE`, Go `\t/app/main.go:42 +0x1d`.
fn bare_location(p: &Patterns, line: &str, go_function: Option<String>) -> Option<Frame> {
    let c = p.bare.captures(line)?;
    let file = strip_file_url(c.get(1)?.as_str());
    if !plausible_path(file) {
        return None;
    }
    match go_function {
        Some(function) => make_frame(file, &c[2], &function, Language::Go),
        None => make_frame(file, &c[2], "", language_or(file, Language::Unknown)),
    }
}

/// A Go function line: `main.f(0x1, ...)`, `github.com/x/pkg.(*T).M(…)`, `pkg.Func` (SDK
/// form), `created by main.main in goroutine 1`. Returns the name without arguments.
fn go_function_line(line: &str) -> Option<String> {
    let mut s = line.strip_prefix("created by ").unwrap_or(line);
    if let Some(i) = s.find(" in goroutine ") {
        s = &s[..i];
    }
    let mut had_args = false;
    if s.ends_with(')') {
        let open = matching_open(s)?;
        // `pkg.(*T)` is a receiver, not an argument list.
        if !s[open + 1..].starts_with('*') {
            s = &s[..open];
            had_args = true;
        }
    }
    let first = s.chars().next()?;
    let valid = (first.is_alphanumeric() || first == '_')
        && (had_args || s.contains('.'))
        && !s.contains(|c: char| c.is_whitespace() || c.is_control() || matches!(c, ':' | '"'));
    valid.then(|| s.to_owned())
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn make_frame(file: &str, line: &str, function: &str, language: Language) -> Option<Frame> {
    let file = file.trim();
    if file.is_empty() {
        return None;
    }
    let line = line.parse::<i64>().ok().filter(|n| *n > 0)?;
    Some(Frame {
        file: file.to_owned(),
        line,
        function: function.trim().to_owned(),
        language,
    })
}

/// Index of the `(` matching the final `)` of `s`.
fn matching_open(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, b) in s.bytes().enumerate().rev() {
        match b {
            b')' => depth += 1,
            b'(' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// `path:line` → (`path`, `line`); `None` without a numeric line.
fn split_location(s: &str) -> Option<(&str, &str)> {
    let (file, line) = s.trim().rsplit_once(':')?;
    (!file.is_empty() && !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit()))
        .then_some((file, line))
}

/// Removes an argument list: `Checkout->handle(Object(X))` → `Checkout->handle`.
fn strip_args(s: &str) -> &str {
    s.split('(').next().unwrap_or(s).trim()
}

/// .NET method signature `Ns.T.M(Int32 x)` → `Ns.T.M`, with old async state machines
/// `Ns.T.<M>d__5.MoveNext()` → `Ns.T.M`.
fn dotnet_function(signature: &str) -> String {
    let name = strip_args(signature);
    if let Some(base) = name.strip_suffix(".MoveNext") {
        if let Some(dot) = base.rfind(".<") {
            let mangled = &base[dot + 2..];
            if let Some((method, suffix)) = mangled.split_once('>') {
                if !method.is_empty() && suffix.starts_with("d__") {
                    return format!("{}.{}", &base[..dot], method);
                }
            }
        }
    }
    name.to_owned()
}

/// V8 function text → name: drops `async `/`new `, ` [as alias]`, bare `<anonymous>`.
fn clean_js_function(s: &str) -> &str {
    let mut s = s.trim();
    if s.ends_with(']') {
        if let Some(i) = s.rfind(" [as ") {
            s = s[..i].trim_end();
        }
    }
    for prefix in ["async ", "new "] {
        if let Some(rest) = s.strip_prefix(prefix) {
            s = rest.trim_start();
        }
    }
    if s == "<anonymous>" {
        ""
    } else {
        s
    }
}

/// Java 9+ `[loader/][module@version/]pkg.Class.method` → `pkg.Class.method`.
fn strip_jvm_module(s: &str) -> &str {
    s.rsplit_once('/').map_or(s, |(_, f)| f)
}

/// Drops logback/log4j packaging info after a Java frame: `… (Foo.java:1) ~[app.jar:1.0]`.
fn strip_jvm_suffix(s: &str) -> &str {
    if !s.ends_with(']') {
        return s;
    }
    match s.rfind(") ") {
        Some(i) if s[i + 2..].trim_start_matches('~').starts_with('[') => &s[..=i],
        _ => s,
    }
}

/// Java source file → package path + file (`com.example.Foo.bar`, `Foo.java` →
/// `com/example/Foo.java`); a file that already has a directory is kept.
fn java_path(function: &str, file: &str) -> String {
    if file.contains(['/', '\\']) {
        return file.to_owned();
    }
    let mut parts = function.rsplitn(3, '.');
    let (_method, _class, package) = (parts.next(), parts.next(), parts.next());
    match package {
        Some(pkg)
            if !pkg.is_empty()
                && pkg.split('.').all(|s| {
                    !s.is_empty()
                        && s.chars()
                            .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
                }) =>
        {
            format!("{}/{}", pkg.replace('.', "/"), file)
        }
        _ => file.to_owned(),
    }
}

/// `file:///app/x.mjs` → `/app/x.mjs`, `file:///C:/x.js` → `C:/x.js`.
fn strip_file_url(s: &str) -> &str {
    let Some(rest) = s.strip_prefix("file://") else {
        return s;
    };
    let b = rest.as_bytes();
    if b.len() >= 3 && b[0] == b'/' && b[1].is_ascii_alphabetic() && b[2] == b':' {
        &rest[1..]
    } else {
        rest
    }
}

fn has_drive(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && matches!(b[2], b'/' | b'\\')
}

fn is_absolute(s: &str) -> bool {
    s.starts_with(['/', '\\']) || s.starts_with("~/") || has_drive(s)
}

/// Whether `s` looks like a source path (used for the formats that are easy to confuse with
/// prose: bare `path:line`, `fn at path:line`, `fn(path:line)`, `fn@url:line:col`).
fn plausible_path(s: &str) -> bool {
    if s.is_empty()
        || s.chars()
            .any(|c| c.is_control() || matches!(c, '"' | '<' | '>' | '|'))
    {
        return false;
    }
    let absolute = is_absolute(s);
    let spaced = s.contains(char::is_whitespace);
    if spaced && !absolute {
        return false;
    }
    if let Some(i) = s.find("://") {
        // A URL needs a path after the host (`http://host:8080` is not a frame).
        if !s[i + 3..].contains('/') {
            return false;
        }
    }
    let has_sep = s.contains(['/', '\\']);
    let last = s.rsplit(['/', '\\']).next().unwrap_or(s);
    match extension(last) {
        Some(ext) => has_sep || language_for_extension(ext) != Language::Unknown,
        None => absolute && !spaced && !last.is_empty(),
    }
}

/// The extension of a file name: 1–10 ASCII alphanumerics with at least one letter.
fn extension(name: &str) -> Option<&str> {
    let (stem, ext) = name.rsplit_once('.')?;
    let ok = !stem.is_empty()
        && (1..=10).contains(&ext.len())
        && ext.bytes().all(|b| b.is_ascii_alphanumeric())
        && ext.bytes().any(|b| b.is_ascii_alphabetic());
    ok.then_some(ext)
}

fn language_for_extension(ext: &str) -> Language {
    match ext.to_ascii_lowercase().as_str() {
        "py" | "pyw" | "pyx" => Language::Python,
        "go" => Language::Go,
        "js" | "mjs" | "cjs" | "jsx" | "ts" | "tsx" | "mts" | "cts" => Language::Node,
        "java" | "kt" | "kts" | "scala" | "groovy" | "clj" => Language::Java,
        "cs" | "fs" | "vb" => Language::Dotnet,
        "rb" | "rake" | "erb" => Language::Ruby,
        "php" | "phtml" => Language::Php,
        _ => Language::Unknown,
    }
}

/// Language of `path` by extension, else `fallback`.
fn language_or(path: &str, fallback: Language) -> Language {
    let last = path.rsplit(['/', '\\']).next().unwrap_or(path);
    match extension(last).map(language_for_extension) {
        Some(Language::Unknown) | None => fallback,
        Some(l) => l,
    }
}

/// Whether `needle` occurs in `hay` immediately followed by an ASCII digit.
fn contains_then_digit(hay: &str, needle: &str) -> bool {
    hay.match_indices(needle).any(|(i, _)| {
        hay.as_bytes()
            .get(i + needle.len())
            .is_some_and(u8::is_ascii_digit)
    })
}

/// Removes ANSI CSI escape sequences (`\x1b[35m`) from coloured tracebacks.
fn strip_ansi(s: &str) -> Cow<'_, str> {
    if !s.contains('\x1b') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'[') {
            chars.next();
            // Parameters and intermediates, then one final byte in '@'..='~'.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    Cow::Owned(out)
}

/// Strips Python exception-group margins (`|   File "…"`).
fn strip_margin(line: &str) -> &str {
    let mut s = line;
    while let Some(rest) = s.strip_prefix('|') {
        s = rest.trim_start();
    }
    s
}
