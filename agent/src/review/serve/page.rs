//! The page's HTML, rendered on the server: the filter form, the live part
//! (alerts and denials, the timeline, the records; re-sent whole over
//! Server-Sent Events after each batch) and one record's detail with its
//! chain. Records carry attacker-chosen text (argv, comm, paths), so every
//! value goes through [`esc`](super::html::esc); the page runs no inline script, so the
//! Content-Security-Policy can forbid all but `/live.js`.

use std::fmt::Write as _;

use super::{
    chart,
    html::esc,
    live::Snapshot,
    query::{NAMES, Params, encode},
};
use crate::review::{
    Entry, Status, fields,
    filter::Filter,
    summary,
    table::{Table, cell_text},
};

/// Rows the records table shows at most (the newest); the count of the
/// rest is said.
pub const MAX_ROWS: usize = 500;
/// Alerts and denials the live list shows (the newest).
pub const MAX_ALERTS: usize = 20;

fn head(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{}</title><link rel=\"stylesheet\" href=\"/style.css\"></head><body>\n",
        esc(title)
    )
}

/// A CSS class for a verdict, from its word.
fn status_class(s: &Status) -> &'static str {
    match s {
        Status::Verified => "ok",
        Status::Unsigned => "unsigned",
        Status::Failed(_) => "failed",
        Status::Untrusted(_) => "untrusted",
        Status::Malformed(_) => "malformed",
    }
}

/// The link to an entry's detail, keeping the view's filters for the way
/// back.
fn detail_href(e: &Entry, params: &Params) -> String {
    let sel = match (fields::host_key(&e.record), fields::seq(&e.record)) {
        (Some(h), Some(seq)) if !matches!(e.status, Status::Malformed(_)) => {
            format!("host={}&seq={seq}", encode(&h))
        }
        _ => format!("line={}", e.line),
    };
    let back = params.encode();
    if back.is_empty() {
        format!("/record?{sel}")
    } else {
        format!("/record?{sel}&back={}", encode(&back))
    }
}

/// The records as an HTML table, newest first; the seq links to the detail.
fn records_table(id: &str, entries: &[&Entry], params: &Params) -> String {
    let table: Table = summary::records(entries, false);
    let mut out = format!("<table id=\"{id}-table\"><thead><tr>");
    for c in &table.columns {
        let _ = write!(out, "<th>{}</th>", esc(c));
    }
    out.push_str("</tr></thead><tbody>\n");
    for (e, row) in entries.iter().zip(&table.rows).rev() {
        let decision = fields::action(&e.record).unwrap_or("none");
        let _ = write!(
            out,
            "<tr class=\"v-{} d-{}\" data-line=\"{}\" data-kind=\"{}\" \
             data-target-pid=\"{}\">",
            status_class(&e.status),
            esc(decision),
            e.line,
            esc(fields::kind(&e.record)),
            e.record["target"]["pid"]
                .as_u64()
                .map_or(String::new(), |p| p.to_string()),
        );
        for (i, cell) in row.iter().enumerate() {
            let text = esc(&cell_text(cell));
            if table.columns[i] == "seq" {
                let _ = write!(
                    out,
                    "<td><a class=\"detail\" href=\"{}\">{text}</a></td>",
                    esc(&detail_href(e, params))
                );
            } else {
                let _ = write!(out, "<td class=\"c-{}\">{text}</td>", table.columns[i]);
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>");
    out
}

/// The part of the page that live updates replace.
pub fn fragment(snap: &Snapshot, params: &Params, filter: &Filter) -> String {
    let all = &snap.reviewed.entries;
    let shown: Vec<&Entry> = all.iter().filter(|e| filter.matches(e)).collect();
    let bad = all
        .iter()
        .filter(|e| !matches!(e.status, Status::Verified | Status::Unsigned))
        .count();
    let mut out = String::new();
    if let Some(e) = &snap.source_error {
        let _ = write!(
            out,
            "<p class=\"error\" id=\"source-error\">Source: {}</p>",
            esc(e)
        );
    }
    let _ = write!(
        out,
        "<p class=\"meta\" id=\"meta\" data-version=\"{}\">{} lines read, {} match the filters, \
         {bad} did not verify.</p>",
        snap.version,
        all.len(),
        shown.len()
    );
    let alerts: Vec<&Entry> = shown
        .iter()
        .copied()
        .filter(|e| matches!(fields::action(&e.record), Some("alert" | "deny")))
        .collect();
    let recent = &alerts[alerts.len().saturating_sub(MAX_ALERTS)..];
    out.push_str("<section id=\"alerts\"><h2>Alerts and denials</h2>");
    if recent.is_empty() {
        out.push_str("<p>None among the selected records.</p>");
    } else {
        out.push_str(&records_table("alerts", recent, params));
    }
    out.push_str("</section>\n<section id=\"timeline\"><h2>Timeline</h2>");
    out.push_str(&chart::timeline(&shown));
    out.push_str("</section>\n<section id=\"history\"><h2>Records</h2>");
    let from = shown.len().saturating_sub(MAX_ROWS);
    if from > 0 {
        let _ = write!(
            out,
            "<p class=\"meta\">The newest {MAX_ROWS} of {} are listed; narrow the filters for \
             older ones.</p>",
            shown.len()
        );
    }
    out.push_str(&records_table("history", &shown[from..], params));
    out.push_str("</section>\n");
    out
}

/// The filter form: one field per flag, one more for each repeated value.
fn form(params: &Params) -> String {
    let mut out = String::from("<form id=\"filters\" method=\"get\" action=\"/\">");
    for name in NAMES {
        let mut values = params.all(name);
        if values.is_empty() {
            values.push(String::new());
        }
        for v in values {
            let _ = write!(
                out,
                "<label>{name} <input name=\"{name}\" value=\"{}\" size=\"12\"></label> ",
                esc(&v)
            );
        }
    }
    let checked = if params.first("failed").is_some_and(|v| v != "0") {
        " checked"
    } else {
        ""
    };
    let _ = write!(
        out,
        "<label>failed <input type=\"checkbox\" name=\"failed\" value=\"1\"{checked}></label> \
         <button type=\"submit\">Filter</button> <a href=\"/\">clear</a></form>"
    );
    out
}

/// The whole page: form, then the live part, which `/live.js` keeps
/// current from `/events` with the same filters.
pub fn index(snap: &Snapshot, params: &Params, filter: &Filter) -> String {
    let qs = params.encode();
    let mut out = head("debugmon review");
    let _ = write!(
        out,
        "<header><h1>debugmon review</h1>{}</header>\n<main id=\"live\" \
         data-events=\"{}\">{}</main>\n<footer>Every record is verified before it is shown \
         (ok, unsigned, FAILED, UNTRUSTED, MALFORMED as <code>debugmon review</code> says). \
         <span id=\"conn\">live updates: connecting</span></footer>\n\
         <script src=\"/live.js\"></script></body></html>\n",
        form(params),
        esc(&format!("/events?{qs}")),
        fragment(snap, params, filter)
    );
    out
}

/// Which record the detail page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Every copy of a host's seq (duplicates and conflicts included).
    Seq { host: String, seq: u64 },
    /// A line of the input (one that is not a record).
    Line(u64),
}

impl Selector {
    pub fn of(params: &Params) -> Result<Self, String> {
        if let Some(l) = params.first("line") {
            return l
                .parse()
                .map(Self::Line)
                .map_err(|_| format!("line {l:?} is not a number"));
        }
        match (params.first("host"), params.first("seq")) {
            (Some(h), Some(s)) => Ok(Self::Seq {
                host: h.to_owned(),
                seq: s
                    .parse()
                    .map_err(|_| format!("seq {s:?} is not a number"))?,
            }),
            _ => Err("give host and seq, or line".into()),
        }
    }

    fn matches(&self, e: &Entry) -> bool {
        match self {
            Self::Line(l) => e.line == *l,
            Self::Seq { host, seq } => {
                fields::host_key(&e.record).as_deref() == Some(host.as_str())
                    && fields::seq(&e.record) == Some(*seq)
            }
        }
    }
}

/// A table of `t` as HTML.
fn plain_table(id: &str, t: &Table) -> String {
    let mut out = format!("<table id=\"{id}\"><thead><tr>");
    for c in &t.columns {
        let _ = write!(out, "<th>{}</th>", esc(c));
    }
    out.push_str("</tr></thead><tbody>");
    for row in &t.rows {
        out.push_str("<tr>");
        for c in row {
            let _ = write!(out, "<td>{}</td>", esc(&cell_text(c)));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// One record (every copy of it) in full, its verdict and its host's chain;
/// `None` when the input has no such record.
pub fn detail(snap: &Snapshot, sel: &Selector, back: Option<&str>) -> Option<String> {
    let found: Vec<&Entry> = snap
        .reviewed
        .entries
        .iter()
        .filter(|e| sel.matches(e))
        .collect();
    if found.is_empty() {
        return None;
    }
    let title = match sel {
        Selector::Seq { host, seq } => format!("{host} seq {seq}"),
        Selector::Line(l) => format!("line {l}"),
    };
    let mut out = head(&format!("debugmon review: {title}"));
    let back = back.map_or_else(|| "/".to_owned(), |b| format!("/?{b}"));
    let _ = write!(
        out,
        "<header><h1>{}</h1><a id=\"back\" href=\"{}\">back to the list</a></header><main>",
        esc(&title),
        esc(&back)
    );
    for e in &found {
        let _ = write!(
            out,
            "<section class=\"record\"><h2>Line {}</h2><p>Verified: <strong id=\"verdict-{}\" \
             class=\"verdict v-{}\">{}</strong></p>",
            e.line,
            e.line,
            status_class(&e.status),
            esc(&e.status.text())
        );
        out.push_str(&plain_table("what", &summary::records(&[*e], false)));
        if let Some(name) = e.record["host"]["name"].as_str() {
            let hosts = summary::hosts(&snap.reviewed, &[name.to_owned()]);
            out.push_str("<h3>Chain of this host</h3>");
            out.push_str(&plain_table("chain", &hosts));
        }
        let pretty = if e.record.is_null() {
            "(not JSON)".to_owned()
        } else {
            serde_json::to_string_pretty(&e.record).unwrap_or_default()
        };
        let _ = write!(
            out,
            "<h3>Record</h3><pre class=\"json\">{}</pre></section>",
            esc(&pretty)
        );
    }
    out.push_str("</main></body></html>\n");
    Some(out)
}

/// A page that says what went wrong (a filter that does not parse, a
/// record that is not there).
pub fn message(title: &str, text: &str) -> String {
    let mut out = head(title);
    let _ = writeln!(
        out,
        "<main><h1>{}</h1><p id=\"message\">{}</p><p><a href=\"/\">the list</a></p></main>\
         </body></html>",
        esc(title),
        esc(text)
    );
    out
}
