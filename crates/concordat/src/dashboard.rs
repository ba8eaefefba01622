//! The flow dashboard on the admin listener (DESIGN.md §6): `GET /` is one self-contained HTML page with the
//! agencies as nodes and the flows between them as edges (events shared, the rate per minute, events
//! withheld, failed deliveries), the dead letters by stage, and the episodes whose originator is still
//! owed outcome feedback past its deadline. `GET /dashboard/data` is the same view as JSON, which the
//! page's script fetches every few seconds.
//!
//! Like `/metrics`, neither needs a token: they hold agency ids and kinds, counts, rates, withheld reasons,
//! dead-letter stage names and times, never personal data. Episode ids of overdue episodes are shown only
//! to a caller that sends the admin token. What is gathered serves every caller for a few seconds, so the
//! open page cannot be used to load the store. The admin listener binds to loopback by default.
//!
//! Rendering is pure: [`render_page`], [`render_body`] and [`to_json`] take a [`Snapshot`] and return text,
//! and read no clock. The page arrives rendered, so it reads without its script. The JSON carries the
//! rendered body next to the figures and the script swaps it in, so there is one renderer, and every text
//! that reaches the page was escaped here. Gathering a snapshot ([`snapshot`]) is the shell: it asks the
//! store and RabbitMQ separately, and a part that cannot be had is shown as unavailable while the others
//! still show.
//!
//! This is not an API for tooling: `/dashboard/data` is the page's own feed and changes with it. Tooling
//! reads `/v1/admin/flows` and `/v1/admin/dead-letters`.

use std::collections::BTreeSet;
use std::f64::consts::PI;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, SecondsFormat, Utc};
use concordat_bus::{Stage, count_dead_letters};
use concordat_episode::{AgencyId, AgencyKind, EpisodeId};
use concordat_policy::html_escape as escape;
use concordat_store::{EpisodeState, PairFlow, StoreError};
use serde_json::{Value, json};

use crate::admin_api::AdminApi;

/// The page, with `{{…}}` placeholders that [`render_page`] fills.
const PAGE: &str = include_str!("dashboard.html");

/// The period the totals cover, in minutes: the last 24 hours, as `/v1/admin/flows` by default.
pub const WINDOW_MINUTES: i64 = 24 * 60;

/// The period the rates are taken over, in minutes.
pub const RATE_MINUTES: i64 = 15;

/// How often the page's script refreshes, in milliseconds.
const REFRESH_MS: u32 = 5_000;

/// How long the store or RabbitMQ may take to answer before its part is shown as unavailable: the page
/// must still come back when one of them hangs.
const PART_TIMEOUT: Duration = Duration::from_secs(5);

/// The most overdue episodes listed; the rest are counted.
const OVERDUE_LISTED: usize = 100;

/// What the dashboard shows, gathered at one moment. Each part the store or RabbitMQ provides is an
/// [`Unavailable`] when it could not be had, so the page still shows the others.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// When it was gathered: the end of both windows, and the time "overdue" is judged at.
    pub as_of: DateTime<Utc>,
    /// The area the policy covers, for the page's title.
    pub area: String,
    /// The agencies of the policy, in its order: each is a node, with traffic or not.
    pub agencies: Vec<(AgencyId, AgencyKind)>,
    /// The flows between agencies over the last [`WINDOW_MINUTES`], by source then recipient.
    pub flows: Result<Vec<Flow>, Unavailable>,
    /// How many messages each stage's dead-letter queue holds, in pipeline order.
    pub dead_letters: Result<Vec<(Stage, u32)>, Unavailable>,
    /// The episodes past their feedback deadline without feedback, oldest deadline first.
    pub overdue: Result<Vec<Overdue>, Unavailable>,
    /// Whether episode ids are shown: only to a caller that sent the admin token. An episode id is not a
    /// secret that grants anything, but a list of live ids invites probing, so the open page shows none.
    pub ids_shown: bool,
}

/// One source and recipient over the window, with the events shared over the last [`RATE_MINUTES`].
#[derive(Debug, Clone)]
pub struct Flow {
    /// The totals over the window, as the impact report counts them.
    pub pair: PairFlow,
    /// Events shared over the last [`RATE_MINUTES`].
    pub recent_shared: u64,
}

impl Flow {
    /// Events shared per minute over the last [`RATE_MINUTES`].
    #[must_use]
    pub fn shared_per_minute(&self) -> f64 {
        self.recent_shared as f64 / RATE_MINUTES as f64
    }
}

/// An episode whose originator should have had outcome feedback by now.
#[derive(Debug, Clone)]
pub struct Overdue {
    /// The episode.
    pub episode: EpisodeId,
    /// The agency owed the feedback.
    pub originator: AgencyId,
    /// Whether the episode is still open.
    pub state: EpisodeState,
    /// When the feedback was due.
    pub feedback_due_at: DateTime<Utc>,
}

/// Which service a part of the dashboard could not be had from. The cause is logged, not shown: the
/// page needs no token, and an error's text can name hosts and users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// The store failed or did not answer in time.
    Store,
    /// RabbitMQ failed or did not answer in time.
    Broker,
}

impl Unavailable {
    /// What the page says.
    #[must_use]
    pub fn detail(self) -> &'static str {
        match self {
            Unavailable::Store => "the store is unavailable",
            Unavailable::Broker => "RabbitMQ is unavailable",
        }
    }
}

/// How long a gathered snapshot serves every caller: the page refreshes every [`REFRESH_MS`], and an
/// unauthenticated caller must not be able to make the store count flows as fast as it can ask.
const CACHED_FOR: Duration = Duration::from_secs(3);

/// The dashboard's state: the admin API's parts and the last snapshot with when it was gathered.
#[derive(Clone)]
struct Dashboard {
    api: AdminApi,
    cache: Arc<tokio::sync::Mutex<Option<(std::time::Instant, Snapshot)>>>,
}

impl Dashboard {
    /// The snapshot of at most [`CACHED_FOR`] ago, gathered anew when older; callers that arrive while it is
    /// gathered wait for it rather than gather their own. Ids are shown only with the admin token.
    async fn current(&self, headers: &HeaderMap) -> Snapshot {
        let mut cache = self.cache.lock().await;
        let fresh = cache.as_ref().filter(|(at, _)| at.elapsed() < CACHED_FOR).map(|(_, snapshot)| snapshot.clone());
        let mut current = match fresh {
            Some(snapshot) => snapshot,
            None => {
                let gathered = snapshot(&self.api, Utc::now()).await;
                *cache = Some((std::time::Instant::now(), gathered.clone()));
                gathered
            }
        };
        drop(cache);
        current.ids_shown = crate::admin_api::carries_token(&self.api, headers);
        current
    }
}

/// The dashboard's routes, which need no token (see the module documentation); with the admin token they
/// also show episode ids.
pub fn routes(api: AdminApi) -> Router {
    let dashboard = Dashboard { api, cache: Arc::default() };
    Router::new().route("/", get(page)).route("/dashboard/data", get(data)).with_state(dashboard)
}

/// The headers both routes answer with: always fresh, and the page may load only from its own origin.
fn headers(content_type: &'static str) -> [(header::HeaderName, HeaderValue); 4] {
    [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; \
                 base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            ),
        ),
    ]
}

/// `GET /`: the page, rendered with the current figures.
async fn page(State(dashboard): State<Dashboard>, request: HeaderMap) -> Response {
    let snapshot = dashboard.current(&request).await;
    (headers("text/html; charset=utf-8"), render_page(&snapshot)).into_response()
}

/// `GET /dashboard/data`: the figures and the rendered body, for the page's script.
async fn data(State(dashboard): State<Dashboard>, request: HeaderMap) -> Response {
    let snapshot = dashboard.current(&request).await;
    (headers("application/json"), to_json(&snapshot).to_string()).into_response()
}

/// Gathers what the dashboard shows at `now`, asking the store and RabbitMQ at the same time. A part that
/// fails or takes longer than [`PART_TIMEOUT`] is logged and marked unavailable; this never fails.
pub async fn snapshot(api: &AdminApi, now: DateTime<Utc>) -> Snapshot {
    let (flows, dead_letters, overdue) = tokio::join!(flows(api, now), dead_letters(api), overdue(api, now));
    Snapshot {
        as_of: now,
        area: api.policy.area().to_owned(),
        agencies: api.policy.agencies().iter().map(|agency| (agency.id.clone(), agency.kind)).collect(),
        flows,
        dead_letters,
        overdue,
        ids_shown: false,
    }
}

async fn flows(api: &AdminApi, now: DateTime<Utc>) -> Result<Vec<Flow>, Unavailable> {
    let window = now - chrono::Duration::minutes(WINDOW_MINUTES);
    let recent = now - chrono::Duration::minutes(RATE_MINUTES);
    // Both end at `now`, so the recent figures are a part of the window's even while events arrive.
    let both = async {
        let totals = api.store.impact_report(Some(window), Some(now), now).await?;
        let recent = api.store.impact_report(Some(recent), Some(now), now).await?;
        Ok::<_, StoreError>((totals, recent))
    };
    let (totals, recent) = part("the flows", Unavailable::Store, both).await?;
    Ok(totals
        .pairs
        .into_iter()
        .map(|pair| {
            let recent_shared = recent
                .pairs
                .iter()
                .find(|other| other.source == pair.source && other.recipient == pair.recipient)
                .map_or(0, |other| other.shared);
            Flow { pair, recent_shared }
        })
        .collect())
}

async fn dead_letters(api: &AdminApi) -> Result<Vec<(Stage, u32)>, Unavailable> {
    let counting = count_dead_letters(&api.bus, &api.topology);
    part("the dead-letter counts", Unavailable::Broker, counting).await
}

async fn overdue(api: &AdminApi, now: DateTime<Utc>) -> Result<Vec<Overdue>, Unavailable> {
    let reading = api.store.episodes_feedback_overdue(now);
    let episodes = part("the overdue feedback", Unavailable::Store, reading).await?;
    Ok(episodes
        .into_iter()
        .filter_map(|episode| {
            Some(Overdue {
                episode: episode.id,
                originator: episode.originator,
                state: episode.state,
                feedback_due_at: episode.feedback_due_at?,
            })
        })
        .collect())
}

/// One part of the snapshot, within [`PART_TIMEOUT`]: a failure (with its chain of causes) or a timeout
/// is logged and the part is shown as `unavailable`.
async fn part<T, E: std::error::Error + 'static>(
    what: &'static str,
    unavailable: Unavailable,
    asked: impl Future<Output = Result<T, E>>,
) -> Result<T, Unavailable> {
    match tokio::time::timeout(PART_TIMEOUT, asked).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => {
            tracing::warn!(
                message = "The dashboard could not read a part.",
                part = what,
                error = crate::dlq::describe(&error)
            );
            Err(unavailable)
        }
        Err(_) => {
            tracing::warn!(
                message = "The dashboard gave up waiting for a part.",
                part = what,
                timeout_s = PART_TIMEOUT.as_secs()
            );
            Err(unavailable)
        }
    }
}

/// The whole page: the template with the snapshot's body, area and time filled in.
#[must_use]
pub fn render_page(snapshot: &Snapshot) -> String {
    // The body goes in last, so that nothing in it is ever taken for a placeholder.
    PAGE.replace("{{AREA}}", &escape(&snapshot.area))
        .replace("{{AS_OF}}", &escape(&snapshot.as_of.to_rfc3339_opts(SecondsFormat::Secs, true)))
        .replace("{{AS_OF_TEXT}}", &escape(&clock(snapshot.as_of)))
        .replace("{{REFRESH_MS}}", &REFRESH_MS.to_string())
        .replace("{{BODY}}", &render_body(snapshot))
}

/// `14:05:09 UTC`.
fn clock(at: DateTime<Utc>) -> String {
    at.format("%H:%M:%S UTC").to_string()
}

/// The view as JSON: the figures, and the rendered body the script swaps in (`html`).
#[must_use]
pub fn to_json(snapshot: &Snapshot) -> Value {
    let flows = match &snapshot.flows {
        Ok(flows) => json!({
            "available": true,
            "edges": flows.iter().map(|flow| json!({
                "source": flow.pair.source.as_str(),
                "recipient": flow.pair.recipient.as_str(),
                "episodes": flow.pair.episodes,
                "shared": flow.pair.shared,
                "shared_recently": flow.recent_shared,
                "shared_per_minute": flow.shared_per_minute(),
                "withheld": flow.pair.withheld,
                "withheld_by_reason": flow.pair.withheld_by_reason,
                "failed_deliveries": flow.pair.dead_deliveries,
            })).collect::<Vec<_>>(),
        }),
        Err(unavailable) => json!({ "available": false, "detail": unavailable.detail() }),
    };
    let dead_letters = match &snapshot.dead_letters {
        Ok(counts) => json!({
            "available": true,
            "stages": counts.iter().map(|(stage, messages)| json!({
                "stage": stage.as_str(),
                "messages": messages,
            })).collect::<Vec<_>>(),
        }),
        Err(unavailable) => json!({ "available": false, "detail": unavailable.detail() }),
    };
    let overdue = match &snapshot.overdue {
        Ok(episodes) => json!({
            "available": true,
            "episodes": episodes.iter().map(|overdue| json!({
                "id": snapshot.ids_shown.then(|| overdue.episode.to_string()),
                "originator": overdue.originator.as_str(),
                "state": overdue.state.as_str(),
                "feedback_due_at": overdue.feedback_due_at,
                "overdue_seconds": (snapshot.as_of - overdue.feedback_due_at).num_seconds().max(0),
            })).collect::<Vec<_>>(),
        }),
        Err(unavailable) => json!({ "available": false, "detail": unavailable.detail() }),
    };
    json!({
        "as_of": snapshot.as_of.to_rfc3339_opts(SecondsFormat::Secs, true),
        "as_of_text": clock(snapshot.as_of),
        "window_minutes": WINDOW_MINUTES,
        "rate_window_minutes": RATE_MINUTES,
        "agencies": place(snapshot).iter().map(|node| json!({
            "id": node.id.as_str(),
            "kind": kind_name(node.kind),
        })).collect::<Vec<_>>(),
        "flows": flows,
        "dead_letters": dead_letters,
        "overdue_feedback": overdue,
        "html": render_body(snapshot),
    })
}

/// The part of the page the script replaces: the graph, what needs an operator (dead letters, overdue
/// feedback), then the flows' figures as a table.
#[must_use]
pub fn render_body(snapshot: &Snapshot) -> String {
    let mut html = String::new();
    render_graph(&mut html, snapshot);
    render_dead_letters(&mut html, snapshot);
    render_overdue(&mut html, snapshot);
    render_flow_table(&mut html, snapshot);
    html
}

/// The drawing's size, in SVG user units.
const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 540.0;
/// The circle the agencies stand on.
const RING: f64 = 215.0;
/// An agency's circle.
const NODE_RADIUS: f64 = 22.0;

#[derive(Debug, Clone, Copy)]
struct Point {
    x: f64,
    y: f64,
}

impl Point {
    /// The point `distance` from here towards `to`.
    fn towards(self, to: Point, distance: f64) -> Point {
        let (dx, dy) = (to.x - self.x, to.y - self.y);
        let length = dx.hypot(dy).max(f64::EPSILON);
        Point { x: self.x + dx / length * distance, y: self.y + dy / length * distance }
    }
}

/// An agency placed on the drawing.
#[derive(Debug)]
struct Node<'a> {
    id: &'a AgencyId,
    /// `None` for an agency the flows name but the policy no longer lists.
    kind: Option<AgencyKind>,
    at: Point,
    /// The direction from the centre, in radians.
    angle: f64,
}

/// The order of kinds around the circle: the pathway from the street to the services, so that agencies of
/// one kind stand together.
fn kind_rank(kind: Option<AgencyKind>) -> usize {
    match kind {
        Some(AgencyKind::Police) => 0,
        Some(AgencyKind::Ambulance) => 1,
        Some(AgencyKind::Nhs) => 2,
        Some(AgencyKind::LocalAuthority) => 3,
        Some(AgencyKind::Vcs) => 4,
        None => 5,
    }
}

fn kind_name(kind: Option<AgencyKind>) -> &'static str {
    kind.map_or("unknown", AgencyKind::as_str)
}

/// Every agency of the policy, and any other agency the flows or the overdue episodes name, on a circle
/// grouped by kind (in the policy's order within a kind), starting at the top and going clockwise. On a
/// circle every edge is a chord, so no edge runs through another agency.
fn place(snapshot: &Snapshot) -> Vec<Node<'_>> {
    let mut agencies: Vec<(&AgencyId, Option<AgencyKind>)> =
        snapshot.agencies.iter().map(|(id, kind)| (id, Some(*kind))).collect();
    let mut known: BTreeSet<&AgencyId> = agencies.iter().map(|(id, _)| *id).collect();
    let named_by_flows = snapshot.flows.iter().flatten().flat_map(|flow| [&flow.pair.source, &flow.pair.recipient]);
    let named_by_overdue = snapshot.overdue.iter().flatten().map(|overdue| &overdue.originator);
    for id in named_by_flows.chain(named_by_overdue) {
        if known.insert(id) {
            agencies.push((id, None));
        }
    }
    agencies.sort_by_key(|(_, kind)| kind_rank(*kind));
    let count = agencies.len().max(1) as f64;
    agencies
        .into_iter()
        .enumerate()
        .map(|(index, (id, kind))| {
            let angle = -PI / 2.0 + 2.0 * PI * index as f64 / count;
            let at = Point { x: WIDTH / 2.0 + RING * angle.cos(), y: HEIGHT / 2.0 + RING * angle.sin() };
            Node { id, kind, at, angle }
        })
        .collect()
}

/// A flow's drawing: a curve from its source to its recipient that bends to its right, so the two
/// directions between a pair of agencies never overlap; it starts and ends at the agencies' circles. Also
/// where its label goes (the curve's midpoint). `None` when both ends are the same point.
fn curve(from: Point, to: Point) -> Option<(String, Point)> {
    let (dx, dy) = (to.x - from.x, to.y - from.y);
    let length = dx.hypot(dy);
    if length < 2.0 * NODE_RADIUS {
        return None;
    }
    let bend = length * 0.15;
    let control =
        Point { x: (from.x + to.x) / 2.0 - dy / length * bend, y: (from.y + to.y) / 2.0 + dx / length * bend };
    let start = from.towards(control, NODE_RADIUS);
    // Room for the arrowhead.
    let end = to.towards(control, NODE_RADIUS + 2.0);
    let path = format!("M{:.1} {:.1} Q{:.1} {:.1} {:.1} {:.1}", start.x, start.y, control.x, control.y, end.x, end.y);
    let label = Point {
        x: 0.25 * start.x + 0.5 * control.x + 0.25 * end.x,
        y: 0.25 * start.y + 0.5 * control.y + 0.25 * end.y,
    };
    Some((path, label))
}

/// `0.3` per minute.
fn rate_text(per_minute: f64) -> String {
    format!("{per_minute:.1}/min")
}

/// An edge's label: what a glance needs, the rest is in the table and the tooltip.
fn edge_label(flow: &Flow) -> String {
    let mut parts = Vec::new();
    if flow.pair.shared > 0 {
        parts.push(format!("{} shared", flow.pair.shared));
        parts.push(rate_text(flow.shared_per_minute()));
    }
    if flow.pair.withheld > 0 {
        parts.push(format!("{} withheld", flow.pair.withheld));
    }
    if flow.pair.dead_deliveries > 0 {
        parts.push(format!("{} failed", flow.pair.dead_deliveries));
    }
    parts.join(" · ")
}

/// `no_agreement 2, consent_required 1`, or `none`.
fn reasons_text(pair: &PairFlow) -> String {
    if pair.withheld_by_reason.is_empty() {
        return "none".to_owned();
    }
    pair.withheld_by_reason.iter().map(|(reason, count)| format!("{reason} {count}")).collect::<Vec<_>>().join(", ")
}

fn unavailable(html: &mut String, part: &str, what: &str, why: Unavailable) {
    let _ = write!(
        html,
        r#"<p class="unavailable" data-unavailable="{}">{} cannot be shown: {}.</p>"#,
        escape(part),
        escape(what),
        escape(why.detail())
    );
}

fn render_graph(html: &mut String, snapshot: &Snapshot) {
    let nodes = place(snapshot);
    html.push_str(r#"<section id="flows" aria-labelledby="flows-title">"#);
    let _ = write!(
        html,
        r#"<h2 id="flows-title">Flows over the last {} hours <small>(rates over the last {} minutes)</small></h2>"#,
        WINDOW_MINUTES / 60,
        RATE_MINUTES
    );
    if let Err(why) = &snapshot.flows {
        unavailable(html, "flows", "The flows", *why);
    }
    let _ = write!(
        html,
        r##"<svg id="flow-graph" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="Agencies and the flows between them">"##
    );
    // One arrowhead per edge style, as a marker takes no colour from the path it ends.
    html.push_str("<defs>");
    for marker in ["arrow", "arrow-withheld", "arrow-failing"] {
        let _ = write!(
            html,
            concat!(
                r#"<marker id="{}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" "#,
                r#"orient="auto-start-reverse"><path d="M0 0L10 5L0 10z"/></marker>"#,
            ),
            marker
        );
    }
    html.push_str("</defs>");
    html.push_str(r#"<g class="nodes">"#);
    for node in &nodes {
        let id = escape(node.id.as_str());
        let kind = kind_name(node.kind);
        // The name stands outside the circle, on the side away from the centre.
        let label = Point { x: node.at.x + 34.0 * node.angle.cos(), y: node.at.y + 34.0 * node.angle.sin() };
        let anchor = match node.angle.cos() {
            cos if cos > 0.3 => "start",
            cos if cos < -0.3 => "end",
            _ => "middle",
        };
        let _ = write!(
            html,
            concat!(
                r#"<g class="node kind-{kind}" id="node-{id}" data-agency="{id}" data-kind="{kind}">"#,
                r#"<title>{id} ({kind})</title><circle cx="{x:.1}" cy="{y:.1}" r="{r}"/>"#,
                r#"<text x="{lx:.1}" y="{ly:.1}" text-anchor="{anchor}" dominant-baseline="middle">{id}</text></g>"#,
            ),
            kind = kind,
            id = id,
            x = node.at.x,
            y = node.at.y,
            r = NODE_RADIUS,
            lx = label.x,
            ly = label.y,
            anchor = anchor,
        );
    }
    html.push_str("</g>");
    html.push_str(r#"<g class="edges">"#);
    for flow in snapshot.flows.iter().flatten() {
        let at = |id: &AgencyId| nodes.iter().find(|node| node.id == id).map(|node| node.at);
        let (Some(from), Some(to)) = (at(&flow.pair.source), at(&flow.pair.recipient)) else { continue };
        let Some((path, label)) = curve(from, to) else { continue };
        let (class, marker) = if flow.pair.dead_deliveries > 0 {
            ("edge failing", "arrow-failing")
        } else if flow.pair.shared == 0 {
            ("edge withheld-only", "arrow-withheld")
        } else {
            ("edge", "arrow")
        };
        let width = 1.5 + ((flow.pair.shared as f64) + 1.0).log2().min(4.5);
        let (source, recipient) = (escape(flow.pair.source.as_str()), escape(flow.pair.recipient.as_str()));
        let _ = write!(
            html,
            concat!(
                r#"<g class="{class}" id="edge-{source}-{recipient}" data-source="{source}" "#,
                r#"data-recipient="{recipient}" data-shared="{shared}" data-rate="{rate:.3}" "#,
                r#"data-withheld="{withheld}" data-failed="{failed}">"#,
                r#"<title>{source} → {recipient}: {shared} shared, {rate_text} over the last {minutes} minutes, "#,
                r#"{withheld} withheld ({reasons}), {failed} failed deliveries, {episodes} episodes</title>"#,
                r#"<path d="{path}" stroke-width="{width:.1}" marker-end="url(#{marker})"/>"#,
                r#"<text x="{lx:.1}" y="{ly:.1}" text-anchor="middle" dominant-baseline="middle">{label}</text></g>"#,
            ),
            class = class,
            marker = marker,
            source = source,
            recipient = recipient,
            shared = flow.pair.shared,
            rate = flow.shared_per_minute(),
            rate_text = rate_text(flow.shared_per_minute()),
            minutes = RATE_MINUTES,
            withheld = flow.pair.withheld,
            reasons = escape(&reasons_text(&flow.pair)),
            failed = flow.pair.dead_deliveries,
            episodes = flow.pair.episodes,
            path = path,
            width = width,
            lx = label.x,
            ly = label.y,
            label = escape(&edge_label(flow)),
        );
    }
    html.push_str("</g></svg>");
    html.push_str(r#"<ul class="legend">"#);
    for kind in AgencyKind::ALL {
        let _ = write!(html, r#"<li class="kind-{0}">{0}</li>"#, kind.as_str());
    }
    html.push_str("</ul>");
    if snapshot.flows.as_ref().is_ok_and(Vec::is_empty) {
        let _ = write!(
            html,
            r#"<p class="empty" data-empty="flows">No event was shared or withheld in the last {} hours.</p>"#,
            WINDOW_MINUTES / 60
        );
    }
    html.push_str("</section>");
}

/// The flows' figures, one row per source and recipient: the graph's numbers in full, and what a screen
/// reader reads.
fn render_flow_table(html: &mut String, snapshot: &Snapshot) {
    let Ok(flows) = &snapshot.flows else { return };
    if flows.is_empty() {
        return;
    }
    html.push_str(r#"<section id="flow-figures" aria-labelledby="flow-figures-title">"#);
    html.push_str(r#"<h2 id="flow-figures-title">Flows in figures</h2>"#);
    html.push_str(concat!(
        r#"<table id="flow-table"><thead><tr><th>Source</th><th>Recipient</th><th>Episodes</th>"#,
        r#"<th>Shared</th><th>Shared per minute</th><th>Withheld</th><th>Withheld by reason</th>"#,
        r#"<th>Failed deliveries</th></tr></thead><tbody>"#,
    ));
    for flow in flows {
        let (source, recipient) = (escape(flow.pair.source.as_str()), escape(flow.pair.recipient.as_str()));
        let _ = write!(
            html,
            concat!(
                r#"<tr data-source="{}" data-recipient="{}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"#,
                r#"<td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            ),
            source,
            recipient,
            source,
            recipient,
            flow.pair.episodes,
            flow.pair.shared,
            rate_text(flow.shared_per_minute()),
            flow.pair.withheld,
            escape(&reasons_text(&flow.pair)),
            flow.pair.dead_deliveries,
        );
    }
    html.push_str("</tbody></table>");
    html.push_str("</section>");
}

fn render_dead_letters(html: &mut String, snapshot: &Snapshot) {
    html.push_str(r#"<section id="dead-letters" aria-labelledby="dead-letters-title">"#);
    html.push_str(r#"<h2 id="dead-letters-title">Dead letters</h2>"#);
    match &snapshot.dead_letters {
        Ok(counts) => {
            html.push_str(r#"<table><thead><tr><th>Stage</th><th>Messages waiting</th></tr></thead><tbody>"#);
            for (stage, messages) in counts {
                let class = if *messages > 0 { r#" class="waiting""# } else { "" };
                let _ = write!(
                    html,
                    r#"<tr data-stage="{0}" data-messages="{1}"{2}><td>{0}</td><td>{1}</td></tr>"#,
                    escape(stage.as_str()),
                    messages,
                    class
                );
            }
            html.push_str("</tbody></table>");
        }
        Err(why) => unavailable(html, "dead-letters", "The dead letters", *why),
    }
    html.push_str("</section>");
}

/// `45 s`, `12 min`, `3 h 5 min`, `2 d 4 h`.
fn duration_text(seconds: i64) -> String {
    let seconds = seconds.max(0);
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3_600 => format!("{} min", seconds / 60),
        3_600..86_400 => format!("{} h {} min", seconds / 3_600, seconds % 3_600 / 60),
        _ => format!("{} d {} h", seconds / 86_400, seconds % 86_400 / 3_600),
    }
}

fn render_overdue(html: &mut String, snapshot: &Snapshot) {
    html.push_str(r#"<section id="overdue" aria-labelledby="overdue-title">"#);
    html.push_str(r#"<h2 id="overdue-title">Episodes awaiting feedback past their deadline</h2>"#);
    match &snapshot.overdue {
        Ok(episodes) if episodes.is_empty() => {
            html.push_str(r#"<p class="empty" data-empty="overdue">No episode is past its feedback deadline.</p>"#);
        }
        Ok(episodes) => {
            html.push_str(concat!(
                r#"<table id="overdue-table"><thead><tr><th>Episode</th><th>Originator</th>"#,
                r#"<th>Overdue by</th></tr></thead><tbody>"#,
            ));
            for overdue in episodes.iter().take(OVERDUE_LISTED) {
                let due = overdue.feedback_due_at.to_rfc3339_opts(SecondsFormat::Secs, true);
                // A closed episode will not bring its feedback by itself any more: say so.
                let closed =
                    if overdue.state == EpisodeState::Closed { r#" <span class="closed">closed</span>"# } else { "" };
                let _ = write!(
                    html,
                    concat!(
                        r#"<tr data-episode="{id}" data-originator="{originator}" data-state="{state}">"#,
                        r#"<td><code>{id}</code>{closed}</td><td>{originator}</td>"#,
                        r#"<td><time datetime="{due}" title="due {due}">{by}</time></td></tr>"#,
                    ),
                    id = if snapshot.ids_shown {
                        escape(&overdue.episode.to_string())
                    } else {
                        "(admin token)".to_owned()
                    },
                    originator = escape(overdue.originator.as_str()),
                    state = escape(overdue.state.as_str()),
                    closed = closed,
                    due = escape(&due),
                    by = duration_text((snapshot.as_of - overdue.feedback_due_at).num_seconds()),
                );
            }
            html.push_str("</tbody></table>");
            if episodes.len() > OVERDUE_LISTED {
                let _ = write!(
                    html,
                    r#"<p class="more">And {} more; <code>concordat report</code> counts them all.</p>"#,
                    episodes.len() - OVERDUE_LISTED
                );
            }
        }
        Err(why) => unavailable(html, "overdue", "The overdue feedback", *why),
    }
    html.push_str("</section>");
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::TimeZone as _;

    use super::*;

    fn agency(id: &str) -> AgencyId {
        AgencyId::new(id).unwrap()
    }

    fn at(minute: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, 2, 0, 0).unwrap() + chrono::Duration::minutes(minute)
    }

    fn empty() -> Snapshot {
        Snapshot {
            as_of: at(0),
            area: "Northvale".to_owned(),
            agencies: vec![
                (agency("northvale-mh"), AgencyKind::Nhs),
                (agency("northvale-police"), AgencyKind::Police),
                (agency("safe-haven"), AgencyKind::Vcs),
            ],
            flows: Ok(Vec::new()),
            dead_letters: Ok(Stage::ALL.iter().map(|stage| (*stage, 0)).collect()),
            overdue: Ok(Vec::new()),
            ids_shown: true,
        }
    }

    fn flow(source: &str, recipient: &str, shared: u64, recent_shared: u64) -> Flow {
        Flow {
            pair: PairFlow {
                source: agency(source),
                recipient: agency(recipient),
                episodes: 1,
                shared,
                withheld: 2,
                withheld_by_reason: BTreeMap::from([("no_agreement".to_owned(), 2)]),
                dead_deliveries: 1,
            },
            recent_shared,
        }
    }

    fn busy() -> Snapshot {
        Snapshot {
            flows: Ok(vec![
                flow("northvale-police", "northvale-mh", 3, 3),
                flow("northvale-mh", "northvale-police", 1, 0),
            ]),
            dead_letters: Ok(vec![(Stage::Ingest, 2), (Stage::Router, 0), (Stage::Deliver, 0)]),
            overdue: Ok(vec![Overdue {
                episode: EpisodeId(uuid::Uuid::nil()),
                originator: agency("northvale-police"),
                state: EpisodeState::Open,
                feedback_due_at: at(-125),
            }]),
            ..empty()
        }
    }

    #[test]
    fn escaping_covers_every_character_that_can_break_out() {
        assert_eq!(
            escape(r#"<a href="x" title='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
        assert_eq!(escape("northvale-mh"), "northvale-mh");
    }

    #[test]
    fn every_agency_is_a_node_and_an_empty_area_says_so() {
        let page = render_page(&empty());
        for id in ["northvale-police", "northvale-mh", "safe-haven"] {
            assert!(page.contains(&format!(r#"data-agency="{id}""#)), "{id} is not a node");
        }
        assert!(!page.contains(r#"id="edge-"#), "an empty area has no edges");
        assert!(page.contains(r#"data-empty="flows""#));
        assert!(page.contains(r#"data-empty="overdue""#));
        assert!(page.contains(r#"data-stage="router" data-messages="0""#));
        assert!(!page.contains("{{"), "a placeholder was left unfilled");
        assert!(page.contains(r#"datetime="2026-03-02T02:00:00Z""#));
    }

    #[test]
    fn flows_are_edges_with_their_counts_and_rate() {
        let page = render_page(&busy());
        let edge = page.split(r#"id="edge-northvale-police-northvale-mh""#).nth(1).unwrap();
        assert!(edge.starts_with(
            r#" data-source="northvale-police" data-recipient="northvale-mh" data-shared="3" data-rate="0.200" data-withheld="2" data-failed="1">"#
        ));
        assert!(edge.contains("3 shared · 0.2/min · 2 withheld · 1 failed"));
        assert!(page.contains(r#"class="edge failing" id="edge-northvale-mh-northvale-police""#));
        assert!(page.contains(r#"<tr data-stage="ingest" data-messages="2" class="waiting">"#));
        let overdue = r#"<tr data-episode="00000000-0000-0000-0000-000000000000" data-originator="northvale-police" data-state="open">"#;
        assert!(page.contains(overdue));
        assert!(page.contains(r#"title="due 2026-03-01T23:55:00Z">2 h 5 min</time>"#));
    }

    #[test]
    fn a_flow_naming_an_agency_the_policy_no_longer_lists_still_shows() {
        let snapshot = Snapshot { flows: Ok(vec![flow("old-partner", "northvale-mh", 1, 0)]), ..empty() };
        let page = render_page(&snapshot);
        assert!(page.contains(r#"data-agency="old-partner" data-kind="unknown""#));
        assert!(page.contains(r#"id="edge-old-partner-northvale-mh""#));
    }

    #[test]
    fn text_from_configuration_and_the_store_is_escaped() {
        let mut snapshot = busy();
        snapshot.area = r#"North<script>alert("area")</script>"#.to_owned();
        if let Ok(flows) = &mut snapshot.flows {
            flows[0].pair.withheld_by_reason = BTreeMap::from([(r#"<img src=x onerror="alert(1)">"#.to_owned(), 2)]);
        }
        let page = render_page(&snapshot);
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(page.contains("North&lt;script&gt;alert(&quot;area&quot;)&lt;/script&gt;"));
        assert!(page.contains("&lt;img src=x onerror=&quot;alert(1)&quot;&gt; 2"));
        let json = to_json(&snapshot);
        assert!(!json["html"].as_str().unwrap().contains("<img"));
    }

    #[test]
    fn an_unavailable_part_is_named_and_the_others_still_show() {
        let snapshot = Snapshot {
            flows: Err(Unavailable::Store),
            dead_letters: Err(Unavailable::Broker),
            overdue: Err(Unavailable::Store),
            ..empty()
        };
        let page = render_page(&snapshot);
        assert!(page.contains(r#"data-unavailable="flows">The flows cannot be shown: the store is unavailable."#));
        assert!(page.contains(r#"data-unavailable="dead-letters">The dead letters cannot be shown: RabbitMQ is"#));
        assert!(page.contains(r#"data-unavailable="overdue""#));
        assert!(page.contains(r#"data-agency="northvale-police""#), "the agencies come from the policy");
        let json = to_json(&snapshot);
        assert_eq!(json["flows"], json!({ "available": false, "detail": "the store is unavailable" }));
        assert_eq!(json["dead_letters"]["available"], false);
        assert_eq!(json["overdue_feedback"]["available"], false);
    }

    #[test]
    fn the_json_carries_the_figures_and_the_rendered_body() {
        let snapshot = busy();
        let json = to_json(&snapshot);
        assert_eq!(json["as_of"], "2026-03-02T02:00:00Z");
        let edge = &json["flows"]["edges"][0];
        assert_eq!(edge["source"], "northvale-police");
        assert_eq!(edge["recipient"], "northvale-mh");
        assert_eq!(edge["shared"], 3);
        assert_eq!(edge["shared_recently"], 3);
        assert_eq!(edge["withheld_by_reason"]["no_agreement"], 2);
        assert_eq!(json["dead_letters"]["stages"][0], json!({ "stage": "ingest", "messages": 2 }));
        assert_eq!(json["overdue_feedback"]["episodes"][0]["overdue_seconds"], 125 * 60);
        assert_eq!(json["agencies"][0], json!({ "id": "northvale-police", "kind": "police" }));
        assert_eq!(json["html"].as_str().unwrap(), render_body(&snapshot));
    }

    #[test]
    fn the_two_directions_of_a_pair_bend_apart() {
        let (a, b) = (Point { x: 100.0, y: 100.0 }, Point { x: 300.0, y: 100.0 });
        let (_, there) = curve(a, b).unwrap();
        let (_, back) = curve(b, a).unwrap();
        assert!((there.y - back.y).abs() > 20.0, "{there:?} {back:?}");
        assert!(curve(a, a).is_none());
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration_text(-5), "0 s");
        assert_eq!(duration_text(45), "45 s");
        assert_eq!(duration_text(12 * 60 + 5), "12 min");
        assert_eq!(duration_text(3 * 3_600 + 5 * 60), "3 h 5 min");
        assert_eq!(duration_text(2 * 86_400 + 4 * 3_600), "2 d 4 h");
    }

    #[test]
    fn episode_ids_show_only_with_the_admin_token() {
        let hidden = Snapshot { ids_shown: false, ..busy() };
        let id = "00000000-0000-0000-0000-000000000000";
        assert!(render_page(&busy()).contains(id));
        assert!(!render_page(&hidden).contains(id), "the open page lists no episode id");
        assert!(!to_json(&hidden).to_string().contains(id), "nor does its feed");
        assert!(to_json(&hidden)["overdue_feedback"]["episodes"][0]["originator"] == "northvale-police");
    }
}
