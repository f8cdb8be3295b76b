//! Drawing: one file per screen. Everything here reads the [`App`] and writes a frame.
pub mod detail;
pub mod help;
pub mod style;
pub mod table;

use ratatui::{
    Frame,
    layout::{Alignment, Constraint, Layout, Rect},
    text::{Line, Span},
    widgets::Paragraph,
};

use super::{App, state::Mode};

/// Below this the table is unreadable: a message is shown instead.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 8;

pub fn draw(f: &mut Frame, app: &App) {
    let state = &app.view;
    let area = f.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let msg = format!("terminal too small ({}x{}): memwatch top needs at least {MIN_WIDTH}x{MIN_HEIGHT}", area.width, area.height);
        f.render_widget(Paragraph::new(msg).alignment(Alignment::Center).wrap(ratatui::widgets::Wrap { trim: true }), area);
        return;
    }
    let [head, body, foot] = Layout::vertical([Constraint::Length(1), Constraint::Min(1), Constraint::Length(1)]).areas(area);
    header(f, head, app);
    match state.mode {
        Mode::Table => table::draw(f, body, app),
        Mode::Detail(_) => detail::draw(f, body, app),
    }
    footer(f, foot, app);
    if state.help {
        help::draw(f, area);
    }
}

fn header(f: &mut Frame, area: Rect, app: &App) {
    let state = &app.view;
    let when = crate::rfc3339(app.data.taken_at());
    let arrow = if state.descending { "▼" } else { "▲" };
    let mut spans = vec![
        Span::styled("memwatch top", style::bold()),
        Span::raw(format!("  {}  {} containers  sort {} {arrow}  {when}", state.source, state.len(), state.sort.title())),
    ];
    if !state.filter.is_empty() {
        spans.push(Span::styled(format!("  filter \"{}\"", state.filter), style::filter()));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn footer(f: &mut Frame, area: Rect, app: &App) {
    let state = &app.view;
    let line = if state.editing_filter {
        Line::from(vec![Span::styled("filter: ", style::filter()), Span::raw(format!("{}_", state.filter))])
    } else if let Some(s) = state.status.as_ref().or(state.note.as_ref()) {
        Line::from(Span::styled(s.clone(), style::status()))
    } else if matches!(state.mode, Mode::Detail(_)) {
        Line::from("Esc back  q quit  ? help")
    } else {
        let keys = "q quit  ↑↓ move  Enter details  < > sort  r reverse  / filter  ? help";
        match &state.web {
            Some(url) => Line::from(format!("{keys}   web view: {url}")),
            None => Line::from(keys),
        }
    };
    f.render_widget(Paragraph::new(line).style(style::reversed()), area);
}

/// A one-line sparkline of `values` in at most `width` cells.
pub fn sparkline(values: &[u64], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let tail = &values[values.len().saturating_sub(width)..];
    let (lo, hi) = (tail.iter().min().copied().unwrap_or(0), tail.iter().max().copied().unwrap_or(0));
    tail.iter().map(|v| if hi == lo { BARS[0] } else { BARS[((v - lo) as f64 / (hi - lo) as f64 * 7.0).round() as usize] }).collect()
}

/// A rate for a narrow column: `-` when unknown, `1.2k` for thousands.
pub fn rate(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v >= 1e6 => format!("{:.1}M", v / 1e6),
        Some(v) if v >= 1e3 => format!("{:.1}k", v / 1e3),
        Some(v) => format!("{v:.0}"),
    }
}

pub fn mb_rate(v: Option<f64>) -> String {
    v.map(|b| format!("{:.1}", b / 1e6)).unwrap_or_else(|| "-".into())
}
