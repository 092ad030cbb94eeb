//! Finds the line and column of a field path (`routes[2].upstream`) in YAML text, so that errors found
//! after parsing (an unknown upstream, a bad regex) point at the place to fix.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

enum Frame {
    /// A mapping: the path of the mapping, and the pending key once read.
    Map(String, Option<String>),
    /// A sequence: the path of the sequence and the index of the next item.
    Seq(String, usize),
}

struct Finder<'a> {
    target: &'a str,
    stack: Vec<Frame>,
    found: Option<(usize, usize)>,
}

impl Finder<'_> {
    /// The path of the node that starts now, advancing the parent's state. None for mapping keys.
    fn node_path(&mut self, mark: Marker, is_scalar: Option<&str>) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq(path, i)) => {
                let p = format!("{path}[{i}]");
                *i += 1;
                Some(p)
            }
            Some(Frame::Map(path, key)) => match key.take() {
                Some(k) => Some(if path.is_empty() {
                    k
                } else {
                    format!("{path}.{k}")
                }),
                None => {
                    // This node is a key: remember it, and locate the field by its key.
                    let k = is_scalar.unwrap_or("?").to_owned();
                    let full = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    if self.found.is_none() && full == self.target {
                        self.found = Some((mark.line(), mark.col() + 1));
                    }
                    *key = Some(k);
                    None
                }
            },
        }
    }

    fn check(&mut self, path: &str, mark: Marker) {
        if self.found.is_none() && path == self.target {
            self.found = Some((mark.line(), mark.col() + 1));
        }
    }
}

impl MarkedEventReceiver for Finder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(value, ..) => {
                if let Some(p) = self.node_path(mark, Some(&value)) {
                    self.check(&p, mark);
                }
            }
            Event::Alias(_) => {
                if let Some(p) = self.node_path(mark, None) {
                    self.check(&p, mark);
                }
            }
            Event::SequenceStart(..) => {
                let p = self.node_path(mark, None).unwrap_or_default();
                self.check(&p, mark);
                self.stack.push(Frame::Seq(p, 0));
            }
            Event::MappingStart(..) => {
                let p = self.node_path(mark, None).unwrap_or_default();
                self.check(&p, mark);
                self.stack.push(Frame::Map(p, None));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

/// Line and column (both 1-based) where `path` is written in `text`, if it is.
pub fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    let mut finder = Finder {
        target: path,
        stack: Vec::new(),
        found: None,
    };
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut finder, false).ok()?;
    finder.found
}

#[cfg(test)]
mod tests {
    use super::locate;

    const DOC: &str = "listeners:\n  - name: a\n    address: x\nroutes:\n  - name: r1\n    upstream: u\n  - name: r2\n    match:\n      path: {prefix: /p}\n    upstream: missing\n";

    #[test]
    fn finds_nested_fields() {
        assert_eq!(locate(DOC, "routes[1].upstream"), Some((10, 5)));
        assert_eq!(locate(DOC, "routes[0].upstream"), Some((6, 5)));
        assert_eq!(locate(DOC, "routes[1].match.path.prefix"), Some((9, 14)));
        assert_eq!(locate(DOC, "listeners[0].address"), Some((3, 5)));
        assert_eq!(locate(DOC, "routes[5]"), None);
    }
}
