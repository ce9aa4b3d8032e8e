//! Drawing the chat with ratatui: header, peer list, conversation, compose
//! box (or a prompt), status line, footer of keys, and the help screen.
//! Pure: it reads the [`App`] (and notes where things were drawn, for the
//! mouse and for scrolling), so `TestBackend` snapshots show exactly what a
//! terminal would.
//!
//! Colours are the 8 named ANSI ones plus bold, dim and reverse, which
//! every terminal theme maps to something readable on its own background;
//! with `NO_COLOR` only the modifiers remain.

use pigeon_protocol::pubkey::Security;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use ratatui::Frame;

use super::app::{client_label, group_name, App, ConvKey, Dir, Focus, Item, Level, Msg, OfferState, PromptKind, Row};
use super::text::{self, fit, one_line, truncate, width, wrap};
use crate::engine::Delivery;

/// Colours on or off (`NO_COLOR`, `colors = "never"`).
#[derive(Clone, Copy, Debug)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    fn fg(&self, c: Color) -> Style {
        if self.color {
            Style::default().fg(c)
        } else {
            Style::default()
        }
    }
    fn accent(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }
    fn me(&self) -> Style {
        self.fg(Color::Green).add_modifier(Modifier::BOLD)
    }
    fn dim(&self) -> Style {
        Style::default().add_modifier(Modifier::DIM)
    }
    fn error(&self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }
    fn ok(&self) -> Style {
        self.fg(Color::Green)
    }
    fn notice(&self) -> Style {
        self.fg(Color::Magenta).add_modifier(Modifier::ITALIC)
    }
    fn key(&self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }
    fn focused(&self, yes: bool) -> Style {
        if yes {
            self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
        } else {
            self.dim()
        }
    }
}

/// The smallest screen the chat draws in; below it says so.
const MIN: (u16, u16) = (20, 8);

/// Draws one frame.
pub fn draw(f: &mut Frame, app: &mut App, theme: &Theme) {
    let area = f.area();
    if area.width < MIN.0 || area.height < MIN.1 {
        let msg = format!("Pigeon: the window is too small ({}×{}); Ctrl+Q quits", area.width, area.height);
        f.render_widget(Paragraph::new(msg).wrap(ratatui::widgets::Wrap { trim: true }), area);
        return;
    }
    let [header, middle, status, footer] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(3), Constraint::Length(1), Constraint::Length(1)])
            .areas(area);
    draw_header(f, app, theme, header);
    // A narrow window shows the list or the conversation, not both.
    let list_w = (area.width / 4).clamp(22, 40);
    let (peers, right) = if area.width < 60 {
        if app.focus == Focus::Peers && app.prompt.is_none() {
            (middle, Rect::default())
        } else {
            (Rect::default(), middle)
        }
    } else {
        let [l, r] = Layout::horizontal([Constraint::Length(list_w), Constraint::Min(10)]).areas(middle);
        (l, r)
    };
    draw_peers(f, app, theme, peers);
    if right.width > 0 {
        // The compose text laid out once: its height and its drawing use it.
        let text = app.editor.layout(right.width.saturating_sub(2) as usize);
        let compose_h = compose_height(app, &text, right);
        let [conv, compose] = Layout::vertical([Constraint::Min(1), Constraint::Length(compose_h)]).areas(right);
        draw_conversation(f, app, theme, conv);
        draw_compose(f, app, theme, text, compose);
        app.areas.conversation = conv;
        app.areas.compose = compose;
    } else {
        app.areas.conversation = Rect::default();
        app.areas.compose = Rect::default();
    }
    draw_status(f, app, theme, status);
    draw_footer(f, app, theme, footer);
    if app.help {
        draw_help(f, theme, area);
    }
}

fn draw_header(f: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let online = app.peers.iter().filter(|p| p.online).count();
    let state = match &app.me.away {
        Some(t) => Span::styled(format!("away: {}", one_line(t)), theme.fg(Color::Yellow)),
        None => Span::styled("online", theme.ok()),
    };
    let mut spans = vec![
        Span::styled(" Pigeon ", theme.accent().add_modifier(Modifier::REVERSED)),
        Span::raw(" "),
        Span::styled(truncate(&one_line(&app.me.nick), 40), Style::default().add_modifier(Modifier::BOLD)),
        Span::styled(format!(" ({}@{})", truncate(&app.me.user, 20), truncate(&app.me.host, 30)), theme.dim()),
        Span::raw(" · "),
        state,
        Span::raw(format!(" · {online} online")),
        Span::styled(format!(" · {}", app.me.via), theme.dim()),
    ];
    if app.sealed {
        spans.push(Span::styled(" · next message sealed", theme.fg(Color::Yellow)));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_peers(f: &mut Frame, app: &mut App, theme: &Theme, area: Rect) {
    app.areas.peers = area;
    if area.width < 4 || area.height < 3 {
        return;
    }
    let rows = app.rows();
    let online = app.peers.iter().filter(|p| p.online).count();
    let title = if app.filter.is_empty() {
        format!(" Peers {online}/{} ", app.peers.len())
    } else {
        format!(" Filter: {} ", one_line(&app.filter))
    };
    let focused = app.focus == Focus::Peers;
    let block = Block::default().borders(Borders::ALL).border_style(theme.focused(focused)).title(title);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let h = inner.height as usize;
    let sel = app.selected_index(&rows);
    let mut offset = app.areas.peer_offset.min(rows.len().saturating_sub(1));
    if sel < offset {
        offset = sel;
    } else if sel >= offset + h {
        offset = sel + 1 - h;
    }
    app.areas.peer_offset = offset;
    let w = inner.width as usize;
    let mut lines = Vec::new();
    if rows.is_empty() {
        let hint = if app.filter.is_empty() { "nobody seen yet" } else { "no match (Esc clears)" };
        lines.push(Line::styled(hint, theme.dim()));
    }
    for (i, row) in rows.iter().enumerate().skip(offset).take(h) {
        let mut line = peer_row(app, theme, row, w);
        if i == sel {
            line = line.patch_style(if focused {
                Style::default().add_modifier(Modifier::REVERSED)
            } else {
                Style::default().add_modifier(Modifier::UNDERLINED)
            });
        }
        lines.push(line);
    }
    f.render_widget(Paragraph::new(lines), inner);
}

fn peer_row(app: &App, theme: &Theme, row: &Row, w: usize) -> Line<'static> {
    match row {
        Row::Everyone => Line::from(vec![Span::styled(fit("★ Everyone (broadcast)", w), theme.accent())]),
        Row::Group { name, online, total } => {
            let count = format!(" {online}/{total}");
            let name_w = w.saturating_sub(width(&count) + 2);
            Line::from(vec![
                Span::styled(
                    format!("▾ {}", fit(&group_name(name), name_w)),
                    Style::default().add_modifier(Modifier::BOLD),
                ),
                Span::styled(count, theme.dim()),
            ])
        }
        Row::Peer(k) => {
            let Some(p) = app.peer(k) else { return Line::raw("") };
            let mark = if app.marked.contains(k) { "✓" } else { " " };
            let (sym, sym_style) = match (p.online, p.away) {
                (false, _) => ("○", theme.dim()),
                (true, true) => ("◐", theme.fg(Color::Yellow)),
                (true, false) => ("●", theme.ok()),
            };
            let client = client_label(&p.client);
            let badge = if p.unread > 0 { format!(" ({})", p.unread) } else { String::new() };
            let fixed = 1 + 1 + 1 + 1 + width(client) + width(&badge);
            let nick_w = w.saturating_sub(fixed);
            let nick_style = if p.online { Style::default() } else { theme.dim() };
            let nick_style = if p.unread > 0 { nick_style.add_modifier(Modifier::BOLD) } else { nick_style };
            // The away text after the nick, where there is room.
            let nick = truncate(&one_line(p.name()), nick_w);
            let away = match (&p.absence, p.away && p.online) {
                (Some(a), true) => fit(&format!(" {}", one_line(a)), nick_w - width(&nick)),
                _ => fit("", nick_w - width(&nick)),
            };
            Line::from(vec![
                Span::styled(mark.to_string(), theme.accent()),
                Span::styled(sym.to_string(), sym_style),
                Span::raw(" "),
                Span::styled(nick, nick_style),
                Span::styled(away, theme.dim()),
                Span::raw(" "),
                Span::styled(client.to_string(), theme.dim()),
                Span::styled(badge, theme.accent()),
            ])
        }
    }
}

fn conv_title(app: &App) -> String {
    match &app.current {
        ConvKey::Everyone => " Everyone · broadcasts to and from the whole LAN ".into(),
        ConvKey::Group(g) => format!(" Group {} · {} online ", group_name(g), app.group_online(g)),
        ConvKey::Peer(k) => match app.peer(k) {
            Some(p) => {
                let mut t = format!(
                    " {} · {} · {} · {}",
                    truncate(&one_line(p.name()), 40),
                    truncate(&one_line(k), 40),
                    p.addr,
                    client_label(&p.client)
                );
                if !p.online {
                    t.push_str(" · offline");
                } else if p.away {
                    t.push_str(" · away");
                    if let Some(a) = &p.absence {
                        t.push_str(&format!(": {}", truncate(&one_line(a), 60)));
                    }
                }
                t.push(' ');
                t
            }
            None => format!(" {} ", one_line(k)),
        },
    }
}

/// `label` centred in a rule of `fill` across `w` columns (a date, the unread mark).
fn rule(label: &str, fill: char, w: usize) -> String {
    let side = fill.to_string().repeat(w.saturating_sub(width(label)) / 2);
    format!("{side}{label}{side}")
}

fn draw_conversation(f: &mut Frame, app: &mut App, theme: &Theme, area: Rect) {
    let focused = app.focus == Focus::Conversation;
    let block = Block::default().borders(Borders::ALL).border_style(theme.focused(focused)).title(conv_title(app));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let (h, w) = (inner.height as usize, inner.width as usize);
    if h == 0 || w < 4 {
        return;
    }
    let conv = app.current.clone();
    let Some(c) = app.convs.get(&conv) else {
        f.render_widget(Paragraph::new(Line::styled("no messages yet", theme.dim())), inner);
        return;
    };
    // A new selection is brought into view once (then PgUp may move away).
    let reveal = c.selected.filter(|s| c.shown_selection != Some(*s) && *s < c.items.len());
    // From the newest item back, as many lines as fill the view plus the
    // scroll (and down to a selection to reveal).
    let want = h + c.scroll;
    // Each item's lines, newest item first; joined once below (prepending to
    // one vector would copy everything under it again for every item).
    let mut blocks: Vec<Vec<Line<'static>>> = Vec::new();
    let mut count = 0;
    // The selected item's lines, counted from the bottom: [below, below + len).
    let mut selected_span: Option<(usize, usize)> = None;
    // The unread mark goes above the mark-th incoming message from the end;
    // `mark_below`: the lines under it.
    let mark = c.unread_mark.filter(|n| *n > 0);
    let mark_at = mark.map(|n| n + c.after_mark);
    let mut incoming = 0;
    let mut mark_below: Option<usize> = None;
    // Each item's local date, carried to the next (older) item's turn.
    let date = |i: usize| app.local(c.items[i].time()).date_naive();
    let mut day_before: Option<chrono::NaiveDate> = None;
    let mut i = c.items.len();
    while i > 0
        && (count < want || reveal.is_some_and(|r| i > r) || (c.reveal_mark && mark.is_some() && mark_below.is_none()))
    {
        i -= 1;
        let item = &c.items[i];
        let mut block_lines = item_lines(app, theme, item, w, focused && c.selected == Some(i), focused);
        // Counted as the unread count counts: the peer's messages, not its broadcasts.
        if matches!(item, Item::Msg(m) if m.dir == Dir::In && !m.broadcast) {
            incoming += 1;
            if Some(incoming) == mark_at {
                let label = format!(" {} new ", mark.unwrap_or_default());
                block_lines.insert(0, Line::styled(rule(&label, '╌', w), theme.accent()));
                mark_below = Some(count + block_lines.len() - 1);
            }
        }
        let day = day_before.take().unwrap_or_else(|| date(i));
        day_before = (i > 0).then(|| date(i - 1));
        let new_day = day_before != Some(day);
        if new_day {
            let label = format!(" {} ", app.local(item.time()).format("%a %-d %b %Y"));
            block_lines.insert(0, Line::styled(rule(&label, '─', w), theme.dim()));
        }
        if reveal == Some(i) {
            selected_span = Some((count, block_lines.len()));
        }
        count += block_lines.len();
        blocks.push(block_lines);
    }
    let mut lines: Vec<Line<'static>> = Vec::with_capacity(count);
    for b in blocks.into_iter().rev() {
        lines.extend(b);
    }
    let total = lines.len();
    let max_scroll = total.saturating_sub(h);
    let c = app.convs.get_mut(&conv).expect("present");
    if c.reveal_mark {
        // Opened with more unread than fits: start at the mark (its line on top).
        if let Some(below) = mark_below {
            c.scroll = (below + 1).saturating_sub(h);
        }
        c.reveal_mark = false;
    }
    if let Some((below, len)) = selected_span {
        // Its first line at least: the top of a tall item, else all of it.
        if below + len > c.scroll + h {
            c.scroll = (below + len).saturating_sub(h);
        } else if below < c.scroll {
            c.scroll = below;
        }
        c.shown_selection = c.selected;
    }
    let want = h + c.scroll;
    let at_top = i == 0 && lines.len() <= want;
    if i == 0 {
        c.scroll = c.scroll.min(max_scroll);
    }
    c.at_top = at_top && c.scroll >= max_scroll;
    if c.scroll > 0 {
        // On the bottom border (known only now: drawing may scroll).
        let label = match c.new_below {
            0 => " ↓ newer below (PgDn) ".to_string(),
            n => format!(" ↓ {n} new below (PgDn) "),
        };
        let row = Rect { x: inner.x, y: area.bottom() - 1, width: inner.width, height: 1 };
        f.render_widget(Line::styled(label, theme.accent()).right_aligned(), row);
    }
    let end = total - c.scroll.min(total);
    let start = end.saturating_sub(h);
    let mut shown: Vec<Line> = lines.drain(start..end).collect();
    if c.items.is_empty() {
        shown.push(Line::styled("no messages yet", theme.dim()));
    } else if c.at_top && c.more {
        shown.insert(0, Line::styled("(PgUp loads older messages)", theme.dim()));
        shown.truncate(h);
    }
    f.render_widget(Paragraph::new(shown), inner);
}

fn state_span(theme: &Theme, m: &Msg) -> Option<Span<'static>> {
    if m.dir != Dir::Out {
        return None;
    }
    if m.error.is_some() {
        return Some(Span::styled("✗ not sent", theme.error()));
    }
    if m.recipients.is_empty() {
        return if m.to_group {
            Some(Span::styled("sending…", theme.dim()))
        } else {
            Some(Span::styled("sent", theme.dim()))
        };
    }
    let n = m.recipients.len();
    let count = |d: Delivery| m.recipients.iter().filter(|r| r.state == d).count();
    let (read, delivered, queued, failed, sending) = (
        count(Delivery::Read),
        count(Delivery::Delivered),
        count(Delivery::Queued),
        count(Delivery::Failed),
        count(Delivery::Sending),
    );
    let label = |word: &str, k: usize| if n == 1 { word.to_string() } else { format!("{word} {k}/{n}") };
    Some(if failed > 0 {
        Span::styled(format!("✗ {}", label("failed", failed)), theme.error())
    } else if sending > 0 {
        Span::styled(label("sending…", n - sending), theme.dim())
    } else if queued > 0 {
        Span::styled(format!("⏸ {}", label("queued", queued)), theme.fg(Color::Yellow))
    } else if read == n {
        Span::styled("✓✓ read", theme.ok())
    } else {
        Span::styled(format!("✓ {}", label("delivered", delivered + read)), theme.ok())
    })
}

/// The lines of one conversation item, `w` columns wide (a one-column
/// gutter marks the selection).
fn item_lines(app: &App, theme: &Theme, item: &Item, w: usize, selected: bool, focused: bool) -> Vec<Line<'static>> {
    let gutter = if selected { Span::styled("▌", theme.accent()) } else { Span::raw(" ") };
    let w = w.saturating_sub(1).max(1);
    let time = |t| app.local(t).format("%H:%M").to_string();
    let m = match item {
        Item::Notice { time: t, text } => {
            let body = format!("{} * {}", time(*t), text::sanitize(text));
            return wrap(&body, w)
                .into_iter()
                .map(|l| Line::from(vec![gutter.clone(), Span::styled(l, theme.notice())]))
                .collect();
        }
        Item::Msg(m) => m,
    };
    let nick_style = if m.dir == Dir::Out { theme.me() } else { theme.accent() };
    let nick = truncate(&one_line(if m.dir == Dir::Out { "me" } else { &m.nick }), 16);
    let prefix_w = 6 + width(&nick) + 1;
    let mut tags: Vec<Span> = Vec::new();
    if m.broadcast {
        tags.push(Span::styled("[broadcast] ", theme.fg(Color::Magenta)));
    }
    match m.security {
        Some(Security::Verified) => tags.push(Span::styled("🔒 ", theme.fg(Color::Green))),
        Some(Security::Encrypted) => tags.push(Span::styled("🔒(unsigned) ", theme.dim())),
        Some(Security::KeyChanged) => tags.push(Span::styled("🔒 KEY CHANGED ", theme.fg(Color::Red))),
        Some(Security::Plain) | None => {}
    }
    if m.auto {
        tags.push(Span::styled("[auto-reply] ", theme.dim()));
    }
    if m.sealed {
        let tag = match (m.dir, m.opened) {
            (Dir::In, true) => "[opened] ",
            _ => "[sealed] ",
        };
        tags.push(Span::styled(tag, theme.fg(Color::Yellow)));
    }
    let body = if m.is_closed() {
        if selected && focused {
            "Enter opens it (the sender sees it was read)".to_string()
        } else {
            "Tab to select it, Enter to open".to_string()
        }
    } else {
        text::sanitize(&m.text)
    };
    // A narrow view puts the text under the name instead of beside it.
    let (indent, body_w, below) =
        if w >= prefix_w + 12 { (prefix_w, w - prefix_w, false) } else { (2, w.saturating_sub(2).max(1), true) };
    let tag_w: usize = tags.iter().map(|s| width(&s.content)).sum();
    let mut text_lines = if body.is_empty() && m.offer.is_some() {
        Vec::new()
    } else {
        // The tags take room on the first line: wrap with a placeholder.
        let placeholder = "\u{a0}".repeat(tag_w.min(body_w.saturating_sub(1)));
        let mut l = wrap(&format!("{placeholder}{body}"), body_w);
        if let Some(first) = l.first_mut() {
            *first = first.trim_start_matches('\u{a0}').to_string();
        }
        l
    };
    if text_lines.is_empty() {
        text_lines.push(String::new());
    }
    let body_style = if m.is_closed() { theme.dim() } else { Style::default() };
    let pad = " ".repeat(indent);
    let mut out: Vec<Line> = Vec::new();
    let head =
        vec![gutter.clone(), Span::styled(time(m.time) + " ", theme.dim()), Span::styled(nick + " ", nick_style)];
    let mut rest = text_lines.into_iter();
    let first_text = rest.next().unwrap_or_default();
    if below {
        out.push(Line::from(head));
        let mut l = vec![gutter.clone(), Span::raw(pad.clone())];
        l.extend(tags);
        l.push(Span::styled(first_text, body_style));
        out.push(Line::from(l));
    } else {
        let mut l = head;
        l.extend(tags);
        l.push(Span::styled(first_text, body_style));
        out.push(Line::from(l));
    }
    for t in rest {
        out.push(Line::from(vec![gutter.clone(), Span::raw(pad.clone()), Span::styled(t, body_style)]));
    }
    if let Some(o) = &m.offer {
        for file in &o.files {
            let kind = if file.dir { "folder" } else { "file  " };
            let size = if file.size > 0 || m.dir == Dir::In {
                format!("  {}", crate::term::human_size(file.size))
            } else {
                String::new()
            };
            let name_w = body_w.saturating_sub(width(kind) + 2 + width(&size)).max(1);
            out.push(Line::from(vec![
                gutter.clone(),
                Span::raw(pad.clone()),
                Span::styled(format!("┊ {kind} "), theme.dim()),
                Span::styled(truncate(&one_line(&file.name), name_w), Style::default().add_modifier(Modifier::BOLD)),
                Span::styled(size, theme.dim()),
            ]));
        }
        if m.dir == Dir::In {
            for l in offer_state_lines(theme, &o.state, selected && focused, body_w) {
                let mut spans = vec![gutter.clone(), Span::raw(pad.clone())];
                spans.extend(l.spans);
                out.push(Line::from(spans));
            }
        }
    }
    if let Some(e) = &m.error {
        for l in wrap(&format!("✗ {}", text::sanitize(e)), body_w) {
            out.push(Line::from(vec![gutter.clone(), Span::raw(pad.clone()), Span::styled(l, theme.error())]));
        }
    }
    if let Some(state) = state_span(theme, m) {
        // On the last line if it fits, else on its own.
        let last = out.last_mut().expect("at least one line");
        let used: usize = last.spans.iter().map(|s| width(&s.content)).sum();
        if used + 2 + width(&state.content) <= w + 1 {
            last.spans.push(Span::raw("  "));
            last.spans.push(state);
        } else {
            out.push(Line::from(vec![gutter.clone(), Span::raw(pad.clone()), state]));
        }
    }
    out
}

fn offer_state_lines(theme: &Theme, state: &OfferState, active: bool, w: usize) -> Vec<Line<'static>> {
    match state {
        OfferState::Pending => {
            if active {
                vec![Line::from(vec![
                    Span::styled(" a ", theme.key()),
                    Span::raw(" accept  "),
                    Span::styled(" s ", theme.key()),
                    Span::raw(" save to…  "),
                    Span::styled(" d ", theme.key()),
                    Span::raw(" decline"),
                ])]
            } else {
                vec![Line::styled("┊ offered to you: Tab to select, then a accepts, d declines", theme.dim())]
            }
        }
        OfferState::Declined => vec![Line::styled("┊ declined", theme.dim())],
        OfferState::Fetching { name, done, total, bytes_per_sec } => {
            let pct = if *total > 0 { (*done as f64 / *total as f64 * 100.0).min(100.0) } else { 0.0 };
            let rate = if *bytes_per_sec > 0.0 {
                format!("  {}/s", crate::term::human_size(*bytes_per_sec as u64))
            } else {
                String::new()
            };
            let figures = format!(
                " {pct:>3.0}%  {} of {}{rate}",
                crate::term::human_size(*done),
                crate::term::human_size(*total)
            );
            let bar_w = w.saturating_sub(width(&figures)).clamp(4, 30);
            let filled = (((pct / 100.0) * bar_w as f64).round() as usize).min(bar_w);
            let bar = format!("{}{}", "█".repeat(filled), "░".repeat(bar_w - filled));
            vec![
                Line::from(vec![Span::styled(bar, theme.accent()), Span::raw(figures)]),
                Line::styled(format!("┊ receiving {}", truncate(&one_line(name), w.saturating_sub(12))), theme.dim()),
            ]
        }
        OfferState::Done { paths } => paths
            .iter()
            .map(|p| Line::styled(format!("✓ saved {}", truncate(&one_line(p), w.saturating_sub(8))), theme.ok()))
            .collect(),
        OfferState::Failed { error } => {
            let mut v: Vec<Line> = wrap(&format!("✗ {}", text::sanitize(error)), w.max(1))
                .into_iter()
                .map(|l| Line::styled(l, theme.error()))
                .collect();
            v.push(Line::styled("┊ a tries again (it resumes), d declines", theme.dim()));
            v
        }
    }
}

/// The compose text's lines and its cursor (row, column), from [`Editor::layout`](super::text::Editor::layout).
type Composed = (Vec<String>, (usize, usize));

fn compose_height(app: &App, text: &Composed, area: Rect) -> u16 {
    let lines = match &app.prompt {
        Some(p) => 1 + p.candidates.len().min(4),
        None => text.0.len(),
    };
    let max = (area.height / 3).max(3);
    (lines.min(1000) as u16 + 2).clamp(3, max.max(3)).min(area.height.saturating_sub(3).max(3))
}

fn draw_compose(f: &mut Frame, app: &App, theme: &Theme, text: Composed, area: Rect) {
    if area.height < 3 || area.width < 4 {
        return;
    }
    let inner_w = area.width.saturating_sub(2) as usize;
    let inner_h = area.height.saturating_sub(2) as usize;
    if let Some(p) = &app.prompt {
        let title = match p.kind {
            PromptKind::File => format!(" File or folder to send to {} ", app.target_label()),
            PromptKind::Away => " Away text · Enter sets it · Esc cancels ".to_string(),
            PromptKind::SaveTo => " Save the files in this folder (created if missing) ".to_string(),
        };
        let block = Block::default().borders(Borders::ALL).border_style(theme.accent()).title(title);
        let inner = block.inner(area);
        f.render_widget(block, area);
        let (lines, (_, col)) = p.editor.layout(usize::MAX / 2);
        let line = lines.concat();
        // Keep the cursor in view: show the end of a long path.
        let skip = col.saturating_sub(inner_w.saturating_sub(1));
        let shown: String = one_line(&skip_cols(&line, skip));
        let mut out = vec![Line::raw(shown)];
        let cands = p.candidates.len();
        let room = inner_h.saturating_sub(1);
        let shown_cands = if cands <= room { cands } else { room.saturating_sub(1) };
        for c in p.candidates.iter().take(shown_cands) {
            out.push(Line::styled(one_line(c), theme.dim()));
        }
        if cands > shown_cands && room > 0 {
            out.push(Line::styled(format!("… {} more (type more, then Tab)", cands - shown_cands), theme.dim()));
        }
        f.render_widget(Paragraph::new(out), inner);
        f.set_cursor_position((inner.x + (col - skip) as u16, inner.y));
        return;
    }
    let focused = app.focus == Focus::Compose;
    let mut title = format!(" To: {} ", truncate(&app.target_label(), inner_w.saturating_sub(16)));
    if app.sealed {
        title.push_str("[sealed] ");
    }
    let block = Block::default().borders(Borders::ALL).border_style(theme.focused(focused)).title(title);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let (lines, (row, col)) = text;
    let top = (row + 1).saturating_sub(inner_h);
    let shown: Vec<Line> = if app.editor.is_empty() && !focused {
        let hint = if app.focus == Focus::Peers { "Enter on a peer, or Tab, to write" } else { "Tab to write here" };
        vec![Line::styled(hint, theme.dim())]
    } else {
        lines.into_iter().skip(top).take(inner_h).map(Line::raw).collect()
    };
    f.render_widget(Paragraph::new(shown), inner);
    if focused {
        f.set_cursor_position((inner.x + col.min(inner_w.saturating_sub(1)) as u16, inner.y + (row - top) as u16));
    }
}

/// `s` without its first `cols` columns.
fn skip_cols(s: &str, cols: usize) -> String {
    use unicode_segmentation::UnicodeSegmentation;
    let mut w = 0;
    let mut out = String::new();
    for g in s.graphemes(true) {
        if w >= cols {
            out.push_str(g);
        }
        w += width(g);
    }
    out
}

fn draw_status(f: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let line = match &app.status {
        Some((text, Level::Incoming)) => Line::from(vec![
            Span::styled(" ✉ ", theme.accent()),
            Span::styled(one_line(text), Style::default().add_modifier(Modifier::BOLD)),
        ]),
        Some((text, Level::Error)) => Line::styled(
            format!(" {}", truncate(&one_line(text), area.width.saturating_sub(1) as usize)),
            theme.error(),
        ),
        Some((text, Level::Info)) => {
            Line::styled(format!(" {}", truncate(&one_line(text), area.width.saturating_sub(1) as usize)), theme.dim())
        }
        None if !app.marked.is_empty() => Line::styled(
            format!(" {} peers marked: messages go to all of them (Esc in the list clears)", app.marked.len()),
            theme.dim(),
        ),
        None => Line::raw(""),
    };
    f.render_widget(Paragraph::new(line), area);
}

fn draw_footer(f: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let keys: &[(&str, &str)] = if let Some(p) = &app.prompt {
        match p.kind {
            PromptKind::File => &[("Enter", "send"), ("Tab", "complete"), ("Esc", "cancel"), ("^Q", "quit")],
            PromptKind::Away => &[("Enter", "go away"), ("Esc", "cancel"), ("^Q", "quit")],
            PromptKind::SaveTo => &[("Enter", "fetch"), ("Tab", "complete"), ("Esc", "cancel"), ("^Q", "quit")],
        }
    } else {
        match app.focus {
            Focus::Peers => &[
                ("↑↓", "move"),
                ("Enter", "chat"),
                ("Space", "mark"),
                ("type", "filter"),
                ("Tab", "focus"),
                ("^F", "file"),
                ("^A", "away"),
                ("F1", "help"),
                ("^Q", "quit"),
            ],
            Focus::Compose => &[
                ("Enter", "send"),
                ("Alt+Enter", "newline"),
                ("^S", "seal"),
                ("^F", "file"),
                ("PgUp", "scroll"),
                ("Tab", "focus"),
                ("Esc", "peers"),
                ("F1", "help"),
                ("^Q", "quit"),
            ],
            Focus::Conversation => &[
                ("↑↓", "select"),
                ("Enter", "open"),
                ("a", "accept"),
                ("d", "decline"),
                ("PgUp", "scroll"),
                ("Tab", "focus"),
                ("Esc", "peers"),
                ("F1", "help"),
                ("^Q", "quit"),
            ],
        }
    };
    // Too narrow for all: drop from the middle, so help and quit stay.
    let mut keys: Vec<&(&str, &str)> = keys.iter().collect();
    let cols = |keys: &[&(&str, &str)]| keys.iter().map(|(k, w)| width(k) + width(w) + 4).sum::<usize>();
    while cols(&keys) > area.width as usize && keys.len() > 2 {
        keys.remove(keys.len() - 3);
    }
    let mut spans = Vec::new();
    for (k, what) in keys {
        spans.push(Span::styled(format!(" {k} "), theme.key()));
        spans.push(Span::raw(format!(" {what} ")));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The keys, for the help screen and the README.
pub const HELP: &[(&str, &str)] = &[
    ("Everywhere", ""),
    ("Tab, Shift+Tab", "go to the peers, compose box, conversation"),
    ("PgUp, PgDn", "scroll; at the top, older history loads"),
    ("Ctrl+F", "send a file or folder (Tab completes)"),
    ("Ctrl+A", "go away with a text, or come back"),
    ("Ctrl+S", "seal the next messages (opened = read)"),
    ("Ctrl+G", "shake the open peer's window (FeiQ)"),
    ("F5", "refresh: drop peers that do not answer"),
    ("F1", "this help"),
    ("Ctrl+Q, Ctrl+C", "quit (Ctrl+C first clears the text)"),
    ("Peer list", ""),
    ("↑ ↓ Home End", "move"),
    ("Enter", "chat with the peer, the group or everyone"),
    ("Space", "mark peers or a group (Tab writes to them)"),
    ("letters", "filter (nick, user, host, group, IP)"),
    ("Esc", "clear the filter, then the marks"),
    ("Compose", ""),
    ("Enter", "send"),
    ("Alt+Enter, Ctrl+J", "new line (a paste keeps its lines)"),
    ("Ctrl+U, Ctrl+W", "clear, delete a word"),
    ("Conversation", ""),
    ("↑ ↓", "select a message"),
    ("Enter", "open a sealed message"),
    ("a, s, d", "accept, save into a folder, or decline"),
];

fn draw_help(f: &mut Frame, theme: &Theme, area: Rect) {
    let w = area.width.saturating_sub(4).min(66);
    let h = area.height.saturating_sub(2).min(HELP.len() as u16 + 3);
    let popup = Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h };
    f.render_widget(Clear, popup);
    // A wide character whose second half lies under the left border would
    // be drawn over it: blank it.
    if popup.x > area.x {
        let buf = f.buffer_mut();
        for y in popup.y..popup.bottom() {
            let cell = &mut buf[(popup.x - 1, y)];
            if width(cell.symbol()) > 1 {
                cell.set_symbol(" ");
            }
        }
    }
    let block = Block::default().borders(Borders::ALL).border_style(theme.accent()).title(" Help · any key closes ");
    let inner = block.inner(popup);
    f.render_widget(block, popup);
    let key_w = 20.min(inner.width as usize / 2);
    let lines: Vec<Line> = HELP
        .iter()
        .map(|(k, what)| {
            if what.is_empty() {
                Line::styled(k.to_string(), theme.accent())
            } else {
                Line::from(vec![
                    Span::styled(fit(&format!("  {k}"), key_w), Style::default().add_modifier(Modifier::BOLD)),
                    Span::raw(what.to_string()),
                ])
            }
        })
        .collect();
    f.render_widget(Paragraph::new(lines), inner);
}
