"""Traffic routers: how a canary weight becomes real traffic. One interface, one module each."""

from kanary.routers.base import RouteProblem, TrafficRouter

__all__ = ["RouteProblem", "TrafficRouter"]
