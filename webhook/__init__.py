"""heartbeat-webhook: inject a heartbeat livenessProbe into opted-in worker pods.

This module deliberately imports nothing: workers install the package only for
``webhook.heartbeat`` and must not pay for (or need) the server's dependencies.
"""

__version__ = "0.1.0"
