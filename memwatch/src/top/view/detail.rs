//! One container: its memory, its processes, its recent OOM kills.
use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    text::Line,
    widgets::{Block, Borders, Paragraph, Row, Table},
};

use super::{mb_rate, rate, style};
use crate::{
    oom::Event,
    top::{App, data, human, human_secs},
};

pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    let Some(r) = app.view.detail(&app.data) else {
        f.render_widget(Paragraph::new("this container is gone (Esc to go back)"), area);
        return;
    };
    let lines = summary(r, app.data.taken_at());
    let kills: Vec<&Event> = app.data.events().iter().rev().filter(|e| e.cgroup_ids.contains(&r.container.id)).take(5).collect();
    let stacks = stack_lines(app.data.stacks(r.container.id));
    let [top, procs, grew, ooms] = Layout::vertical([
        Constraint::Length(lines.len() as u16),
        Constraint::Min(3),
        Constraint::Length(if stacks.is_empty() { 0 } else { stacks.len() as u16 + 1 }),
        Constraint::Length(kills.len().max(1) as u16 + 2),
    ])
    .areas(area);
    f.render_widget(Paragraph::new(lines), top);
    f.render_widget(processes(r), procs);
    if !stacks.is_empty() {
        let title = "where memory was faulted in (sampled stacks, last minute)";
        f.render_widget(Paragraph::new(stacks).block(Block::default().borders(Borders::TOP).title(title)), grew);
    }
    f.render_widget(
        Paragraph::new(kill_lines(&kills)).block(Block::default().borders(Borders::TOP).title("recent OOM kills and warnings")),
        ooms,
    );
}

/// One line per stack: what it faulted in, and where.
fn stack_lines(stacks: &[crate::stacks::profile::StackUse]) -> Vec<Line<'static>> {
    stacks.iter().map(|s| Line::from(s.line())).collect()
}

fn bytes(b: u64) -> String {
    human(b as f64)
}

fn opt(b: Option<u64>) -> String {
    b.map(bytes).unwrap_or_else(|| "-".into())
}

/// The container's name and memory, a few lines.
fn summary(r: &data::Row, t: f64) -> Vec<Line<'static>> {
    let c = &r.container;
    vec![
        Line::styled(r.name.clone(), style::bold()),
        Line::from(format!("cgroup {}  id {}  {:?}{}", c.cgroup, c.id, c.kind, c.qos.map(|q| format!(" {q:?}")).unwrap_or_default())),
        Line::from(format!(
            "usage {}  working set {}  rss {}  cache {}  swap {}",
            bytes(c.usage_bytes),
            bytes(c.working_set_bytes),
            bytes(c.rss_bytes),
            bytes(c.cache_bytes),
            opt(c.swap_bytes)
        )),
        Line::from(format!(
            "limit {}{}  headroom {} ({:.1}%)  high {}  time to OOM {}",
            bytes(c.limit_bytes),
            if c.limit_is_machine { " (machine)" } else { "" },
            bytes(c.headroom_bytes),
            r.headroom_pct,
            opt(c.high_bytes),
            c.time_to_oom_seconds.map(human_secs).unwrap_or_else(|| "-".into())
        )),
        Line::from(format!(
            "processes {}  vsz {}  faults/s {}  mmap MB/s {}  pressure {}  OOM kills {}",
            c.processes,
            bytes(c.vsz_bytes),
            rate(r.faults_per_s),
            mb_rate(r.mmap_bytes_per_s),
            r.pressure_pct.map(|p| format!("{p:.1}%")).unwrap_or_else(|| "-".into()),
            c.oom_kills.map(|n| n.to_string()).unwrap_or_else(|| "-".into())
        )),
        Line::from(format!(
            "what to set (from its last minute; memwatch recommend weighs more): {}",
            crate::rightsize::short(&crate::rightsize::recommend(&crate::rightsize::from_container(c, t)))
        )),
    ]
}

/// Its processes, largest RSS first, with their rates.
fn processes(r: &data::Row) -> Table<'static> {
    let header = Row::new(["PID", "COMM", "VSZ", "RSS", "FAULTS/s", "MMAP MB/s"]).style(style::bold());
    let rows: Vec<Row> = r
        .procs
        .iter()
        .map(|p| {
            Row::new([
                p.pid.to_string(),
                p.comm.clone(),
                human(p.vsz as f64),
                human(p.rss as f64),
                rate(p.faults_per_s),
                mb_rate(p.mmap_bytes_per_s),
            ])
        })
        .collect();
    let widths = [
        Constraint::Length(8),
        Constraint::Min(16),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(9),
        Constraint::Length(10),
    ];
    Table::new(rows, widths).header(header).block(Block::default().borders(Borders::TOP).title("processes (largest RSS first)"))
}

/// Its recent OOM kills, a line each.
fn kill_lines(kills: &[&Event]) -> Vec<Line<'static>> {
    if kills.is_empty() {
        return vec![Line::from("none recorded")];
    }
    kills
        .iter()
        .map(|e| {
            let when = crate::rfc3339(e.time);
            if !e.is_kill() {
                let what = if e.kind == crate::oom::EventKind::Warning { "WARNING: at risk of an OOM kill" } else { "warning cleared" };
                return Line::from(format!("{when}  {what} (event {})", e.seq));
            }
            match &e.victim {
                Some(v) => Line::from(format!("{when}  pid {} ({})  rss {}  {}", v.pid, v.comm, opt(v.rss_bytes), e.constraint.label())),
                None => Line::from(format!("{when}  {} kill(s) counted by the kernel, missed by the probe", e.count)),
            }
        })
        .collect()
}
