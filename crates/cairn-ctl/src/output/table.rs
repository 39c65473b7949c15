//! The tables of `-w table`, drawn as olekukonko/tablewriter draws them for etcdctl:
//! `+`/`-`/`|` borders, upper-case headers centred, cells aligned right, one space of
//! margin on each side.

/// Renders a table with the given headers and rows.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(width(cell));
            }
        }
    }
    let line = {
        let mut l = String::from("+");
        for w in &widths {
            l.push_str(&"-".repeat(w + 2));
            l.push('+');
        }
        l.push('\n');
        l
    };
    let mut out = line.clone();
    out.push('|');
    for (h, w) in headers.iter().zip(&widths) {
        let gap = w - width(h);
        let left = gap / 2;
        out.push_str(&format!(
            " {}{}{} |",
            " ".repeat(left),
            h,
            " ".repeat(gap - left)
        ));
    }
    out.push('\n');
    out.push_str(&line);
    for row in rows {
        out.push('|');
        for (cell, w) in row.iter().zip(&widths) {
            out.push_str(&format!(" {}{} |", " ".repeat(w - width(cell)), cell));
        }
        out.push('\n');
    }
    out.push_str(&line);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_like_tablewriter() {
        let got = render(
            &["ENDPOINT", "HASH"],
            &[vec!["127.0.0.1:23791".into(), "3161793913".into()]],
        );
        let want = "+-----------------+------------+\n|    ENDPOINT     |    HASH    |\n+-----------------+------------+\n| 127.0.0.1:23791 | 3161793913 |\n+-----------------+------------+\n";
        assert_eq!(got, want);
    }
}
