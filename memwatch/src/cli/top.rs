//! `memwatch top`: the live view, or one plain table / JSON for scripts.
use std::{
    io::{IsTerminal, stdout},
    process::ExitCode,
    sync::{Arc, mpsc},
    time::Duration,
};

use clap::Args;
use crossterm::{
    cursor::{Hide, Show},
    event::EventStream,
    execute,
    terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode},
};
use futures_util::StreamExt as _;
use memwatch::{
    Roots,
    events::OomTracker,
    model::{CgroupFilter, Options},
    probes::Probes,
    sampler::{Sampler, Shared},
    top::{Frame, input, plain, state::State, view},
};
use ratatui::{Terminal, backend::CrosstermBackend};

#[derive(Args)]
pub struct TopArgs {
    /// Read a running daemon's JSON API (e.g. http://127.0.0.1:9753) instead of sampling here
    #[arg(long)]
    remote: Option<String>,
    /// Refresh period, e.g. 1s, 500ms
    #[arg(long, default_value = "1s", value_parser = super::serve::parse_interval)]
    interval: Duration,
    /// How old the files that are costly to read may get when sampling here (see `serve`)
    #[arg(long, default_value = "2s", value_parser = super::serve::parse_interval)]
    slow_interval: Duration,
    /// Print one plain table and exit (also when stdout is not a terminal)
    #[arg(long)]
    once: bool,
    /// Print the table's data as JSON and exit
    #[arg(long)]
    json: bool,
    /// Which cgroups to show when sampling here
    #[arg(long, value_enum, default_value = "default")]
    cgroups: CgroupFilter,
    #[command(flatten)]
    probes: super::probe_args::ProbeArgs,
}

pub fn run(roots: Roots, args: TopArgs) -> anyhow::Result<ExitCode> {
    let label = args.remote.clone().unwrap_or_else(|| "this host".into());
    let mut state = State::new(label);
    if args.once || args.json || !stdout().is_terminal() {
        // Two frames, so rates have something to compare with.
        let mut frames = OneShot::new(&roots, &args)?;
        state.update(frames.next()?);
        std::thread::sleep(args.interval.min(Duration::from_secs(1)));
        state.update(frames.next()?);
        if args.json {
            println!("{}", serde_json::to_string_pretty(&plain::json(&state))?);
        } else {
            print!("{}", plain::table(&state));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let source = Live::start(roots, &args);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(interactive(state, source, args.interval))?;
    Ok(ExitCode::SUCCESS)
}

/// Frames for `--once` / `--json`: sampled here, or fetched.
enum OneShot {
    Local(Box<Sampler>),
    Remote(String),
}

impl OneShot {
    fn new(roots: &Roots, args: &TopArgs) -> anyhow::Result<OneShot> {
        Ok(match &args.remote {
            Some(url) => OneShot::Remote(url.clone()),
            None => {
                let probes = Probes::load(&roots.load_options(args.probes.options())).ok();
                let opts = Options { filter: args.cgroups, ..Options::default() };
                OneShot::Local(Box::new(Sampler::new(roots.clone(), Sampler::default_collectors(probes, true, args.slow_interval.max(args.interval)), opts)))
            }
        })
    }

    fn next(&mut self) -> anyhow::Result<Frame> {
        match self {
            OneShot::Local(s) => Ok(Frame::from_snapshot(&s.sample())),
            OneShot::Remote(url) => super::client::frame(url),
        }
    }
}

/// Frames for the live view.
enum Live {
    /// The sampler runs on its own thread, as in the daemon.
    Local(Shared),
    /// A thread fetches every interval; errors are reported, and it keeps trying.
    Remote(mpsc::Receiver<Result<Frame, String>>),
}

impl Live {
    fn start(roots: Roots, args: &TopArgs) -> Live {
        match &args.remote {
            Some(url) => {
                let (tx, rx) = mpsc::channel();
                let (url, every) = (url.clone(), args.interval);
                std::thread::spawn(move || {
                    loop {
                        let r = super::client::frame(&url).map_err(|e| format!("cannot reach {url}, retrying every {}: {e}", humantime::format_duration(every)));
                        if tx.send(r).is_err() {
                            return;
                        }
                        std::thread::sleep(every);
                    }
                });
                Live::Remote(rx)
            }
            None => {
                let mut probes = Probes::load(&roots.load_options(args.probes.options())).ok();
                let ring = probes.as_mut().and_then(|p| p.take_oom_events());
                let unit = probes.as_ref().map(|p| p.oom_size_unit()).unwrap_or(1024);
                let (oom, _) = OomTracker::new(roots.clone(), None, 100);
                let shared: Shared = Arc::default();
                let opts = Options { filter: args.cgroups, ..Options::default() };
                Sampler::new(roots, Sampler::default_collectors(probes, true, args.slow_interval.max(args.interval)), opts).spawn(args.interval, shared.clone(), oom, ring, unit);
                Live::Local(shared)
            }
        }
    }

    /// The newest frame since the last call, or an error to show.
    fn poll(&mut self) -> Option<Result<Frame, String>> {
        match self {
            Live::Local(shared) => shared.load_full().map(|s| Ok(Frame::from_snapshot(&s))),
            Live::Remote(rx) => rx.try_iter().last(),
        }
    }
}

/// Restores the terminal when dropped: on quit, on error, and (with the panic hook) on panic.
struct TerminalGuard;

impl TerminalGuard {
    fn enter() -> std::io::Result<TerminalGuard> {
        enable_raw_mode()?;
        let guard = TerminalGuard;
        execute!(stdout(), EnterAlternateScreen, Hide)?;
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        Ok(guard)
    }
}

fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(stdout(), LeaveAlternateScreen, Show);
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

async fn interactive(mut state: State, mut source: Live, interval: Duration) -> anyhow::Result<()> {
    let _guard = TerminalGuard::enter()?;
    let mut terminal = Terminal::new(CrosstermBackend::new(stdout()))?;
    let mut keys = EventStream::new();
    let mut tick = tokio::time::interval(interval.min(Duration::from_millis(250)));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        terminal.draw(|f| view::draw(f, &state))?;
        let page = terminal.size().map(|s| s.height.saturating_sub(4) as usize).unwrap_or(10);
        tokio::select! {
            ev = keys.next() => match ev {
                Some(Ok(ev)) => {
                    if !state.apply(input::action(&ev, state.editing_filter), page) {
                        break;
                    }
                }
                _ => break,
            },
            _ = tick.tick() => match source.poll() {
                Some(Ok(frame)) => {
                    state.status = None;
                    state.update(frame);
                }
                Some(Err(msg)) => state.status = Some(msg),
                None => {}
            },
            _ = term.recv() => break,
        }
    }
    Ok(())
}
