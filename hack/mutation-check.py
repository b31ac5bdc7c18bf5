#!/usr/bin/env python3
# ruff: noqa: E501  (a table of code snippets, one mutation per row)
"""Issue 10's defects, one at a time: revert one piece of the fix in a scratch copy of HEAD and
check that the tests named for it fail (each line prints FAILS (good) or PASSES (BAD)).

    .venv/bin/python hack/mutation-check.py
"""
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(tempfile.mkdtemp(prefix="kanary-mut-"))
subprocess.run(f"git archive HEAD | tar -x -C {ROOT}", shell=True, check=True)
MUTATIONS = [
  ("route weights never re-read (no _converge_weight)", "operator/kanary/engine/__init__.py",
   "    _converge_weight(tick)\n", "", "tests/unit/test_reconcile.py::test_a_route_reapplied_after_a_rollback_is_corrected_in_one_tick tests/unit/test_reconcile.py::test_a_route_reapplied_mid_rollout_gets_the_weight_in_force_back"),
  ("no canary availability (no _watch_canary)", "operator/kanary/engine/__init__.py",
   "        _watch_canary(tick)\n", "", "tests/unit/test_reconcile.py::test_a_canary_that_stops_being_ready_loses_its_traffic_and_rolls_back"),
  ("stable recreated from the spec template", "operator/kanary/reconcile.py",
   "    template = _template_of(spec, view, revision)\n    if template is None:", "    template = spec.template.model_dump(by_alias=True)\n    if template is None:", "tests/unit/test_reconcile.py::test_a_stable_deleted_mid_rollout_comes_back_with_the_stable_template"),
  ("stable not recreated when missing (old _scale_stable)", "operator/kanary/engine/converge.py",
   "    if revision and (not stable.exists or stable.revision != revision or stable.drifted):", "    if revision and stable.exists and (stable.revision != revision or stable.drifted):", "tests/unit/test_reconcile.py::test_a_stable_deleted_mid_rollout_comes_back_with_the_stable_template"),
  ("every rule's backendRefs written (old weight_patch)", "operator/kanary/routers/gateway.py",
   "        if stable in refs and canary in refs:", "        if stable in refs or canary in refs:", "tests/unit/test_reconcile.py::test_a_second_rule_pinned_to_stable_is_never_rewritten tests/unit/test_routers_objects.py::test_a_rule_pinned_to_the_stable_service_is_never_written"),
  ("deleting Rollout not left alone", "operator/kanary/reconcile.py",
   "    if meta.get(\"deletionTimestamp\"):\n        return", "    if False:\n        return", "tests/unit/test_reconcile.py::test_a_rollout_being_deleted_is_left_alone"),
  ("stall message blames stable", "operator/kanary/engine/report.py",
   "        if tick.obs.route_problem and track.ready >= tick.replicas:", "        if False:", "tests/unit/test_reconcile.py::test_a_missing_route_is_named_as_the_blocker_after_the_deadline"),
  ("action consumed without test op", "operator/kanary/reconcile.py",
   "            ops.append({\"op\": \"test\", \"path\": path, \"value\": annotations[key]})\n", "", "tests/unit/test_reconcile.py::test_a_newer_request_survives_the_consumption_of_the_older_one"),
  ("status written without resourceVersion", "operator/kanary/reconcile.py",
   "            meta[\"namespace\"], meta[\"name\"], str(meta.get(\"resourceVersion\", \"\")), patch\n", "            meta[\"namespace\"], meta[\"name\"], rt.kube.get(\"Rollout\", meta[\"namespace\"], meta[\"name\"])[\"metadata\"][\"resourceVersion\"], patch\n", "tests/unit/test_reconcile.py::test_a_status_write_carries_the_resource_version_read tests/unit/test_reconcile.py::test_an_action_written_during_a_tick_is_not_lost"),
  ("selector from template labels", "operator/kanary/spec.py",
   "        return dict(self.selector.match_labels) if self.selector else {}", "        return dict(self.selector.match_labels) if self.selector else self.template.labels()", "tests/unit/test_routers_objects.py::test_selectors_do_not_follow_template_labels_without_spec_selector tests/unit/test_reconcile.py::test_spec_without_selector_keeps_services_on_kanary_labels"),
  ("setWeight advances on any earlier Pass", "operator/kanary/engine/steps.py",
   "    return judgement.may_advance(tick.status.analysis, max(starts, default=None))", "    return judgement.may_advance(tick.status.analysis, None)", "tests/unit/test_engine.py::test_a_weight_step_waits_for_a_check_of_its_own_weight"),
  ("retry measures old pods", "operator/kanary/reconcile.py",
   "            [t for t in timings if since is None or t.created >= since], now", "            list(timings), now", "tests/unit/test_reconcile.py::test_retry_measures_only_pods_created_after_it"),
  ("promote --full re-templates stable at once", "operator/kanary/engine/steps.py",
   "    return not tick.ratio_mode and tick.incoming.canary_weight < 100", "    return False", "tests/unit/test_reconcile.py::test_promote_full_at_5_percent_never_retemplates_stable_while_it_carries_traffic"),
  ("ReconcileError never cleared", "operator/kanary/engine/report.py",
   "    kept = [c for c in tick.status.conditions if c.type != \"ReconcileError\"]", "    kept = list(tick.status.conditions)", "tests/unit/test_reconcile.py::test_a_failed_tick_is_a_condition_once_and_cleared_by_the_next_good_tick"),
  ("abort refused in promotion", "operator/kanary/engine/manual.py",
   "    if tick.status.stage not in (\"Stepping\", \"Promoting\"):", "    if tick.status.stage != \"Stepping\":", "tests/unit/test_reconcile.py::test_abort_during_promotion_puts_the_stable_template_back"),
  ("Invalid mid-rollout freezes the weight", "operator/kanary/engine/__init__.py",
   "    if tick.status.stage in (\"Stepping\", \"Promoting\") and tick.status.canary_weight > 0:", "    if False:", "tests/unit/test_engine.py::test_an_invalid_spec_mid_rollout_takes_the_weight_off_the_canary"),
  ("unknown status keys nulled", "operator/kanary/reconcile.py",
   "if k in _KNOWN and fresh.get(k) is None", "if fresh.get(k) is None", "tests/unit/test_reconcile.py::test_status_fields_the_model_does_not_know_are_kept"),
  ("Prometheus URL not checked", "operator/kanary/reconcile.py",
   "            invalid = str(e)", "            pass", "tests/unit/test_reconcile.py::test_a_prometheus_url_not_allowed_is_invalid_and_never_fetched"),
  ("services only at rollout start", "operator/kanary/engine/__init__.py",
   "        _converge_services(tick)\n", "", "tests/unit/test_reconcile.py::test_a_deleted_or_edited_service_comes_back"),
]
for what, path, old, new, tests in MUTATIONS:
    f = ROOT / path
    text = f.read_text()
    if old not in text:
        print(f"SKIP (pattern not found): {what}")
        continue
    f.write_text(text.replace(old, new, 1))
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests.split()], cwd=ROOT,
                           capture_output=True, text=True, env={"PYTHONPATH": f"{ROOT}/operator:{ROOT}", "PATH": "/usr/bin:/bin"})
        last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr[-200:]
        print(f"{'FAILS (good)' if r.returncode else 'PASSES (BAD)'}: {what}: {last}")
    finally:
        f.write_text(text)
