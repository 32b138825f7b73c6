//! Rows as `review` prints them: an aligned table for a terminal, JSON
//! lines, or CSV. Cells hold what records say, and records carry what
//! users typed (argv, comm), so the terminal form escapes control
//! characters (an escape sequence in an argv must not repaint the
//! reviewer's screen) and the CSV form defuses cells a spreadsheet would
//! run as a formula.

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// A titled grid; `group` names the column whose changes the aligned form
/// marks with a heading (sessions).
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<Value>>,
    pub group: Option<usize>,
}

/// A cell as text: `-` for nothing, lists joined with `,`.
pub fn cell_text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) if s.is_empty() => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "-".to_owned(),
        Value::Array(a) => a.iter().map(cell_text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Control characters as `\u{..}`, so a cell cannot move the cursor.
fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

impl Table {
    /// Columns padded to their widest cell, the header in capitals.
    pub fn aligned(&self) -> String {
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| r.iter().map(|c| printable(&cell_text(c))).collect())
            .collect();
        let mut width: Vec<usize> = self.columns.iter().map(|c| c.chars().count()).collect();
        for r in &cells {
            for (w, c) in width.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |out: &mut String, row: &[String]| {
            let last = row.len().saturating_sub(1);
            for (i, (c, w)) in row.iter().zip(&width).enumerate() {
                if i == last {
                    out.push_str(c);
                } else {
                    let pad = w.saturating_sub(c.chars().count()) + 2;
                    let _ = write!(out, "{c}{:pad$}", "");
                }
            }
            out.push('\n');
        };
        let mut out = String::new();
        let header: Vec<String> = self.columns.iter().map(|c| c.to_uppercase()).collect();
        line(&mut out, &header);
        let mut current: Option<&str> = None;
        for cells_row in &cells {
            if let Some(g) = self.group {
                let key = cells_row.get(g).map(String::as_str);
                if key != current {
                    let _ = writeln!(out, "== {} {}", self.columns[g], key.unwrap_or("-"));
                    current = key;
                }
            }
            line(&mut out, cells_row);
        }
        out
    }

    /// One JSON object per row, keyed by column.
    pub fn json_lines(&self) -> String {
        let mut out = String::new();
        for r in &self.rows {
            let obj: Map<String, Value> = self
                .columns
                .iter()
                .map(|c| (*c).to_owned())
                .zip(r.iter().cloned())
                .collect();
            out.push_str(&Value::Object(obj).to_string());
            out.push('\n');
        }
        out
    }

    /// RFC 4180: a header row, fields quoted when they need it.
    pub fn csv(&self) -> String {
        let mut out = String::new();
        let row = |out: &mut String, cells: Vec<String>| {
            let fields: Vec<String> = cells.iter().map(|c| csv_field(c)).collect();
            out.push_str(&fields.join(","));
            out.push_str("\r\n");
        };
        row(
            &mut out,
            self.columns.iter().map(|c| (*c).to_owned()).collect(),
        );
        for r in &self.rows {
            row(
                &mut out,
                r.iter()
                    .map(|c| match c {
                        Value::Null => String::new(),
                        other => cell_text(other),
                    })
                    .collect(),
            );
        }
        out
    }
}

/// A CSV field: a leading `=`, `+`, `-`, `@` (a formula to a spreadsheet)
/// gets a `'` before it, unless the cell is a plain number or a lone `-`;
/// quoted when it holds a comma, quote or line break.
fn csv_field(c: &str) -> String {
    let formula =
        c.starts_with(['=', '+', '-', '@', '\t', '\r']) && c != "-" && c.parse::<f64>().is_err();
    let c = if formula {
        format!("'{c}")
    } else {
        c.to_owned()
    };
    if c.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", c.replace('"', "\"\""))
    } else {
        c
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn t() -> Table {
        Table {
            columns: vec!["host", "argv", "n"],
            rows: vec![
                vec![json!("db-7"), json!("gdb -p 9"), json!(3)],
                vec![json!("web-10"), json!("=HYPERLINK(\"x\"),1"), Value::Null],
                vec![json!("h"), json!("evil\u{1b}[2J"), json!(["a", "b"])],
            ],
            group: None,
        }
    }

    #[test]
    fn aligned_pads_columns_and_escapes_controls() {
        let out = t().aligned();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "HOST    ARGV               N");
        assert_eq!(lines[1], "db-7    gdb -p 9           3");
        assert_eq!(lines[2], "web-10  =HYPERLINK(\"x\"),1  -");
        assert_eq!(lines[3], "h       evil\\u{1b}[2J      a,b");
        assert!(!out.contains('\u{1b}'));
    }

    #[test]
    fn groups_get_a_heading_when_they_change() {
        let mut t = t();
        t.group = Some(0);
        t.rows.insert(1, vec![json!("db-7"), json!("x"), json!(1)]);
        let out = t.aligned();
        assert_eq!(out.matches("== host db-7").count(), 1, "{out}");
        assert_eq!(out.matches("== host").count(), 3, "{out}");
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let out = t().csv();
        let lines: Vec<&str> = out.split("\r\n").collect();
        assert_eq!(lines[0], "host,argv,n");
        assert_eq!(lines[1], "db-7,gdb -p 9,3");
        assert_eq!(lines[2], "web-10,\"'=HYPERLINK(\"\"x\"\"),1\",");
        assert_eq!(csv_field("-"), "-");
        assert_eq!(csv_field("-5"), "-5");
        assert_eq!(csv_field("-rf"), "'-rf");
    }

    #[test]
    fn json_lines_key_cells_by_column() {
        let out = t().json_lines();
        let first: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
        assert_eq!(first, json!({"host": "db-7", "argv": "gdb -p 9", "n": 3}));
        assert_eq!(out.lines().count(), 3);
    }
}
