#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Stack-trace parser: every SDK language's formats (runtime and TraceKit SDK forms), mixed
//! and hostile input, bounds, and library-frame classification.

use sightline_core::stacktrace::{is_library_frame, parse, Frame, Language, MAX_FRAMES};

fn fr(file: &str, line: i64, function: &str, language: Language) -> Frame {
    Frame {
        file: file.to_owned(),
        line,
        function: function.to_owned(),
        language,
    }
}

#[track_caller]
fn assert_frames(text: &str, expected: &[Frame]) {
    let got = parse(text);
    assert_eq!(got, expected, "input:\n{text}");
}

// ---------------------------------------------------------------------------------------
// Python
// ---------------------------------------------------------------------------------------

#[test]
fn python_traceback() {
    use Language::Python as Py;
    let text = r#"Traceback (most recent call last):
  File "/app/server.py", line 88, in <module>
    main()
  File "/app/server.py", line 80, in main
    process_payment(order)
    ~~~~~~~~~~~~~~~^^^^^^^
  File "/app/payments/core.py", line 25, in process_payment
    charge(card, amount=42)
  File "<frozen importlib._bootstrap>", line 1387, in _gcd_import
  File "/usr/local/lib/python3.12/site-packages/stripe/api.py", line 310, in charge
    raise CardError(msg)
stripe.error.CardError: card declined
"#;
    assert_frames(
        text,
        &[
            fr("/app/server.py", 88, "<module>", Py),
            fr("/app/server.py", 80, "main", Py),
            fr("/app/payments/core.py", 25, "process_payment", Py),
            fr("<frozen importlib._bootstrap>", 1387, "_gcd_import", Py),
            fr(
                "/usr/local/lib/python3.12/site-packages/stripe/api.py",
                310,
                "charge",
                Py,
            ),
        ],
    );
}

#[test]
fn python_chained_windows_crlf_colour_and_exception_groups() {
    use Language::Python as Py;
    // Chained exceptions, a Windows path, CRLF line ends, a SyntaxError frame without `in`.
    let text = "Traceback (most recent call last):\r\n  File \"C:\\app\\jobs.py\", line 3, in run\r\n    x = 1 / 0\r\nZeroDivisionError: division by zero\r\n\r\nDuring handling of the above exception, another exception occurred:\r\n\r\nTraceback (most recent call last):\r\n  File \"/app/jobs.py\", line 7, in <module>\r\n  File \"/app/broken.py\", line 2\r\n    def f(:\r\n          ^\r\nSyntaxError: invalid syntax\r\n";
    assert_frames(
        text,
        &[
            fr("C:\\app\\jobs.py", 3, "run", Py),
            fr("/app/jobs.py", 7, "<module>", Py),
            fr("/app/broken.py", 2, "", Py),
        ],
    );

    // Python 3.13 coloured output.
    let coloured = "  File \u{1b}[35m\"/app/x.py\"\u{1b}[0m, line \u{1b}[35m12\u{1b}[0m, in \u{1b}[35mhandler\u{1b}[0m";
    assert_frames(coloured, &[fr("/app/x.py", 12, "handler", Py)]);

    // Python 3.11 exception groups draw a `|` margin.
    let group = r#"  + Exception Group Traceback (most recent call last):
  |   File "/app/main.py", line 10, in <module>
  |     raise ExceptionGroup("eg", [ValueError(1)])
  | ExceptionGroup: eg (1 sub-exception)
  +-+---------------- 1 ----------------
    | Traceback (most recent call last):
    |   File "/app/tasks.py", line 5, in work
    |     raise ValueError(1)
    | ValueError: 1
    +------------------------------------
"#;
    assert_frames(
        group,
        &[
            fr("/app/main.py", 10, "<module>", Py),
            fr("/app/tasks.py", 5, "work", Py),
        ],
    );
}

#[test]
fn python_sdk_short_form_and_pytest() {
    use Language::Python as Py;
    // Wire-protocol reference §5.3, as actually sent by the PY SDK.
    assert_frames(
        "process_payment at /app/demo.py:25\n/app/demo.py:36",
        &[
            fr("/app/demo.py", 25, "process_payment", Py),
            fr("/app/demo.py", 36, "", Py),
        ],
    );
    assert_frames(
        "handle at /srv/venv/lib/python3.11/site-packages/flask/app.py:1473\n<module> at /srv/app/wsgi.py:4",
        &[
            fr("/srv/venv/lib/python3.11/site-packages/flask/app.py", 1473, "handle", Py),
            fr("/srv/app/wsgi.py", 4, "<module>", Py),
        ],
    );
    // pytest --tb=short
    let pytest = "tests/test_pay.py:14: in test_refund\n    refund(order)\napp/payments.py:88: in refund\n    raise ValueError(\"x\")\nE   ValueError: x";
    assert_frames(
        pytest,
        &[
            fr("tests/test_pay.py", 14, "test_refund", Py),
            fr("app/payments.py", 88, "refund", Py),
        ],
    );
}

// ---------------------------------------------------------------------------------------
// Go
// ---------------------------------------------------------------------------------------

#[test]
fn go_runtime_stack() {
    use Language::Go;
    let text = "panic: runtime error: invalid memory address or nil pointer dereference
[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x47b7a6]

goroutine 1 [running]:
main.processPayment(0x1, {0xc000012345, 0x5})
\t/app/main.go:42 +0x1d
github.com/acme/shop/internal/orders.(*Service).Place(0xc0000a4000, {0x5b8e10?, 0xc0000b2000?})
\t/app/internal/orders/service.go:117 +0x2a5
main.Map[...](...)
\t/app/generic.go:9
main.main()
\t/app/main.go:12 +0x25
exit status 2
";
    assert_frames(
        text,
        &[
            fr("/app/main.go", 42, "main.processPayment", Go),
            fr(
                "/app/internal/orders/service.go",
                117,
                "github.com/acme/shop/internal/orders.(*Service).Place",
                Go,
            ),
            fr("/app/generic.go", 9, "main.Map[...]", Go),
            fr("/app/main.go", 12, "main.main", Go),
        ],
    );
}

#[test]
fn go_panics_goroutines_and_crash_tracebacks() {
    use Language::Go;
    let text = "goroutine 18 [running]:
panic({0x6a7c0?, 0xc0000140b0?})
\t/usr/local/go/src/runtime/panic.go:770 +0x132
main.worker.func1()
\t/app/worker.go:30 +0x45
created by main.startWorkers in goroutine 1
\t/app/worker.go:25 +0x8f

goroutine 1 [chan receive, 2 minutes]:
runtime.gopark(0x0?, 0x0?, 0x0?, 0x0?, 0x0?)
\t/usr/local/go/src/runtime/proc.go:402 +0xce fp=0xc00006ff08 sp=0xc00006fee8 pc=0x43d0ae
net/http.(*conn).serve(0xc000136000, {0x8e4b38, 0xc00012c000})
\tC:/Program Files/Go/src/net/http/server.go:2039 +0x8a
created by net/http.(*Server).Serve
\t/usr/local/go/src/net/http/server.go:3285 +0x4b4
";
    assert_frames(
        text,
        &[
            fr("/usr/local/go/src/runtime/panic.go", 770, "panic", Go),
            fr("/app/worker.go", 30, "main.worker.func1", Go),
            fr("/app/worker.go", 25, "main.startWorkers", Go),
            fr(
                "/usr/local/go/src/runtime/proc.go",
                402,
                "runtime.gopark",
                Go,
            ),
            fr(
                "C:/Program Files/Go/src/net/http/server.go",
                2039,
                "net/http.(*conn).serve",
                Go,
            ),
            fr(
                "/usr/local/go/src/net/http/server.go",
                3285,
                "net/http.(*Server).Serve",
                Go,
            ),
        ],
    );
}

#[test]
fn go_sdk_form() {
    use Language::Go;
    // span.go captureStackTrace: `pkg.Func\n\t/path/file.go:LINE\n` pairs.
    let text = "main.processPayment\n\t/app/main.go:42\ngithub.com/acme/shop/api.(*Handler).Checkout\n\t/app/api/handler.go:88\nnet/http.HandlerFunc.ServeHTTP\n\t/usr/local/go/src/net/http/server.go:2166\n";
    assert_frames(
        text,
        &[
            fr("/app/main.go", 42, "main.processPayment", Go),
            fr(
                "/app/api/handler.go",
                88,
                "github.com/acme/shop/api.(*Handler).Checkout",
                Go,
            ),
            fr(
                "/usr/local/go/src/net/http/server.go",
                2166,
                "net/http.HandlerFunc.ServeHTTP",
                Go,
            ),
        ],
    );
    // A location without its function line still counts; `?:0` and `<autogenerated>` do not.
    assert_frames(
        "goroutine 7 [running]:\n\t/app/main.go:5 +0x10\nmain.init.0()\n\t?:0\nruntime.doInit1()\n\t<autogenerated>:1 +0x5",
        &[fr("/app/main.go", 5, "", Go)],
    );
}

// ---------------------------------------------------------------------------------------
// Node / V8 / browsers
// ---------------------------------------------------------------------------------------

#[test]
fn node_v8_stack() {
    use Language::Node;
    let text = "TypeError: Cannot read properties of undefined (reading 'id')
    at checkout (/app/server.js:88:11)
    at Layer.handle [as handle_request] (/app/node_modules/express/lib/router/layer.js:95:5)
    at /app/server.js:120:3
    at async Promise.all (index 0)
    at Object.<anonymous> (/app/index.js:1:1)
    at new OrderService (file:///app/services/order.mjs:3:5)
    at Module._compile (node:internal/modules/cjs/loader:1256:14)
    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)
    at async handler (/app/api/pay.ts:14:20)
    at Generator.next (<anonymous>)
    at new Promise (<anonymous>)
    at Array.forEach (native)
";
    assert_frames(
        text,
        &[
            fr("/app/server.js", 88, "checkout", Node),
            fr(
                "/app/node_modules/express/lib/router/layer.js",
                95,
                "Layer.handle",
                Node,
            ),
            fr("/app/server.js", 120, "", Node),
            fr("/app/index.js", 1, "Object.<anonymous>", Node),
            fr("/app/services/order.mjs", 3, "OrderService", Node),
            fr(
                "node:internal/modules/cjs/loader",
                1256,
                "Module._compile",
                Node,
            ),
            fr(
                "node:internal/process/task_queues",
                95,
                "process.processTicksAndRejections",
                Node,
            ),
            fr("/app/api/pay.ts", 14, "handler", Node),
        ],
    );
}

#[test]
fn node_variants_windows_eval_route_groups_and_uncaught_header() {
    use Language::Node;
    let text = "C:\\app\\index.js:3
    throw new Error('boom');
    ^

Error: boom
    at Object.<anonymous> (C:\\app\\index.js:3:9)
    at eval (eval at run (/app/sandbox.js:10:3), <anonymous>:1:1)
    at Page (/app/.next/server/app/(shop)/cart/page.js:12:7)
    at file:///C:/app/esm.mjs:2:1
    at Object.<anonymous> (/app/bin/www:10:5)
    at async Promise.allSettled (index 2)
";
    assert_frames(
        text,
        &[
            fr("C:\\app\\index.js", 3, "", Node),
            fr("C:\\app\\index.js", 3, "Object.<anonymous>", Node),
            fr("/app/sandbox.js", 10, "eval", Node),
            fr(
                "/app/.next/server/app/(shop)/cart/page.js",
                12,
                "Page",
                Node,
            ),
            fr("C:/app/esm.mjs", 2, "", Node),
            fr("/app/bin/www", 10, "Object.<anonymous>", Node),
        ],
    );
}

#[test]
fn node_sdk_short_form_and_browser_stacks() {
    use Language::Node;
    assert_frames(
        "checkout at /app/server.js:88\n/app/server.js:120\nprocessTicksAndRejections at node:internal/process/task_queues:95",
        &[
            fr("/app/server.js", 88, "checkout", Node),
            fr("/app/server.js", 120, "", Node),
            fr(
                "node:internal/process/task_queues",
                95,
                "processTicksAndRejections",
                Node,
            ),
        ],
    );
    // Firefox / Safari.
    assert_frames(
        "checkout@https://shop.example.com/static/app.js:10:5\n@http://localhost:3000/main.js:2:15\npromise callback*init@https://shop.example.com/static/app.js:40:1",
        &[
            fr("https://shop.example.com/static/app.js", 10, "checkout", Node),
            fr("http://localhost:3000/main.js", 2, "", Node),
            fr(
                "https://shop.example.com/static/app.js",
                40,
                "promise callback*init",
                Node,
            ),
        ],
    );
}

// ---------------------------------------------------------------------------------------
// Java
// ---------------------------------------------------------------------------------------

#[test]
fn java_stack_trace() {
    use Language::Java;
    let text = "Exception in thread \"main\" java.lang.IllegalStateException: order failed
\tat com.example.OrderService.place(OrderService.java:57)
\tat com.example.OrderController.lambda$create$0(OrderController.java:31)
\tat java.base/java.util.Optional.map(Optional.java:260)
\tat jdk.internal.reflect.NativeMethodAccessorImpl.invoke0(Native Method)
\tat com.example.Legacy.run(Unknown Source)
\tat com.example.Gen.run(Gen.java)
\tat java.base/java.lang.Thread.run(Thread.java:840)
Caused by: java.sql.SQLException: connection refused at db:5432
\tat org.postgresql.Driver.connect(Driver.java:285)
\tat com.example.db.Pool$Conn.open(Pool.java:12) ~[classes/:na]
\tat com.foo.loader/foo@9.0/com.foo.Main.run(Main.java:101)
\tat Main.main(Main.java:5) [app.jar:?]
\t... 5 more
";
    assert_frames(
        text,
        &[
            fr(
                "com/example/OrderService.java",
                57,
                "com.example.OrderService.place",
                Java,
            ),
            fr(
                "com/example/OrderController.java",
                31,
                "com.example.OrderController.lambda$create$0",
                Java,
            ),
            fr(
                "java/util/Optional.java",
                260,
                "java.util.Optional.map",
                Java,
            ),
            fr("java/lang/Thread.java", 840, "java.lang.Thread.run", Java),
            fr(
                "org/postgresql/Driver.java",
                285,
                "org.postgresql.Driver.connect",
                Java,
            ),
            fr(
                "com/example/db/Pool.java",
                12,
                "com.example.db.Pool$Conn.open",
                Java,
            ),
            fr("com/foo/Main.java", 101, "com.foo.Main.run", Java),
            fr("Main.java", 5, "Main.main", Java),
        ],
    );
}

#[test]
fn java_sdk_stack_trace_element_lines() {
    use Language::Java;
    // JAVA SDK: `StackTraceElement.toString()` lines without `at`.
    let text = "com.example.OrderService.place(OrderService.java:57)
java.base/java.lang.Thread.run(Thread.java:840)
com.example.AppKt.main(App.kt:9)
java.lang.Thread.sleep(Native Method)
kotlinx.coroutines.DispatchedTask.run(DispatchedTask.kt:108)";
    assert_frames(
        text,
        &[
            fr(
                "com/example/OrderService.java",
                57,
                "com.example.OrderService.place",
                Java,
            ),
            fr("java/lang/Thread.java", 840, "java.lang.Thread.run", Java),
            fr("com/example/App.kt", 9, "com.example.AppKt.main", Java),
            fr(
                "kotlinx/coroutines/DispatchedTask.kt",
                108,
                "kotlinx.coroutines.DispatchedTask.run",
                Java,
            ),
        ],
    );
}

// ---------------------------------------------------------------------------------------
// .NET
// ---------------------------------------------------------------------------------------

#[test]
fn dotnet_stack_trace() {
    use Language::Dotnet;
    let text = "System.InvalidOperationException: Order failed
   at Api.OrdersController.Place() in /src/Api/OrdersController.cs:line 33
   at Api.Services.Repo`1.Get[TKey](TKey id, CancellationToken ct) in /src/Api/Services/Repo.cs:line 58
   at Api.Foo.<Bar>d__5.MoveNext() in /src/Api/Foo.cs:line 12
   at Api.Foo.<>c__DisplayClass5_0.<Bar>b__0(Int32 x) in /src/Api/Foo.cs:line 20
--- End of stack trace from previous location ---
   at System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw()
   at System.Threading.Tasks.Task.Wait(Int32 millisecondsTimeout, CancellationToken cancellationToken)
   at Microsoft.AspNetCore.Mvc.Infrastructure.ActionMethodExecutor.Execute(ActionContext ctx) in /_/src/Mvc/Mvc.Core/src/Infrastructure/ActionMethodExecutor.cs:line 240
   at Api.Program.<Main>$(String[] args) in C:\\Users\\Jane Doe\\src\\Api\\Program.cs:line 7
";
    assert_frames(
        text,
        &[
            fr(
                "/src/Api/OrdersController.cs",
                33,
                "Api.OrdersController.Place",
                Dotnet,
            ),
            fr(
                "/src/Api/Services/Repo.cs",
                58,
                "Api.Services.Repo`1.Get[TKey]",
                Dotnet,
            ),
            fr("/src/Api/Foo.cs", 12, "Api.Foo.Bar", Dotnet),
            fr(
                "/src/Api/Foo.cs",
                20,
                "Api.Foo.<>c__DisplayClass5_0.<Bar>b__0",
                Dotnet,
            ),
            fr(
                "/_/src/Mvc/Mvc.Core/src/Infrastructure/ActionMethodExecutor.cs",
                240,
                "Microsoft.AspNetCore.Mvc.Infrastructure.ActionMethodExecutor.Execute",
                Dotnet,
            ),
            fr(
                "C:\\Users\\Jane Doe\\src\\Api\\Program.cs",
                7,
                "Api.Program.<Main>$",
                Dotnet,
            ),
        ],
    );
}

// ---------------------------------------------------------------------------------------
// Ruby
// ---------------------------------------------------------------------------------------

#[test]
fn ruby_backtraces() {
    use Language::Ruby;
    let text = "/app/app.rb:10:in 'pay': card declined (RuntimeError)
\tfrom /app/app.rb:22:in 'Checkout#run'
\tfrom /usr/local/bundle/gems/sinatra-4.0.0/lib/sinatra/base.rb:1764:in `block in compile!'
\tfrom /app/x.rb:3:in 'block in <main>'
\tfrom <internal:kernel>:187:in 'loop'
\tfrom /app/x.rb:1:in '<main>'
";
    assert_frames(
        text,
        &[
            fr("/app/app.rb", 10, "pay", Ruby),
            fr("/app/app.rb", 22, "Checkout#run", Ruby),
            fr(
                "/usr/local/bundle/gems/sinatra-4.0.0/lib/sinatra/base.rb",
                1764,
                "block in compile!",
                Ruby,
            ),
            fr("/app/x.rb", 3, "block in <main>", Ruby),
            fr("<internal:kernel>", 187, "loop", Ruby),
            fr("/app/x.rb", 1, "<main>", Ruby),
        ],
    );
    // RUBY SDK `caller` lines and a Rails backtrace with relative paths (pre-3.4 backticks).
    let text = "/app/app.rb:10:in `pay'\napp/controllers/orders_controller.rb:12:in `create'\napp/models/order.rb:40:in `block (2 levels) in <class:Order>'";
    assert_frames(
        text,
        &[
            fr("/app/app.rb", 10, "pay", Ruby),
            fr("app/controllers/orders_controller.rb", 12, "create", Ruby),
            fr(
                "app/models/order.rb",
                40,
                "block (2 levels) in <class:Order>",
                Ruby,
            ),
        ],
    );
}

// ---------------------------------------------------------------------------------------
// PHP
// ---------------------------------------------------------------------------------------

#[test]
fn php_native_trace() {
    use Language::Php;
    let text = "PHP Fatal error:  Uncaught RuntimeException: boom in /var/www/app/Checkout.php:40
Stack trace:
#0 /var/www/app/Checkout.php(12): Checkout->charge(Object(Order), 'EUR')
#1 /var/www/vendor/laravel/framework/src/Illuminate/Pipeline/Pipeline.php(180): Illuminate\\Pipeline\\Pipeline->Illuminate\\Pipeline\\{closure}(Object(Illuminate\\Http\\Request))
#2 [internal function]: Checkout->handle()
#3 C:\\xampp\\htdocs\\index.php(5): App\\Kernel::boot()
#4 {main}
  thrown in /var/www/app/Checkout.php on line 40
";
    assert_frames(
        text,
        &[
            fr("/var/www/app/Checkout.php", 40, "", Php),
            fr("/var/www/app/Checkout.php", 12, "Checkout->charge", Php),
            fr(
                "/var/www/vendor/laravel/framework/src/Illuminate/Pipeline/Pipeline.php",
                180,
                "Illuminate\\Pipeline\\Pipeline->Illuminate\\Pipeline\\{closure}",
                Php,
            ),
            fr("C:\\xampp\\htdocs\\index.php", 5, "App\\Kernel::boot", Php),
        ],
    );
}

#[test]
fn php_sdk_forms() {
    use Language::Php;
    // Reference §8.3 (exception events) and §5.2 (snapshot `stack_trace`).
    let text = "/var/www/app/Checkout.php:40
Checkout::charge at /var/www/app/Checkout.php:12
/var/www/public/index.php:5
App\\Services\\Pay::charge(/var/www/app/Services/Pay.php:10)
handle(/var/www/app/Checkout.php:22)
{closure}(/var/www/routes/web.php:7)";
    assert_frames(
        text,
        &[
            fr("/var/www/app/Checkout.php", 40, "", Php),
            fr("/var/www/app/Checkout.php", 12, "Checkout::charge", Php),
            fr("/var/www/public/index.php", 5, "", Php),
            fr(
                "/var/www/app/Services/Pay.php",
                10,
                "App\\Services\\Pay::charge",
                Php,
            ),
            fr("/var/www/app/Checkout.php", 22, "handle", Php),
            fr("/var/www/routes/web.php", 7, "{closure}", Php),
        ],
    );
}

// ---------------------------------------------------------------------------------------
// Mixed, hostile and bounded input
// ---------------------------------------------------------------------------------------

#[test]
fn mixed_languages_in_one_text_keep_textual_order() {
    let text = "  File \"/app/a.py\", line 1, in f
\tat com.example.A.b(A.java:2)
main.c()
\t/app/c.go:3 +0x1
    at d (/app/d.js:4:1)
   at E.F() in /src/e.cs:line 5
/app/g.rb:6:in 'g'
#0 /app/h.php(7): h()
";
    let got = parse(text);
    let summary: Vec<(&str, i64, &str, Language)> = got
        .iter()
        .map(|f| (f.file.as_str(), f.line, f.function.as_str(), f.language))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("/app/a.py", 1, "f", Language::Python),
            ("com/example/A.java", 2, "com.example.A.b", Language::Java),
            ("/app/c.go", 3, "main.c", Language::Go),
            ("/app/d.js", 4, "d", Language::Node),
            ("/src/e.cs", 5, "E.F", Language::Dotnet),
            ("/app/g.rb", 6, "g", Language::Ruby),
            ("/app/h.php", 7, "h", Language::Php),
        ]
    );
}

#[test]
fn prose_and_near_misses_yield_no_frames() {
    let text = "Meeting at 12:30
at 10:30:00
Time: 12:30
ratio 3:2
http://localhost:8080
see example.com:443
connect to db.internal:5432
user@example.com:25:3
Error: timeout after 30s
at async Promise.all (index 0)
  File \"/app/x.py\", line 0, in f
/app/x.py:0
/app/x.py:99999999999999999999999
foo(bar:3)
#1 {main}
   at System.Threading.Thread.StartCallback()
\tat com.example.Gen.run(Native Method)
goroutine 1 [running]:
... 12 more
";
    assert_eq!(parse(text), Vec::<Frame>::new());
    assert!(parse("").is_empty());
    assert!(parse("\n\n\r\n   \t\n").is_empty());
}

#[test]
fn binary_junk_never_panics() {
    // Deterministic pseudo-random bytes, decoded lossily, plus adversarial fragments.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut bytes = Vec::with_capacity(64 * 1024);
    for _ in 0..64 * 1024 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.push((state >> 24) as u8);
    }
    let junk = String::from_utf8_lossy(&bytes);
    let _ = parse(&junk);

    let fragments = [
        "at ",
        "at (",
        "at )",
        "at ()",
        "at (:)",
        "at (:1)",
        "at x (",
        "at x ())",
        "(((",
        ")))",
        "File \"",
        "File \"\", line 1",
        "#0 ",
        "#0 (1): ",
        ":in '",
        ":1:in ''",
        "@:1:1",
        " at :1",
        "created by ",
        "created by  in goroutine 1",
        "\t:1 +0x",
        "\u{1b}[",
        "\u{1b}",
        "|||",
        "at \u{1b}[31m(/a.js:1:1)",
        "x(:1)",
        "a.b(c:1)",
        "é(ñ.java:1)",
        "at ü (ß:1:1)",
        "at eval (eval at ",
        "at eval (eval at x (",
        "file://",
        "at file:///:1:1",
    ];
    for a in fragments {
        for b in fragments {
            let text = format!("{a}{b}\n{b}{a}\n\t{a}1\n");
            for f in parse(&text) {
                assert!(!f.file.is_empty() && f.line > 0, "{text:?} → {f:?}");
            }
        }
    }
}

#[test]
fn long_lines_are_ignored() {
    let huge = "a".repeat(100_000);
    let text = format!("{huge}\n  File \"/app/x.py\", line 3, in f\n{huge}");
    assert_eq!(
        parse(&text),
        vec![fr("/app/x.py", 3, "f", Language::Python)]
    );
    // A line that would match but exceeds 4096 bytes is skipped.
    let long_frame = format!("  File \"/app/{}.py\", line 3, in f", "d".repeat(5000));
    assert!(parse(&long_frame).is_empty());
    // One giant line without a newline.
    assert!(parse(&"at x (/a.js:1:1) ".repeat(50_000)).is_empty());
}

#[test]
fn frame_count_is_bounded() {
    let text: String = (1..=10_000)
        .map(|i| format!("  File \"/app/x.py\", line {i}, in f{i}\n"))
        .collect();
    let frames = parse(&text);
    assert_eq!(frames.len(), MAX_FRAMES);
    assert_eq!(frames[0], fr("/app/x.py", 1, "f1", Language::Python));
    assert_eq!(frames[MAX_FRAMES - 1].line, MAX_FRAMES as i64);

    let go: String = (1..=10_000)
        .map(|i| format!("main.f{i}()\n\t/app/main.go:{i} +0x1d\n"))
        .collect();
    assert_eq!(parse(&go).len(), MAX_FRAMES);
}

#[test]
fn frames_serialize_with_lowercase_languages() {
    let f = fr("/src/x.cs", 3, "X.Y", Language::Dotnet);
    let json = serde_json::to_value(&f).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"file": "/src/x.cs", "line": 3, "function": "X.Y", "language": "dotnet"})
    );
    let back: Frame = serde_json::from_value(json).unwrap();
    assert_eq!(back, f);
    for (lang, name) in [
        (Language::Python, "python"),
        (Language::Go, "go"),
        (Language::Node, "node"),
        (Language::Java, "java"),
        (Language::Ruby, "ruby"),
        (Language::Php, "php"),
        (Language::Unknown, "unknown"),
    ] {
        assert_eq!(serde_json::to_value(lang).unwrap(), name);
    }
}

// ---------------------------------------------------------------------------------------
// Library frames
// ---------------------------------------------------------------------------------------

#[test]
fn library_frames() {
    use Language::*;
    let library = [
        fr(
            "/usr/local/lib/python3.12/site-packages/flask/app.py",
            1,
            "wsgi_app",
            Python,
        ),
        fr(
            "/usr/lib/python3/dist-packages/requests/api.py",
            1,
            "get",
            Python,
        ),
        fr("/usr/lib/python3.11/threading.py", 1, "run", Python),
        fr(
            "/opt/venv/lib/python3.12/asyncio/events.py",
            1,
            "_run",
            Python,
        ),
        fr("<frozen importlib._bootstrap>", 1, "_gcd_import", Python),
        fr(
            "C:\\Python312\\Lib\\site-packages\\django\\core.py",
            1,
            "x",
            Python,
        ),
        fr(
            "/app/node_modules/express/lib/router/layer.js",
            95,
            "Layer.handle",
            Node,
        ),
        fr(
            "node:internal/process/task_queues",
            95,
            "processTicksAndRejections",
            Node,
        ),
        fr(
            "internal/process/task_queues.js",
            97,
            "processTicksAndRejections",
            Node,
        ),
        fr("<anonymous>", 1, "", Node),
        fr("/usr/local/go/src/runtime/panic.go", 770, "panic", Go),
        fr(
            "/root/go/pkg/mod/github.com/gin-gonic/gin@v1.9.1/context.go",
            174,
            "gin.(*Context).Next",
            Go,
        ),
        fr("/app/worker.go", 1, "runtime.goexit", Go),
        fr(
            "/usr/lib/go-1.22/src/net/http/server.go",
            2166,
            "net/http.HandlerFunc.ServeHTTP",
            Go,
        ),
        fr("java/lang/Thread.java", 840, "java.lang.Thread.run", Java),
        fr(
            "javax/servlet/http/HttpServlet.java",
            1,
            "javax.servlet.http.HttpServlet.service",
            Java,
        ),
        fr("sun/reflect/X.java", 1, "sun.reflect.X.invoke", Java),
        fr(
            "jdk/internal/reflect/M.java",
            1,
            "jdk.internal.reflect.M.invoke",
            Java,
        ),
        fr(
            "org/springframework/web/X.java",
            1,
            "org.springframework.web.X.y",
            Java,
        ),
        fr("/src/x.cs", 1, "System.Threading.Tasks.Task.Wait", Dotnet),
        fr(
            "/src/x.cs",
            1,
            "Microsoft.AspNetCore.Routing.EndpointMiddleware.Invoke",
            Dotnet,
        ),
        fr(
            "/_/src/libraries/System.Private.CoreLib/src/X.cs",
            1,
            "X.Y",
            Dotnet,
        ),
        fr(
            "/usr/local/bundle/gems/rack-3.0.8/lib/rack/builder.rb",
            1,
            "call",
            Ruby,
        ),
        fr("/usr/lib/ruby/3.2.0/net/http.rb", 1, "request", Ruby),
        fr("<internal:kernel>", 187, "loop", Ruby),
        fr(
            "/var/www/vendor/laravel/framework/src/Pipeline.php",
            180,
            "x",
            Php,
        ),
        fr("vendor/symfony/http-kernel/Kernel.php", 1, "handle", Php),
    ];
    for f in &library {
        assert!(is_library_frame(f), "expected library: {f:?}");
    }
    let user = [
        fr("/app/payments/core.py", 25, "process_payment", Python),
        fr("/app/lib/python_utils.py", 1, "helper", Python),
        fr("/app/server.js", 88, "checkout", Node),
        fr("/app/main.go", 42, "main.processPayment", Go),
        fr("/go/src/github.com/me/app/main.go", 1, "main.main", Go),
        fr(
            "com/example/OrderService.java",
            57,
            "com.example.OrderService.place",
            Java,
        ),
        fr("com/javaworld/X.java", 1, "com.javaworld.X.y", Java),
        fr(
            "/src/Api/OrdersController.cs",
            33,
            "Api.OrdersController.Place",
            Dotnet,
        ),
        fr("/src/Api/SystemInfo.cs", 1, "Api.SystemInfo.Get", Dotnet),
        fr("/app/app.rb", 10, "pay", Ruby),
        fr("/app/lib/ruby/helpers.rb", 1, "h", Ruby),
        fr("/var/www/app/Checkout.php", 12, "Checkout->charge", Php),
        fr("/srv/app/vendors.py", 1, "f", Python),
    ];
    for f in &user {
        assert!(!is_library_frame(f), "expected user code: {f:?}");
    }
}
