//! The Prometheus text exposition format, as far as `mdp top` needs it:
//! sample lines become [`Sample`]s, comments are skipped.
//!
//! A line is `name{label="value",...} value [timestamp]`, the label set
//! optional, blanks between tokens allowed, a trailing comma in the label
//! set allowed. Label values undo the format's three escapes (`\\`, `\"`,
//! `\n`); any other escape is an error, as is a line that is not a sample
//! nor a comment. Lines starting `#` (`# HELP`, `# TYPE`, `# UNIT`) are
//! skipped, and OpenMetrics' `# EOF` ends the text. An OpenMetrics
//! exemplar after the value (` # {...} 1.0`) is ignored. Timestamps are
//! read and dropped: the scraper's clock times the scrapes.
//!
//! The parser keeps a sample's name as written (a counter's `_total`, a
//! histogram's `_bucket`, `_sum` and `_count` included): it knows nothing
//! of metric families, which [`Snapshot`](super::Snapshot) puts together.

use std::fmt;

/// One sample line: a name, its labels in the order written, a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's name as written, e.g. `mdp_requests_total`.
    pub name: String,
    /// Label names and their unescaped values, in the order written.
    pub labels: Vec<(String, String)>,
    /// The value (`+Inf`, `-Inf` and `NaN` included).
    pub value: f64,
}

impl Sample {
    /// The value of the label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// A line that is neither a sample nor a comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The line's number, from 1.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "metrics line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for ParseError {}

/// Every sample of an exposition text, in the order written; the first
/// malformed line is an error.
pub fn parse(text: &str) -> Result<Vec<Sample>, ParseError> {
    let mut samples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line == "# EOF" {
            break;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let sample = Line { rest: line }.sample().map_err(|reason| ParseError { line: i + 1, reason })?;
        samples.push(sample);
    }
    Ok(samples)
}

/// What is left of one line to read.
struct Line<'a> {
    rest: &'a str,
}

impl Line<'_> {
    fn sample(mut self) -> Result<Sample, String> {
        let name = self.name(|c| c.is_ascii_alphabetic() || c == '_' || c == ':', "a metric name")?;
        self.skip_blanks();
        let mut labels = Vec::new();
        if self.eat('{') {
            loop {
                self.skip_blanks();
                if self.eat('}') {
                    break;
                }
                let label = self.name(|c| c.is_ascii_alphabetic() || c == '_', "a label name")?;
                self.skip_blanks();
                if !self.eat('=') {
                    return Err(format!("expected `=` after label {label}"));
                }
                self.skip_blanks();
                let value = self.quoted()?;
                labels.push((label, value));
                self.skip_blanks();
                if self.eat('}') {
                    break;
                }
                if !self.eat(',') {
                    return Err("expected `,` or `}` after a label value".to_owned());
                }
            }
        }
        let mut tokens = self.rest.split_whitespace();
        let value = tokens.next().ok_or("no value")?;
        let value: f64 = value.parse().map_err(|_| format!("{value:?} is not a number"))?;
        match tokens.next() {
            // No timestamp, or an exemplar (its own labels and value).
            None => {}
            Some(t) if t.starts_with('#') => return Ok(Sample { name, labels, value }),
            Some(t) => {
                t.parse::<f64>().map_err(|_| format!("{t:?} is not a timestamp"))?;
                match tokens.next() {
                    None => {}
                    Some(t) if t.starts_with('#') => {}
                    Some(t) => return Err(format!("unexpected {t:?} after the timestamp")),
                }
            }
        }
        Ok(Sample { name, labels, value })
    }

    /// A name: a first character `first` allows, then those and digits.
    fn name(&mut self, first: impl Fn(char) -> bool, what: &str) -> Result<String, String> {
        let mut chars = self.rest.char_indices();
        match chars.next() {
            Some((_, c)) if first(c) => {}
            _ => return Err(format!("expected {what}")),
        }
        let end = chars.find(|&(_, c)| !(first(c) || c.is_ascii_digit())).map_or(self.rest.len(), |(i, _)| i);
        let (name, rest) = self.rest.split_at(end);
        self.rest = rest;
        Ok(name.to_owned())
    }

    /// A double-quoted label value, unescaped.
    fn quoted(&mut self) -> Result<String, String> {
        if !self.eat('"') {
            return Err("expected `\"` to open a label value".to_owned());
        }
        let mut value = String::new();
        let mut chars = self.rest.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.rest = &self.rest[i + 1..];
                    return Ok(value);
                }
                '\\' => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => return Err(format!("unknown escape `\\{other}` in a label value")),
                    None => break,
                },
                c => value.push(c),
            }
        }
        Err("a label value is not closed".to_owned())
    }

    fn eat(&mut self, c: char) -> bool {
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn skip_blanks(&mut self) {
        self.rest = self.rest.trim_start_matches([' ', '\t']);
    }
}
