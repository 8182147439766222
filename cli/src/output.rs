//! Printing answers: JSON (pretty on a terminal, compact in a pipe), JSON
//! lines, a table, CSV or YAML. Data goes to stdout, messages to stderr.

use std::io::{IsTerminal, Write};

use serde_json::Value;

/// An output format (`--output`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON document.
    Json,
    /// One compact JSON document per line (an array's items one by one).
    Jsonl,
    /// Columns aligned with spaces.
    Table,
    /// RFC 4180 CSV with a header line.
    Csv,
    /// YAML.
    Yaml,
}

impl Format {
    /// The names `--output` accepts.
    pub const NAMES: [&'static str; 5] = ["json", "jsonl", "table", "csv", "yaml"];

    /// Parses one of [`Format::NAMES`].
    pub fn parse(name: &str) -> Option<Format> {
        Some(match name {
            "json" => Format::Json,
            "jsonl" => Format::Jsonl,
            "table" => Format::Table,
            "csv" => Format::Csv,
            "yaml" => Format::Yaml,
            _ => return None,
        })
    }
}

/// Prints `value` to stdout in `format`.
pub fn print(value: &Value, format: Format) -> std::io::Result<()> {
    let stdout = std::io::stdout();
    let pretty = stdout.is_terminal();
    let mut out = stdout.lock();
    out.write_all(render(value, format, pretty).as_bytes())?;
    out.flush()
}

/// `value` in `format`; JSON is indented when `pretty`.
pub fn render(value: &Value, format: Format, pretty: bool) -> String {
    match format {
        Format::Json if pretty => format!("{:#}\n", value),
        Format::Json => format!("{value}\n"),
        Format::Jsonl => match value {
            Value::Array(items) => items.iter().map(|i| format!("{i}\n")).collect(),
            other => format!("{other}\n"),
        },
        Format::Table => table(value),
        Format::Csv => csv(value),
        Format::Yaml => {
            let mut s = String::new();
            yaml(value, 0, &mut s, false);
            if !s.ends_with('\n') {
                s.push('\n');
            }
            s
        }
    }
}

/// The rows and columns of a value: an array's items (objects give their
/// members as columns, in order of first appearance), an object as one row,
/// a scalar as one cell.
fn rows(value: &Value) -> (Vec<String>, Vec<Vec<String>>) {
    let items: Vec<&Value> = match value {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    let mut columns: Vec<String> = Vec::new();
    for item in &items {
        if let Value::Object(m) = item {
            for k in m.keys() {
                if !columns.contains(k) {
                    columns.push(k.clone());
                }
            }
        }
    }
    if columns.is_empty() {
        let cells = items.iter().map(|v| vec![cell(v)]).collect();
        return (vec!["Value".into()], cells);
    }
    let cells = items
        .iter()
        .map(|item| {
            columns
                .iter()
                .map(|c| item.get(c).map(cell).unwrap_or_default())
                .collect()
        })
        .collect();
    (columns, cells)
}

/// A cell: strings as they are, null empty, other values as compact JSON.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn table(value: &Value) -> String {
    if value.as_array().is_some_and(Vec::is_empty) {
        return String::new();
    }
    let (columns, cells) = rows(value);
    let width = |i: usize| {
        cells
            .iter()
            .map(|r| r[i].chars().count())
            .chain([columns[i].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..columns.len()).map(width).collect();
    let line = |row: &[String]| {
        let parts: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| {
                let c = c.replace(['\n', '\r', '\t'], " ");
                format!("{c:<w$}")
            })
            .collect();
        format!("{}\n", parts.join("  ").trim_end())
    };
    let mut s = line(&columns);
    for row in &cells {
        s.push_str(&line(row));
    }
    s
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn csv(value: &Value) -> String {
    if value.as_array().is_some_and(Vec::is_empty) {
        return String::new();
    }
    let (columns, cells) = rows(value);
    let line = |row: &[String]| {
        let fields: Vec<String> = row.iter().map(|c| csv_field(c)).collect();
        format!("{}\r\n", fields.join(","))
    };
    let mut s = line(&columns);
    for row in &cells {
        s.push_str(&line(row));
    }
    s
}

/// A YAML scalar: strings double-quoted (JSON escaping is valid YAML), the
/// rest as JSON writes them.
fn yaml_scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

fn yaml(v: &Value, indent: usize, out: &mut String, in_list: bool) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (i, (k, val)) in m.iter().enumerate() {
                // The first member of a list item sits after its "- ".
                if !(in_list && i == 0) {
                    out.push_str(&pad);
                }
                out.push_str(&yaml_key(k));
                out.push(':');
                match val {
                    Value::Object(o) if !o.is_empty() => {
                        out.push('\n');
                        yaml(val, indent + 2, out, false);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push('\n');
                        yaml(val, indent, out, false);
                    }
                    _ => {
                        out.push(' ');
                        out.push_str(&empty_or_scalar(val));
                        out.push('\n');
                    }
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for item in a {
                out.push_str(&pad);
                out.push_str("- ");
                match item {
                    Value::Object(o) if !o.is_empty() => yaml(item, indent + 2, out, true),
                    Value::Array(x) if !x.is_empty() => {
                        out.push('\n');
                        yaml(item, indent + 2, out, false);
                    }
                    _ => {
                        out.push_str(&empty_or_scalar(item));
                        out.push('\n');
                    }
                }
            }
        }
        other => {
            out.push_str(&pad);
            out.push_str(&empty_or_scalar(other));
            out.push('\n');
        }
    }
}

/// A mapping key: plain when it is a simple name, else double-quoted.
fn yaml_key(k: &str) -> String {
    let plain = k
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !matches!(
            k.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
        );
    if plain {
        k.to_owned()
    } else {
        Value::String(k.to_owned()).to_string()
    }
}

fn empty_or_scalar(v: &Value) -> String {
    match v {
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        other => yaml_scalar(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn formats_render_an_array_of_objects() {
        let v = json!([{"Id": 1, "Name": "a,b"}, {"Id": 2, "Name": "c", "Tags": ["x"]}]);
        assert_eq!(
            render(&v, Format::Jsonl, false),
            "{\"Id\":1,\"Name\":\"a,b\"}\n{\"Id\":2,\"Name\":\"c\",\"Tags\":[\"x\"]}\n"
        );
        assert_eq!(
            render(&v, Format::Csv, false),
            "Id,Name,Tags\r\n1,\"a,b\",\r\n2,c,\"[\"\"x\"\"]\"\r\n"
        );
        assert_eq!(
            render(&v, Format::Table, false),
            "Id  Name  Tags\n1   a,b\n2   c     [\"x\"]\n"
        );
        assert_eq!(
            render(&v, Format::Yaml, false),
            "- Id: 1\n  Name: \"a,b\"\n- Id: 2\n  Name: \"c\"\n  Tags:\n  - \"x\"\n"
        );
        assert_eq!(
            render(&json!({"a": {}, "no": 1, "x y": null}), Format::Yaml, false),
            "a: {}\n\"no\": 1\n\"x y\": null\n"
        );
        assert_eq!(render(&json!(5), Format::Table, false), "Value\n5\n");
        assert_eq!(render(&json!([]), Format::Table, false), "");
        assert_eq!(render(&json!([]), Format::Csv, false), "");
    }
}
