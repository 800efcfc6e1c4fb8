//! OData's `if` on a JSON batch request: the condition under which a request that depends on
//! others runs. Without one, a dependent runs only when everything it depends on succeeded;
//! with one, it runs when the condition holds, whatever the outcomes it names.
//!
//! The grammar understood is the part of OData's URL expressions that asks about outcomes:
//! `$<id>/$succeeded`, `true`, `false`, `not`, `and`, `or` and parentheses, with OData's
//! precedence (`not` binds tightest, then `and`, then `or`). Conditions on response bodies
//! (`$1/Building eq 'B1'`) are not evaluated: the request is answered `424` and not run, as
//! the specification asks of a service that does not support a condition.
//!
//! Written by hand: the language is a dozen tokens, and no crate parses OData expressions. The
//! parser is bounded: the text by [`MAX_LEN`], the nesting by [`MAX_DEPTH`].

use std::fmt;

/// Longest condition read, in bytes.
pub(crate) const MAX_LEN: usize = 4096;
/// Deepest nesting of parentheses and `not`.
pub(crate) const MAX_DEPTH: usize = 32;

/// A parsed condition, naming requests by their ids.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Condition<T = String> {
    Literal(bool),
    Succeeded(T),
    Not(Box<Condition<T>>),
    And(Box<Condition<T>>, Box<Condition<T>>),
    Or(Box<Condition<T>>, Box<Condition<T>>),
}

/// Why a condition cannot be evaluated.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Unsupported(pub(crate) String);

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<T> Condition<T> {
    /// Every request the condition names, in order of appearance.
    pub(crate) fn names(&self, out: &mut Vec<T>)
    where
        T: Clone,
    {
        match self {
            Condition::Literal(_) => {}
            Condition::Succeeded(id) => out.push(id.clone()),
            Condition::Not(c) => c.names(out),
            Condition::And(a, b) | Condition::Or(a, b) => {
                a.names(out);
                b.names(out);
            }
        }
    }

    /// The same condition with each name mapped by `f`.
    pub(crate) fn map<U>(self, f: &mut impl FnMut(T) -> U) -> Condition<U> {
        match self {
            Condition::Literal(b) => Condition::Literal(b),
            Condition::Succeeded(id) => Condition::Succeeded(f(id)),
            Condition::Not(c) => Condition::Not(Box::new(c.map(f))),
            Condition::And(a, b) => Condition::And(Box::new(a.map(f)), Box::new(b.map(f))),
            Condition::Or(a, b) => Condition::Or(Box::new(a.map(f)), Box::new(b.map(f))),
        }
    }

    /// Evaluates the condition, `succeeded` telling each named request's outcome.
    pub(crate) fn holds(&self, succeeded: &impl Fn(&T) -> bool) -> bool {
        match self {
            Condition::Literal(b) => *b,
            Condition::Succeeded(id) => succeeded(id),
            Condition::Not(c) => !c.holds(succeeded),
            Condition::And(a, b) => a.holds(succeeded) && b.holds(succeeded),
            Condition::Or(a, b) => a.holds(succeeded) || b.holds(succeeded),
        }
    }
}

#[derive(Debug, PartialEq)]
enum Token<'a> {
    Open,
    Close,
    Word(&'a str),
}

fn tokens(text: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        let Some(c) = rest.chars().next() else {
            return out;
        };
        match c {
            '(' => {
                out.push(Token::Open);
                rest = &rest[1..];
            }
            ')' => {
                out.push(Token::Close);
                rest = &rest[1..];
            }
            _ => {
                let end = rest
                    .find(|c: char| c.is_whitespace() || c == '(' || c == ')')
                    .unwrap_or(rest.len());
                out.push(Token::Word(&rest[..end]));
                rest = &rest[end..];
            }
        }
    }
}

struct Parser<'a> {
    tokens: Vec<Token<'a>>,
    at: usize,
    depth: usize,
}

/// Parses `text`; what this server cannot evaluate is an [`Unsupported`] that says why.
pub(crate) fn parse(text: &str) -> Result<Condition, Unsupported> {
    if text.len() > MAX_LEN {
        return Err(Unsupported(format!(
            "the condition is {} bytes long; at most {MAX_LEN} are read",
            text.len()
        )));
    }
    let mut p = Parser {
        tokens: tokens(text),
        at: 0,
        depth: 0,
    };
    let c = p.or()?;
    match p.tokens.get(p.at) {
        None => Ok(c),
        Some(t) => Err(p.unexpected(t)),
    }
}

impl<'a> Parser<'a> {
    fn peek_word(&self, word: &str) -> bool {
        matches!(self.tokens.get(self.at), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
    }

    fn unexpected(&self, t: &Token<'_>) -> Unsupported {
        let what = match t {
            Token::Open => "`(`".to_owned(),
            Token::Close => "`)`".to_owned(),
            Token::Word(w) => format!("`{w}`"),
        };
        Unsupported(format!(
            "{what} where it cannot stand; this server evaluates conditions made of \
             `$<id>/$succeeded`, `true`, `false`, `not`, `and`, `or` and parentheses"
        ))
    }

    fn or(&mut self) -> Result<Condition, Unsupported> {
        let mut left = self.and()?;
        while self.peek_word("or") {
            self.at += 1;
            left = Condition::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Condition, Unsupported> {
        let mut left = self.unary()?;
        while self.peek_word("and") {
            self.at += 1;
            left = Condition::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Condition, Unsupported> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Unsupported(format!(
                "the condition nests deeper than {MAX_DEPTH} levels"
            )));
        }
        let c = self.unary_inner();
        self.depth -= 1;
        c
    }

    fn unary_inner(&mut self) -> Result<Condition, Unsupported> {
        if self.peek_word("not") {
            self.at += 1;
            return Ok(Condition::Not(Box::new(self.unary()?)));
        }
        match self.tokens.get(self.at) {
            Some(Token::Open) => {
                self.at += 1;
                let c = self.or()?;
                match self.tokens.get(self.at) {
                    Some(Token::Close) => {
                        self.at += 1;
                        Ok(c)
                    }
                    Some(t) => Err(self.unexpected(t)),
                    None => Err(Unsupported("a `(` is never closed".to_owned())),
                }
            }
            Some(Token::Word(w)) => {
                let w = *w;
                self.at += 1;
                atom(w)
            }
            Some(t) => Err(self.unexpected(t)),
            None => Err(Unsupported(
                "the condition ends where a term was due".to_owned(),
            )),
        }
    }
}

fn atom(word: &str) -> Result<Condition, Unsupported> {
    if word.eq_ignore_ascii_case("true") {
        return Ok(Condition::Literal(true));
    }
    if word.eq_ignore_ascii_case("false") {
        return Ok(Condition::Literal(false));
    }
    let outcome = word
        .strip_prefix('$')
        .and_then(|rest| rest.strip_suffix("/$succeeded"))
        .filter(|id| !id.is_empty() && !id.contains('/'));
    match outcome {
        Some(id) => Ok(Condition::Succeeded(id.to_owned())),
        None if word.starts_with('$') => Err(Unsupported(format!(
            "`{word}` refers to a response body; this server evaluates only whether requests \
             succeeded (`$<id>/$succeeded`)"
        ))),
        None => Err(Unsupported(format!(
            "`{word}` is not a term this server evaluates; conditions are made of \
             `$<id>/$succeeded`, `true`, `false`, `not`, `and`, `or` and parentheses"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(id: &str) -> Condition {
        Condition::Succeeded(id.to_owned())
    }

    #[test]
    fn precedence_is_odata_s() {
        let c = parse("not $1/$succeeded or $2/$succeeded and $3/$succeeded").unwrap();
        let want = Condition::Or(
            Box::new(Condition::Not(Box::new(ok("1")))),
            Box::new(Condition::And(Box::new(ok("2")), Box::new(ok("3")))),
        );
        assert_eq!(c, want);
        let c = parse("NOT ($1/$succeeded OR false)").unwrap();
        assert!(c.holds(&|id: &String| id != "1"));
        assert!(!c.holds(&|_: &String| true));
    }

    #[test]
    fn what_cannot_be_evaluated_says_why() {
        for (text, words) in [
            ("$1/Building eq 'B1'", "response body"),
            ("$1/$succeeded and", "ends where a term"),
            ("($1/$succeeded", "never closed"),
            ("$1/$succeeded )", "`)`"),
            ("1 eq 1", "not a term"),
            ("", "ends where a term"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.0.contains(words), "{text}: {err}");
        }
    }

    #[test]
    fn nesting_and_length_are_bounded() {
        let deep = format!("{}true{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(parse(&deep).is_err());
        let nots = "not ".repeat(1000) + "true";
        assert!(parse(&nots).unwrap_err().0.contains("deeper"));
        let long = "true or ".repeat(1000) + "true";
        assert!(parse(&long).unwrap_err().0.contains("bytes long"));
        assert!(parse(&"(".repeat(MAX_DEPTH - 1)).is_err());
    }

    #[test]
    fn names_are_listed_in_order() {
        let mut names = Vec::new();
        parse("$a/$succeeded or not $b/$succeeded")
            .unwrap()
            .names(&mut names);
        assert_eq!(names, ["a", "b"]);
    }
}
