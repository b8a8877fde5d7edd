//! `docs/http.md` as a test: every curl example in it is run against a real `wxmp serve --dev`
//! and must answer the status written after it, and every route in the routers must have a
//! heading and an example there.
//!
//! The routes are read from the source itself (every `.route(` call under `crates/wxmp/src`,
//! its path and its methods), not from a list kept here, so a new endpoint without a doc entry
//! fails this test. The examples are parsed as the shell would (quotes, `$VARIABLES`) and as
//! curl would (`-X`, `-H`, `-d`, `-u`), then sent with reqwest in document order. Values that
//! only exist at run time (`$SIGNATURE` over the current time, an OAuth `$CODE`, a `$TICKET`)
//! are computed fresh for each example, the way the doc tells a reader to get them.

mod process;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use process::DevServer;
use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE, COOKIE, LOCATION};
use url::Url;
use wxmp_proto::signature::{msg_signature, signature, Token};
use wxmp_proto::{AppId, EncodingAesKey, MsgCrypt};

const DOC: &str = include_str!("../../../docs/http.md");

const METHODS: [&str; 9] = [
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "ANY",
];

// The public dev credentials `serve --dev` uses (see `wxmp::dev`).
const DEV_TOKEN: &str = "pamtest";
const DEV_AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const DEV_APPID: &str = "wx0123456789abcdef";
const DEV_SECRET: &str = "wxmp-demo-secret";

// ---------------------------------------------------------------------------------------------
// The routes, from the source

/// One method of one `.route(` call.
#[derive(Debug, Clone)]
struct Route {
    /// `GET`, `POST`, … or `ANY`.
    method: String,
    /// The path template as the router has it, e.g. `/v1/apps/{app}/tickets/{kind}`.
    path: String,
    /// Served by the emulator (a file under `src/emulator/`) rather than by wxmp.
    emulator: bool,
    /// Where it was found, for messages.
    file: String,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `.route(` call of the crate's non-test code.
fn routes() -> Vec<Route> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut routes = Vec::new();
    for file in files {
        let whole = std::fs::read_to_string(&file).unwrap();
        // Unit tests sit at the end of a file, after `#[cfg(test)]`; their routers are not the
        // product's.
        let code = whole.split("#[cfg(test)]").next().unwrap_or_default();
        let name = file.strip_prefix(&src).unwrap().display().to_string();
        let emulator = name.starts_with("emulator");
        let mut from = 0;
        while let Some(found) = code[from..].find(".route(") {
            let at = from + found;
            from = at + ".route(".len();
            let line_start = code[..at].rfind('\n').map_or(0, |n| n + 1);
            if code[line_start..at].trim_start().starts_with("//") {
                continue;
            }
            let (path, rest) = route_path(&code[from..], &whole, &name);
            for method in route_methods(rest, &name, &path) {
                routes.push(Route {
                    method,
                    path: path.clone(),
                    emulator,
                    file: name.clone(),
                });
            }
        }
    }
    assert!(
        routes.len() > 20,
        "found only {} routes: is the source layout as this test expects? {routes:#?}",
        routes.len()
    );
    routes
}

/// The first argument of a `.route(` call: a string literal, or a `const` of the same file.
/// Returns it and the text after it.
fn route_path<'a>(args: &'a str, file_text: &str, file: &str) -> (String, &'a str) {
    let args = args.trim_start();
    if let Some(literal) = args.strip_prefix('"') {
        let end = literal.find('"').unwrap();
        return (literal[..end].to_owned(), &literal[end + 1..]);
    }
    let end = args
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap();
    let ident = args[..end].rsplit("::").next().unwrap();
    let decl = format!("const {ident}: &str = \"");
    let value = file_text
        .split_once(&decl)
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(value, _)| value.to_owned())
        .unwrap_or_else(|| panic!("{file}: .route({ident}, …): no `{decl}…\"` in the file"));
    (value, &args[end..])
}

/// The methods of a `.route(` call's second argument: the calls at its top level, as in
/// `get(a).post(b)` or `any(c)`.
fn route_methods(rest: &str, file: &str, path: &str) -> Vec<String> {
    let rest = rest
        .trim_start()
        .strip_prefix(',')
        .unwrap_or_else(|| panic!("{file}: .route({path:?} has no second argument"));
    let mut methods = Vec::new();
    let mut depth = 0i32;
    let mut ident = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                // A string literal: skip it, escapes included.
                while let Some(s) = chars.next() {
                    match s {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
                ident.clear();
            }
            '(' => {
                if depth == 0 {
                    let upper = ident.to_ascii_uppercase();
                    if METHODS.contains(&upper.as_str()) && ident == ident.to_ascii_lowercase() {
                        methods.push(upper);
                    }
                }
                depth += 1;
                ident.clear();
            }
            ')' => {
                depth -= 1;
                if depth < 0 {
                    break;
                }
                ident.clear();
            }
            c if c.is_ascii_alphanumeric() || c == '_' => ident.push(c),
            _ => ident.clear(),
        }
    }
    assert!(
        !methods.is_empty(),
        "{file}: .route({path:?}, …) has no method this test knows (get, post, any …)"
    );
    methods
}

/// True when a concrete path (or a template) is matched by `template`: `{x}` is one
/// non-empty segment, `{*x}` the non-empty rest.
fn matches_template(template: &str, path: &str) -> bool {
    if template == path {
        return true;
    }
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    for (i, segment) in t.iter().enumerate() {
        if segment.starts_with("{*") {
            return p.len() > i && !p[i..].join("/").is_empty();
        }
        let Some(given) = p.get(i) else { return false };
        let is_param = segment.starts_with('{') && segment.ends_with('}');
        if !((is_param && !given.is_empty()) || segment == given) {
            return false;
        }
    }
    t.len() == p.len()
}

// ---------------------------------------------------------------------------------------------
// The document: headings and examples

/// A heading naming endpoints: `### GET, POST /sns/{*path}`.
struct Heading {
    line: usize,
    methods: BTreeSet<String>,
    paths: Vec<String>,
}

fn headings() -> Vec<Heading> {
    let mut out = Vec::new();
    let mut in_fence = false;
    for (i, line) in DOC.lines().enumerate() {
        if line.starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence || !line.starts_with('#') {
            continue;
        }
        let text = line.trim_start_matches('#');
        let mut methods = BTreeSet::new();
        let mut paths = Vec::new();
        for word in text.split_whitespace() {
            let word = word.trim_matches(|c| matches!(c, '`' | ',' | '(' | ')' | ':' | '.'));
            if METHODS.contains(&word) {
                methods.insert(word.to_owned());
            } else if word.starts_with('/') {
                paths.push(word.to_owned());
            }
        }
        if !methods.is_empty() && !paths.is_empty() {
            out.push(Heading {
                line: i + 1,
                methods,
                paths,
            });
        }
    }
    out
}

/// One curl example: the command and the status the doc says it answers.
#[derive(Debug, Clone)]
struct Example {
    /// Line of the opening fence.
    line: usize,
    command: String,
    status: u16,
}

fn examples() -> Vec<Example> {
    let lines: Vec<&str> = DOC.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(info) = lines[i].strip_prefix("```") else {
            i += 1;
            continue;
        };
        let start = i;
        let mut body = Vec::new();
        i += 1;
        while i < lines.len() && !lines[i].starts_with("```") {
            body.push(lines[i]);
            i += 1;
        }
        assert!(
            i < lines.len(),
            "docs/http.md:{}: unclosed fence",
            start + 1
        );
        i += 1;
        let command = body.join("\n");
        if info.trim() != "sh" {
            assert!(
                !body.iter().any(|l| l.trim_start().starts_with("curl ")),
                "docs/http.md:{}: a curl example outside a ```sh block is not run by this test",
                start + 1
            );
            continue;
        }
        assert!(
            command.trim_start().starts_with("curl "),
            "docs/http.md:{}: a ```sh block must be one curl command",
            start + 1
        );
        let status_line = lines[i..]
            .iter()
            .find(|l| !l.trim().is_empty())
            .copied()
            .unwrap_or_default();
        let status = status_line
            .strip_prefix("→ ")
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "docs/http.md:{}: the line after a curl example must be `→ STATUS`, not {status_line:?}",
                    start + 1
                )
            });
        out.push(Example {
            line: start + 1,
            command,
            status,
        });
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Shell words and curl arguments

/// The `$NAME`s an example uses, in order of first use.
fn variables(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        let end = rest
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(rest.len());
        let name = rest[..end].to_owned();
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// Splits one command line into words as a POSIX shell would: single quotes keep everything,
/// double quotes expand `$NAME` and honour `\` before `$`, `"`, `\`; unquoted text expands too;
/// `\` + newline continues the line. Anything that would make it more than one simple command
/// (operators, substitutions) is refused, so the doc's examples stay copy-and-paste simple.
fn shell_words(line: &str, vars: &BTreeMap<String, String>) -> Vec<String> {
    let expand = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>, out: &mut String| {
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' {
                name.push(c);
                chars.next();
            } else {
                break;
            }
        }
        assert!(!name.is_empty(), "a `$` that names no variable in {line}");
        let value = vars
            .get(&name)
            .unwrap_or_else(|| panic!("${name} is not a variable this test knows, in {line}"));
        out.push_str(value);
    };
    let mut words = Vec::new();
    let mut word = String::new();
    let mut started = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                started = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(q) => word.push(q),
                        None => panic!("unbalanced ' in {line}"),
                    }
                }
            }
            '"' => {
                started = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(e @ ('$' | '"' | '\\' | '`')) => word.push(e),
                            Some('\n') => {}
                            Some(e) => {
                                word.push('\\');
                                word.push(e);
                            }
                            None => panic!("unbalanced \" in {line}"),
                        },
                        Some('$') => expand(&mut chars, &mut word),
                        Some('`') => panic!("no command substitution in examples: {line}"),
                        Some(q) => word.push(q),
                        None => panic!("unbalanced \" in {line}"),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(e) => {
                    word.push(e);
                    started = true;
                }
                None => panic!("a trailing \\ in {line}"),
            },
            '$' => {
                started = true;
                expand(&mut chars, &mut word);
            }
            c if c.is_whitespace() => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            '|' | '&' | ';' | '<' | '>' | '`' | '(' | ')' | '#' | '*' | '?' | '[' | '~' => {
                panic!("unquoted {c:?} (a shell operator or pattern) in {line}")
            }
            c => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    words
}

/// A request as curl would send it.
#[derive(Debug)]
struct Request {
    method: String,
    url: Url,
    headers: Vec<(String, String)>,
    body: Option<String>,
}

/// Reads curl's arguments: `-s`, `-i`, `-X`, `-H`, `-d`/`--data`, `--data-binary`/`--data-raw`,
/// `-u`, and one URL. Like curl, data makes the method POST and, without a `Content-Type`,
/// sends `application/x-www-form-urlencoded`; `-d` drops newlines from its data.
fn curl_request(words: &[String]) -> Request {
    assert_eq!(words.first().map(String::as_str), Some("curl"), "{words:?}");
    let mut method = None;
    let mut url = None;
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut data: Vec<String> = Vec::new();
    let mut args = words[1..].iter();
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| panic!("{arg} needs a value: {words:?}"))
                .clone()
        };
        match arg.as_str() {
            "-s" | "--silent" | "-i" | "--include" | "-S" | "--show-error" => {}
            "-X" | "--request" => method = Some(value()),
            "-H" | "--header" => {
                let header = value();
                let (name, v) = header
                    .split_once(':')
                    .unwrap_or_else(|| panic!("not a header: {header:?}"));
                headers.push((name.trim().to_owned(), v.trim().to_owned()));
            }
            "-d" | "--data" | "--data-binary" | "--data-raw" => {
                let mut d = value();
                assert!(
                    arg == "--data-raw" || !d.starts_with('@'),
                    "@file data is not supported here: {words:?}"
                );
                if matches!(arg.as_str(), "-d" | "--data") {
                    d.retain(|c| c != '\n' && c != '\r');
                }
                data.push(d);
            }
            "-u" | "--user" => {
                let credentials = value();
                let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
                headers.push(("Authorization".to_owned(), format!("Basic {encoded}")));
            }
            other if other.starts_with('-') => {
                panic!("curl option {other} is not one this test understands: {words:?}")
            }
            other => {
                assert!(url.is_none(), "two URLs in {words:?}");
                url = Some(Url::parse(other).unwrap_or_else(|e| panic!("{other}: {e}")));
            }
        }
    }
    let body = (!data.is_empty()).then(|| data.join("&"));
    if body.is_some()
        && !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
    {
        headers.push((
            "Content-Type".to_owned(),
            "application/x-www-form-urlencoded".to_owned(),
        ));
    }
    let method = method.unwrap_or_else(|| if body.is_some() { "POST" } else { "GET" }.to_owned());
    Request {
        method,
        url: url.unwrap_or_else(|| panic!("no URL in {words:?}")),
        headers,
        body,
    }
}

// ---------------------------------------------------------------------------------------------
// Static checks: no server needed

/// Stand-in values, enough to read each example's method and URL.
fn placeholder_vars(example: &Example) -> BTreeMap<String, String> {
    variables(&example.command)
        .into_iter()
        .map(|name| {
            let value = match name.as_str() {
                "WXMP" => "http://wxmp.test".to_owned(),
                "EMULATOR" => "http://emulator.test".to_owned(),
                _ => "x".to_owned(),
            };
            (name, value)
        })
        .collect()
}

#[test]
fn every_route_has_a_heading_and_an_example() {
    let routes = routes();
    let headings = headings();
    let examples = examples();
    let mut problems = Vec::new();

    for route in &routes {
        let documented = headings
            .iter()
            .any(|h| h.methods.contains(&route.method) && h.paths.contains(&route.path));
        if !documented {
            problems.push(format!(
                "{} {} ({}) has no heading `### {} {}` in docs/http.md",
                route.method, route.path, route.file, route.method, route.path
            ));
        }
        let host = if route.emulator {
            "emulator.test"
        } else {
            "wxmp.test"
        };
        let called = examples.iter().any(|e| {
            let request = curl_request(&shell_words(&e.command, &placeholder_vars(e)));
            request.url.host_str() == Some(host)
                && (route.method == "ANY" || route.method == request.method)
                && matches_template(&route.path, request.url.path())
        });
        if !called {
            problems.push(format!(
                "{} {} ({}) has no curl example in docs/http.md (against ${})",
                route.method,
                route.path,
                route.file,
                if route.emulator { "EMULATOR" } else { "WXMP" }
            ));
        }
    }

    // And the other way: no heading names an endpoint that is not there.
    for heading in &headings {
        for method in &heading.methods {
            for path in &heading.paths {
                let real = routes.iter().any(|r| {
                    (r.method == *method || r.method == "ANY") && matches_template(&r.path, path)
                });
                if !real {
                    problems.push(format!(
                        "docs/http.md:{}: {method} {path} is no route of the code",
                        heading.line
                    ));
                }
            }
        }
    }

    // The emulator's implemented /cgi-bin/ paths are each listed.
    let surface = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/emulator/surface.rs"),
    )
    .unwrap();
    let list = surface
        .split_once("pub const IMPLEMENTED")
        .and_then(|(_, rest)| rest.split_once("];"))
        .map(|(list, _)| list)
        .expect("IMPLEMENTED in src/emulator/surface.rs");
    let implemented: Vec<&str> = list
        .split('"')
        .filter(|s| s.starts_with("/cgi-bin/"))
        .collect();
    assert!(implemented.len() > 5, "{implemented:?}");
    for path in implemented {
        if !DOC.contains(&format!("`{path}`")) {
            problems.push(format!(
                "the emulator's implemented path {path} is not listed in docs/http.md"
            ));
        }
    }

    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn the_parsers_read_what_the_shell_and_curl_would() {
    let mut vars = BTreeMap::new();
    vars.insert("WXMP".to_owned(), "http://h:1".to_owned());
    vars.insert("CODE".to_owned(), "c0de".to_owned());
    let words = shell_words(
        "curl -s -H 'Authorization: Bearer $NOT' -d \"{\\\"code\\\":\\\"$CODE\\\"}\" \\\n \"$WXMP/v1/x?a=1&b=$CODE\"",
        &vars,
    );
    assert_eq!(
        words,
        [
            "curl",
            "-s",
            "-H",
            "Authorization: Bearer $NOT",
            "-d",
            "{\"code\":\"c0de\"}",
            "http://h:1/v1/x?a=1&b=c0de"
        ]
    );
    let request = curl_request(&words);
    assert_eq!(request.method, "POST");
    assert_eq!(request.body.as_deref(), Some("{\"code\":\"c0de\"}"));
    assert!(request.headers.contains(&(
        "Content-Type".into(),
        "application/x-www-form-urlencoded".into()
    )));
    assert!(std::panic::catch_unwind(|| shell_words("curl x | sh", &BTreeMap::new())).is_err());

    assert!(matches_template(
        "/v1/apps/{app}/proxy/{*path}",
        "/v1/apps/demo/proxy/cgi-bin/x"
    ));
    assert!(!matches_template(
        "/v1/apps/{app}/proxy/{*path}",
        "/v1/apps/demo/proxy/"
    ));
    assert!(matches_template("/oauth/{app}", "/oauth/demo"));
    assert!(!matches_template("/oauth/{app}", "/oauth/demo/callback"));
    assert!(!matches_template("/_emulator/", "/_emulator"));
    assert!(matches_template("/sns/{*path}", "/sns/{*path}"));
}

// ---------------------------------------------------------------------------------------------
// Running the examples against `wxmp serve --dev`

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no Location in a {} answer", response.status()))
        .to_owned()
}

fn query_param(url: &str, name: &str) -> String {
    Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no {name} in {url}"))
}

/// A code from the emulator's authorize page, as `docs/http.md` says to get one.
async fn oauth_code(client: &reqwest::Client, emulator: &str) -> String {
    let response = client
        .get(format!(
            "{emulator}/connect/oauth2/authorize?appid={DEV_APPID}&redirect_uri=https%3A%2F%2Fexample.com%2Fback&response_type=code&scope=snsapi_base&state=test"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    query_param(&location(&response), "code")
}

/// A `wxmp_ticket`, from the browser flow followed by hand: `/oauth/demo` (keeping its
/// cookie), the emulator's authorize page, the callback.
async fn oauth_ticket(client: &reqwest::Client, wxmp: &str) -> String {
    let start = client
        .get(format!("{wxmp}/oauth/demo?return={wxmp}/dev/oauth"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 302);
    let cookie = start
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("the sign-in cookie")
        .to_owned();
    let authorize = location(&start);
    let authorize = authorize.split('#').next().unwrap();
    let consent = client.get(authorize).send().await.unwrap();
    assert_eq!(consent.status(), 302);
    let back = client
        .get(location(&consent))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), 302);
    query_param(&location(&back), "wxmp_ticket")
}

/// The values of the example's variables, computed the way the doc tells a reader to get
/// them.
async fn run_vars(
    client: &reqwest::Client,
    example: &Example,
    wxmp: &str,
    emulator: &str,
) -> BTreeMap<String, String> {
    let token = Token::new(DEV_TOKEN).unwrap();
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let nonce = format!("{}", rand::random::<u32>());
    // A text message `ping`, sealed as a safe-mode push.
    let encrypt = {
        let crypt = MsgCrypt::new(
            EncodingAesKey::parse(DEV_AES_KEY).unwrap(),
            AppId::new(DEV_APPID).unwrap(),
        );
        let xml = format!(
            "<xml><ToUserName><![CDATA[gh_wxmp_test]]></ToUserName>\
             <FromUserName><![CDATA[oWxmpTestUser000000000000000]]></FromUserName>\
             <CreateTime>{timestamp}</CreateTime><MsgType><![CDATA[text]]></MsgType>\
             <Content><![CDATA[ping]]></Content><MsgId>{}</MsgId></xml>",
            rand::random::<u32>()
        );
        crypt.encrypt(&xml, rand::random()).unwrap()
    };
    let mut vars = BTreeMap::new();
    for name in variables(&example.command) {
        let value = match name.as_str() {
            "WXMP" => wxmp.to_owned(),
            "EMULATOR" => emulator.to_owned(),
            "TIMESTAMP" => timestamp.clone(),
            "NONCE" => nonce.clone(),
            "SIGNATURE" => signature(&token, &timestamp, &nonce).to_string(),
            "ENCRYPT" => encrypt.clone(),
            "MSG_SIGNATURE" => msg_signature(&token, &timestamp, &nonce, &encrypt).to_string(),
            "ACCESS_TOKEN" => {
                let answer: serde_json::Value = client
                    .get(format!(
                        "{emulator}/cgi-bin/token?grant_type=client_credential&appid={DEV_APPID}&secret={DEV_SECRET}"
                    ))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                answer["access_token"].as_str().unwrap().to_owned()
            }
            "CODE" => oauth_code(client, emulator).await,
            "TICKET" => oauth_ticket(client, wxmp).await,
            other => panic!(
                "docs/http.md:{}: ${other} is not a variable this test knows how to fill",
                example.line
            ),
        };
        vars.insert(name, value);
    }
    vars
}

#[tokio::test]
async fn every_example_answers_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
    let server = DevServer::start(dir.path(), stderr.into(), &[("NO_COLOR", "1")]);
    let (wxmp, emulator) = (server.url(), server.emulator_url());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let examples = examples();
    assert!(examples.len() > 30, "{} examples", examples.len());
    let mut failures = Vec::new();
    for example in &examples {
        let vars = run_vars(&client, example, &wxmp, &emulator).await;
        let request = curl_request(&shell_words(&example.command, &vars));
        let mut builder = client.request(
            reqwest::Method::from_bytes(request.method.as_bytes()).unwrap(),
            request.url.clone(),
        );
        for (name, value) in &request.headers {
            builder = builder.header(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        let response = builder.send().await.unwrap_or_else(|e| {
            panic!(
                "docs/http.md:{}: {} {}: {e}",
                example.line, request.method, request.url
            )
        });
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response.text().await.unwrap_or_default();
        if status != example.status {
            let shown: String = body.chars().take(400).collect();
            failures.push(format!(
                "docs/http.md:{}: {} {} answered {status}, the doc says {}\n  {content_type}: {shown}",
                example.line, request.method, request.url, example.status
            ));
        }
        // What a success answers, beyond the status, where the doc promises it.
        if status == 200 && request.url.path().starts_with("/v1/") {
            assert!(
                content_type.starts_with("application/json"),
                "docs/http.md:{}: {content_type}",
                example.line
            );
        }
    }
    assert!(
        failures.is_empty(),
        "\n{}\n\nserver log:\n{}",
        failures.join("\n"),
        std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default()
    );
}
