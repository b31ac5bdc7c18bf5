"""kanary: a canary rollout operator for Kubernetes."""

__version__ = "0.1.0"
