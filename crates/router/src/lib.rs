//! The router: for each canonical event, correlate it into an episode, decide with the sharing policy what
//! every other agency may see, render each permitted view in the recipient's own format, and make outcome
//! feedback and pre-crisis context.
//!
//! [`plan`] is the functional core: given the event and what the store knows of its episode, it returns the
//! decisions and deliveries to write, with no I/O and no clock. The shell that reads the
//! store, writes one transaction and acks lives beside it, and so does the relay that publishes the outbox.

mod correlate;
mod plan;
mod relay;
mod retention;
mod shell;

pub use correlate::{Correlation, concludes, correlate, relations_earned};
pub use plan::{AgencyDirectory, Delivery, EpisodeSnapshot, Plan, RenderFailure, plan};
pub use relay::{HandedRows, Handoff, RelayError, TakenMarks, handoff, run_relay};
pub use retention::{
    InvalidPeriod, Period, RetentionConfig, RetentionError, RetentionReport, apply_retention, run_retention,
};
pub use shell::{
    DECISION_HEADER, EPISODE_HEADER, KIND_HEADER, ROUTER_BATCH, Routable, RouteError, Routed, Router, route_span,
    run_housekeeping, run_router,
};
