"""Notifications: which alerts a Rollout's transitions raise (pure), what each provider is sent
(pure), and the delivery worker that sends them without ever blocking a tick (I/O).

- ``model``: the shared types (an ``Alert``, a resolved ``Target``);
- ``alerts``: the decision: status transitions -> alert records in status (pure);
- ``text``: the one-line text and its template variables (pure);
- ``payloads``: the JSON each provider type is sent: Alertmanager API v2, Slack Block Kit,
  Microsoft Teams, a Flagger-compatible webhook, and gate calls (pure);
- ``delivery``: the bounded queue and worker: retries with backoff, a cap, metrics (I/O);
- ``providers``: AlertProvider objects and their Secrets -> Targets (I/O, thin).
"""
