"""The step engine: spec + status + what was observed -> the next status and the writes to make.

Pure: no clock (time is ``obs.now``), no client, no I/O. The I/O layer must execute the actions in
order and write the returned status only after they all succeeded; every action is an idempotent
write, so a crash between the two re-decides from the old status and repeats the same writes,
and a restart from a written status resumes exactly where it stopped (all progress is in status).

Deployments are driven level-style (the wanted replicas and revision are derived from the stage
and compared with what was observed, so a lost write is redone); route weights, which are not
observed, are written once, at the transition that changes them (and again when a route reported
broken is fixed). At most one step or stage is entered per call: a step entered now is judged on
the next observation, which shows the writes made for it. A manual action with an id applies once.

Stages (status.stage) and their phases:
  Creating  (Progressing) first stable track being created; Steady once it is Ready.
  Steady    (Healthy)     stable runs the template; a template change starts a rollout.
  Stepping  (Progressing, Paused with pauseReason) runs steps[currentStepIndex]:
            setWeight w: canary scaled to ceil(replicas*w/100), Ready -> weight written -> next;
            setHeaderRoute: canary has a Ready pod -> header rule written -> next;
            pause {duration}: elapsed and the latest analysis passed -> next;
            pause {}: Paused until `promote`. After the last step: Promoting.
  Promoting (Progressing) stable takes the canary template; Ready -> weight 0 -> Steady.
  Aborted   (RolledBack)  weight 0 written; canary to 0 replicas at scaleDownAt.
Invalid is an overlay: phase Invalid, nothing written, the stage kept for when it is fixed.

The engine is split by concern, as Argo Rollouts splits its rollout controller:

- ``tick``: ``Decision``, ``_Tick`` (one call of decide() in the making), ``template_hash``,
  ``analysis_due`` and the small helpers the other files share;
- ``steps``: the stages and their steps (creating, steady, setWeight, setHeaderRoute, setMirror
  and pause steps, advancing, promotion) and template changes (supersede);
- ``judging``: analysis counting, the sequential test, canary readiness;
- ``rollback``: weight 0 in one write, the canary's scale-down times;
- ``manual``: the manual actions (promote, promote --full, abort, retry, pause, resume);
- ``converge``: the level-triggered part (canary availability, route weights, Services and the
  two Deployments);
- ``report``: the phase, the conditions and the one-line message;
- this file: ``decide()``, the order in which one tick runs the above.
"""

from __future__ import annotations

from kanary.engine.converge import (
    _converge_services,
    _converge_tracks,
    _converge_weight,
    _note_route_problem,
    _watch_canary,
    _with_header,
)
from kanary.engine.judging import _take_analysis, _take_sequential
from kanary.engine.manual import _acknowledge, _apply_manual, _manual_is_new
from kanary.engine.report import _finish, _set_conditions
from kanary.engine.rollback import _roll_back
from kanary.engine.steps import _follow_template, _run_stage
from kanary.engine.tick import (
    Decision,
    _Tick,
    analysis_due,
    sequential_due,
    takes_traffic,
    template_hash,
)
from kanary.observation import Observation
from kanary.spec import RolloutSpec
from kanary.status import RolloutStatus

__all__ = ["Decision", "analysis_due", "decide", "sequential_due", "template_hash"]


def decide(spec: RolloutSpec, status: RolloutStatus, obs: Observation) -> Decision:
    tick = _Tick(spec, status, obs)
    tick.update(observed_generation=obs.generation)
    if obs.invalid is not None:
        _hold_invalid(tick, obs.invalid)
    else:
        _note_route_problem(tick)
        _take_analysis(tick)
        _take_sequential(tick)
        _follow_template(tick)
        _apply_manual(tick)
        _watch_canary(tick)
        _run_stage(tick)
        _converge_tracks(tick)
        _converge_services(tick)
        _finish(tick)
    _converge_weight(tick)
    _with_header(tick)
    return Decision(status=tick.status, actions=tick.actions, recheck_at=tick.recheck_at)


# ---- invalid -----------------------------------------------------------------------------------


def _hold_invalid(tick: _Tick, reason: str) -> None:
    """Nothing but a rollback is written while the spec is invalid: a canary with traffic is
    rolled back (its checks cannot run, so it must not keep traffic unjudged); otherwise the
    stage is kept for when the spec is fixed."""
    if tick.incoming.phase != "Invalid" or tick.incoming.message != reason:
        tick.event("Invalid", reason, warning=True)
    if tick.obs.manual is not None and _manual_is_new(tick):
        _acknowledge(tick, tick.obs.manual, "the Rollout is Invalid: fix the spec first")
    if tick.status.stage in ("Stepping", "Promoting") and takes_traffic(tick.status):
        _roll_back(tick, "InvalidSpec", f"spec became invalid mid-rollout: {reason}")
    tick.update(phase="Invalid", message=reason)
    _set_conditions(tick, "Invalid")
