//! Go's `text/tabwriter` as etcdctl configures it for help text: minwidth 0, tabwidth 8,
//! padding 1, padded with tabs, cells aligned left.
//!
//! Text is split into lines and lines into tab-terminated cells; the last cell of a line
//! is not part of any column. A column block is a run of consecutive lines that all have
//! a cell in that column, and every cell of a block is padded to the block's widest cell
//! plus one, rounded up to a multiple of the tab width.

const TAB_WIDTH: usize = 8;
const PADDING: usize = 1;

/// Aligns `text` as Go's tabwriter does.
pub fn align(text: &str) -> String {
    let lines: Vec<Vec<&str>> = text.split('\n').map(|l| l.split('\t').collect()).collect();
    let mut out = String::with_capacity(text.len() * 2);
    let mut widths = Vec::new();
    format(&lines, &mut widths, 0, lines.len(), &mut out);
    out
}

fn cell_width(cell: &str) -> usize {
    cell.chars().count()
}

fn format(
    lines: &[Vec<&str>],
    widths: &mut Vec<usize>,
    mut line0: usize,
    line1: usize,
    out: &mut String,
) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        write_lines(lines, widths, line0, this, out);
        line0 = this;
        let mut width = 0;
        while this < line1 && column + 1 < lines[this].len() {
            width = width.max(cell_width(lines[this][column]) + PADDING);
            this += 1;
        }
        widths.push(width);
        format(lines, widths, line0, this, out);
        widths.pop();
        line0 = this;
    }
    write_lines(lines, widths, line0, line1, out);
}

fn write_lines(
    lines: &[Vec<&str>],
    widths: &[usize],
    line0: usize,
    line1: usize,
    out: &mut String,
) {
    for (i, line) in lines.iter().enumerate().take(line1).skip(line0) {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if j + 1 < line.len() && j < widths.len() {
                let cellw = widths[j].div_ceil(TAB_WIDTH) * TAB_WIDTH;
                let n = cellw.saturating_sub(cell_width(cell));
                for _ in 0..n.div_ceil(TAB_WIDTH) {
                    out.push('\t');
                }
            }
        }
        if i + 1 < lines.len() {
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_with_tabs_per_block() {
        let text = "OPTIONS:\n  -h, --help[=false]\thelp for put\n      --ignore-lease[=false]\tx\n\nNAME:\n\tput - y\n";
        let want = "OPTIONS:\n  -h, --help[=false]\t\thelp for put\n      --ignore-lease[=false]\tx\n\nNAME:\n\tput - y\n";
        assert_eq!(align(text), want);
    }
}
