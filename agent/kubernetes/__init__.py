"""KubernetesRuntime: apps as Deployments, readiness from EndpointSlices, HA by a Lease.

Layers, lowest first (a module imports only those above it in this list):

- ``errors``    the error tree and the one place kubernetes-asyncio errors are translated
- ``settings``  the frozen settings of this runtime
- ``manifests`` pure: a ProcessSpec -> Deployment and Service bodies, names and labels
- ``status``    pure: watched objects -> ProcessStatus snapshots
- ``lease``     pure leader decision of a Lease and ``now``; the Elector shell
- ``watching``  resilient list+watch of one resource (resume, relist on 410, backoff)
- ``runtime``   the KubernetesRuntime shell that ties them together
"""
