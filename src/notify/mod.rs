//! Who hears what a live run did, besides the terminal and the journal: a Kubernetes Event on
//! each step's target (reason `ContainStepDone` / `ContainStepFailed`, the run id and the step,
//! so `kubectl describe` shows it), and webhooks (generic JSON or Slack-compatible) per step and
//! per run, rendered from handlebars templates shipped in the binary and overridable.
//!
//! A notifier never fails the containment: each delivery is bounded in time, and its outcome
//! (delivered, or the error) is journaled.

pub mod events;
pub mod webhook;

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::cluster::object::ObjectRef;

/// What to notify, from the command line.
#[derive(Clone, Debug, Default)]
pub struct NotifyOptions {
    /// Kubernetes Events on the targets (on by default for live runs).
    pub events: bool,
    pub webhooks: Vec<webhook::Webhook>,
    /// A directory whose notify.json.hbs / notify.slack.hbs replace the shipped templates.
    pub templates: Option<PathBuf>,
}

/// The run every notification is about.
#[derive(Clone, Debug)]
pub struct RunContext {
    pub run: String,
    pub playbook: String,
    pub cluster: String,
    pub user: String,
}

/// One thing that happened, as the notifications tell it.
#[derive(Clone, Debug)]
pub struct Notice {
    /// `step` or `run`.
    pub event: &'static str,
    pub step: Option<String>,
    pub action: Option<String>,
    /// The step's target, when it names one object.
    pub target: Option<ObjectRef>,
    /// `done`, `failed`, or a run's outcome.
    pub status: String,
    pub message: String,
}

/// How one delivery went, for the journal.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub channel: String,
    pub about: String,
    pub error: Option<String>,
}

/// Sends every notice to every channel configured.
pub struct Notifier {
    options: NotifyOptions,
    context: RunContext,
    /// One client for every webhook delivery of the run (or why there is none).
    client: Option<Result<webhook::HttpClient, String>>,
}

impl Notifier {
    pub fn new(options: NotifyOptions, context: RunContext) -> Self {
        let client = (!options.webhooks.is_empty()).then(webhook::client);
        Notifier {
            options,
            context,
            client,
        }
    }

    /// Delivers `notice` everywhere; never fails, says how each delivery went.
    pub async fn send(&self, cluster: &dyn Cluster, notice: &Notice) -> Vec<Delivery> {
        let about = match &notice.step {
            Some(step) => format!("step {step} {}", notice.status),
            None => format!("run {}", notice.status),
        };
        let mut deliveries = Vec::new();
        if self.options.events
            && let Some(target) = &notice.target
        {
            let error = events::post(cluster, &self.context, notice, target)
                .await
                .err();
            deliveries.push(Delivery {
                channel: format!("Kubernetes Event on {target}"),
                about: about.clone(),
                error,
            });
        }
        let view = self.view(notice);
        for hook in &self.options.webhooks {
            let error = match &self.client {
                Some(Ok(client)) => hook
                    .deliver(client, &view, self.options.templates.as_deref())
                    .await
                    .err(),
                Some(Err(e)) => Some(e.clone()),
                None => None,
            };
            deliveries.push(Delivery {
                channel: hook.describe(),
                about: about.clone(),
                error,
            });
        }
        deliveries
    }

    /// What the webhook templates see.
    fn view(&self, notice: &Notice) -> Value {
        json!({
            "event": notice.event,
            "run": self.context.run,
            "playbook": self.context.playbook,
            "cluster": self.context.cluster,
            "user": self.context.user,
            "step": notice.step.clone().unwrap_or_default(),
            "action": notice.action.clone().unwrap_or_default(),
            "target": notice.target.as_ref().map(ToString::to_string).unwrap_or_default(),
            "status": notice.status,
            "message": notice.message,
            "at": jiff::Timestamp::now().to_string(),
        })
    }
}
