//! `mdp top`'s terminal: the screen, the keys, and a scraping thread. The
//! figures and the text come from `mdp_zmq_adapter::top`.

use std::io::{self, IsTerminal, Write};
use std::panic;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossterm::cursor::{Hide, MoveTo, Show};
use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use crossterm::style::{Attribute, Print, SetAttribute};
use crossterm::terminal::{self, Clear, ClearType, EnterAlternateScreen, LeaveAlternateScreen};
use crossterm::{execute, queue};
use mdp_zmq_adapter::top::{fetch, parse, render, Order, Snapshot, Target, View};

/// How long a key waits to be read at most: the delay to a redraw, a quit
/// asked by a signal.
const TICK: Duration = Duration::from_millis(100);

/// One scrape: when it started, and the metrics or why there are none.
struct Scrape {
    at: Instant,
    result: Result<Snapshot, String>,
}

fn scrape(target: &Target, timeout: Duration) -> Scrape {
    let at = Instant::now();
    let result = fetch(target, timeout)
        .map_err(|e| e.to_string())
        .and_then(|text| parse(&text).map_err(|e| e.to_string()))
        .map(|samples| Snapshot::from_samples(&samples));
    Scrape { at, result }
}

/// A scrape takes at most the interval, and at least a second to answer.
fn timeout(interval: Duration) -> Duration {
    interval.max(Duration::from_secs(1))
}

/// `--once`: two scrapes `interval` apart, one view on standard output.
pub fn once(target: &Target, interval: Duration, order: Order) -> Result<(), String> {
    let first = scrape(target, timeout(interval));
    let before = first.result?;
    thread::sleep(interval.saturating_sub(first.at.elapsed()));
    let second = scrape(target, timeout(interval));
    let now = second.result?;
    let view = View::new(&target.url(), &now, Some((&before, second.at - first.at)), order);
    let width = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).unwrap_or_else(|| {
        let tty = io::stdout().is_terminal();
        tty.then(|| terminal::size().ok()).flatten().map_or(120, |(w, _)| usize::from(w))
    });
    print!("{}", render(&view, width));
    Ok(())
}

/// What the screen shows: the last two good scrapes, and a status.
struct Screenful {
    url: String,
    order: Order,
    interval: Duration,
    last: Option<(Snapshot, Instant)>,
    before: Option<(Snapshot, Instant)>,
    status: Option<String>,
}

impl Screenful {
    fn take(&mut self, scrape: Scrape) {
        match scrape.result {
            Ok(snapshot) => {
                self.before = self.last.replace((snapshot, scrape.at));
                self.status = None;
            }
            Err(e) => {
                let mut status = format!("{e}; retrying every {:.1}s", self.interval.as_secs_f64());
                if let Some((_, at)) = &self.last {
                    status += &format!(", figures from {:.0}s ago", (scrape.at - *at).as_secs_f64());
                }
                self.status = Some(status);
            }
        }
    }

    fn view(&self) -> View {
        let mut view = match &self.last {
            Some((now, at)) => {
                let before = self.before.as_ref().map(|(s, b)| (s, at.duration_since(*b)));
                View::new(&self.url, now, before, self.order)
            }
            None => View { source: self.url.clone(), order: self.order, ..View::default() },
        };
        view.status = self.status.clone();
        view
    }
}

/// Scrapes every `interval` on a thread of its own, until the receiver is
/// dropped, so a slow broker leaves the keys working.
fn scraper(target: Target, interval: Duration) -> Result<Receiver<Scrape>, String> {
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name("scraper".to_owned())
        .spawn(move || loop {
            let s = scrape(&target, timeout(interval));
            let next = s.at + interval;
            if tx.send(s).is_err() {
                return;
            }
            thread::sleep(next.saturating_duration_since(Instant::now()));
        })
        .map_err(|e| format!("cannot start the scraping thread: {e}"))?;
    Ok(rx)
}

/// Whether the terminal is set up for the live view, and so wants
/// [`restore`].
static SET_UP: AtomicBool = AtomicBool::new(false);

/// Puts the terminal back: cursor shown, main screen, raw mode off. Once:
/// the panic hook calls it, then [`Screen`]'s drop as the panic unwinds,
/// and leaving the alternate screen twice would move the cursor back over
/// the panic's message.
fn restore() {
    if SET_UP.swap(false, Ordering::SeqCst) {
        let _ = execute!(io::stdout(), SetAttribute(Attribute::Reset), Show, LeaveAlternateScreen);
        let _ = terminal::disable_raw_mode();
    }
}

/// The terminal while `mdp top` runs: raw mode, the alternate screen, no
/// cursor. Dropping it, on return, error or panic, restores the terminal.
struct Screen;

impl Screen {
    fn enter() -> io::Result<Screen> {
        terminal::enable_raw_mode()?;
        SET_UP.store(true, Ordering::SeqCst);
        let screen = Screen;
        execute!(io::stdout(), EnterAlternateScreen, Hide, Clear(ClearType::All))?;
        Ok(screen)
    }

    /// `text`'s lines from the top, as many as fit, the key help at the
    /// bottom if there is room.
    fn draw(&self, text: &str, height: u16) -> io::Result<()> {
        let mut out = io::stdout().lock();
        let rows = height.saturating_sub(1);
        let mut y = 0;
        for line in text.lines().take(usize::from(rows)) {
            queue!(out, MoveTo(0, y), Print(line), Clear(ClearType::UntilNewLine))?;
            y += 1;
        }
        queue!(out, MoveTo(0, y), Clear(ClearType::FromCursorDown))?;
        if height > 1 {
            let help = "q quit  s sort";
            queue!(out, MoveTo(0, height - 1), SetAttribute(Attribute::Reverse), Print(help))?;
            queue!(out, SetAttribute(Attribute::Reset))?;
        }
        out.flush()
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// The live view, until `q`, Esc, Ctrl-C or a termination signal.
pub fn live(target: Target, interval: Duration, order: Order) -> Result<(), String> {
    if !io::stdout().is_terminal() || !io::stdin().is_terminal() {
        return Err("top needs a terminal; --once prints one view without it".to_owned());
    }
    // In raw mode Ctrl-C is a key, not SIGINT; SIGTERM and SIGHUP still
    // come as signals.
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = Arc::clone(&stop);
    ctrlc::set_handler(move || stopping.store(true, Ordering::Relaxed)).map_err(|e| e.to_string())?;
    // Restore the terminal before the panic message is printed, so that it
    // is printed on the main screen, where it stays.
    let hook = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        restore();
        hook(info);
    }));

    let mut screenful = Screenful {
        url: target.url(),
        order,
        interval,
        last: None,
        before: None,
        status: Some(format!("connecting to {}", target.url())),
    };
    let scrapes = scraper(target, interval)?;
    let screen = Screen::enter().map_err(|e| format!("cannot set up the terminal: {e}"))?;
    let result = run(&screen, &mut screenful, &scrapes, &stop);
    drop(screen);
    result.map_err(|e| format!("terminal: {e}"))
}

fn run(screen: &Screen, screenful: &mut Screenful, scrapes: &Receiver<Scrape>, stop: &AtomicBool) -> io::Result<()> {
    let mut redraw = true;
    while !stop.load(Ordering::Relaxed) {
        loop {
            match scrapes.try_recv() {
                Ok(scrape) => {
                    screenful.take(scrape);
                    redraw = true;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Err(io::Error::other("the scraping thread stopped")),
            }
        }
        if redraw {
            let (width, height) = terminal::size()?;
            screen.draw(&render(&screenful.view(), usize::from(width)), height)?;
            redraw = false;
        }
        if !event::poll(TICK)? {
            continue;
        }
        match event::read()? {
            Event::Key(key) if key.kind != KeyEventKind::Release => match key.code {
                KeyCode::Char('q' | 'Q') | KeyCode::Esc => return Ok(()),
                KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => return Ok(()),
                KeyCode::Char('s' | 'S') => {
                    screenful.order = match screenful.order {
                        Order::Rate => Order::Name,
                        Order::Name => Order::Rate,
                    };
                    redraw = true;
                }
                _ => {}
            },
            Event::Resize(..) => redraw = true,
            _ => {}
        }
    }
    Ok(())
}
