//! Printing results: aligned columns for people, or the same rows as JSON for scripts,
//! so every command offers both without formatting code of its own.

use serde_json::Value;

use super::Output;

/// Rows with named columns, printable as a table or as a JSON array of objects.
#[derive(Debug)]
pub struct Rows {
    columns: Vec<&'static str>,
    rows: Vec<Vec<Value>>,
}

impl Rows {
    /// An empty result with these column names (upper-cased in tables, as-is in JSON).
    pub fn new(columns: &[&'static str]) -> Rows {
        Rows {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; its values follow the column order.
    pub fn push(&mut self, row: Vec<Value>) {
        self.rows.push(row);
    }

    /// How many rows were added.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no row was added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows as JSON objects keyed by column name.
    pub fn to_json(&self) -> Value {
        Value::Array(
            self.rows
                .iter()
                .map(|row| {
                    let object = self
                        .columns
                        .iter()
                        .zip(row)
                        .map(|(name, value)| (name.to_string(), value.clone()))
                        .collect();
                    Value::Object(object)
                })
                .collect(),
        )
    }

    /// The rows as aligned text, one line per row after a header line.
    pub fn to_table(&self) -> String {
        let header: Vec<String> = self.columns.iter().map(|c| c.to_uppercase()).collect();
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|row| row.iter().map(cell).collect())
            .collect();
        let mut widths: Vec<usize> = header.iter().map(String::len).collect();
        for row in &cells {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&cells) {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:width$}"))
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
        out
    }

    /// Prints in the chosen format.
    pub fn print(&self, output: Output) {
        match output {
            Output::Table => print!("{}", self.to_table()),
            Output::Json => println!("{}", self.to_json()),
        }
    }
}

/// A table cell: strings bare, null as `-`, everything else as JSON.
fn cell(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    }
}

/// Prints a message about what a command did: as `{"result": ...}` for JSON output so
/// scripts always get JSON, else as plain text.
pub fn print_done(output: Output, message: &str) {
    match output {
        Output::Table => println!("{message}"),
        Output::Json => println!("{}", serde_json::json!({ "result": message })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_and_json_keys_by_column() {
        let mut rows = Rows::new(&["topic", "partitions"]);
        rows.push(vec![json!("orders"), json!(3)]);
        rows.push(vec![json!("a"), Value::Null]);
        assert_eq!(
            rows.to_table(),
            "TOPIC   PARTITIONS\norders  3\na       -\n"
        );
        assert_eq!(rows.to_json()[0]["partitions"], json!(3));
    }
}
