//! Secrets and peer-chosen text in the strings pgmon stores, logs and answers with, in one place so
//! every caller redacts the same way.
//!
//! - [`redact_sql`]: a query text read from a monitored server (`pg_stat_activity`,
//!   `pg_stat_statements`) can carry a password the server's users typed (`ALTER ROLE ... PASSWORD
//!   '...'`, a `CREATE SUBSCRIPTION ... CONNECTION '... password=...'`, a user mapping's options).
//!   pgmon keeps and shows these texts, so the literal is replaced by `'***'` wherever it goes.
//! - [`normalize_sql`]: what a viewer sees by default: every constant replaced by `$n`, as
//!   `pg_stat_statements` does, so the data in a statement is not shown, only its shape.
//! - [`redact_url`]: connection URLs and conninfo strings in logs and error messages.
//! - [`peer_text`]: text chosen by the other side of a connection (SSH stderr, a server's error or
//!   version) cut to printable characters and a bounded length before it reaches an answer or a log,
//!   so a hostile peer cannot forge log lines or drive an operator's terminal.
//!
//! The SQL functions share one lexer that follows PostgreSQL's lexical rules as far as the job
//! needs (standard_conforming_strings on): `'...'` with `''`, `E'...'` with backslash escapes, bit
//! strings, `U&'...'`, dollar quoting with tags, quoted identifiers (never touched), `--` and nested
//! `/* */` comments, numbers and `$n` parameters. An unterminated literal or comment runs to the end of
//! the text: a text cut to a length (as pgmon cuts them) is redacted as safely as the whole one. All
//! delimiters are ASCII, so every cut falls on a character boundary whatever the UTF-8 input.

use crate::config::QueryTextView;
use crate::validate::Role;
use std::borrow::Cow;

/// What replaces a secret.
const MASK: &str = "***";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Space,
    Comment,
    /// `'...'`, `E'...'`, `B'...'`, `X'...'`, `N'...'`, `U&'...'`.
    Str,
    /// `$tag$...$tag$`.
    Dollar,
    /// `"..."` or `U&"..."`.
    QuotedIdent,
    Ident,
    Number,
    /// `$1`.
    Param,
    Other,
}

#[derive(Debug, Clone, Copy)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
    /// The literal, quoted identifier or comment has its closing delimiter.
    closed: bool,
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_ident_cont(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit() || c == b'$'
}

/// The end of a quoted string whose body starts at `i`, and whether it is closed. `backslash`: an
/// `E'...'` string, where `\` escapes the next character.
fn quote_end(b: &[u8], mut i: usize, q: u8, backslash: bool) -> (usize, bool) {
    while i < b.len() {
        if backslash && b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return (i + 1, true);
        }
        i += 1;
    }
    (b.len(), false)
}

fn block_comment_end(b: &[u8], mut i: usize) -> (usize, bool) {
    let mut depth = 1usize;
    i += 2;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            depth += 1;
            i += 2;
        } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return (i, true);
            }
        } else {
            i += 1;
        }
    }
    (b.len(), false)
}

/// The end of the opening tag of a dollar quote at `i` (`$$` or `$tag$`), if one starts there.
fn dollar_tag_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    if b.get(j) == Some(&b'$') {
        return Some(j + 1);
    }
    if !b.get(j).is_some_and(|&c| is_ident_start(c)) {
        return None;
    }
    while b.get(j).is_some_and(|&c| is_ident_start(c) || c.is_ascii_digit()) {
        j += 1;
    }
    (b.get(j) == Some(&b'$')).then_some(j + 1)
}

fn number_end(b: &[u8], mut i: usize) -> usize {
    let digits = |b: &[u8], mut i: usize| {
        while b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b'_') {
            i += 1;
        }
        i
    };
    if b[i] == b'0'
        && b.get(i + 1).is_some_and(|c| b"xXoObB".contains(c))
        && b.get(i + 2).is_some_and(u8::is_ascii_alphanumeric)
    {
        i += 2;
        while b.get(i).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_') {
            i += 1;
        }
        return i;
    }
    i = digits(b, i);
    if b.get(i) == Some(&b'.') && b.get(i + 1) != Some(&b'.') {
        i = digits(b, i + 1);
    }
    if b.get(i).is_some_and(|c| *c == b'e' || *c == b'E') {
        let j = if b.get(i + 1).is_some_and(|c| *c == b'+' || *c == b'-') {
            i + 2
        } else {
            i + 1
        };
        if b.get(j).is_some_and(u8::is_ascii_digit) {
            i = digits(b, j);
        }
    }
    i
}

fn lex(s: &str) -> Vec<Token> {
    let b = s.as_bytes();
    let n = b.len();
    let mut out = Vec::new();
    let mut i = 0;
    while i < n {
        let start = i;
        let c = b[i];
        let next = b.get(i + 1).copied();
        let mut closed = true;
        let kind = if c.is_ascii_whitespace() {
            while i < n && b[i].is_ascii_whitespace() {
                i += 1;
            }
            Kind::Space
        } else if c == b'-' && next == Some(b'-') {
            while i < n && b[i] != b'\n' {
                i += 1;
            }
            Kind::Comment
        } else if c == b'/' && next == Some(b'*') {
            (i, closed) = block_comment_end(b, i);
            Kind::Comment
        } else if c == b'\'' {
            (i, closed) = quote_end(b, i + 1, b'\'', false);
            Kind::Str
        } else if matches!(c, b'E' | b'e') && next == Some(b'\'') {
            (i, closed) = quote_end(b, i + 2, b'\'', true);
            Kind::Str
        } else if matches!(c, b'B' | b'b' | b'X' | b'x' | b'N' | b'n') && next == Some(b'\'') {
            (i, closed) = quote_end(b, i + 2, b'\'', false);
            Kind::Str
        } else if matches!(c, b'U' | b'u') && next == Some(b'&') && b.get(i + 2) == Some(&b'\'') {
            (i, closed) = quote_end(b, i + 3, b'\'', false);
            Kind::Str
        } else if matches!(c, b'U' | b'u') && next == Some(b'&') && b.get(i + 2) == Some(&b'"') {
            (i, closed) = quote_end(b, i + 3, b'"', false);
            Kind::QuotedIdent
        } else if c == b'"' {
            (i, closed) = quote_end(b, i + 1, b'"', false);
            Kind::QuotedIdent
        } else if c == b'$' && next.is_some_and(|d| d.is_ascii_digit()) {
            i += 1;
            while i < n && b[i].is_ascii_digit() {
                i += 1;
            }
            Kind::Param
        } else if c == b'$'
            && let Some(tag_end) = dollar_tag_end(b, i)
        {
            let tag = &s[i..tag_end];
            match s[tag_end..].find(tag) {
                Some(p) => i = tag_end + p + tag.len(),
                None => {
                    i = n;
                    closed = false;
                }
            }
            Kind::Dollar
        } else if is_ident_start(c) {
            while i < n && is_ident_cont(b[i]) {
                i += 1;
            }
            Kind::Ident
        } else if c.is_ascii_digit() || (c == b'.' && next.is_some_and(|d| d.is_ascii_digit())) {
            i = number_end(b, i);
            Kind::Number
        } else {
            i += 1;
            Kind::Other
        };
        out.push(Token {
            kind,
            start,
            end: i.min(n),
            closed,
        });
        i = i.min(n);
    }
    out
}

/// The quoted identifier's name, `""` undoubled.
fn ident_name(text: &str) -> String {
    let body = text.trim_start_matches(['U', 'u', '&']);
    let body = body.strip_prefix('"').unwrap_or(body);
    let body = body.strip_suffix('"').unwrap_or(body);
    body.replace("\"\"", "\"")
}

fn ends_with_password(word: &str) -> bool {
    let w = word.as_bytes();
    w.len() >= 8 && w[w.len() - 8..].eq_ignore_ascii_case(b"password")
}

/// `text` with password literals replaced by `'***'`: the literal after a `PASSWORD` keyword or
/// option name (`[ENCRYPTED] PASSWORD '...'`, `OPTIONS (password '...')`, `password = '...'`), and
/// `password=...` / `user:password@` inside any literal or comment (conninfo strings and URLs of
/// subscriptions, dblink, foreign servers). Everything else is kept as it was.
pub fn redact_sql(text: &str) -> Cow<'_, str> {
    let toks = lex(text);
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    // A keyword or option name ending in "password" was seen; its value is the next literal.
    let mut armed = false;
    for t in &toks {
        let word = &text[t.start..t.end];
        match t.kind {
            Kind::Space => continue,
            Kind::Comment => {
                // The body only: a redacted value never swallows the comment's end.
                let (open, close) = if word.starts_with("--") {
                    (2, 0)
                } else {
                    (2, if t.closed { 2 } else { 0 })
                };
                let body = &word[open..word.len() - close];
                if let Some(r) = redact_conninfo(body) {
                    edits.push((t.start + open, t.end - close, r));
                }
                continue;
            }
            Kind::Ident if ends_with_password(word) => {
                armed = true;
                continue;
            }
            Kind::QuotedIdent if ends_with_password(&ident_name(word)) => {
                armed = true;
                continue;
            }
            Kind::Ident if armed && word.eq_ignore_ascii_case("to") => continue,
            Kind::Other if armed && word == "=" => continue,
            Kind::Str | Kind::Dollar if armed => edits.push((t.start, t.end, format!("'{MASK}'"))),
            Kind::Str | Kind::Dollar => {
                if let Some(r) = redact_literal(word, t) {
                    edits.push((t.start, t.end, r));
                }
            }
            _ => {}
        }
        armed = false;
    }
    if edits.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (s, e, r) in edits {
        out.push_str(&text[last..s]);
        out.push_str(&r);
        last = e;
    }
    out.push_str(&text[last..]);
    Cow::Owned(out)
}

/// A string literal with secrets of its value redacted, written again as a literal; `None` when
/// its value holds none.
fn redact_literal(word: &str, t: &Token) -> Option<String> {
    if t.kind == Kind::Dollar {
        let tag_len = dollar_tag_end(word.as_bytes(), 0)?;
        let tag = &word[..tag_len];
        let body_end = if t.closed {
            word.len() - tag_len
        } else {
            word.len()
        };
        let body = &word[tag_len..body_end.max(tag_len)];
        let r = redact_conninfo(body)?;
        return Some(format!("{tag}{r}{}", if t.closed { tag } else { "" }));
    }
    let b = word.as_bytes();
    let (open, backslash) = match b.first() {
        Some(b'\'') => (1, false),
        Some(b'E' | b'e') => (2, true),
        Some(b'U' | b'u') => (3, false),
        _ => (2, false),
    };
    let close = if t.closed { 1 } else { 0 };
    let raw = word.get(open..word.len().saturating_sub(close).max(open))?;
    let value = if backslash {
        unescape_e(raw)
    } else {
        raw.replace("''", "'")
    };
    let r = redact_conninfo(&value)?;
    // Written back as a standard string: backslashes in the value stay literal there.
    Some(format!(
        "'{}{}",
        r.replace('\'', "''"),
        if t.closed { "'" } else { "" }
    ))
}

/// The value of an `E'...'` body (enough of it to find secrets: `\'`, `''`, `\\`, `\n`, ...).
fn unescape_e(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut it = raw.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\\' => match it.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('b') => out.push('\u{8}'),
                Some('f') => out.push('\u{c}'),
                Some(o) => out.push(o),
                None => {}
            },
            '\'' if it.peek() == Some(&'\'') => {
                it.next();
                out.push('\'');
            }
            c => out.push(c),
        }
    }
    out
}

/// `text` with the values of `...password=` keys (conninfo `key=value`, quoted or not, and URL query
/// parameters) and the password of `scheme://user:password@host` replaced by `***`; `None` when it
/// holds none.
fn redact_conninfo(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let n = b.len();
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    let mut p = 0;
    while p + 8 <= n {
        if !b[p..p + 8].eq_ignore_ascii_case(b"password") {
            p += 1;
            continue;
        }
        let mut j = p + 8;
        p += 8;
        while j < n && (b[j] == b' ' || b[j] == b'\t') {
            j += 1;
        }
        if b.get(j) != Some(&b'=') {
            continue;
        }
        j += 1;
        while j < n && (b[j] == b' ' || b[j] == b'\t') {
            j += 1;
        }
        let v = j;
        let mut k = p - 8;
        while k > 0 && (b[k - 1].is_ascii_alphanumeric() || b[k - 1] == b'_') {
            k -= 1;
        }
        let url = k > 0 && (b[k - 1] == b'?' || b[k - 1] == b'&');
        let end = if url {
            let mut e = v;
            while e < n && !matches!(b[e], b'&' | b'#') && !b[e].is_ascii_whitespace() {
                e += 1;
            }
            e
        } else if b.get(v) == Some(&b'\'') {
            let mut e = v + 1;
            let end = loop {
                match b.get(e) {
                    None => break n,
                    Some(b'\\') => e += 2,
                    Some(b'\'') => break e + 1,
                    Some(_) => e += 1,
                }
            };
            end.min(n)
        } else {
            let mut e = v;
            while e < n && !b[e].is_ascii_whitespace() {
                e += if b[e] == b'\\' { 2 } else { 1 };
            }
            e.min(n)
        };
        if end > v {
            cuts.push((v, end));
            p = end;
        }
    }
    let mut from = 0;
    while let Some(rel) = text[from..].find("://") {
        let a = from + rel + 3;
        let mut e = a;
        while e < n && !b[e].is_ascii_whitespace() && !matches!(b[e], b'\'' | b'"') {
            e += 1;
        }
        if let Some(at) = text[a..e].rfind('@').map(|x| a + x)
            && let Some(colon) = text[a..at].find(':').map(|x| a + x)
            && colon + 1 < at
        {
            cuts.push((colon + 1, at));
        } else if e == n
            && let Some(colon) = text[a..e].find(':').map(|x| a + x)
            && !text[colon + 1..e].contains('/')
            && !text[colon + 1..e].bytes().all(|c| c.is_ascii_digit())
        {
            // A text cut inside `user:password` before its `@`: the rest can only be a password
            // (a port is digits, a path starts with `/`).
            cuts.push((colon + 1, e));
        }
        from = a;
    }
    if cuts.is_empty() {
        return None;
    }
    cuts.sort_unstable();
    let mut out = String::with_capacity(n);
    let mut last = 0;
    for (s, e) in cuts {
        if e <= last {
            continue;
        }
        let s = s.max(last);
        out.push_str(&text[last..s]);
        out.push_str(MASK);
        last = e;
    }
    out.push_str(&text[last..]);
    Some(out)
}

/// A connection URL or conninfo string for logs and error messages: the password of
/// `postgres://user:password@host`, `?password=` / `&password=` parameters and `password=` keys
/// replaced by `***`, the rest kept so the target can still be recognised.
pub fn redact_url(url: &str) -> String {
    redact_conninfo(url).unwrap_or_else(|| url.to_string())
}

/// `text` with every constant (string literals of every kind, dollar-quoted strings, numbers, bit
/// strings) replaced by `$n`, numbered after the highest parameter the text already has, as
/// `pg_stat_statements` shows statements. Identifiers, quoted ones included, keywords, operators and
/// comments stay. Password literals go with the other constants.
pub fn normalize_sql(text: &str) -> String {
    let toks = lex(text);
    let mut n: u64 = toks
        .iter()
        .filter(|t| t.kind == Kind::Param)
        .filter_map(|t| text[t.start + 1..t.end].parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    let mut out = String::with_capacity(text.len());
    for t in &toks {
        match t.kind {
            Kind::Str | Kind::Dollar | Kind::Number => {
                n = n.saturating_add(1);
                out.push('$');
                out.push_str(&n.to_string());
            }
            Kind::Comment => {
                // A comment may hold a conninfo (`/* password=... */`); a viewer never sees it.
                out.push_str(&redact_sql(&text[t.start..t.end]));
            }
            _ => out.push_str(&text[t.start..t.end]),
        }
    }
    out
}

/// How a query text is shown to `role`: operators and admins get the whole (redacted) text, viewers
/// what `api.viewer_query_text` says.
pub fn view_for(role: Role, viewer: QueryTextView) -> QueryTextView {
    if role >= Role::Operator {
        QueryTextView::Full
    } else {
        viewer
    }
}

/// A query text as `view` shows it: `Full` redacted, `Normalized` with its constants replaced,
/// `None` not at all.
pub fn show_query(view: QueryTextView, text: Option<&str>) -> Option<String> {
    let text = text?;
    match view {
        QueryTextView::Full => Some(redact_sql(text).into_owned()),
        QueryTextView::Normalized => Some(normalize_sql(text)),
        QueryTextView::None => None,
    }
}

/// Text chosen by a peer (SSH stderr and banners, a server's error message or version string) as it
/// may enter an answer or a log line: ANSI/VT escape sequences removed, other control and invisible
/// formatting characters (bidi overrides, zero-width) dropped, line breaks and tabs as one space,
/// at most `max_chars` characters (an ellipsis marks a cut).
pub fn peer_text(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars * 4));
    let mut kept = 0usize;
    let mut it = text.chars().peekable();
    let mut last_space = true;
    while let Some(c) = it.next() {
        match c {
            '\u{1b}' | '\u{9b}' | '\u{9d}' => {
                // ESC [ ... final / CSI ...: parameters and intermediates, then one final byte.
                // ESC ] ... BEL or ESC \ / OSC ...: a string. ESC X: one more character.
                let kind = if c == '\u{9b}' {
                    '['
                } else if c == '\u{9d}' {
                    ']'
                } else {
                    it.next().unwrap_or(' ')
                };
                match kind {
                    '[' => {
                        for d in it.by_ref() {
                            if ('\u{40}'..='\u{7e}').contains(&d) {
                                break;
                            }
                        }
                    }
                    ']' | 'P' | '_' | '^' | 'X' => {
                        while let Some(d) = it.next() {
                            if d == '\u{7}' || d == '\u{9c}' {
                                break;
                            }
                            if d == '\u{1b}' {
                                let _ = it.next_if_eq(&'\\');
                                break;
                            }
                        }
                    }
                    _ => {}
                }
                continue;
            }
            '\n' | '\r' | '\t' => {
                if !last_space {
                    if kept >= max_chars {
                        out.push('…');
                        break;
                    }
                    out.push(' ');
                    kept += 1;
                    last_space = true;
                }
                continue;
            }
            c if c.is_control() || is_invisible(c) => continue,
            c => {
                if kept >= max_chars {
                    out.push('…');
                    break;
                }
                out.push(c);
                kept += 1;
                last_space = c == ' ';
            }
        }
    }
    let trimmed = out.trim_end();
    if trimmed.len() != out.len() {
        out.truncate(trimmed.len());
    }
    out
}

/// Formatting characters that change how the text around them reads: bidi embeddings, overrides and
/// isolates, zero-width characters, the BOM.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}' | '\u{ad}')
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "hunter2secret";

    fn no_secret(sql: &str) {
        let r = redact_sql(sql);
        assert!(!r.contains(SECRET), "{sql:?} -> {r:?}");
        assert!(!r.contains("hunter2"), "{sql:?} -> {r:?}");
    }

    #[test]
    fn password_literals_are_redacted() {
        let cases = [
            (
                "ALTER ROLE bob PASSWORD 'hunter2secret'",
                "ALTER ROLE bob PASSWORD '***'",
            ),
            (
                "alter user bob with encrypted password 'hunter2secret' valid until 'infinity'",
                "alter user bob with encrypted password '***' valid until 'infinity'",
            ),
            (
                "CREATE ROLE x LOGIN PASSWORD E'hunter2\\'secret'",
                "CREATE ROLE x LOGIN PASSWORD '***'",
            ),
            (
                "CREATE ROLE x PASSWORD 'a''hunter2secret'",
                "CREATE ROLE x PASSWORD '***'",
            ),
            (
                "CREATE ROLE x PASSWORD $$hunter2secret$$",
                "CREATE ROLE x PASSWORD '***'",
            ),
            (
                "CREATE ROLE x PASSWORD $pw$hunter2$$secret$pw$ LOGIN",
                "CREATE ROLE x PASSWORD '***' LOGIN",
            ),
            (
                "ALTER ROLE x PASSWORD /* c */ --x\n 'hunter2secret'",
                "ALTER ROLE x PASSWORD /* c */ --x\n '***'",
            ),
            (
                "CREATE USER MAPPING FOR bob SERVER s OPTIONS (user 'bob', password 'hunter2secret')",
                "CREATE USER MAPPING FOR bob SERVER s OPTIONS (user 'bob', password '***')",
            ),
            (
                "ALTER USER MAPPING FOR bob SERVER s OPTIONS (SET \"password\" 'hunter2secret')",
                "ALTER USER MAPPING FOR bob SERVER s OPTIONS (SET \"password\" '***')",
            ),
            ("SET my.password = 'hunter2secret'", "SET my.password = '***'"),
            ("set my.password to 'hunter2secret'", "set my.password to '***'"),
            (
                "ALTER ROLE \"ünïcødé\" PASSWORD 'hunter2secret€'",
                "ALTER ROLE \"ünïcødé\" PASSWORD '***'",
            ),
            (
                "ALTER ROLE x PASSWORD 'hunter2secr",
                "ALTER ROLE x PASSWORD '***'",
            ),
            ("ALTER ROLE x PASSWORD NULL", "ALTER ROLE x PASSWORD NULL"),
            (
                "ALTER ROLE x PASSWORD U&'hunter2secret'",
                "ALTER ROLE x PASSWORD '***'",
            ),
        ];
        for (sql, want) in cases {
            assert_eq!(redact_sql(sql), want, "{sql}");
        }
    }

    #[test]
    fn conninfo_and_urls_in_literals_are_redacted() {
        let cases = [
            (
                "CREATE SUBSCRIPTION s CONNECTION 'host=h dbname=d password=hunter2secret user=u' PUBLICATION p",
                "CREATE SUBSCRIPTION s CONNECTION 'host=h dbname=d password=*** user=u' PUBLICATION p",
            ),
            (
                "SELECT dblink_connect('host=h password = ''hunter2 secret'' user=u')",
                "SELECT dblink_connect('host=h password = *** user=u')",
            ),
            (
                "SELECT dblink_connect(E'host=h password=\\'hunter2 secret\\' user=u')",
                "SELECT dblink_connect('host=h password=*** user=u')",
            ),
            (
                "SELECT dblink('postgresql://bob:hunter2secret@db.example/x?sslmode=require', 'select 1')",
                "SELECT dblink('postgresql://bob:***@db.example/x?sslmode=require', 'select 1')",
            ),
            (
                "SELECT dblink($q$postgres://bob@h/x?sslmode=disable&password=hunter2secret&a=b$q$)",
                "SELECT dblink($q$postgres://bob@h/x?sslmode=disable&password=***&a=b$q$)",
            ),
            (
                "SELECT 1 /* password=hunter2secret*/, 2 -- PASSWORD=hunter2secret\n",
                "SELECT 1 /* password=****/, 2 -- PASSWORD=***\n",
            ),
            ("SELECT 'sslpassword=hunter2secret'", "SELECT 'sslpassword=***'"),
            (
                "SELECT 'host=x password=hunter2sec",
                "SELECT 'host=x password=***",
            ),
        ];
        for (sql, want) in cases {
            assert_eq!(redact_sql(sql), want, "{sql}");
        }
    }

    #[test]
    fn what_holds_no_secret_is_kept_as_it_was() {
        for sql in [
            "SELECT * FROM users WHERE password_hash = crypt($1, password_hash)",
            "SELECT 'it''s', E'a\\nb', $$x$$, \"password\" FROM t",
            "UPDATE t SET x = 'password' WHERE \"my password\" = 1",
            "SELECT password FROM t",
            "",
            "'",
            "$$",
            "/*",
        ] {
            assert!(matches!(redact_sql(sql), Cow::Borrowed(_)), "{sql}");
        }
        // A quoted identifier is a name, never a secret: kept.
        assert_eq!(
            redact_sql("SELECT 1 AS \"PASSWORD 'x'\""),
            "SELECT 1 AS \"PASSWORD 'x'\""
        );
    }

    /// Small deterministic generator: no crate needed for a few thousand cases.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
            xs[(self.next() % xs.len() as u64) as usize]
        }
    }

    const PIECES: &[&str] = &[
        "'",
        "''",
        "\"",
        "$",
        "$$",
        "$a$",
        "$1",
        "E'",
        "e'",
        "\\",
        "\\'",
        "/*",
        "*/",
        "--",
        "\n",
        " ",
        "PASSWORD",
        "password",
        "=",
        "to",
        "SELECT",
        "x",
        "1",
        "1.5e3",
        ".5",
        "0x1F",
        "é",
        "日本",
        "🦀",
        "\u{0}",
        "\u{1b}[31m",
        "U&'",
        "B'",
        "(",
        ")",
        ",",
        "://",
        "@",
        ":",
        "?",
        "&",
        ";",
    ];

    #[test]
    fn any_input_is_handled_without_panics() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let len = (rng.next() % 24) as usize;
            let s: String = (0..len).map(|_| rng.pick(PIECES)).collect();
            let _ = redact_sql(&s);
            let _ = normalize_sql(&s);
            let _ = redact_url(&s);
            let p = peer_text(&s, 10);
            assert!(p.chars().count() <= 11, "{p:?}");
            assert!(!p.chars().any(char::is_control), "{p:?}");
            // Every cut of a text is still a valid input (texts are cut to a length).
            for (i, _) in s.char_indices() {
                let _ = redact_sql(&s[..i]);
                let _ = normalize_sql(&s[..i]);
            }
        }
    }

    #[test]
    fn secrets_never_survive_in_any_context_or_cut() {
        let mut rng = Rng(42);
        let shapes = [
            "ALTER ROLE r{sp}PASSWORD{sp}'{S}'",
            "ALTER ROLE r ENCRYPTED PASSWORD{sp}E'{S}'",
            "CREATE ROLE r PASSWORD $tag${S}$tag$",
            "CREATE ROLE r PASSWORD{sp}$${S}$$",
            "CREATE USER MAPPING FOR u SERVER s OPTIONS (password{sp}'{S}')",
            "CREATE SUBSCRIPTION s CONNECTION 'host=h{sp}password={S} dbname=d' PUBLICATION p",
            "SELECT dblink_connect('password=''{S}''')",
            "SELECT dblink_connect('postgres://u:{S}@h/d')",
            "SELECT dblink_connect('postgres://u@h/d?password={S}')",
        ];
        let prefixes = [
            "",
            "/* x */ ",
            "SELECT 'a''b', \"q\"\"\"; ",
            "-- hi\n",
            "WITH x AS (SELECT $1) ",
        ];
        for _ in 0..2_000 {
            let shape = rng.pick(&shapes);
            let sp = rng.pick(&[" ", "  ", "\n\t", " /* c */ "]);
            let sql = format!(
                "{}{}",
                rng.pick(&prefixes),
                shape.replace("{sp}", sp).replace("{S}", SECRET)
            );
            no_secret(&sql);
            // Cut anywhere, as left(query, n) cuts: no more of the secret than was cut off.
            for (i, _) in sql.char_indices() {
                let r = redact_sql(&sql[..i]);
                for k in 5..=SECRET.len() {
                    if sql[..i].ends_with(&SECRET[..k]) {
                        assert!(!r.contains(&SECRET[..k]), "{:?} -> {r:?}", &sql[..i]);
                    }
                }
            }
        }
    }

    #[test]
    fn normalizing_replaces_constants_only() {
        let cases = [
            (
                "SELECT * FROM t WHERE a = 'x' AND b = 42 AND c = -1.5e3 AND d = $1",
                "SELECT * FROM t WHERE a = $2 AND b = $3 AND c = -$4 AND d = $1",
            ),
            (
                "SELECT E'it\\'s', $$dollar ' \"$$, $f$x$f$, B'1010', X'ff', U&'d\\0061t', .5, 0x1F",
                "SELECT $1, $2, $3, $4, $5, $6, $7, $8",
            ),
            (
                "SELECT \"Col 'quoted'\", t1.x2 FROM \"T\"\"x\" WHERE y = 'a''b'",
                "SELECT \"Col 'quoted'\", t1.x2 FROM \"T\"\"x\" WHERE y = $1",
            ),
            (
                "SELECT 1 /* keep 'this' /* nested */ too */ -- and 'this'\n, 2",
                "SELECT $1 /* keep 'this' /* nested */ too */ -- and 'this'\n, $2",
            ),
            ("ALTER ROLE x PASSWORD 'hunter2'", "ALTER ROLE x PASSWORD $1"),
            ("SELECT interval '1 day', 'unterminated", "SELECT interval $1, $2"),
            (
                "SELECT arr[1:2], x::numeric(10,2) FROM t",
                "SELECT arr[$1:$2], x::numeric($3,$4) FROM t",
            ),
            ("SELECT $10, 1_000", "SELECT $10, $11"),
            ("SELECT 'ü€🦀' || naïve", "SELECT $1 || naïve"),
            ("SELECT foo$bar, a$1", "SELECT foo$bar, a$1"),
            ("SELECT 1 /* password=hunter2 */", "SELECT $1 /* password=*** */"),
        ];
        for (sql, want) in cases {
            assert_eq!(normalize_sql(sql), want, "{sql}");
        }
    }

    #[test]
    fn views_by_role() {
        assert_eq!(view_for(Role::Admin, QueryTextView::None), QueryTextView::Full);
        assert_eq!(view_for(Role::Operator, QueryTextView::None), QueryTextView::Full);
        assert_eq!(view_for(Role::Viewer, QueryTextView::None), QueryTextView::None);
        let q = Some("ALTER ROLE r PASSWORD 'hunter2' VALID UNTIL '2030-01-01'");
        assert_eq!(
            show_query(QueryTextView::Full, q).as_deref(),
            Some("ALTER ROLE r PASSWORD '***' VALID UNTIL '2030-01-01'")
        );
        assert_eq!(
            show_query(QueryTextView::Normalized, q).as_deref(),
            Some("ALTER ROLE r PASSWORD $1 VALID UNTIL $2")
        );
        assert_eq!(show_query(QueryTextView::None, q), None);
        assert_eq!(show_query(QueryTextView::Full, None), None);
    }

    #[test]
    fn urls_and_conninfo_strings_are_redacted() {
        let cases = [
            ("postgres://u:secret@h:5432/db", "postgres://u:***@h:5432/db"),
            ("postgres://h/db", "postgres://h/db"),
            (
                "postgres://u@h/db?password=secret",
                "postgres://u@h/db?password=***",
            ),
            (
                "postgresql://u@h/db?sslmode=require&password=secret&application_name=x",
                "postgresql://u@h/db?sslmode=require&password=***&application_name=x",
            ),
            (
                "postgres://u:p%40ss@h/db?PASSWORD=secret",
                "postgres://u:***@h/db?PASSWORD=***",
            ),
            (
                "host=h user=u password=secret dbname=d",
                "host=h user=u password=*** dbname=d",
            ),
            (
                "host=h password='se cr\\'et' dbname=d",
                "host=h password=*** dbname=d",
            ),
            ("host=h password = secret", "host=h password = ***"),
            ("password=", "password="),
            ("host=h dbname=d", "host=h dbname=d"),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
            assert!(!redact_url(url).contains("secret"), "{url}");
        }
    }

    #[test]
    fn peer_text_is_printable_and_bounded() {
        assert_eq!(
            peer_text("df: \u{1b}[31mred\u{1b}[0m\r\nline\ttwo", 100),
            "df: red line two"
        );
        assert_eq!(
            peer_text("a\u{1b}]0;evil title\u{7}b\u{1b}]8;;http://x\u{1b}\\c", 100),
            "abc"
        );
        assert_eq!(
            peer_text("x\u{0}\u{8}\u{7f}\u{9b}2Jy\u{202e}gnp.exe\u{200b}", 100),
            "xygnp.exe"
        );
        assert_eq!(
            peer_text("fake\n2026-01-01 ERROR forged", 100),
            "fake 2026-01-01 ERROR forged"
        );
        assert_eq!(peer_text("ünïcødé 日本 🦀", 100), "ünïcødé 日本 🦀");
        assert_eq!(peer_text(&"é".repeat(500), 300).chars().count(), 301);
        assert_eq!(peer_text("abc", 3), "abc");
        assert_eq!(peer_text("abcd", 3), "abc…");
        assert_eq!(peer_text("\u{1b}", 3), "");
        assert_eq!(peer_text("\u{1b}[", 3), "");
    }
}
