"""The floor every slipway component stands on.

It holds what each process needs the same way: logfmt logging of slipway
itself, long-lived tasks started by name and the runner that supervises them
(one task set per process, exit 1 when any task dies), the /healthz /readyz /metrics
endpoints, and parsing of human durations. It imports no other slipway
package (an import-linter contract says so), so router/, agent/, logs/ and
exporters/ may use it without depending on the control plane proper.
"""
