//! The container table.
use ratatui::{
    Frame,
    layout::{Constraint, Rect},
    style::Style,
    widgets::{Cell, Row, Table, TableState},
};

use super::{mb_rate, rate, sparkline, style};
use crate::top::{
    App,
    data::Row as DataRow,
    human, human_secs,
    state::{COLUMNS, Column},
};

pub fn cells(r: &DataRow) -> Vec<String> {
    let c = &r.container;
    COLUMNS
        .iter()
        .map(|col| match col {
            Column::Name => r.name.clone(),
            Column::Procs => c.processes.to_string(),
            Column::Vsz => human(c.vsz_bytes as f64),
            Column::Rss => human(c.rss_bytes as f64),
            Column::WorkingSet => human(c.working_set_bytes as f64),
            Column::Limit => human(c.limit_bytes as f64),
            Column::Headroom => format!("{:.1}%", r.headroom_pct),
            Column::Trend => match c.time_to_oom_seconds {
                Some(s) => format!("OOM {}", human_secs(s)),
                None => sparkline(&r.history, 8),
            },
            Column::Faults => rate(r.faults_per_s),
            Column::Mmap => mb_rate(r.mmap_bytes_per_s),
            Column::Pressure => r.pressure_pct.map(|p| format!("{p:.1}%")).unwrap_or_else(|| "-".into()),
            Column::Ooms => match (c.oom_kills, r.recent_oom) {
                (Some(n), true) => format!("{n}!"),
                (Some(n), false) => n.to_string(),
                (None, _) => "-".into(),
            },
        })
        .collect()
}

pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    let state = &app.view;
    let header = Row::new(
        COLUMNS.iter().map(|c| Cell::from(c.title()).style(if *c == state.sort { style::sorted_header() } else { style::bold() })),
    );
    let rows = app.rows().map(|r| {
        let look = if r.recent_oom {
            style::oomed()
        } else if r.at_risk || r.warned {
            style::danger()
        } else {
            Style::default()
        };
        let mut cells = cells(r);
        // Under a memory warning: marked after the name (the plain table for scripts is not).
        if r.warned
            && let Some(i) = COLUMNS.iter().position(|c| *c == Column::Name)
        {
            cells[i].push_str(" ⚠");
        }
        Row::new(cells).style(look)
    });
    let widths = [
        Constraint::Min(20),
        Constraint::Length(5),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(8),
        Constraint::Length(10),
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Length(5),
    ];
    let table = Table::new(rows, widths).header(header).row_highlight_style(style::reversed());
    let mut ts = TableState::default();
    if !state.is_empty() {
        ts.select(Some(state.selected));
    }
    f.render_stateful_widget(table, area, &mut ts);
}
