//! The help overlay.
use ratatui::{
    Frame,
    layout::Rect,
    widgets::{Block, Borders, Clear, Paragraph},
};

pub const KEYS: &[(&str, &str)] = &[
    ("↑ ↓  j k", "move"),
    ("PgUp PgDn  g G", "page, first, last"),
    ("Enter", "details of the selected container"),
    ("Esc", "back; clear the filter"),
    ("< >  ← →", "sort by the previous / next column"),
    ("r", "reverse the sort"),
    ("/", "filter by name (Enter to keep, Esc to clear)"),
    ("? h", "this help"),
    ("q  Ctrl-C", "quit"),
];

pub fn draw(f: &mut Frame, area: Rect) {
    let w = 56.min(area.width);
    let h = (KEYS.len() as u16 + 5).min(area.height);
    let r = Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h };
    let mut text: Vec<String> = KEYS.iter().map(|(k, what)| format!("{k:<16} {what}")).collect();
    text.push(String::new());
    text.push(format!("red: at risk (headroom under {:.0}%, …)   magenta, !: recent OOM kill", crate::risk::HEADROOM * 100.0));
    text.push("red, ⚠: under a memory warning (memwatch events)".into());
    f.render_widget(Clear, r);
    f.render_widget(Paragraph::new(text.join("\n")).block(Block::default().borders(Borders::ALL).title("keys")), r);
}
