//! Brace expansion exactly as Python's `braceexpand` does it, which webdataset and OpenCLIP use
//! for shard specs (`braceexpand` 0.1.7, trendels/braceexpand `src/braceexpand/__init__.py`
//! @0c7e186).
//!
//! The rules, all mirrored here:
//! - `{a,b}` alternatives, `{a,b{c,d}}` nesting, `{,x}` an empty alternative; several groups
//!   multiply (`{a,b}{1..2}` gives `a1 a2 b1 b2`, leftmost slowest);
//! - `{M..N}` and `{M..N..S}` integer ranges, either direction, negatives allowed; the step's sign
//!   is ignored and a zero step is 1;
//! - **padding**: if either endpoint (other than a bare `0` / `-0`) starts with `0` or `-0`, every
//!   number is zero-padded (`%0Wd`) to W = the length of the *longer endpoint string*, sign
//!   included: `{00..10}` → `00 … 10`, `{1..010}` → `001 … 010`, `{0..10}` → `0 … 10`;
//! - `{a..e}` letter ranges over `A..Za..z` (so `{Y..b}` is `Y Z a b`);
//! - a brace group that is neither a range nor holds a top-level comma stays literal, its inside
//!   still expanded: `{a}` → `{a}`, `{}` → `{}`, `{{a,b}}` → `{a} {b}`;
//! - `\x` stands for `x` (so `\{`, `\,` and `\\` are literal); the backslash is removed at the end;
//! - unbalanced braces are an error (bash would leave them; `braceexpand` raises).
//!
//! Deliberate limits: digits are ASCII only (Python's `\d` also takes other Unicode digits), and
//! numbers must fit an `i64`. An expansion may produce at most [`MAX_EXPANSIONS`] strings.

use std::iter::successors;

/// The most strings one pattern may expand to; a typo such as `{0..99999999}` fails fast instead
/// of allocating gigabytes.
pub const MAX_EXPANSIONS: usize = 10_000_000;

/// Expands `pattern`; the error is a human-readable reason.
pub fn braceexpand(pattern: &str) -> Result<Vec<String>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    Ok(parse_pattern(&chars)?.iter().map(|s| unescape(s)).collect())
}

/// A pattern is a product of literals and brace groups.
fn parse_pattern(p: &[char]) -> Result<Vec<String>, String> {
    let mut items: Vec<Vec<String>> = Vec::new();
    let (mut start, mut pos, mut depth) = (0usize, 0usize, 0i64);
    while pos < p.len() {
        match p[pos] {
            '\\' => {
                pos += 2;
                continue;
            }
            '{' => {
                if depth == 0 && pos > start {
                    items.push(vec![p[start..pos].iter().collect()]);
                    start = pos;
                }
                depth += 1;
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    let expr = &p[start + 1..pos];
                    match parse_expression(expr)? {
                        Some(alternatives) => items.push(alternatives),
                        None => {
                            items.push(vec!["{".to_owned()]);
                            items.push(parse_pattern(expr)?);
                            items.push(vec!["}".to_owned()]);
                        }
                    }
                    start = pos + 1;
                }
            }
            _ => {}
        }
        pos += 1;
    }
    if depth != 0 {
        return Err("unbalanced braces".to_owned());
    }
    if start < p.len() {
        items.push(vec![p[start..].iter().collect()]);
    }
    product(items)
}

/// A brace group's inside: a range, a comma sequence, or `None` (the group stays literal).
fn parse_expression(expr: &[char]) -> Result<Option<Vec<String>>, String> {
    let text: String = expr.iter().collect();
    if let Some(range) = int_range(&text)? {
        return Ok(Some(range));
    }
    if let Some(range) = char_range(&text) {
        return Ok(Some(range));
    }
    parse_sequence(expr)
}

/// `a,b{c,d},` split at top-level commas; `None` when there is no such comma.
fn parse_sequence(seq: &[char]) -> Result<Option<Vec<String>>, String> {
    let mut parts = Vec::new();
    let (mut start, mut pos, mut depth) = (0usize, 0usize, 0i64);
    while pos < seq.len() {
        match seq[pos] {
            '\\' => {
                pos += 2;
                continue;
            }
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&seq[start..pos]);
                start = pos + 1;
            }
            _ => {}
        }
        pos += 1;
    }
    if depth != 0 {
        return Err("unbalanced braces".to_owned());
    }
    if parts.is_empty() {
        return Ok(None);
    }
    parts.push(&seq[start..]);
    let mut out = Vec::new();
    for part in parts {
        out.extend(parse_pattern(part)?);
        check_count(out.len())?;
    }
    Ok(Some(out))
}

/// Splits `M..N` or `M..N..S` into its parts; the step may carry a `-`, which is ignored.
fn split_range(text: &str) -> Option<(&str, &str, Option<&str>)> {
    let mut parts = text.split("..");
    let (left, right, step) = (parts.next()?, parts.next()?, parts.next());
    if parts.next().is_some() {
        return None;
    }
    let step = match step {
        Some(s) => {
            let digits = s.strip_prefix('-').unwrap_or(s);
            is_digits(digits).then_some(digits)?;
            Some(digits)
        }
        None => None,
    };
    Some((left, right, step))
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_int(s: &str) -> bool {
    is_digits(s.strip_prefix('-').unwrap_or(s))
}

fn parse_step(step: Option<&str>) -> Result<u32, String> {
    match step {
        None => Ok(1),
        Some(s) => {
            let n: u32 = s
                .parse()
                .map_err(|_| format!("range step {s} is too large"))?;
            Ok(n.max(1))
        }
    }
}

fn int_range(text: &str) -> Result<Option<Vec<String>>, String> {
    let Some((left, right, step)) = split_range(text) else {
        return Ok(None);
    };
    if !is_int(left) || !is_int(right) {
        return Ok(None);
    }
    let parse = |s: &str| {
        s.parse::<i64>()
            .map_err(|_| format!("range bound {s} is too large"))
    };
    let (start, end, step) = (parse(left)?, parse(right)?, parse_step(step)?);
    let padded = [left, right]
        .iter()
        .any(|s| *s != "0" && *s != "-0" && (s.starts_with('0') || s.starts_with("-0")));
    let width = if padded {
        left.len().max(right.len())
    } else {
        0
    };
    let count = start.abs_diff(end) / u64::from(step) + 1;
    check_count(usize::try_from(count).unwrap_or(usize::MAX))?;
    let delta = if start <= end {
        i64::from(step)
    } else {
        -i64::from(step)
    };
    let within = move |i: &i64| if start <= end { *i <= end } else { *i >= end };
    let numbers = successors(Some(start), move |i| i.checked_add(delta)).take_while(within);
    Ok(Some(numbers.map(|i| format!("{i:0width$}")).collect()))
}

fn char_range(text: &str) -> Option<Vec<String>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let (left, right, step) = split_range(text)?;
    let index = |s: &str| match s.as_bytes() {
        [c] => ALPHABET.iter().position(|a| a == c),
        _ => None,
    };
    let (start, end) = (index(left)?, index(right)?);
    let step = parse_step(step).ok()? as usize;
    let letters: Vec<usize> = if start <= end {
        (start..=end).step_by(step).collect()
    } else {
        (end..=start).rev().step_by(step).collect()
    };
    Some(
        letters
            .into_iter()
            .map(|i| char::from(ALPHABET[i]).to_string())
            .collect(),
    )
}

fn check_count(n: usize) -> Result<(), String> {
    if n > MAX_EXPANSIONS {
        return Err(format!("expands to more than {MAX_EXPANSIONS} names"));
    }
    Ok(())
}

/// Every combination, leftmost item slowest (Python's `itertools.product`).
fn product(items: Vec<Vec<String>>) -> Result<Vec<String>, String> {
    let mut out = vec![String::new()];
    for alternatives in items {
        check_count(out.len().saturating_mul(alternatives.len()))?;
        out = out
            .iter()
            .flat_map(|prefix| alternatives.iter().map(move |alt| format!("{prefix}{alt}")))
            .collect();
    }
    Ok(out)
}

/// `\x` → `x`; a trailing lone backslash stays.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some(next) => out.push(next),
                None => out.push('\\'),
            },
            (c, false) => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(p: &str) -> Vec<String> {
        braceexpand(p).expect("pattern expands")
    }

    #[test]
    fn integer_ranges_and_padding() {
        assert_eq!(expand("{0..2}"), ["0", "1", "2"]);
        assert_eq!(expand("{4..1}"), ["4", "3", "2", "1"]);
        assert_eq!(expand("{2..-1}"), ["2", "1", "0", "-1"]);
        // `00` starts with 0 and is not a bare 0: width = max(len("00"), len("10")) = 2.
        let two: Vec<String> = (0..=10).map(|i| format!("{i:02}")).collect();
        assert_eq!(expand("{00..10}"), two);
        // A bare `0` does not ask for padding (braceexpand 0.1.2 changelog).
        assert_eq!(expand("{0..10}").last().map(String::as_str), Some("10"));
        assert_eq!(expand("{0..10}")[0], "0");
        // The padded endpoint may be the right one; width 3 from "010".
        assert_eq!(expand("{9..010}"), ["009", "010"]);
        assert_eq!(expand("{07..10}"), ["07", "08", "09", "10"]);
        // Width counts the sign: "-05" is 3 wide.
        assert_eq!(expand("{-05..-03}"), ["-05", "-04", "-03"]);
        assert_eq!(
            expand("{00000..00002}.tar"),
            ["00000.tar", "00001.tar", "00002.tar"]
        );
    }

    #[test]
    fn steps_and_letters() {
        assert_eq!(expand("{1..10..3}"), ["1", "4", "7", "10"]);
        assert_eq!(expand("{1..6..-2}"), ["1", "3", "5"]);
        assert_eq!(expand("{1..2..0}"), ["1", "2"]);
        assert_eq!(expand("{a..g..2}"), ["a", "c", "e", "g"]);
        assert_eq!(expand("{c..a}"), ["c", "b", "a"]);
        assert_eq!(expand("{Y..b}"), ["Y", "Z", "a", "b"]);
    }

    #[test]
    fn alternatives_nesting_and_products() {
        assert_eq!(expand("{a,b}{1..2}"), ["a1", "a2", "b1", "b2"]);
        assert_eq!(expand("x{a,b{c,d}}y"), ["xay", "xbcy", "xbdy"]);
        assert_eq!(
            expand("index.html{,.bak}"),
            ["index.html", "index.html.bak"]
        );
        assert_eq!(
            expand("python{2.{5..7},3.{2,3}}"),
            [
                "python2.5",
                "python2.6",
                "python2.7",
                "python3.2",
                "python3.3"
            ]
        );
        assert_eq!(expand("s3://b/{train,val}/{0..1}.tar").len(), 4);
    }

    #[test]
    fn literal_groups_and_escapes() {
        assert_eq!(expand("{a}"), ["{a}"]);
        assert_eq!(expand("{}"), ["{}"]);
        assert_eq!(expand("{{a,b}}"), ["{a}", "{b}"]);
        assert_eq!(expand(r"\{0..2\}"), ["{0..2}"]);
        assert_eq!(expand(r"{1\{2,3}"), ["1{2", "3"]);
        assert_eq!(expand(r"{a\,b,c}"), ["a,b", "c"]);
        assert_eq!(expand(r"a\\b"), [r"a\b"]);
        assert_eq!(expand("plain/path.tar"), ["plain/path.tar"]);
    }

    #[test]
    fn errors() {
        assert!(braceexpand("{1{2,3}").is_err());
        assert!(braceexpand("a{b").is_err());
        assert!(braceexpand("{0..99999999}").is_err_and(|e| e.contains("more than")));
        assert!(braceexpand("{0..9999}{0..9999}").is_err());
    }
}
