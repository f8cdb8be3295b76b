//! `memwatch top`: the live view, or one plain table / JSON for scripts.
use std::{
    io::{IsTerminal, stdout},
    process::ExitCode,
    sync::mpsc,
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
    pipeline::{self, Pipeline},
    sampler::Shared,
    top::{App, Frame, input, plain, view},
};
use ratatui::{Terminal, backend::CrosstermBackend};

#[derive(Args)]
pub(crate) struct TopArgs {
    /// Read a running daemon's JSON API (its --listen.api, e.g. http://127.0.0.1:9754 or an
    /// https:// address) instead of sampling here
    #[arg(long)]
    remote: Option<String>,
    #[command(flatten)]
    tls: super::client::RemoteTls,
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
    #[command(flatten)]
    cgroups: super::cgroup_args::CgroupArgs,
    #[command(flatten)]
    probes: super::probe_args::ProbeArgs,
}

pub(crate) fn run(roots: Roots, args: TopArgs) -> anyhow::Result<ExitCode> {
    let label = args.remote.clone().unwrap_or_else(|| "this host".into());
    let mut app = App::new(label);
    if args.once || args.json || !stdout().is_terminal() {
        // Two frames, so rates have something to compare with.
        let mut frames = OneShot::new(&roots, &args)?;
        if let Some(note) = frames.note() {
            eprintln!("memwatch top: {note}");
        }
        app.update(frames.next()?);
        std::thread::sleep(args.interval.min(Duration::from_secs(1)));
        app.update(frames.next()?);
        if args.json {
            println!("{}", serde_json::to_string_pretty(&plain::json(&app))?);
        } else {
            print!("{}", plain::table(&app));
        }
        return Ok(ExitCode::SUCCESS);
    }
    // The same data as a page in a browser: the daemon's web view, on its API address.
    app.view.web = Some(match &args.remote {
        Some(url) => format!("{}/", url.trim_end_matches('/')),
        None => format!("{}/ (memwatch serve)", super::client::DEFAULT_API),
    });
    let source = Live::start(roots, &args, &mut app)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(interactive(app, source, args.interval))?;
    Ok(ExitCode::SUCCESS)
}

/// The pipeline as `top` runs it here: per-process counters on (the detail view's rates), no
/// journal.
fn local(roots: Roots, args: &TopArgs) -> Pipeline {
    let opts = pipeline::Options {
        probes: Some(args.probes.options()),
        per_process: true,
        slow_interval: args.slow_interval.max(args.interval),
        model: args.cgroups.options(),
        max_events: 100,
        history: Duration::from_secs(60),
        ..pipeline::Options::default()
    };
    Pipeline::new(roots, &opts)
}

/// Why the eBPF columns are empty, when the probes could not load.
fn ebpf_note(p: &Pipeline) -> Option<String> {
    p.report.ebpf_error.as_ref().map(|e| format!("no eBPF columns: {e}"))
}

/// Frames for `--once` / `--json`: sampled here, or fetched.
enum OneShot {
    Local(Box<Pipeline>),
    Remote(super::client::Client),
}

impl OneShot {
    fn new(roots: &Roots, args: &TopArgs) -> anyhow::Result<OneShot> {
        Ok(match &args.remote {
            Some(url) => OneShot::Remote(args.tls.client(url)?),
            None => OneShot::Local(Box::new(local(roots.clone(), args))),
        })
    }

    fn note(&self) -> Option<String> {
        match self {
            OneShot::Local(p) => ebpf_note(p),
            OneShot::Remote(_) => None,
        }
    }

    fn next(&mut self) -> anyhow::Result<Frame> {
        match self {
            OneShot::Local(p) => {
                let (snap, oom) = p.sample_once();
                Ok(Frame::new(&snap, &oom))
            }
            OneShot::Remote(client) => client.frame(),
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
    fn start(roots: Roots, args: &TopArgs, app: &mut App) -> anyhow::Result<Live> {
        Ok(match &args.remote {
            Some(url) => {
                let (tx, rx) = mpsc::channel();
                let client = args.tls.client(url)?;
                let (url, every) = (url.clone(), args.interval);
                std::thread::spawn(move || {
                    loop {
                        let r = client
                            .frame()
                            .map_err(|e| format!("cannot reach {url}, retrying every {}: {e}", humantime::format_duration(every)));
                        if tx.send(r).is_err() {
                            return;
                        }
                        std::thread::sleep(every);
                    }
                });
                Live::Remote(rx)
            }
            None => {
                let p = local(roots, args);
                app.view.note = ebpf_note(&p);
                let (shared, _) = p.spawn(args.interval);
                Live::Local(shared)
            }
        })
    }

    /// The newest frame since the last call, or an error to show.
    fn poll(&mut self) -> Option<Result<Frame, String>> {
        match self {
            Live::Local(shared) => shared.snapshot.load_full().map(|s| {
                let store = shared.stacks.read().unwrap_or_else(|e| e.into_inner());
                Ok(Frame::new(&s, &shared.oom.load()).with_stacks(&store, &shared.names))
            }),
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

async fn interactive(mut app: App, mut source: Live, interval: Duration) -> anyhow::Result<()> {
    let _guard = TerminalGuard::enter()?;
    let mut terminal = Terminal::new(CrosstermBackend::new(stdout()))?;
    let mut keys = EventStream::new();
    let mut tick = tokio::time::interval(interval.min(Duration::from_millis(250)));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        terminal.draw(|f| view::draw(f, &app))?;
        let page = terminal.size().map(|s| s.height.saturating_sub(4) as usize).unwrap_or(10);
        tokio::select! {
            ev = keys.next() => match ev {
                Some(Ok(ev)) => {
                    if !app.apply(input::action(&ev, app.view.editing_filter), page) {
                        break;
                    }
                }
                _ => break,
            },
            _ = tick.tick() => match source.poll() {
                Some(Ok(frame)) => {
                    app.view.status = None;
                    app.update(frame);
                }
                Some(Err(msg)) => app.view.status = Some(msg),
                None => {}
            },
            _ = term.recv() => break,
        }
    }
    Ok(())
}
