"""kanary: a canary rollout operator for Kubernetes."""
