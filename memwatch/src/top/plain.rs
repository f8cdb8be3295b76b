//! Non-interactive output: one plain table, or JSON, for scripts.
use super::{App, state::COLUMNS, view::table::cells};

/// The table as text, columns aligned, one container per line.
pub fn table(app: &App) -> String {
    let rows: Vec<Vec<String>> = app.rows().map(cells).collect();
    let mut widths: Vec<usize> = COLUMNS.iter().map(|c| c.title().chars().count()).collect();
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<String>| {
        let parts: Vec<String> =
            cells.iter().zip(&widths).enumerate().map(|(i, (c, w))| if i == 0 { format!("{c:<w$}") } else { format!("{c:>w$}") }).collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(COLUMNS.iter().map(|c| c.title().to_string()).collect());
    for r in rows {
        line(r);
    }
    out
}

/// The same data as JSON: one object per container, in table order.
pub fn json(app: &App) -> serde_json::Value {
    serde_json::json!({
        "taken_at": app.data.taken_at(),
        "containers": app.rows().map(|r| serde_json::json!({
            "name": r.name,
            "container": r.container,
            "headroom_pct": r.headroom_pct,
            "faults_per_second": r.faults_per_s,
            "mmap_bytes_per_second": r.mmap_bytes_per_s,
            "pressure_pct": r.pressure_pct,
            "recent_oom": r.recent_oom,
            "warned": r.warned,
        })).collect::<Vec<_>>(),
    })
}
