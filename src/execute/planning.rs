//! The whole-run plan, made before the first write: facts resolved, guards checked, every step
//! rendered and planned in order against an overlay (the cluster plus the effects of the steps
//! planned before it), then the preflight: every permission the plan needs, asked of the API
//! server, and on a live cluster every planned write sent once with `dryRun=All`. Any failure
//! refuses the run with everything that is wrong, and nothing is written.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::apply::{self, AutoApprove, Carry};
use super::{Executor, Mode, RunConfig, RunError};
use crate::action::{self, FanOut, StepInput};
use crate::cluster::object;
use crate::cluster::overlay::Overlay;
use crate::cluster::{Access, Cluster, ClusterError};
use crate::event::EventKind;
use crate::facts;
use crate::outcome::Outcome;
use crate::plan::run::{ClusterRef, FORMAT, PlaybookRef, after_apply_marker};
use crate::plan::{Op, PlannedState, PlannedStep, ResolvedTarget, RunPlan, StepPlan};
use crate::playbook::load::Loaded;
use crate::playbook::refs;
use crate::playbook::render::{self, Renderer, Scope};
use crate::playbook::types::{RunFailurePolicy, Step, StepFailurePolicy};

/// Why one step could not be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Render(#[from] render::RenderError),
    #[error(transparent)]
    Action(#[from] action::ActionError),
    /// The step's writes, tried on the planned state, were refused as the API server would.
    #[error("{0}")]
    Rejected(ClusterError),
}

impl Executor<'_> {
    /// Plans every step of the run. `Ok(Err(outcome))` is a run refused before any write (a
    /// guard, a step that cannot be planned, a missing permission); the events say why.
    pub async fn plan(
        &mut self,
        loaded: &Loaded,
        config: &RunConfig,
    ) -> Result<Result<RunPlan, Outcome>, RunError> {
        let playbook = &loaded.playbook;
        self.emit(EventKind::RunStarted {
            run_id: config.run_id.clone(),
            playbook: playbook.metadata.name.clone(),
            mode: config.mode.as_str().into(),
            cluster: self.cluster.info(),
            steps: playbook.steps.len(),
        })?;
        let mut scope = Scope {
            params: config.params.clone(),
            run: run_scope(config, &playbook.metadata.name, &self.cluster.info().server),
            ..Scope::default()
        };
        // Guards on params alone are checked before any fact is looked up: a run refused for
        // its namespace never reads the cluster.
        if let Some(refusal) = self.guards(loaded, &scope, GuardPass::ParamsOnly)? {
            return Ok(Err(refusal));
        }
        let mut fact_refs = Map::new();
        for (name, spec) in &playbook.facts {
            let (value, found) = facts::resolve(name, spec, &scope, self.cluster).await?;
            scope.facts.insert(name.clone(), value);
            fact_refs.insert(
                name.clone(),
                found.as_ref().map_or(Value::Null, |r| json!(r.to_string())),
            );
            self.emit(EventKind::FactResolved {
                fact: name.clone(),
                object: found.map(|r| r.to_string()),
            })?;
        }
        if let Some(refusal) = self.guards(loaded, &scope, GuardPass::ReadingFacts)? {
            return Ok(Err(refusal));
        }

        let overlay = Overlay::new(self.cluster);
        // One renderer for the run; each step's status is recorded into it as planning goes.
        let mut renderer = Renderer::new(&scope);
        let mut steps = Vec::new();
        let mut unplannable = Vec::new();
        for (index, step) in playbook.steps.iter().enumerate() {
            // A re-plan keeps the steps before the stale one as they were approved and applied.
            if let Some(replan) = config.replan.as_ref().filter(|r| index < r.from) {
                for kept in replan
                    .previous
                    .steps
                    .iter()
                    .filter(|s| s.number == index + 1)
                {
                    let status = match (&kept.state, replan.outputs.get(&kept.id)) {
                        (_, Some(outputs)) => json!({"status": "done", "outputs": outputs}),
                        (PlannedState::Skipped { .. }, None) => {
                            json!({"status": "skipped", "outputs": {}})
                        }
                        _ => json!({"status": "failed", "outputs": {}}),
                    };
                    renderer.set_step(kept.playbook_step(), &status);
                    steps.push(kept.clone());
                }
                continue;
            }
            self.emit(EventKind::StepStarted {
                step: step.id.clone(),
                action: step.action.clone(),
                index,
            })?;
            let state = match self
                .plan_step(index, step, &renderer, config, &overlay)
                .await
            {
                Ok(Some(parts)) if !parts.is_empty() => {
                    let whole = parts.len() == 1 && parts[0].id.is_none();
                    let mut outputs_of_parts = Map::new();
                    for part in parts {
                        let id = part.id.clone().unwrap_or_else(|| step.id.clone());
                        let outputs = with_pending_outputs(&part.plan, step);
                        if whole {
                            renderer
                                .set_step(&step.id, &json!({"status": "done", "outputs": outputs}));
                        } else {
                            outputs_of_parts.insert(id.clone(), Value::Object(outputs));
                        }
                        self.emit(EventKind::StepPlanned {
                            step: id.clone(),
                            plan: part.plan.clone(),
                        })?;
                        steps.push(PlannedStep {
                            id,
                            number: index + 1,
                            action: step.action.clone(),
                            part_of: part.id.is_some().then(|| step.id.clone()),
                            state: PlannedState::Planned {
                                target: part.input.target.map(Box::new),
                                with: part.input.with,
                                plan: Box::new(part.plan),
                                depends_on: part.depends_on,
                            },
                        });
                    }
                    if !whole {
                        let count = outputs_of_parts.len();
                        renderer.set_step(
                            &step.id,
                            &json!({"status": "done", "outputs": {"parts": outputs_of_parts, "count": count}}),
                        );
                    }
                    continue;
                }
                Ok(found) => {
                    let reason = match (found, &step.for_each) {
                        (Some(_), Some(each)) => format!("`for_each: {each}` gives no items"),
                        (Some(_), None) => "its target matches no object".to_string(),
                        (None, _) => format!(
                            "`when: {}` is false",
                            step.when.as_deref().unwrap_or_default()
                        ),
                    };
                    renderer.set_step(&step.id, &json!({"status": "skipped", "outputs": {}}));
                    self.emit(EventKind::StepSkipped {
                        step: step.id.clone(),
                        reason: reason.clone(),
                    })?;
                    PlannedState::Skipped { reason }
                }
                Err(error) => {
                    let place = match &error {
                        PlanError::Render(e) => place_of(loaded, index, &e.field),
                        _ => String::new(),
                    };
                    let error = format!("step {} ({}){place}: {error}", index + 1, step.id);
                    renderer.set_step(&step.id, &json!({"status": "failed", "outputs": {}}));
                    self.emit(EventKind::StepFailed {
                        step: step.id.clone(),
                        error: error.clone(),
                        elapsed_ms: 0,
                    })?;
                    if effective_policy(step, playbook.on_failure) != StepFailurePolicy::Continue {
                        unplannable.push(error.clone());
                    }
                    PlannedState::Unplannable { error }
                }
            };
            steps.push(PlannedStep {
                id: step.id.clone(),
                number: index + 1,
                action: step.action.clone(),
                part_of: None,
                state,
            });
        }
        let mut plan = RunPlan {
            format: FORMAT,
            run_id: config.run_id.clone(),
            created_at: jiff::Timestamp::now().to_string(),
            playbook: PlaybookRef {
                path: config.playbook_path.clone(),
                name: playbook.metadata.name.clone(),
                sha256: loaded.sha256.clone(),
            },
            params: config.params.clone(),
            cluster: ClusterRef {
                id: self.cluster.identity().await.ok(),
                server: self.cluster.info().server,
                kind: self.cluster.info().kind.to_string(),
            },
            facts: fact_refs,
            steps,
            notes: Vec::new(),
        };
        if !unplannable.is_empty() {
            let reason = format!(
                "{} step(s) cannot be planned, so nothing is written: {}",
                unplannable.len(),
                unplannable.join("; ")
            );
            return Ok(Err(Outcome::Refused { reason }));
        }
        let radius = super::blast::measure(&plan, self.cluster)
            .await
            .map_err(RunError::Radius)?;
        if let Some(reason) =
            super::blast::node_refusal(&radius, playbook.max_node_share.as_deref())
        {
            return Ok(Err(Outcome::Refused { reason }));
        }
        if !radius.pods_evicted_outside.is_empty() {
            plan.notes.push(format!(
                "the plan evicts {} pod(s) in namespaces no step's target names: {}",
                radius.pods_evicted_outside.len(),
                radius.pods_evicted_outside.join(", ")
            ));
        }
        if let Some(refusal) = self.plan_guards(loaded, &scope, &radius)? {
            return Ok(Err(refusal));
        }
        if let Some(refusal) = self.check_before_writes(&mut plan, config).await? {
            return Ok(Err(refusal));
        }
        Ok(Ok(plan))
    }

    /// Evaluates the playbook's `require_plan:` guards over the finished plan's blast radius;
    /// the first false one refuses the run.
    fn plan_guards(
        &mut self,
        loaded: &Loaded,
        scope: &Scope,
        radius: &super::blast::Radius,
    ) -> Result<Option<Outcome>, RunError> {
        let renderer = Renderer::new(scope);
        renderer.set("plan", Some(&radius.to_value()));
        for (i, guard) in loaded.playbook.require_plan.iter().enumerate() {
            if let Some(refusal) = self.guard(&renderer, &format!("require_plan[{i}]"), guard)? {
                return Ok(Some(refusal));
            }
        }
        Ok(None)
    }

    /// Evaluates one guard (`field` is its place, `require[0]`), recording what it found; its
    /// refusal when it does not hold.
    fn guard(
        &mut self,
        renderer: &Renderer,
        field: &str,
        guard: &crate::playbook::types::Guard,
    ) -> Result<Option<Outcome>, RunError> {
        let holds = match renderer.condition(&format!("{field}.that"), &guard.that) {
            Ok(holds) => holds,
            Err(e) => {
                let reason = format!("guard `{}` cannot be evaluated: {e}", guard.that);
                self.emit(EventKind::GuardChecked {
                    that: guard.that.clone(),
                    holds: false,
                    message: reason.clone(),
                })?;
                return Ok(Some(Outcome::Refused { reason }));
            }
        };
        let message = renderer
            .render_str(&format!("{field}.message"), &guard.message)
            .unwrap_or_else(|_| guard.message.clone());
        self.emit(EventKind::GuardChecked {
            that: guard.that.clone(),
            holds,
            message: message.clone(),
        })?;
        Ok((!holds).then_some(Outcome::Refused { reason: message }))
    }

    /// The permission preflight and the server dry run of a finished plan: any denial or
    /// refusal refuses the run. Both only ask the API server (nothing is stored), so they go
    /// out together; a denied permission still refuses the run first, whatever the dry run
    /// said.
    pub async fn check_before_writes(
        &mut self,
        plan: &mut RunPlan,
        config: &RunConfig,
    ) -> Result<Option<Outcome>, RunError> {
        let mut needed = needed_access(plan);
        if config.mode == Mode::Live {
            // A live run locks the targets it writes to before its first write.
            needed.extend(crate::run_lock::access(plan));
        }
        let (verdicts, refusals) = futures::join!(
            review_in_groups(self.cluster, &needed),
            dry_run_refusals(self.cluster, plan, config)
        );
        if let Some(refusal) = self.preflight(verdicts, plan)? {
            return Ok(Some(refusal));
        }
        if let Some(refusals) = refusals
            && let Some(refusal) = self.server_dry_run(refusals)?
        {
            return Ok(Some(refusal));
        }
        Ok(None)
    }

    /// Reports the server dry run ([`dry_run_refusals`]); any refusal refuses the run.
    fn server_dry_run(&mut self, refusals: Vec<String>) -> Result<Option<Outcome>, RunError> {
        self.emit(EventKind::ServerDryRun {
            refused: refusals.clone(),
        })?;
        if refusals.is_empty() {
            return Ok(None);
        }
        Ok(Some(Outcome::Refused {
            reason: format!(
                "the API server refuses {} planned write(s), so nothing is written: {}",
                refusals.len(),
                refusals.join("; ")
            ),
        }))
    }

    /// Evaluates the playbook's `require:` guards of one pass; the first false one refuses
    /// the run.
    fn guards(
        &mut self,
        loaded: &Loaded,
        scope: &Scope,
        pass: GuardPass,
    ) -> Result<Option<Outcome>, RunError> {
        let renderer = Renderer::new(scope);
        for (i, guard) in loaded.playbook.require.iter().enumerate() {
            let reads_facts = refs::in_expression(&guard.that)
                .iter()
                .any(|r| r.root == "facts");
            if reads_facts != (pass == GuardPass::ReadingFacts) {
                continue;
            }
            if let Some(refusal) = self.guard(&renderer, &format!("require[{i}]"), guard)? {
                return Ok(Some(refusal));
            }
        }
        Ok(None)
    }

    /// Renders and plans one step against the overlay, then records its writes there. `None`
    /// when its `when:` is false; several parts when its target spans namespaces and the action
    /// plans in parts ([`FanOut`]).
    async fn plan_step(
        &mut self,
        index: usize,
        step: &Step,
        renderer: &Renderer,
        config: &RunConfig,
        overlay: &Overlay<'_>,
    ) -> Result<Option<Vec<Part>>, PlanError> {
        if let Some(when) = &step.when
            && !renderer.condition(&format!("steps[{index}].when"), when)?
        {
            return Ok(None);
        }
        let action = action::lookup(&step.action).expect("validation checked the action");
        let field = format!("steps[{index}]");
        // A `for_each:` step is rendered once per item, each a part of its own.
        let items: Vec<(Option<String>, Option<Value>)> = match &step.for_each {
            Some(expression) => {
                let items = renderer.list(&format!("{field}.for_each"), expression)?;
                let mut ids = BTreeSet::new();
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| {
                        let named = item
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| i.to_string());
                        // Two items that read the same (rendered from a list with repeats)
                        // are one part.
                        let id = format!("{}@{named}", step.id);
                        (ids.insert(id.clone()).then_some(id), Some(item))
                    })
                    .filter(|(id, _)| id.is_some())
                    .collect()
            }
            None => vec![(None, None)],
        };
        let with_schema = action.with_schema();
        let mut targets: Vec<(Option<String>, Option<ResolvedTarget>, Value)> = Vec::new();
        for (item_id, item) in &items {
            renderer.set_item(item.as_ref());
            let rendered = (|| -> Result<_, PlanError> {
                let target = match &step.target {
                    Some(t) => Some(renderer.target(&format!("{field}.target"), t)?),
                    None => None,
                };
                // A kind rendered from a param meets the action's rule now.
                let allowed = action.info().target.kinds();
                if let Some(kind) = target.as_ref().map(|t| t.kind.kind)
                    && !allowed.is_empty()
                    && !allowed.contains(&kind)
                {
                    return Err(PlanError::Render(crate::playbook::render::RenderError {
                        field: format!("{field}.target.kind"),
                        message: format!(
                            "{} does not act on a {kind} (it takes {})",
                            action.info().name,
                            allowed.join(", ")
                        ),
                        column: None,
                    }));
                }
                let with = renderer
                    .render_value(&format!("{field}.with"), &Value::Object(step.with.clone()))?;
                Ok((target, render::coerce(with, &with_schema, &with_schema)))
            })();
            renderer.set_item(None);
            let (target, with) = rendered?;
            match &target {
                Some(wide) if fans_out(wide, action) => {
                    for (id, part) in parts_of(&step.id, wide, action.fan_out(), overlay).await? {
                        targets.push((id, part, with.clone()));
                    }
                }
                _ => targets.push((item_id.clone(), target, with)),
            }
        }
        let mut parts = Vec::new();
        for (id, target, with) in targets {
            let input = StepInput {
                step_id: step.id.clone(),
                run_id: config.run_id.clone(),
                target,
                with,
                canaries: Vec::new(),
            };
            // The action decides from plain values; its reads are made here, through the
            // overlay, round by round until it needs none.
            let (plan, seen) =
                crate::cluster::observe::decide_observed(overlay, &|_| None, |seen| {
                    action.plan(&input, seen)
                })
                .await?;
            // A revocation decides about one identity: only its bindings count.
            let identity = input
                .target
                .as_ref()
                .filter(|t| t.kind.kind == "ServiceAccount")
                .and_then(|t| {
                    Some(crate::action::reach::service_account(
                        t.namespace.as_deref()?,
                        t.name.as_deref()?,
                    ))
                });
            let depends_on =
                crate::plan::depends::collections(&seen, &config.run_id, identity.as_ref());
            // The step's writes land on the overlay, so the next step sees them; the overlay
            // checks them as the API server would (names, label syntax, 404, 409).
            for op in plan.ops.iter().filter(|op| op.is_write()) {
                let result = apply::apply(
                    op,
                    &step.id,
                    &config.run_id,
                    Carry::Simulated,
                    overlay,
                    &mut AutoApprove,
                )
                .await;
                match result {
                    Ok(_) => {}
                    // A budget that refuses the eviction now may allow it at apply time, which
                    // retries it; the plan says so (the pod stays in the planned state).
                    Err(apply::ApplyError::DisruptionBudget { .. }) => {}
                    Err(apply::ApplyError::Cluster(e)) => return Err(PlanError::Rejected(e)),
                    Err(other) => {
                        return Err(PlanError::Rejected(ClusterError::Unsupported(
                            other.to_string(),
                        )));
                    }
                }
            }
            parts.push(Part {
                id,
                input,
                plan,
                depends_on,
            });
        }
        Ok(Some(parts))
    }

    /// Asks the API server about every permission the plan needs (its writes, their re-reads,
    /// and the reads of verification). Any denial refuses the run and lists every one.
    fn preflight(
        &mut self,
        verdicts: Result<Vec<crate::cluster::AccessVerdict>, ClusterError>,
        plan: &mut RunPlan,
    ) -> Result<Option<Outcome>, RunError> {
        match verdicts {
            Ok(verdicts) => {
                let denied: Vec<String> = verdicts
                    .iter()
                    .filter(|v| !v.allowed)
                    .map(|v| v.access.to_string())
                    .collect();
                self.emit(EventKind::Preflight {
                    checked: verdicts.len(),
                    denied: denied.clone(),
                    not_checked: None,
                })?;
                if !denied.is_empty() {
                    let reason = format!(
                        "the plan needs {} permission(s) this identity does not have, so nothing is written: {}",
                        denied.len(),
                        denied.join("; ")
                    );
                    return Ok(Some(Outcome::Refused { reason }));
                }
            }
            Err(ClusterError::Unsupported(why)) => {
                let note = format!("permissions not checked: {why}");
                self.emit(EventKind::Preflight {
                    checked: 0,
                    denied: Vec::new(),
                    not_checked: Some(note.clone()),
                })?;
                plan.notes.push(note);
            }
            Err(e) => {
                return Err(RunError::Preflight(e));
            }
        }
        Ok(None)
    }
}

/// On a live cluster, every planned write is sent once with `dryRun=All`, in plan order, so
/// admission (webhooks, policies) and the API server's own validation can refuse it before
/// anything is written; the refusals, one per step at most. Writes to an object an earlier
/// planned write changes are checked against the planned state only. Evictions are left to
/// apply time: a disruption budget may allow them later, and the drain waits for that. `None`
/// on a simulated cluster.
async fn dry_run_refusals(
    cluster: &dyn Cluster,
    plan: &RunPlan,
    config: &RunConfig,
) -> Option<Vec<String>> {
    if cluster.info().kind != "live" {
        return None;
    }
    use futures::StreamExt;
    let forwarding = Overlay::forwarding_dry_run(cluster);
    let forwarding = &forwarding;
    let mut refusals = Vec::new();
    for planned in &plan.steps {
        let Some(step_plan) = planned.plan() else {
            continue;
        };
        let writes: Vec<&Op> = step_plan
            .ops
            .iter()
            .filter(|op| op.is_write() && !matches!(op, Op::Evict { .. }))
            .collect();
        // Runs of patches (each on its own object, as apply sends them) are checked side by
        // side; anything else in order, as it depends on what came before.
        let mut i = 0;
        'step: while i < writes.len() {
            let end = crate::plan::op::patch_run(&writes, i);
            let checks: Vec<_> = writes[i..end]
                .iter()
                .map(|op| async move {
                    let result = apply::apply(
                        op,
                        &planned.id,
                        &config.run_id,
                        Carry::ServerDryRun,
                        forwarding,
                        &mut AutoApprove,
                    )
                    .await;
                    (op, result)
                })
                .collect();
            let mut checked = futures::stream::iter(checks).buffered(16);
            while let Some((op, result)) = checked.next().await {
                if let Err(e) = result {
                    refusals.push(format!(
                        "{}: the API server refuses `{op}`: {e}",
                        planned.label()
                    ));
                    break 'step;
                }
            }
            i = end;
        }
    }
    Some(refusals)
}

/// Reviews every access a plan needs, asking about a whole collection (`patch pods` in a
/// namespace) once where the plan names several of its objects: allowed there, it is allowed on
/// each of them. Only where the collection is denied (RBAC may grant some names only) is each
/// object asked about. A mass step over thousands of pods needs tens of reviews, not thousands.
async fn review_in_groups(
    cluster: &dyn Cluster,
    needed: &[Access],
) -> Result<Vec<crate::cluster::AccessVerdict>, ClusterError> {
    use std::collections::{BTreeMap, HashMap};
    let collection = |a: &Access| Access {
        name: None,
        ..a.clone()
    };
    let mut named: BTreeMap<Access, usize> = BTreeMap::new();
    for access in needed.iter().filter(|a| a.name.is_some()) {
        *named.entry(collection(access)).or_default() += 1;
    }
    let grouped: Vec<Access> = named
        .into_iter()
        .filter(|(_, count)| *count > 1)
        .map(|(access, _)| access)
        .collect();
    let allowed_collections: Vec<Access> = cluster
        .review_access(&grouped)
        .await?
        .into_iter()
        .filter(|v| v.allowed)
        .map(|v| v.access)
        .collect();
    let covered = |a: &Access| a.name.is_some() && allowed_collections.contains(&collection(a));
    let ask: Vec<Access> = needed.iter().filter(|a| !covered(a)).cloned().collect();
    let mut answers: HashMap<Access, crate::cluster::AccessVerdict> = cluster
        .review_access(&ask)
        .await?
        .into_iter()
        .map(|v| (v.access.clone(), v))
        .collect();
    Ok(needed
        .iter()
        .map(|access| {
            answers
                .remove(access)
                .unwrap_or_else(|| crate::cluster::AccessVerdict {
                    access: access.clone(),
                    allowed: true,
                    reason: Some("allowed on the whole collection".into()),
                })
        })
        .collect())
}

/// One planned part of a step: the whole step (`id` None) or one namespace's or object's share
/// of a target that spans namespaces.
struct Part {
    id: Option<String>,
    input: StepInput,
    plan: StepPlan,
    depends_on: Vec<crate::plan::depends::Collection>,
}

/// Whether a target is planned in parts: one spanning namespaces (unless the action takes all
/// at once), or cluster-scoped objects picked by a selector for an action on one object at a
/// time (the nodes of a pool).
fn fans_out(target: &ResolvedTarget, action: &dyn action::Action) -> bool {
    (target.all_namespaces && action.fan_out() != FanOut::Whole)
        || (!target.kind.namespaced
            && target.name.is_none()
            && target.selector.is_some()
            && action.fan_out() == FanOut::PerObject)
}

/// The single-namespace targets a wide target becomes, each with its part id: the matches are
/// listed once, then grouped by namespace (or taken one by one).
async fn parts_of(
    step: &str,
    wide: &ResolvedTarget,
    fan_out: FanOut,
    cluster: &dyn Cluster,
) -> Result<Vec<(Option<String>, Option<ResolvedTarget>)>, PlanError> {
    let matches =
        crate::cluster::observe::decide(cluster, |seen| crate::action::common::observe(wide, seen))
            .await?;
    let mut seen = BTreeSet::new();
    for object in &matches {
        let namespace = object::namespace(object).unwrap_or_default().to_string();
        let name = object::name(object).unwrap_or_default().to_string();
        seen.insert(match fan_out {
            FanOut::PerObject => (namespace, Some(name)),
            _ => (namespace, None),
        });
    }
    Ok(seen
        .into_iter()
        .map(|(namespace, name)| {
            let id = match &name {
                Some(name) if namespace.is_empty() => format!("{step}@{name}"),
                Some(name) => format!("{step}@{namespace}/{name}"),
                None => format!("{step}@{namespace}"),
            };
            let part = ResolvedTarget {
                namespace: (!namespace.is_empty()).then_some(namespace),
                all_namespaces: false,
                selector: if name.is_some() {
                    None
                } else {
                    wide.selector.clone()
                },
                name,
                ..wide.clone()
            };
            (Some(id), Some(part))
        })
        .collect())
}

/// Guards run in two passes: those on params alone before the facts are looked up, the others
/// after.
#[derive(Clone, Copy, PartialEq, Eq)]
enum GuardPass {
    ParamsOnly,
    ReadingFacts,
}

/// Every distinct permission a plan needs: its operations' and its verifications' reads.
pub fn needed_access(plan: &RunPlan) -> Vec<Access> {
    let mut needed: BTreeSet<Access> = BTreeSet::new();
    for planned in &plan.steps {
        let PlannedState::Planned {
            target,
            with,
            plan: step_plan,
            ..
        } = &planned.state
        else {
            continue;
        };
        for op in &step_plan.ops {
            needed.extend(op.access());
        }
        let action = action::lookup(&planned.action).expect("validation checked the action");
        let input = StepInput {
            step_id: planned.playbook_step().to_string(),
            run_id: plan.run_id.clone(),
            target: target.as_deref().cloned(),
            with: with.clone(),
            canaries: Vec::new(),
        };
        needed.extend(action.verify_access(&input, step_plan));
    }
    needed.into_iter().collect()
}

/// A step's outputs as later steps see them while planning: what the plan knows now, and a
/// known-after-apply marker for each declared output that only applying produces.
fn with_pending_outputs(plan: &StepPlan, step: &Step) -> Map<String, Value> {
    let mut outputs = plan.outputs.clone();
    if let Some(action) = action::lookup(&step.action) {
        for (name, _) in action.info().outputs {
            outputs
                .entry(name.to_string())
                .or_insert_with(|| Value::String(after_apply_marker(&step.id, name)));
        }
    }
    outputs
}

/// ` at file:line:col` of the step field a render error names (`steps[3].with.labels…`), so a
/// run-time template error points at the template.
fn place_of(loaded: &Loaded, index: usize, field: &str) -> String {
    let Some(step) = loaded
        .root
        .get("steps")
        .and_then(|s| s.as_seq())
        .and_then(|s| s.get(index))
    else {
        return String::new();
    };
    let rest = field
        .strip_prefix(&format!("steps[{index}]"))
        .unwrap_or_default()
        .trim_start_matches('.');
    // The first segment (`target`, `with`, `when`), then as deep as plain keys reach.
    let mut node = step;
    for key in rest.split('.').filter(|k| !k.is_empty()) {
        match node.get(key) {
            Some(next) => node = next,
            None => break,
        }
    }
    format!(
        " at {}:{}:{}",
        loaded.source.name(),
        node.span.line,
        node.span.column
    )
}

/// The failure policy that applies to a step.
pub fn effective_policy(step: &Step, run_policy: RunFailurePolicy) -> StepFailurePolicy {
    match (step.on_failure, run_policy) {
        (Some(p), _) => p,
        (None, RunFailurePolicy::Stop) => StepFailurePolicy::Stop,
        (None, RunFailurePolicy::Rollback) => StepFailurePolicy::Rollback,
    }
}

/// What templates see as `run`.
fn run_scope(config: &RunConfig, playbook: &str, server: &str) -> Map<String, Value> {
    json!({
        "id": config.run_id,
        "mode": config.mode.as_str(),
        "playbook": playbook,
        "started_at": jiff::Timestamp::now().to_string(),
        "cluster": server,
    })
    .as_object()
    .cloned()
    .unwrap_or_default()
}
