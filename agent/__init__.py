"""The runtime side: desired vs actual replicas, scale to zero, wake, readiness, routes.

The agent is the only writer of replicas. It drives a ``Runtime``
(``agent.runtime``): ``LocalRuntime`` (child processes) on one machine,
``KubernetesRuntime`` on a cluster.
"""
